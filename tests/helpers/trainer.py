"""A Lightning Trainer for in-process tests: CPU, fp32, nothing written, nothing printed."""

from __future__ import annotations

from typing import Any

import lightning as L


def quiet_trainer(**kwargs: Any) -> L.Trainer:
    """A CPU fp32 Lightning Trainer without logger, checkpoints, progress bar or summary; kwargs override."""
    args = {
        "num_sanity_val_steps": 0,
        "precision": "32-true",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
        **kwargs,
    }
    return L.Trainer(**args)
