"""Search and scale-out on existing engines: an Optuna study (hparams_search), jobs in parallel processes
(joblib) and in submitit's executor, the SLURM launcher config, and Lightning DDP with two CPU processes."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import joblib
import pandas as pd
import pytest
from helpers import ROOT, run_script, tiny_overrides
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ftcompare.data import EpochOrder


def _jobs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0]))


def test_optuna_search_returns_val_acc_and_the_report_names_the_best_trial(tmp_path, tiny_models, reviews_csv):
    sweep = tmp_path / "search"
    overrides = [o for o in tiny_overrides(tiny_models["bert"], reviews_csv) if not o.startswith("data.batch_size")]
    result = run_script(
        "train.py", "hparams_search=lora_optuna", "hydra.sweeper.n_trials=2", *overrides, f"hydra.sweep.dir={sweep}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = _jobs(sweep)
    records = [json.loads((job / "metrics.json").read_text()) for job in jobs]
    assert len(records) == 2 and {r["strategy"] for r in records} == {"lora"}
    for record in records:  # sampled from the search space
        assert 1e-4 <= record["hparams"]["lr"] <= 1e-2 and record["hparams"]["batch_size"] in (8, 16, 32)
        assert record["hparams"]["strategy"]["r"] in (4, 8, 16, 32)
        assert record["hparams"]["strategy"]["alpha"] in (8, 16, 32, 64)
    assert records[0]["hparams"]["lr"] != records[1]["hparams"]["lr"]
    # the objective Optuna maximised is the val accuracy train.py returned
    optimum = OmegaConf.load(sweep / "optimization_results.yaml")
    assert optimum.best_value == max(r["val"]["val/acc"] for r in records)
    summary = (sweep / "summary.md").read_text()
    assert "## Hyper-parameter search" in summary and "hparams_search" not in summary.split("## ")[1]
    command = next(line for line in summary.splitlines() if "Train it again" in line).split("`")[1]
    args = shlex.split(command)[2:]
    assert "strategy=lora" in args and not any(a.startswith("hparams_search") for a in args)
    # the command trains the best trial again, to the same validation accuracy
    again = run_script("train.py", *args, f"hydra.run.dir={tmp_path / 'again'}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["val"]["val/acc"] == optimum.best_value


def test_joblib_jobs_run_in_parallel_processes_with_per_job_figures(tmp_path, tiny_models, reviews_csv):
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py",
        "-m",
        "strategy=full,frozen,lora,bitfit",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *tiny_overrides(tiny_models["bert"], reviews_csv),
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = pd.read_csv(sweep / "results.csv")
    assert list(runs["status"]) == ["ok"] * 4
    assert os.getpid() not in set(runs["pid"]) and runs["pid"].nunique() <= 2
    for _, jobs in runs.groupby("pid"):  # a worker process is reused: its jobs count up
        assert sorted(jobs["jobs_before"]) == list(range(len(jobs)))
    # loky gives each of the 2 workers its share of the cores
    assert set(runs["torch_threads"]) == {max(joblib.cpu_count() // 2, 1)}
    assert (runs["train_memory_mb"] > 0).all() and (runs["train_memory_mb"] < runs["peak_memory_mb"]).all()
    summary = (sweep / "summary.md").read_text()
    reused = runs[runs["jobs_before"] > 0]["job"].tolist()
    if reused:
        noun = "Job" if len(reused) == 1 else "Jobs"
        assert f"{noun} {', '.join(map(str, sorted(reused)))} ran in a process that had run earlier jobs" in summary
    assert "ran at the same time on" in summary


def test_submitit_executor_runs_the_jobs_as_it_would_on_slurm(tmp_path, tiny_models, reviews_csv):
    sweep = tmp_path / "sweep"
    overrides = tiny_overrides(tiny_models["bert"], reviews_csv)
    result = run_script(
        "train.py",
        "-m",
        "strategy=lora,frozen",
        "hydra/launcher=submitit_local",
        *overrides,
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [json.loads((job / "metrics.json").read_text())["strategy"] for job in _jobs(sweep)] == ["lora", "frozen"]
    assert (sweep / ".submitit").is_dir() and (sweep / "summary.md").is_file()


def test_slurm_launcher_config_composes_to_one_task_per_device(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "hydra/launcher=slurm",
                "trainer=ddp",
                "trainer.devices=4",
                "trainer.num_nodes=2",
                "hydra.launcher.partition=gpu",
            ],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    # submitit's own sbatch script for these parameters (a stand-in srun makes it believe it is on a cluster)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    params = {k: launcher[k] for k in launcher if k not in ("_target_", "submitit_folder", "max_num_timeout")}
    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "logs")
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python train.py", "0")
    for line in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu", "--time=240"):
        assert f"#SBATCH {line}\n" in script, script


def test_epoch_order_gives_each_process_a_disjoint_equal_share():
    whole = list(EpochOrder(10, seed=3))
    shares = [list(EpochOrder(10, seed=3, processes=3, rank=r)) for r in range(3)]
    assert [len(s) for s in shares] == [4, 4, 4]  # padded to the same number of batches
    assert sorted(i for s in shares for i in s) == sorted(whole + whole[:2])
    assert set(shares[0]) | set(shares[1]) | set(shares[2]) == set(range(10))


def test_ddp_spawn_with_two_cpu_processes_trains_and_evaluates_exactly(tmp_path, tiny_models, reviews_csv):
    run_dir = tmp_path / "ddp"
    overrides = [o for o in tiny_overrides(tiny_models["bert"], reviews_csv) if "limit_test" not in o]
    result = run_script(
        "train.py",
        "trainer=ddp",
        "trainer.strategy=ddp_spawn",
        "trainer.accelerator=cpu",
        "strategy=lora",
        *overrides,
        "data.eval_batch_size=5",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["devices"] == 2 and record["epochs_run"] == 2
    assert record["cost"]["perf/train_samples_per_s"] > 0 and record["cost"]["params/trainable"] > 0
    # the test split was split between the two processes; one device on the same checkpoint agrees
    single = run_script(
        "eval.py",
        f"ckpt_path={record['checkpoint']}",
        "+trainer.strategy=auto",
        "+trainer.devices=1",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert single.returncode == 0, single.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "eval.json").read_text())["metrics"]
    for name in ("test/acc", "test/f1", "test/auroc"):
        assert metrics[name] == record["test"][name]
    assert metrics["test/loss"] == pytest.approx(record["test"]["test/loss"], rel=1e-5)


def test_ddp_that_reruns_the_command_is_refused_in_a_sweep(tmp_path, tiny_models, reviews_csv):
    sweep = tmp_path / "sweep"
    overrides = tiny_overrides(tiny_models["bert"], reviews_csv)
    result = run_script(
        "train.py", "-m", "trainer=ddp", "trainer.accelerator=cpu", *overrides, f"hydra.sweep.dir={sweep}"
    )
    (job,) = _jobs(sweep)
    error = json.loads((job / "error.json").read_text())
    assert error["error"].startswith("trainer.strategy=ddp re-runs the command line") and "Fix:" in error["error"]
    assert not (job / "metrics.json").exists() and result.returncode == 0  # a sweep goes on past a failed job
