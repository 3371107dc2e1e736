"""`python eval.py ckpt_path=...` re-evaluates a checkpoint with its run's settings: the same test metrics
as training reported, to the last bit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, tiny_overrides
from test_train import run_train


def run_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "eval.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("strategy", ["lora", "frozen"])
def test_eval_gives_the_test_metrics_training_reported(tmp_path, tiny_models, reviews_csv, strategy):
    run_dir = tmp_path / "run"
    trained = run_train(
        f"strategy={strategy}", *tiny_overrides(tiny_models["bert"], reviews_csv), f"hydra.run.dir={run_dir}"
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())

    result = run_eval(f"ckpt_path={record['checkpoint']}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert evaluated["strategy"] == strategy and evaluated["split"] == "test"
    assert evaluated["metrics"] == record["test"]  # exactly
    assert evaluated["provenance"]["split_fingerprints"] == record["provenance"]["split_fingerprints"]


def test_eval_of_a_file_outside_a_run_is_a_clear_error(tmp_path):
    stray = tmp_path / "model.ckpt"
    stray.write_bytes(b"")
    result = run_eval(f"ckpt_path={stray}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 2 and result.stderr.startswith("error: ckpt_path=") and "Fix:" in result.stderr
