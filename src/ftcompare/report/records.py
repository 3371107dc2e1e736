"""The runs of a sweep folder as rows: one per Hydra job, from its metrics.json, error.json and config."""

from __future__ import annotations

import json
import logging
import os
import shlex
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ftcompare.resolvers import register_resolvers
from ftcompare.resume import command_overrides, lock_holder

# results.csv column -> where it lives in metrics.json
MEASURED = {
    "val_acc": ("val", "val/acc"),
    "test_acc": ("test", "test/acc"),
    "test_f1": ("test", "test/f1"),
    "test_auroc": ("test", "test/auroc"),
    "fit_time_s": ("cost", "perf/fit_time_s"),
    "epoch_time_s": ("cost", "perf/mean_epoch_time_s"),
    "train_samples_per_s": ("cost", "perf/train_samples_per_s"),
    "tensor_memory_mib": ("cost", "memory/tensor_peak_mib"),
    "tensor_memory_first_stage_mib": ("cost", "memory/tensor_first_stage_mib"),  # below the peak for gradual
    "peak_memory_mb": ("cost", "perf/peak_memory_mb"),
    "train_memory_mb": ("cost", "perf/train_memory_mb"),
    "trainable_params": ("cost", "params/trainable"),
    "total_params": ("cost", "params/total"),
    "trainable_pct": ("cost", "params/trainable_pct"),
    "checkpoint_mb": ("cost", "checkpoint_size_mb"),
}
# results.csv columns from metrics.json's `process`: where and when a job ran (see sharing_caveats).
PROCESS = ("host", "pid", "jobs_before", "torch_threads", "started", "ended")
# What makes two runs comparable; the configuration adds the knobs a sweep varies, all but the seed.
SETTING = ["model", "data", "split", "max_length"]
CONFIG = ["strategy", "lr", "batch_size", "max_epochs", "variant"]
# Overrides shown in a column of their own rather than in `variant`.
OWN_COLUMNS = {
    *("seed", "strategy", "optimizer.lr", "lr_multiplier", "data.batch_size", "trainer.max_epochs"),
    *("model", "model.name_or_path", "data", "data.max_length", "data.split_seed"),
    *("data.train_size", "data.train_subset", "data.val_size", "data.test_size"),
}
# Config choices that shape a whole sweep rather than one run: not part of a run's configuration.
# Below this many test examples one example moves accuracy by more than 0.5 points: a look, not a comparison.
MIN_TEST_SIZE = 200
SWEEP_CHOICES = ("experiment=", "hparams_search=")


def _select(cfg: DictConfig, key: str) -> Any:
    """A config value, or None where it is missing or only resolvable inside the run."""
    return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)


def _model_name(cfg: DictConfig, choice: str | None) -> str:
    """The config group choice for embedded presets, else the hub name or path exactly as given."""
    raw = OmegaConf.to_container(cfg.model, resolve=False).get("name_or_path", "")
    if not isinstance(raw, str) or raw.startswith("${"):
        return choice or "?"
    return raw


def _split_label(cfg: DictConfig) -> str:
    """`train/val/test seed S` (`, train subset N` for a learning curve's point), marked when the run was sliced
    for a look: it trained or evaluated only part of the splits (debug limits), or its test split is too small to
    tell strategies apart."""
    sizes = "/".join(str(_select(cfg, f"data.{k}_size")) for k in ("train", "val", "test"))
    limited = _select(cfg, "trainer.fast_dev_run") or any(
        _select(cfg, f"trainer.limit_{k}_batches") not in (None, 1.0) for k in ("train", "val", "test")
    )
    small = (_select(cfg, "data.test_size") or 0) < MIN_TEST_SIZE
    mark = " (limited batches)" if limited else f" (test split under {MIN_TEST_SIZE})" if small else ""
    subset = _select(cfg, "data.train_subset")
    trained = f", train subset {subset}" if subset is not None else ""
    return f"{sizes} seed {_select(cfg, 'data.split_seed')}{trained}{mark}"


def _failure(job_dir: Path) -> tuple[str, str]:
    """Status and reason of a run without metrics.json: `running` while a process holds its lock, else what it
    wrote to error.json (`failed`, `interrupted`), else the last error it logged, else `incomplete`."""
    holder = lock_holder(job_dir)
    if holder is not None:
        return "running", f"pid {holder['pid']} on {holder['host']}"
    error_file = job_dir / "error.json"
    if error_file.is_file():
        error = json.loads(error_file.read_text())
        return error["status"], error["error"]
    errors = []
    for logfile in job_dir.glob("*.log"):
        lines = logfile.read_text(errors="replace").splitlines()
        errors += [line.split(" - ", 1)[-1] for line in lines if "ERROR" in line]
    if errors:
        return "failed", errors[-1]
    return "incomplete", "no metrics.json and no error logged: killed (kill -9, power cut) or never started"


def collect_runs(sweep_dir: Path, relative_to: Path | None = None) -> pd.DataFrame:
    """One row per Hydra job under `sweep_dir` (ok, failed or incomplete), in job order; `dir` is the job's
    folder relative to `relative_to` (default: the sweep folder), where the report is written."""
    register_resolvers()  # the run configs use ${ftc.*:} interpolations
    rows = []
    for config_file in sorted(Path(sweep_dir).rglob(".hydra/config.yaml")):
        job_dir = config_file.parent.parent
        cfg = OmegaConf.load(config_file)
        hydra_cfg = OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra
        choices = hydra_cfg.runtime.choices
        overrides = command_overrides([o for o in hydra_cfg.overrides.task if not o.startswith(SWEEP_CHOICES)])
        row: dict[str, Any] = {
            "job": _select(hydra_cfg, "job.num"),
            "status": "ok",
            "strategy": choices.get("strategy"),
            "model": _model_name(cfg, choices.get("model")),
            "data": choices.get("data"),
            "split": _split_label(cfg),
            "max_length": _select(cfg, "data.max_length"),
            "precision": None,
            "lr": _select(cfg, "optimizer.lr"),
            "batch_size": _select(cfg, "data.batch_size"),
            "max_epochs": _select(cfg, "trainer.max_epochs"),
            "seed": _select(cfg, "seed"),
            "epochs_run": None,
            **dict.fromkeys(MEASURED),
            "memory_method": None,  # how tensor memory was measured: torch MemTracker, or the analytic fallback
            "device": None,
            "test_fingerprint": None,  # which test examples: runs are paired only on the same ones
            **dict.fromkeys(PROCESS),
            "overrides": shlex.join(overrides),  # as typed on the command line, quoted where a shell needs it
            "error": "",
            "dir": os.path.relpath(job_dir, relative_to or sweep_dir),
        }
        metrics_file = job_dir / "metrics.json"
        if metrics_file.is_file():
            record = json.loads(metrics_file.read_text())
            hparams = record["hparams"]
            row.update(lr=hparams["lr"], precision=hparams["precision"])
            row.update(epochs_run=record["epochs_run"], device=record["device"])
            row["memory_method"] = ((record.get("memory") or {}).get("method") or "").split(":")[0] or None
            row["test_fingerprint"] = record.get("provenance", {}).get("split_fingerprints", {}).get("test")
            row.update({key: record.get("process", {}).get(key) for key in PROCESS})
            for column, (section, key) in MEASURED.items():
                row[column] = record[section].get(key)
        else:
            status, error = _failure(job_dir)
            row.update(status=status, error=error)
        rows.append(row)
    runs = pd.DataFrame(rows)
    if runs.empty:
        return runs
    runs[list(MEASURED)] = runs[list(MEASURED)].apply(pd.to_numeric)
    runs["variant"] = _variants(runs["overrides"])
    return runs.sort_values("job", kind="stable", ignore_index=True)


def parse_overrides(overrides: str) -> dict[str, str]:
    return dict(o.split("=", 1) for o in shlex.split(overrides) if "=" in o)


def _variants(overrides: pd.Series) -> list[str]:
    """Per run, the overrides that vary across the sweep and have no column of their own."""
    parsed = [parse_overrides(text) for text in overrides]
    common = set.intersection(*(set(p.items()) for p in parsed)) if parsed else set()
    return [",".join(f"{k}={v}" for k, v in p.items() if k not in OWN_COLUMNS and (k, v) not in common) for p in parsed]


def common_overrides(runs: pd.DataFrame) -> list[str]:
    """Overrides every run of the sweep shares (e.g. `model.attention_dropout=0.0`), for the header."""
    sets = [set(shlex.split(text)) for text in runs["overrides"]]
    shared = set.intersection(*sets) if sets else set()
    return sorted(o for o in shared if o.split("=", 1)[0] not in OWN_COLUMNS)


def read_val_curves(sweep_dir: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """Validation accuracy per epoch of every ok run, from its TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # one INFO line per event file otherwise
    frames = []
    for _, run in runs[runs["status"] == "ok"].iterrows():
        for events_dir in {p.parent for p in (sweep_dir / run["dir"]).rglob("events.out.tfevents.*")}:
            accumulator = EventAccumulator(str(events_dir), size_guidance={"scalars": 0})
            accumulator.Reload()
            tags = accumulator.Tags()["scalars"]
            if "val/acc" not in tags or "epoch" not in tags:
                continue
            epoch_at = {event.step: int(event.value) for event in accumulator.Scalars("epoch")}
            per_epoch: dict[int, float] = {}
            for event in accumulator.Scalars("val/acc"):
                per_epoch.setdefault(epoch_at.get(event.step, -1), event.value)
            # re-evaluating the best checkpoint after fit logs with the epoch counter at `epochs_run`
            frames += [
                {**{k: run[k] for k in SETTING + CONFIG}, "seed": run["seed"], "epoch": e + 1, "val_acc": v}
                for e, v in per_epoch.items()
                if 0 <= e < run["epochs_run"]
            ]
    return pd.DataFrame(frames)


def newest_sweep(root: Path) -> Path:
    """The most recently written sweep folder under `root` (one holding Hydra's multirun.yaml)."""
    sweeps = sorted(root.rglob("multirun.yaml"), key=lambda p: p.stat().st_mtime)
    if not sweeps:
        raise FileNotFoundError(
            f"no sweep (multirun.yaml) under {root}/. Fix: pass the sweep folder: python report.py DIR"
        )
    return sweeps[-1].parent


def sweep_of(source: Path) -> Path:
    """The sweep a merged source belongs to: itself, or the sweep folder around a job folder named on its own
    (to take some of a sweep's runs, e.g. one strategy's)."""
    if not (source / "multirun.yaml").is_file() and (source.parent / "multirun.yaml").is_file():
        return source.parent
    return source
