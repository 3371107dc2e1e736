"""Per-run results: the metrics.json record that later comparisons are built from."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

SUMMARY_KEYS = (
    ("test/acc", "test acc", "{:.4f}"),
    ("test/f1", "test F1", "{:.4f}"),
    ("val/acc", "best val acc", "{:.4f}"),
    ("perf/fit_time_s", "fit time (s)", "{:.0f}"),
    ("perf/train_samples_per_s", "train samples/s", "{:.1f}"),
    ("perf/peak_memory_mb", "peak memory (MiB)", "{:.0f}"),
    ("params/trainable_pct", "trainable %", "{:.2f}"),
)


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write atomically (temp file + rename): a crash never leaves a truncated file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


def summary_line(record: dict[str, Any]) -> str:
    """One human-readable line per run for the terminal."""
    metrics = {**record["val"], **record["test"], **record["cost"]}
    parts = [f"{label} {fmt.format(metrics[key])}" for key, label, fmt in SUMMARY_KEYS if key in metrics]
    return f"[{record['strategy']}] " + " | ".join(parts)
