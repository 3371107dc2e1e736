"""Interrupted runs continue where they stopped: `kill -9` mid-epoch, then the same command with
resume=true; Ctrl-C finishes the step and saves a checkpoint; a resumed sweep skips finished jobs.
The resumed runs end with the metrics of an uninterrupted run (same seed), gradual unfreezing included.

Two fresh runs are bit-identical here, a resumed one is not quite: its tensors sit elsewhere in memory
and CPU kernels pick code paths by alignment, so losses move in the 5th-6th digit (measured: up to 2e-5
relative at the end). The tolerance, 1e-4, is below what a wrong data position (3e-4) or a lost random
state (9e-4) did to them when tried."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import SLURM_LAUNCHER, events_dir, finish, queued, start, submitted_id, tiny_overrides, wait_until
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ftcompare.errors import RunInUse
from ftcompare.resume import run_lock


def command(tiny_models: dict[str, str], reviews_csv: str, *extra: str) -> list[str]:
    """Gradual unfreezing over 3 epochs of 3 steps: the top layer joins at step 3, the bottom one (and the
    embeddings) at step 6, so a run resumed at step 5 still has a group to add."""
    overrides = [o for o in tiny_overrides(tiny_models["bert"], reviews_csv) if not o.startswith("trainer.max_epochs")]
    schedule = ["strategy.head_only=0.3", "strategy.all_from=0.7"]
    return ["strategy=gradual", "trainer.max_epochs=3", *schedule, *overrides, *extra]


def pause(
    marker: Path, step: int, seconds: float = 120.0, job: int | None = None, until_sigterm: bool = False
) -> list[str]:
    args = ["+callbacks.pause._target_=tests.helpers.pause.PauseAt", f"+callbacks.pause.step={step}"]
    args += [f"+callbacks.pause.marker={marker}", f"+callbacks.pause.seconds={seconds}"]
    args += [f"+callbacks.pause.until_sigterm={until_sigterm}"]
    return args + ([f"+callbacks.pause.job={job}"] if job is not None else [])


def train(args: list[str], cwd: Path) -> subprocess.Popen:
    """`python train.py <args>` started in `cwd` (its outputs/ and multirun/ go there)."""
    return start("train.py", *args, cwd=cwd)


def wait_for(marker: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run never reached the pause"
        time.sleep(0.1)


def only_run_dir(cwd: Path) -> Path:
    runs = list((cwd / "outputs").glob("*/*"))
    assert len(runs) == 1, runs
    return runs[0]


def newest(events):  # a resumed run's folder holds both attempts' events
    return max(events, key=lambda e: (e.step, e.wall_time))


def metrics(run_dir: Path) -> dict:
    """metrics.json, plus the last epoch's losses from TensorBoard: the reported metrics come from the best
    checkpoint, which may be an early epoch; these see every step up to the end."""
    record = json.loads((run_dir / "metrics.json").read_text())
    accumulator = EventAccumulator(events_dir(run_dir))
    accumulator.Reload()
    train = newest(accumulator.Scalars("train/loss_epoch"))
    val = newest(e for e in accumulator.Scalars("val/loss") if e.step == train.step)  # not the best-checkpoint re-run
    record["final"] = {"train/loss_epoch": train.value, "val/loss": val.value}
    return record


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_models, reviews_csv) -> dict:
    cwd = tmp_path_factory.mktemp("uninterrupted")
    result = finish(train(command(tiny_models, reviews_csv), cwd))
    assert result.returncode == 0, result.stderr[-3000:]
    return metrics(only_run_dir(cwd))


def assert_same_results(resumed: dict, reference: dict) -> None:
    for split in ("val", "test", "final"):
        for key, value in reference[split].items():
            assert resumed[split][key] == pytest.approx(value, rel=1e-4), (split, key)
    assert resumed["epochs_run"] == reference["epochs_run"]
    assert resumed["cost"]["params/trainable"] == reference["cost"]["params/trainable"]  # all layers unfrozen


def test_kill_9_mid_epoch_then_the_same_command_with_resume_ends_like_an_uninterrupted_run(
    tmp_path, tiny_models, reviews_csv, uninterrupted
):
    marker = tmp_path / "paused"
    args = command(tiny_models, reviews_csv, *pause(marker, step=7))  # epoch 2, second batch
    process = train(args, tmp_path)
    wait_for(marker, process)
    process.kill()  # SIGKILL: no handler, no cleanup
    process.wait(timeout=60)
    run_dir = only_run_dir(tmp_path)
    assert not (run_dir / "metrics.json").exists()
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True, map_location="cpu")  # plain tensors and containers only
    assert saved["epoch"] == 1 and saved["global_step"] == 6

    copy = tmp_path / "epoch1.ckpt"
    copy.write_bytes(last.read_bytes())

    result = finish(train([*args, "resume=true"], tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert only_run_dir(tmp_path) == run_dir  # the same folder, found from the command
    resumed = metrics(run_dir)
    assert resumed["resumed_from"] == str(last)
    assert_same_results(resumed, uninterrupted)
    assert not last.exists()  # only kept while the run can still be resumed

    # any checkpoint file starts a new run from there: the same training (the best-so-far bookkeeping stays
    # with the old folder, so only the final weights are compared)
    elsewhere = tmp_path / "from_file"
    result = finish(
        train([*command(tiny_models, reviews_csv), f"ckpt_path={copy}", f"hydra.run.dir={elsewhere}"], tmp_path)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert metrics(elsewhere)["final"] == pytest.approx(uninterrupted["final"], rel=1e-4)


@pytest.mark.parametrize(
    ("signum", "exit_code", "words"),
    [(signal.SIGINT, 130, "interrupted in epoch 1"), (signal.SIGTERM, 143, "terminated (SIGTERM) in epoch 1")],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_or_sigterm_finishes_the_step_saves_a_checkpoint_and_resumes_mid_epoch(
    tmp_path, tiny_models, reviews_csv, uninterrupted, signum, exit_code, words
):
    """SIGTERM is what `kill`, `timeout` and a cluster's time limit or preemption send."""
    marker = tmp_path / "paused"
    args = command(tiny_models, reviews_csv, *pause(marker, step=4, seconds=3))  # epoch 1, second batch
    process = train(args, tmp_path)
    wait_for(marker, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0] and "resume=true" in errors[0], stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    assert json.loads((run_dir / "error.json").read_text())["status"] == "interrupted"
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert saved["global_step"] == 5  # the step under way when Ctrl-C came was finished and kept

    result = finish(train([*args, "resume=true"], tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (run_dir / "error.json").exists()
    resumed = metrics(run_dir)
    assert_same_results(resumed, uninterrupted)
    assert resumed["cost"]["perf/fit_time_s"] > 3  # the first attempt's training (with its 3 s pause) counts


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_resumed_sweep_skips_finished_jobs_and_continues_the_killed_one(tmp_path, tiny_models, reviews_csv, launcher):
    """joblib: the job runs in a worker process; the same command with resume=true finds the same sweep."""
    marker = tmp_path / "paused"
    args = command(tiny_models, reviews_csv, "seed=0,1", *pause(marker, step=4, job=1))
    args[:0] = ["-m", *(["hydra/launcher=joblib", "hydra.launcher.n_jobs=1"] if launcher == "joblib" else [])]
    process = train(args, tmp_path)
    wait_for(marker, process)
    os.kill(int(marker.read_text()), signal.SIGKILL)  # the process that trains: a worker under joblib
    if launcher == "joblib":
        process.kill()
    process.wait(timeout=60)
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    first, second = sorted(sweep.glob("[01]_*"))
    finished_at = (first / "metrics.json").stat().st_mtime_ns
    assert not (second / "metrics.json").exists()

    result = finish(train([*args, "resume=true"], tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "multirun").glob("*/*")) == [sweep]
    assert (first / "metrics.json").stat().st_mtime_ns == finished_at  # not run again
    assert metrics(second)["resumed_from"].endswith("last.ckpt")
    assert "2 ok" in (sweep / "summary.md").read_text()


@pytest.mark.slurm
@pytest.mark.parametrize(
    ("stop", "recorded"),
    [(["scontrol", "requeue"], "interrupted"), (["scancel", "--signal=USR2"], None)],
    ids=["preempted", "time-limit-signal"],
)
def test_a_slurm_job_stopped_mid_epoch_is_requeued_and_resumes_its_run(
    tmp_path, slurm_cluster, tiny_models, reviews_csv, uninterrupted, stop, recorded
):
    """Preempted: `scontrol requeue` as a preemption does it, SIGTERM to the job; the step finishes and is saved,
    the job fails as interrupted and SLURM puts it back in the queue. Time limit: the signal SLURM sends
    `signal_delay_s` before the limit (USR2); the step finishes and is saved, then submitit requeues the job.
    Either way SLURM starts it again (SLURM_RESTART_COUNT=1) in the same folder, where it resumes from last.ckpt,
    run id and all, and the sweep that submitted it waits for it and reports one finished run."""
    marker, sweep = tmp_path / "paused", tmp_path / "sweep"
    pausing = pause(marker, step=4, until_sigterm=True)  # epoch 1, second batch
    args = ["-m", *SLURM_LAUNCHER, *command(tiny_models, reviews_csv, *pausing), f"hydra.sweep.dir={sweep}"]
    process = train(args, tmp_path)
    wait_for(marker, process)
    job = submitted_id(sweep)  # a single job: the sweep has one
    (run_dir,) = sweep.glob("0_*")
    subprocess.run([*stop, job], check=True)
    wait_until(lambda: queued(job) == "PENDING", what="the requeue")
    if recorded:
        stopped = json.loads((run_dir / "error.json").read_text())
        assert stopped["status"] == recorded and "SIGTERM" in stopped["error"]
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert saved["global_step"] == 5  # the step under way was finished and kept
    started_as = (run_dir / ".run_id").read_text()
    # SLURM holds a requeued job for 120 s before it may start again; the test does not wait that out
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)

    result = finish(process)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = metrics(run_dir)
    assert resumed["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert resumed["run_id"] == started_as and not (run_dir / "error.json").exists()
    assert_same_results(resumed, uninterrupted)
    assert "1 ok, 0 running, 0 failed, 0 interrupted" in (sweep / "summary.md").read_text()
    state = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    assert "Restarts=1" in state and "JobState=COMPLETED" in state


def test_ctrl_c_twice_stops_at_once(tmp_path, tiny_models, reviews_csv):
    marker = tmp_path / "paused"
    process = train(command(tiny_models, reviews_csv, *pause(marker, step=4, seconds=60)), tmp_path)
    wait_for(marker, process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)  # during the 60 s pause: does not wait for the step to end
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    error = json.loads((run_dir / "error.json").read_text())
    assert error["status"] == "interrupted" and "second Ctrl-C" in error["error"]
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert saved["global_step"] == 3  # the last epoch's checkpoint, untouched


def test_resume_refuses_a_run_that_is_still_going_and_writes_nothing_into_it(tmp_path, tiny_models, reviews_csv):
    marker = tmp_path / "paused"
    args = command(tiny_models, reviews_csv, *pause(marker, step=4, seconds=60, until_sigterm=True))
    process = train(args, tmp_path)
    wait_for(marker, process)
    run_dir = only_run_dir(tmp_path)
    before = sorted(p.name for p in run_dir.rglob("*") if p.is_file() and ".hydra" not in p.parts)

    second = finish(train([*args, "resume=true"], tmp_path))
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert second.returncode == 2 and len(errors) == 1, second.stderr[-3000:]
    assert f"is in use by a run that is still going (pid {process.pid}" in errors[0] and "Fix:" in errors[0]
    after = sorted(p.name for p in run_dir.rglob("*") if p.is_file() and ".hydra" not in p.parts)
    assert after == before and not (run_dir / "error.json").exists()
    assert only_run_dir(tmp_path) == run_dir

    process.send_signal(signal.SIGTERM)  # stopped properly, the same command continues it
    process.communicate(timeout=120)
    assert process.returncode == 143 and not (run_dir / ".run.lock").exists()
    result = finish(train([*args, "resume=true"], tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert metrics(run_dir)["epochs_run"] == 3


def test_resume_with_nothing_to_resume_is_refused(tmp_path, tiny_models, reviews_csv):
    """Another tool's folder with the same overrides (baselines.py) is not a run to continue either."""
    overrides = [o for o in command(tiny_models, reviews_csv) if not o.startswith("strategy")]  # baselines.py's
    baselines = finish(start("baselines.py", *overrides, cwd=tmp_path))
    assert baselines.returncode == 0, baselines.stderr[-3000:]
    result = finish(train([*overrides, "resume=true"], tmp_path))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert "resume=true: no earlier train.py run of this command" in errors[0] and "Fix:" in errors[0]
    assert not list((tmp_path / "outputs").glob("*/*/metrics.json"))


def test_a_stale_lock_is_taken_over_and_a_live_one_refused(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / ".run.lock").write_text(json.dumps({"pid": gone.pid, "host": platform.node(), "started": 0}))
    with run_lock(tmp_path):
        holder = json.loads((tmp_path / ".run.lock").read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(RunInUse, match=f"pid {os.getpid()}"), run_lock(tmp_path):
            pass
    assert not (tmp_path / ".run.lock").exists()


def test_resume_into_a_folder_given_by_hand_continues_only_a_run_of_the_same_settings(
    tmp_path, tiny_models, reviews_csv
):
    """hydra.run.dir=<folder> resume=true: refused in one line, before anything is written there, unless the
    folder holds a train.py run of the same settings (then: continued, here already finished)."""
    args = command(tiny_models, reviews_csv, "trainer.max_epochs=1")

    def resume_into(folder: Path, *extra: str) -> subprocess.CompletedProcess:
        return finish(train([*args, *extra, "resume=true", f"hydra.run.dir={folder}"], tmp_path))

    empty = tmp_path / "empty"
    empty.mkdir()
    result = resume_into(empty)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert f"{empty} holds no train.py run to continue" in errors[0] and "Fix:" in errors[0]
    assert list(empty.iterdir()) == []

    run_dir = tmp_path / "run"
    first = finish(train([*args, f"hydra.run.dir={run_dir}"], tmp_path))
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}

    other = resume_into(run_dir, "seed=7", "data.max_length=32")
    errors = [line for line in other.stderr.splitlines() if line.startswith("error:")]
    assert other.returncode == 2 and len(errors) == 1, other.stderr[-3000:]
    assert "holds a run of other settings (data.max_length=64 there, 32 here; seed=" in errors[0]
    assert errors[0].count(" here") == 2 and ", 7 here)" in errors[0]
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before  # not a byte written

    same = resume_into(run_dir)
    assert same.returncode == 0, same.stderr[-3000:]
    assert "already finished, not run again" in same.stderr + same.stdout
    assert (run_dir / "metrics.json").stat().st_mtime_ns == before[run_dir / "metrics.json"]
