"""Search and scale-out on existing engines: an Optuna study (hparams_search), jobs in parallel processes
(joblib) and in submitit's executor, the SLURM launcher config, and Lightning DDP with two CPU processes."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import joblib
import pandas as pd
import pytest
from helpers import (
    ROOT,
    SLURM_LAUNCHER,
    accounted,
    finish,
    reviews_rows,
    run_script,
    start,
    submitted_id,
    tiny_overrides,
    wait_until,
    write_csv,
)
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
    reused = sorted(runs[runs["jobs_before"] > 0]["job"])
    if reused:  # three in a row are a range: one worker ran all four (test_reporting tests the naming)
        named = "1–3" if reused == [1, 2, 3] else ", ".join(map(str, reused))
        assert f"{'Job' if len(reused) == 1 else 'Jobs'} {named} ran in a process that had run earlier jobs" in summary
    assert "ran at the same time on" in summary


@pytest.mark.slurm
def test_a_slurm_sweep_runs_as_a_job_array_and_a_job_with_bad_data_fails_alone(
    tmp_path, slurm_cluster, tiny_models, reviews_csv
):
    """Through sbatch for real: 4 jobs (2 strategies x a good and a bad data file), two at a time on the node."""
    bad = write_csv(tmp_path / "bad.csv", [[text, 7] for text, _ in reviews_rows(40)])  # label 7 of 2
    sweep = tmp_path / "sweep"
    overrides = [o for o in tiny_overrides(tiny_models["bert"], reviews_csv) if not o.startswith("data.source")]
    result = run_script(
        "train.py",
        "-m",
        *SLURM_LAUNCHER,
        "strategy=frozen,lora",
        f"data.source.data_files={reviews_csv},{bad}",
        *overrides,
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = pd.read_csv(sweep / "results.csv")
    pairs = sorted(zip(runs["strategy"], runs["status"], strict=True))
    assert pairs == [("frozen", "failed"), ("frozen", "ok"), ("lora", "failed"), ("lora", "ok")]
    for job in _jobs(sweep):
        if str(bad) in (job / ".hydra" / "overrides.yaml").read_text():  # refused in one line, nothing else written
            error = json.loads((job / "error.json").read_text())
            assert "label" in error["error"] and "Fix:" in error["error"] and not (job / "metrics.json").exists()
        else:
            assert json.loads((job / "metrics.json").read_text())["val"]["val/acc"] > 0
    assert "2 ok, 0 running, 2 failed" in (sweep / "summary.md").read_text()
    # SLURM's own record: one array of four tasks, all completed (a failed run still ends its job cleanly)
    array = submitted_id(sweep)
    wait_until(lambda: len(accounted(array)) == 4, timeout=30, what="sacct to list the array")
    assert accounted(array) == dict.fromkeys("0123", "COMPLETED")
    assert all(pid != os.getpid() for pid in runs["pid"])


@pytest.mark.slurm
def test_scancel_of_a_running_slurm_job_records_it_interrupted_and_the_sweep_reports_it(
    tmp_path, slurm_cluster, tiny_models, reviews_csv
):
    sweep, marker = tmp_path / "sweep", tmp_path / "paused"
    pause = ["+callbacks.pause._target_=tests.helpers.pause.PauseAt", "+callbacks.pause.step=2"]
    pause += [f"+callbacks.pause.marker={marker}", "+callbacks.pause.until_sigterm=true", "+callbacks.pause.job=1"]
    overrides = tiny_overrides(tiny_models["bert"], reviews_csv)
    args = ["-m", *SLURM_LAUNCHER, "strategy=frozen,lora", *overrides, *pause, f"hydra.sweep.dir={sweep}"]
    process = start("train.py", *args)
    wait_until(marker.exists, timeout=180, what="job 1 to reach its pause")
    array = submitted_id(sweep)
    subprocess.run(["scancel", f"{array}_1"], check=True)
    result = finish(process)
    assert result.returncode == 0, result.stderr[-3000:]
    frozen, lora = _jobs(sweep)
    assert (frozen / "metrics.json").is_file()
    error = json.loads((lora / "error.json").read_text())
    assert error["status"] == "interrupted" and "SIGTERM" in error["error"] and not (lora / "metrics.json").exists()
    assert (lora / "checkpoints" / "last.ckpt").is_file()  # the SIGTERM path saved where it stopped
    assert list(pd.read_csv(sweep / "results.csv")["status"]) == ["ok", "interrupted"]
    assert "1 ok, 0 running, 0 failed, 1 interrupted" in (sweep / "summary.md").read_text()
    wait_until(lambda: accounted(array).get("1") == "CANCELLED", timeout=30, what="sacct to list the cancel")


@pytest.mark.slurm
def test_two_optuna_sweeps_share_one_study_and_run_each_trial_once_as_array_tasks(
    tmp_path, slurm_cluster, tiny_models, reviews_csv
):
    """Two workers (sweep processes, as on two login nodes) against one storage: 2 + 2 trials in one study."""
    optuna = pytest.importorskip("optuna")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # created once before the workers start (two first connections would both create SQLite's tables)
    optuna.create_study(study_name="shared", storage=storage, direction="maximize")
    overrides = [o for o in tiny_overrides(tiny_models["bert"], reviews_csv) if not o.startswith("data.batch_size")]
    search = ["hparams_search=optuna", "strategy=frozen", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2"]
    search += [f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=shared"]
    workers = [
        start("train.py", *SLURM_LAUNCHER, *search, *overrides, f"seed={n}", f"hydra.sweep.dir={tmp_path / str(n)}")
        for n in (0, 1)
    ]
    for worker in workers:
        result = finish(worker)
        assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="shared", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    records = [json.loads((job / "metrics.json").read_text()) for n in (0, 1) for job in _jobs(tmp_path / str(n))]
    assert len(records) == 4  # each trial ran once, as one task of its worker's array
    assert sorted(t.value for t in study.trials) == sorted(r["val"]["val/acc"] for r in records)
    ran = sorted(r["hparams"]["lr"] for r in records)
    assert ran == pytest.approx(sorted(0.002 * t.params["lr_multiplier"] for t in study.trials), rel=1e-5)
    for array in (submitted_id(tmp_path / str(n)) for n in (0, 1)):
        wait_until(lambda a=array: set(accounted(a).values()) == {"COMPLETED"}, timeout=30, what="sacct")


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
