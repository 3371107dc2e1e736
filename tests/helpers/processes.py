"""The entry scripts (train.py, eval.py, ...) run as a user runs them: in a subprocess, from the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start(script: str, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `python <script> <args>`; `tests.helpers.*` callbacks import from any working directory."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 600) -> subprocess.CompletedProcess:
    """Wait for a started script; its exit code and output."""
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_script(
    script: str, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `python <script> <args>` to the end."""
    return finish(start(script, *args, cwd=cwd, env=env))
