"""What the console shows: the run's own lines and errors by default, everything with `verbose=true`.
The job's log file always keeps everything (conf/hydra/job_logging/ftcompare.yaml)."""

from __future__ import annotations

import logging

OWN = "ftcompare"


class ConsoleFilter(logging.Filter):
    """Lets through this package's records and any error; the libraries' info and warnings (Lightning's
    tips, transformers' load report, Python warnings) go to the log file only, unless `verbose`.
    A record logged with `extra={"file_only": True}` (an error already printed) never reaches the console."""

    def __init__(self, verbose: bool = False) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "file_only", False):
            return False
        own = record.name == OWN or record.name.startswith(OWN + ".") or record.name == "__main__"
        return self.verbose or own or record.levelno >= logging.ERROR


class ConsoleHandler(logging.StreamHandler):
    """Writes through tqdm, so a line logged while a progress bar runs gets a line of its own."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging must not raise
            self.handleError(record)


def quiet_libraries(verbose: bool) -> None:
    """Progress bars of datasets' map/filter and transformers' weight loading off (they print straight to the
    terminal), and Python warnings into the log, unless `verbose`. Lightning's own progress bar stays."""
    import datasets
    import transformers

    logging.captureWarnings(True)
    if verbose:
        datasets.enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()
    else:
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
