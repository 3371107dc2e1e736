"""Small review files and the overrides of a tiny, fast run on them."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from ftcompare.resolvers import embedded_data_path


def reviews_rows(per_label: int = 200) -> list[list[str]]:
    """`per_label` IMDb reviews of each label from the embedded data, as [text, label] rows."""
    counts = {"0": 0, "1": 0}
    rows = []
    with open(embedded_data_path(), newline="") as src:
        for row in csv.DictReader(src):
            if row["source"] == "imdb" and counts[row["label"]] < per_label:
                counts[row["label"]] += 1
                rows.append([row["text"], row["label"]])
    return rows


def write_csv(path: Path, rows: Iterable[Iterable[object]], header: Iterable[str] | None = ("text", "label")) -> str:
    """Rows as a CSV file (with `header` first, unless None); returns the path as a string."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def tiny_overrides(model_path: str, data_path: str) -> list[str]:
    """Overrides for a tiny, fast run on local files."""
    return [
        f"model.name_or_path={model_path}",
        "data=files",
        f"data.source.data_files={data_path}",
        "data.label_names=[negative,positive]",
        "data.train_size=64",
        "data.val_size=32",
        "data.test_size=32",
        "data.max_length=64",
        "data.batch_size=8",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1",
        "callbacks.progress_bar=null",
    ]
