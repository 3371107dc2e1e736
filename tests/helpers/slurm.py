"""Sweeps on the tests' SLURM cluster (the `slurm_cluster` fixture): the launcher's overrides for one small
node, and what SLURM itself says about a sweep's jobs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

# hydra/launcher=slurm sized for the tests' node: one CPU and 1 GB per job, no GPUs, two jobs at once on 2 cores
SLURM_LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.gpus_per_node=null",
]


def submitted_id(sweep: Path, timeout: float = 60) -> str:
    """The id SLURM gave a sweep's submission (submitit's folder `.submitit/<id>`): its job array's, or with one
    job in the sweep, that job's (submitit submits a single job then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p.name for p in (sweep / ".submitit").glob("*") if p.name.isdigit()]
        if found:
            return max(found, key=int)
        time.sleep(0.2)
    raise AssertionError(f"nothing submitted under {sweep}/.submitit")


def accounted(array: str) -> dict[str, str]:
    """sacct's state of each task of an array, by task id ("7_0" -> "0"), as the accounting database has it."""
    result = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", array], capture_output=True, text=True, check=True
    )
    rows = (line.split("|") for line in result.stdout.splitlines() if line)
    return {job.split("_", 1)[1]: state.split()[0] for job, state in rows if "_" in job}


def queued(job: str) -> str:
    """squeue's state of one job ("" once it has left the queue)."""
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()


def wait_until(condition, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
