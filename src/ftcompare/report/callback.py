"""Hydra callback: the report is written into the sweep folder when a multirun ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ftcompare.report.page import build_report

log = logging.getLogger(__name__)


class ReportOnMultirunEnd(Callback):
    """Hydra callback: writes the report into the sweep folder when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = build_report(sweep_dir)
            paths = report.write()
        except Exception:  # a report bug must not hide the finished runs
            log.exception("could not write the report; re-run it with: python report.py %s", sweep_dir)
            return
        log.info("\n%s", report.terminal())
        log.debug("report files: %s", ", ".join(str(p) for p in paths))
