"""What a run ran on and where, so two results can be checked for comparability."""

from __future__ import annotations

import importlib.metadata
import itertools
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("torch", "lightning", "transformers", "datasets", "peft", "torchmetrics", "hydra-core", "omegaconf")
_JOBS_IN_THIS_PROCESS = itertools.count()  # launchers may run several jobs in one process (basic, joblib)


def next_job_in_process() -> int:
    """How many jobs this process started before this one."""
    return next(_JOBS_IN_THIS_PROCESS)


def process_info(started: float, jobs_before: int) -> dict[str, Any]:
    """Where and when the job ran, so the report can say which jobs shared a process (CPU peak memory
    then holds what earlier jobs left) or ran at the same time on one machine (sharing its cores)."""
    return {
        "host": platform.node(),
        "pid": os.getpid(),
        "jobs_before": jobs_before,
        "torch_threads": torch.get_num_threads(),
        "started": started,
        "ended": time.time(),
    }


def provenance(split_fingerprints: dict[str, str]) -> dict[str, Any]:
    """Package versions, Python, platform, git commit and the fingerprint of each split's examples (the
    resolved config is in `resolved_config.yaml`)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "packages": {name: importlib.metadata.version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit or None,
        "split_fingerprints": split_fingerprints,
    }
