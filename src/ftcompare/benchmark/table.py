"""The bench table: ours vs Trainer per strategy, the frozen strategy's epochs, matmul rates, MFU."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import torch

from ftcompare.report.paired import REFERENCE
from ftcompare.resolvers import embedded_model_path


def machine() -> str:
    """The device the figures come from: the GPU, or the CPU's model and whether it has bf16 matmul units."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    units = [flag for flag in ("amx_bf16", "avx512_bf16") if flag in info] or ["no bf16 units"]
    return (
        f"{model or platform.processor() or platform.machine()} ({', '.join(units)}), "
        f"{psutil.cpu_count()} CPU threads, torch {torch.__version__}"
    )


def _fmt(value: Any) -> str:
    """Three significant figures, no exponent."""
    if not isinstance(value, float) or value != value:
        return "" if value is None or value != value else str(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(rows: dict[str, dict[str, dict[str, Any]]]) -> pd.DataFrame:
    records = []
    for strategy, run in rows.items():
        ours, hf = run["ours"], run.get("trainer", {})
        records.append(
            {
                "strategy": strategy,
                "ours samples/s": ours["samples_per_s"],
                "Trainer samples/s": hf.get("samples_per_s"),
                "ours / Trainer": ours["samples_per_s"] / hf["samples_per_s"] if hf else None,
                "ours step ms": ours["step_ms"],
                "Trainer step ms": hf.get("step_ms"),
                "ours tokens/s": ours["tokens_per_s"],
                "Trainer tokens/s": hf.get("tokens_per_s"),
                "tensor memory MiB": ours.get("tensor_mib"),
                "ours process MiB": ours["peak_mb"],
                "Trainer process MiB": hf.get("peak_mb"),
                "ours eval samples/s": ours["eval_samples_per_s"],
                "Trainer eval samples/s": hf.get("eval_samples_per_s"),
            }
        )
    return pd.DataFrame.from_records(records).set_index("strategy")


def _markdown(frame: pd.DataFrame) -> str:
    return frame.map(_fmt).to_markdown(colalign=["left"] + ["right"] * len(frame.columns), disable_numparse=True)


def _model_name(name_or_path: str) -> str:
    return "all-MiniLM-L6-v2 (embedded)" if name_or_path == embedded_model_path() else name_or_path


@dataclass
class Study:
    """What `experiment=compare` trains: strategies, seeds, each one's epochs, split sizes, and the share of
    training a staged strategy (gradual) spends in its first stage; to project the study's wall time."""

    strategies: list[str]
    seeds: int
    epochs: dict[str, int]
    train: int
    val: int
    test: int
    first_stage: dict[str, float] = field(default_factory=dict)


def study_hours(rows: dict[str, dict[str, dict[str, Any]]], study: Study) -> float | None:
    """The study's projected wall time from our loop's rates: training, every epoch's validation and the test.

    Frozen's first epoch runs at its first-epoch rate; a staged strategy (gradual) its first stage at its own
    rate, the rest (more layers trainable) at full fine-tuning's, an upper bound. Start-up and checkpoint
    writing are left out. None unless every strategy of the study was timed."""
    if not set(study.strategies) <= set(rows):
        return None
    seconds = 0.0
    for strategy in study.strategies:
        ours, epochs = rows[strategy]["ours"], study.epochs[strategy]
        if strategy in study.first_stage:
            share, later = study.first_stage[strategy], rows[REFERENCE]["ours"]["samples_per_s"]
            training = epochs * study.train * (share / ours["samples_per_s"] + (1 - share) / later)
        else:
            first = ours.get("epoch1_samples_per_s", ours["samples_per_s"])
            training = study.train / first + (epochs - 1) * study.train / ours["samples_per_s"]
        evaluated = epochs * study.val + study.test
        seconds += training + evaluated / ours["eval_samples_per_s"]
    return seconds * study.seeds / 3600


def _epochs(study: Study) -> str:
    """`3` when every strategy trains as long, else `full 3 / frozen 10 / ...`."""
    counts = [study.epochs[s] for s in study.strategies]
    if len(set(counts)) == 1:
        return str(counts[0])
    return " / ".join(f"{s} {n}" for s, n in zip(study.strategies, counts, strict=True))


def render(
    rows: dict[str, dict[str, dict[str, Any]]],
    rates: dict[str, float],
    model: str,
    settings: str,
    study: Study | None = None,
) -> str:
    """The markdown `make bench` prints: the table, then what it leaves out, the matmul rates, MFU, and the
    projected wall time of the study when every strategy of it was timed."""
    gpu = torch.cuda.is_available()
    lines = [
        "# Training throughput: ours vs Hugging Face Trainer",
        "",
        f"Machine: {machine()}. Model `{_model_name(model)}`, {settings}",
        "",
        _markdown(table(rows)),
        "",
        "Tensor memory MiB: training memory at the peak of one tracked step (tensors by category, the same "
        "module in both loops). Process MiB: "
        + ("allocated GPU memory" if gpu else "resident memory")
        + " above the level before the model was built.",
    ]
    for strategy, run in rows.items():
        ours = run["ours"]
        if "epoch1_samples_per_s" not in ours:
            continue
        lines.append(
            f"{strategy}, ours: epoch 1 {ours['epoch1_samples_per_s']:.3g} samples/s, "
            f"later epochs {ours['samples_per_s']:.4g} samples/s."
        )
        if REFERENCE in rows:
            ratio = ours["samples_per_s"] / rows[REFERENCE]["ours"]["samples_per_s"]
            lines.append(
                f"A {strategy} epoch after the first is {ratio:.0f}x faster than a {REFERENCE} fine-tuning epoch."
            )
    lines.append(
        "Matmul 2048^3 on this machine: "
        + ", ".join(f"{dtype} {rate / 1e9:.0f} GFLOP/s" for dtype, rate in rates.items())
    )
    for who, figures in rows.get(REFERENCE, {}).items():
        achieved = figures["flops_per_s"]
        shares = " and ".join(f"{100 * achieved / rate:.1f}% of the {dtype}" for dtype, rate in rates.items())
        lines.append(
            f"{REFERENCE.capitalize()} fine-tuning, {who}: {achieved / 1e9:.0f} GFLOP/s achieved = "
            f"{shares} matmul rate (model FLOPs utilisation)."
        )
    hours = study_hours(rows, study) if study is not None else None
    if hours is not None:
        lines.append(
            f"`python train.py -m experiment=compare` ({len(study.strategies)} strategies x {study.seeds} seeds, "
            f"epochs {_epochs(study)} of {study.train} reviews, validation {study.val} per epoch, test {study.test}) "
            f"projected at {hours * 60:.0f} min on this machine from our loop's rates (gradual after its first stage "
            "at full fine-tuning's rate; start-up not counted)."
        )
    return "\n".join(lines) + "\n"
