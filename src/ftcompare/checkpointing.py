"""What a strategy's checkpoints hold beyond Lightning's own state, and how it is put back.

- Trained parameters only: parameters that held loaded pretrained weights and stayed frozen for the whole run
  are left out (a LoRA checkpoint is adapter + head). A SHA-256 digest of what was left out goes in instead;
  loading checks it against the weights the run's config names, then fills them in, so a checkpoint put onto
  other weights is refused instead of predicting nonsense.
- The random state: torch's (and CUDA's) RNG, restored at the first training step after a resume (after
  whatever the sanity check and the loaders drew), so dropout draws as in an uninterrupted run.
- The validation of the saved weights: the `val/*` metrics and per-example predictions of the last validation,
  with the step it ran at. A checkpoint saved at that step holds the weights they were computed on, so the run
  reports them instead of validating the same weights again (`validation_of`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftcompare.errors import ConfigError


class CheckpointContents:
    """Owned by a strategy module, which calls it from its checkpoint hooks."""

    def __init__(self, model_name: str, trained_only: bool) -> None:
        self.model_name, self.trained_only = model_name, trained_only
        self.pretrained: set[int] = set()  # ids of the parameters holding loaded (not newly initialised) weights
        self._digest: tuple[tuple[str, ...], str] | None = None
        self._rng: dict[str, Any] | None = None

    def mark_pretrained(self, named_parameters: Iterable[tuple[str, nn.Parameter]], missing: set[str]) -> None:
        """Remember which parameters the loaded weights filled: only those may be left out of checkpoints (a new
        head, or a pooler the weights lack, is random and must be saved)."""
        self.pretrained |= {id(p) for name, p in named_parameters if name not in missing}

    def save(self, module: nn.Module, checkpoint: dict[str, Any], validation: dict[str, Any] | None = None) -> None:
        if validation is not None:
            checkpoint["validation"] = validation
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()
        if not self.trained_only:
            return
        frozen = {n: p for n, p in module.named_parameters() if not p.requires_grad and id(p) in self.pretrained}
        for name in frozen:
            checkpoint["state_dict"].pop(name, None)
        checkpoint["pretrained"] = {"model": self.model_name, "names": sorted(frozen), "digest": self.digest(frozen)}

    def load(self, module: nn.Module, checkpoint: dict[str, Any]) -> None:
        self._rng = checkpoint.get("rng_states")
        kept = checkpoint.get("pretrained")
        if kept is None:
            return
        params = dict(module.named_parameters())
        current = {name: params[name] for name in kept["names"] if name in params}
        if len(current) != len(kept["names"]) or self.digest(current) != kept["digest"]:
            raise ConfigError(
                f"the checkpoint holds only trained parameters, to be put on the pretrained {kept['model']!r}, but "
                f"model.name_or_path={self.model_name!r} loaded other weights. Fix: the model the run "
                "trained (its resolved_config.yaml)"
            )
        checkpoint["state_dict"].update({name: p.detach() for name, p in current.items()})  # loads strictly

    def digest(self, params: dict[str, torch.Tensor]) -> str:
        """SHA-256 over the parameters' names and bytes; cached, as frozen parameters do not change."""
        names = tuple(sorted(params))
        if self._digest is None or self._digest[0] != names:
            digest = hashlib.sha256()
            for name in names:
                digest.update(name.encode())
                digest.update(params[name].detach().cpu().contiguous().flatten().view(torch.uint8).numpy())
            self._digest = (names, digest.hexdigest())
        return self._digest[1]

    def restore_rng(self) -> None:
        """Put back the saved random state, once; a no-op unless a checkpoint was just loaded."""
        if self._rng:
            torch.set_rng_state(self._rng["torch"])
            if "cuda" in self._rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(self._rng["cuda"])
            self._rng = None


def validation_of(path: str | Path) -> dict[str, Any] | None:
    """The validation a checkpoint's own weights had when it was saved (`metrics`: `val/*`, `predictions`), or
    None when the last validation before the save ran on other weights (an earlier step) or the checkpoint
    predates the record."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # mmap: no weights read
    validation = checkpoint.get("validation")
    if validation is None or validation["global_step"] != checkpoint.get("global_step"):
        return None
    return {"metrics": dict(validation["metrics"]), "predictions": validation.get("predictions")}
