"""A run's per-example predictions (`predictions.csv` in its folder): which examples it got right, so that runs
scored on the same split are compared example by example (the report's paired tests), not only by accuracy.

An example's id is its split's fingerprint (SHA-256 over the split's texts and labels, in order) and its position
in the split: two runs share an id only when they scored the same example of the same split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ftcompare.io import write_atomic

PREDICTIONS_FILE = "predictions.csv"
SPLITS = ("validation", "test")


def example_id(fingerprint: str, index: int) -> str:
    """`<first 16 hex digits of the split fingerprint>:<index in the split>`."""
    return f"{fingerprint[:16]}:{index}"


def predictions_frame(
    predictions: dict[str, dict[str, list] | None], fingerprints: dict[str, str], label_names: list[str]
) -> pd.DataFrame:
    """One row per scored example: split, example_id, label, predicted (by the highest probability, as the
    metrics count it) and one probability column per class (`p_<label>`)."""
    frames = []
    for split in SPLITS:
        scored = predictions.get(split)
        if not scored:
            continue
        probs = np.asarray(scored["probs"], dtype=np.float64).reshape(len(scored["example"]), len(label_names))
        frames.append(
            pd.DataFrame(
                {
                    "split": split,
                    "example_id": [example_id(fingerprints[split], i) for i in scored["example"]],
                    "label": [label_names[i] for i in scored["label"]],
                    "predicted": [label_names[i] for i in probs.argmax(axis=1)],
                    **{f"p_{name}": probs[:, k].round(6) for k, name in enumerate(label_names)},
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_predictions(run_dir: Path, frame: pd.DataFrame) -> Path:
    return write_atomic(run_dir / PREDICTIONS_FILE, frame.to_csv(index=False))


def correct_by_example(run_dir: Path, split: str = "test") -> pd.Series | None:
    """Whether the run got each example of `split` right, indexed by example id; None without predictions."""
    path = run_dir / PREDICTIONS_FILE
    if not path.is_file():
        return None
    frame = pd.read_csv(path, usecols=["split", "example_id", "label", "predicted"], dtype=str)
    frame = frame[frame["split"] == split]
    return pd.Series((frame["label"] == frame["predicted"]).to_numpy(), index=frame["example_id"].to_numpy())
