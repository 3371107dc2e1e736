"""Fixtures: tiny random BERT/DistilBERT/RoBERTa folders, a small review CSV, composed configs.
Builders live in tests/helpers/."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import ROOT, reviews_rows, run_script, save_tiny_models, tiny_overrides, write_csv
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ftcompare.resolvers import register_resolvers

register_resolvers()
os.environ["HF_HUB_OFFLINE"] = "1"  # no network in CI: hub lookups in the tests' subprocesses fail at once


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return save_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def reviews_csv(tmp_path_factory: pytest.TempPathFactory) -> str:
    """400 IMDb reviews from the embedded data (balanced), as a small local CSV."""
    return write_csv(tmp_path_factory.mktemp("data") / "reviews.csv", reviews_rows(200))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_models, reviews_csv) -> Callable[[str], dict]:
    """metrics.json of a finished tiny BERT run of a strategy, trained once per session and shared by the tests
    that only read a run (its checkpoint, metrics and config) and write their own outputs elsewhere."""
    records: dict[str, dict] = {}

    def _run(strategy: str) -> dict:
        if strategy not in records:
            run_dir = tmp_path_factory.mktemp(f"run_{strategy}")
            overrides = tiny_overrides(tiny_models["bert"], reviews_csv)
            result = run_script("train.py", f"strategy={strategy}", *overrides, f"hydra.run.dir={run_dir}")
            assert result.returncode == 0, result.stderr[-3000:]
            records[strategy] = json.loads((run_dir / "metrics.json").read_text())
        return records[strategy]

    return _run


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose conf/train.yaml (or `config=`'s) with overrides, outside of a Hydra run."""

    def _compose(*overrides: str, config: str = "train") -> DictConfig:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose(config, overrides=[f"paths.output_dir={tmp_path}", *overrides])

    return _compose


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A single-node SLURM cluster (tests/helpers/slurm_cluster.sh) for the tests marked `slurm`; sbatch, squeue,
    scontrol and sacct in this process and its children talk to it. Where it cannot start (not root, no
    slurm-wlm) the tests skip, except in CI, which installs it (.ci/run) and must run them."""
    folder = tmp_path_factory.mktemp("slurm")
    script = ROOT / "tests" / "helpers" / "slurm_cluster.sh"
    started = subprocess.run([script, "start", folder], capture_output=True, text=True)
    if started.returncode != 0:
        reason = f"no SLURM cluster: {started.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    yield folder
    subprocess.run([script, "stop", folder], check=False)
    if previous is None:
        os.environ.pop("SLURM_CONF")
    else:
        os.environ["SLURM_CONF"] = previous
