"""Label new texts with a checkpoint (`python predict.py ckpt_path=... text=...|input=...`): one JSON line per input."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from ftcompare.data.truncation import encode
from ftcompare.errors import ConfigError
from ftcompare.io import write_atomic
from ftcompare.runs import find_checkpoint, load_tokenizer, load_trained, run_config


def read_texts(cfg: DictConfig, text_column: str) -> list[str]:
    """`text=` one text; `input=` a .txt (a text per non-empty line) or a .csv (its `text_column`: the one
    given, else the run's)."""
    if (cfg.text is None) == (cfg.input is None):
        raise ConfigError("give exactly one of text=... or input=<file.txt|file.csv>. Fix: e.g. text='A moving film.'")
    if cfg.text is not None:
        if not str(cfg.text).strip():
            raise ConfigError(f"text={cfg.text!r} is empty: there is nothing to label. Fix: e.g. text='A moving film.'")
        return [str(cfg.text)]
    path = Path(cfg.input).expanduser()
    if not path.is_file():
        raise ConfigError(f"input={cfg.input!r} does not exist. Fix: a .txt with a text per line or a .csv")
    if path.suffix.lower() != ".csv":
        texts = [line for line in path.read_text().splitlines() if line.strip()]
    else:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and text_column not in rows[0]:
            raise ConfigError(
                f"input={cfg.input!r} has no column {text_column!r}; it has {list(rows[0])}. "
                "Fix: text_column=<the column that holds the texts>"
            )
        texts = [row[text_column] or "" for row in rows]
        empty = [number for number, text in enumerate(texts, start=2) if not text.strip()]
        if empty and len(empty) < len(texts):  # a label per row: an empty one would get a made-up label
            raise ConfigError(
                f"input={cfg.input!r} has {len(empty)} empty text(s) in column {text_column!r} (line {empty[0]} "
                "first). Fix: remove those rows, or fill them in"
            )
        texts = [] if empty else texts
    if not texts:
        raise ConfigError(f"input={cfg.input!r} holds no text to label. Fix: a .txt with a text per line or a .csv")
    return texts


def predict(cfg: DictConfig) -> list[dict[str, Any]]:
    """Rebuild the run's strategy, load the checkpoint's weights, label the texts; print and write predictions.jsonl."""
    ckpt_path = find_checkpoint(cfg.ckpt_path)
    run = run_config(ckpt_path)
    texts = read_texts(cfg, cfg.text_column or run.data.text_column)  # bad input is refused before the model loads
    module, tokenizer = load_trained(ckpt_path, run), load_tokenizer(run)
    bf16 = str(run.trainer.precision).startswith("bf16")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    module.to(device)
    predictions = []
    for batch in _batches(texts, cfg.batch_size):
        ids = encode(tokenizer, batch, run.data.max_length, run.data.get("truncation", "head"))  # as in training
        inputs = tokenizer.pad(ids, return_tensors="pt")
        autocast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.no_grad(), autocast:
            probs = module(inputs.to(device)).float().softmax(-1).cpu()
        for text, p in zip(batch, probs, strict=True):
            label = module.label_names[int(p.argmax())]
            scores = {name: round(float(v), 6) for name, v in zip(module.label_names, p, strict=True)}
            predictions.append({"label": label, "probabilities": scores, "text": text})
    lines = [json.dumps(p, ensure_ascii=False) for p in predictions]
    print("\n".join(lines))
    written = write_atomic(Path(cfg.paths.output_dir) / "predictions.jsonl", "\n".join(lines) + "\n")
    print(f"predictions written to {written}", file=sys.stderr)  # stdout holds only the JSON lines
    return predictions


def _batches(texts: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(texts), size):
        yield texts[start : start + size]
