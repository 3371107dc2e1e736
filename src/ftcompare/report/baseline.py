"""The classical baseline a sweep is read against: TF-IDF + logistic regression on the very split its runs used
(`baselines.py`), kept as `baselines.json` in the sweep folder."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from ftcompare.report.records import SETTING

log = logging.getLogger(__name__)

FILE = "baselines.json"


def sweep_baseline(sweep_dir: Path, runs: pd.DataFrame) -> dict[str, Any] | None:
    """The sweep's baselines.json, computed on the first run's split unless the file was made on exactly the runs'
    splits (same fingerprints); None when its runs do not share one split and window, the split is sliced, or
    scikit-learn is not installed (`pip install -e .[baselines]`)."""
    shared = runs[SETTING].drop_duplicates()  # one model, data, split and window
    if len(shared) != 1 or "(" in str(shared["split"].iloc[0]):
        return None
    path = Path(sweep_dir) / FILE
    splits = _split_fingerprints(Path(sweep_dir) / runs["dir"].iloc[0])
    if path.is_file():
        kept = json.loads(path.read_text())
        if kept.get("split_fingerprints") == splits:
            return kept
        log.warning("%s was made on other splits than the runs': computing it again", path)
    if importlib.util.find_spec("sklearn") is None:
        return None
    from ftcompare.baselines import run  # loads the data: only when there is a baseline to compute
    from ftcompare.resolvers import register_resolvers

    register_resolvers()
    try:
        cfg = OmegaConf.load(Path(sweep_dir) / runs["dir"].iloc[0] / ".hydra" / "config.yaml")
        cfg.paths.output_dir = str(sweep_dir)
        return run(cfg)
    except Exception:  # the report must not fail for its baseline
        log.exception("could not compute the TF-IDF baseline; `python baselines.py` with the runs' data settings")
        return None


def _split_fingerprints(run_dir: Path) -> dict[str, str] | None:
    """The fingerprint of each split a finished run trained and was scored on (its metrics.json), if on record."""
    metrics = run_dir / "metrics.json"
    record = json.loads(metrics.read_text()) if metrics.is_file() else {}
    return record.get("provenance", {}).get("split_fingerprints")


def baseline_table(baseline: dict[str, Any]) -> pd.DataFrame:
    """One row per TF-IDF input (the whole review, the model's window): validation and test accuracy."""
    rows = [
        {
            "baseline": "TF-IDF + logistic regression, " + _input(key),
            "val acc": f"{scores['validation']:.4f}",
            "test acc": f"{scores['test']:.4f}",
        }
        for key, scores in baseline.items()
        if key.startswith("tfidf_")
    ]
    return pd.DataFrame(rows)


def _input(key: str) -> str:
    window = re.fullmatch(r"tfidf_(.+)_(\d+)_tokens", key)  # baselines.py: tfidf_<truncation>_<max_length>_tokens
    return f"the model's {window[2]} tokens ({window[1]})" if window else "whole review"


def whole_text_test(baseline: dict[str, Any] | None) -> float | None:
    """The baseline's test accuracy on the whole review: the figure the strategies are read against."""
    return (baseline or {}).get("tfidf_whole_text", {}).get("test")
