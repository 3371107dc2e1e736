"""Reading a data source: local files by kind (`.csv`, `.tsv` with tabs, JSON lines, Parquet), globs naming
several, or a Hugging Face dataset, with one clear error for what cannot be read."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from datasets import DatasetDict, load_dataset

from ftcompare.errors import ConfigError, first_line

DATA_FIX = "a UTF-8 CSV with a header row, a text and a label column and one example per row (or JSON lines, Parquet)"
_READERS = ("pandas", "pyarrow", "json", "datasets")
_FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_FILE_OPTIONS = {".tsv": {"sep": "\t"}}  # what a builder needs for an extension (unless the config says otherwise)


def _data_files(pattern: str) -> list[Path]:
    """The files a `data.source.data_files` entry names: a file, or a glob (`reviews/*.csv`) matching some."""
    path = Path(pattern).expanduser()
    if path.is_dir():
        raise ConfigError(
            f"data.source.data_files={pattern!r} is a folder. Fix: name a file in it, or its files by a glob, "
            f"e.g. data.source.data_files='{pattern.rstrip('/')}/*.csv'"
        )
    found = [path] if path.is_file() else sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
    if not found:
        what = "matches no file" if glob.has_magic(pattern) else "does not exist"
        raise ConfigError(
            f"data.source.data_files={pattern!r} {what}. Fix: point it at a CSV, JSON or Parquet file with a text "
            "and a label column, or use data=imdb (embedded)"
        )
    for file in found:
        if file.stat().st_size == 0:
            raise ConfigError(f"data.source.data_files={str(file)!r} is empty. Fix: {DATA_FIX}")
    return found


def load_source(source: dict[str, Any]) -> DatasetDict:
    """The data as `datasets` loads it: a hub dataset, or local files read by their kind (`.tsv` with tabs), a
    glob naming several; what cannot be read is one ConfigError naming the file and the fix."""
    source = dict(source)
    files = source.get("data_files")
    if files is not None:
        entries = files.values() if hasattr(files, "values") else [files]  # {split: files} or files
        patterns = [p for e in entries for p in ([e] if isinstance(e, str | Path) else e)]  # a list of files
        paths = [path for pattern in patterns for path in _data_files(str(pattern))]
        if source.get("path") is None:
            suffix = paths[0].suffix.lower()
            if suffix not in _FILE_BUILDERS:
                raise ConfigError(
                    f"data.source.data_files={str(paths[0])!r}: unknown file type {suffix!r}. "
                    f"Fix: use one of {sorted(_FILE_BUILDERS)} or set data.source.path=csv|json|parquet"
                )
            source["path"] = _FILE_BUILDERS[suffix]
            source = {**_FILE_OPTIONS.get(suffix, {}), **source}
    try:
        loaded = load_dataset(**source)
    except (OSError, ConnectionError) as err:
        raise ConfigError(
            f"data.source.path={source.get('path')!r} could not be loaded ({type(err).__name__}: "
            f"{first_line(err)}). Fix: with no network use data=imdb "
            "(embedded) or data=files data.source.data_files=<local file>"
        ) from err
    except Exception as err:  # datasets wraps the reader's error (pandas, arrow, json, codecs)
        cause = err.__cause__ or err
        if isinstance(cause, UnicodeDecodeError):
            raise ConfigError(
                f"data.source.data_files={files!r} is not UTF-8 text ({cause.reason} at byte {cause.start}). "
                "Fix: re-save it as UTF-8, or name its encoding: +data.source.encoding=latin-1"
            ) from err
        if not isinstance(cause, ValueError) and type(cause).__module__.split(".")[0] not in _READERS:
            raise
        raise ConfigError(f"data.source={source!r} could not be read ({first_line(cause)}). Fix: {DATA_FIX}") from err
    return loaded
