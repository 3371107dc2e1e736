"""Pooled backbone features per example, for the frozen strategy: compute once, train the head on them.

A frozen backbone in eval mode maps the same tokens to the same features, so each example is keyed
by its own non-padding token ids: a different data split or max_length gives different keys.
The optional on-disk copy is one file per (model files, pooling, layers, precision), so changing any of
them starts a new cache instead of reusing stale features.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from datasets.fingerprint import Hasher

from ftcompare.io import write_atomic

log = logging.getLogger(__name__)


def model_identity(name_or_path: str) -> list[Any]:
    """A model's name plus, for a local folder, its files' names, sizes and modification times."""
    folder = Path(name_or_path).expanduser()
    files = (
        sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir()) if folder.is_dir() else []
    )
    return [name_or_path, files]


class FeatureCache:
    """Maps each example's tokens to its pooled features; misses are computed and kept."""

    def __init__(self, directory: str | Path | None = None, identity: Any = None) -> None:
        self.features: dict[str, torch.Tensor] = {}
        self.path = Path(directory).expanduser() / f"{Hasher.hash(identity)}.pt" if directory else None
        self.hits = self.misses = 0
        if self.path is not None and self.path.is_file():
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            self.features = dict(zip(saved["keys"], saved["features"], strict=True))
            log.info("loaded %d cached backbone features from %s", len(self.features), self.path)
        self.saved = len(self.features)

    def __len__(self) -> int:
        return len(self.features)

    @staticmethod
    def keys(batch: dict[str, torch.Tensor]) -> list[str]:
        """One digest per example over its non-padding input ids (and token type ids)."""
        mask = batch["attention_mask"].bool().cpu()
        parts = [batch[k].cpu() for k in ("input_ids", "token_type_ids") if k in batch]
        return [
            hashlib.blake2b(b"".join(p[i][mask[i]].numpy().tobytes() for p in parts), digest_size=16).hexdigest()
            for i in range(len(mask))
        ]

    def lookup(
        self, batch: dict[str, torch.Tensor], compute: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    ) -> torch.Tensor:
        """Features of the batch's examples; `compute` runs once, on the examples not seen before."""
        keys = self.keys(batch)
        missing = [i for i, key in enumerate(keys) if key not in self.features]
        if missing:
            rows = compute({k: v[missing] for k, v in batch.items()}).detach().cpu()
            self.features.update(zip((keys[i] for i in missing), rows, strict=True))
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        device = batch["input_ids"].device
        return torch.stack([self.features[key] for key in keys]).to(device, non_blocking=True)

    def save(self) -> None:
        """Write the on-disk copy (atomically), if there is one and it would grow."""
        if self.path is None or len(self.features) <= self.saved:
            return
        buffer = io.BytesIO()
        torch.save({"keys": list(self.features), "features": torch.stack(list(self.features.values()))}, buffer)
        write_atomic(self.path, buffer.getvalue())
        self.saved = len(self.features)
        log.info("saved %d backbone features to %s", len(self.features), self.path)
