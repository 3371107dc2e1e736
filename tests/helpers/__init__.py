"""Builders the tests share: tiny models and data, a quiet trainer, and a runner for the entry scripts."""

from .browser import CHROMIUM, browser_check
from .data import reviews_rows, tiny_overrides, write_csv
from .events import events_dir
from .models import TINY_CONFIGS, save_tiny_models
from .processes import ROOT, finish, run_script, start
from .slurm import SLURM_LAUNCHER, accounted, queued, submitted_id, wait_until
from .trainer import quiet_trainer

__all__ = [
    "CHROMIUM",
    "ROOT",
    "SLURM_LAUNCHER",
    "TINY_CONFIGS",
    "accounted",
    "browser_check",
    "events_dir",
    "finish",
    "queued",
    "quiet_trainer",
    "reviews_rows",
    "run_script",
    "save_tiny_models",
    "start",
    "submitted_id",
    "tiny_overrides",
    "wait_until",
    "write_csv",
]
