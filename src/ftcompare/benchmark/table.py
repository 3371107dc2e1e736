"""The bench table: ours vs Trainer per strategy, the frozen strategy's epochs, matmul rates, MFU."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import torch

from ftcompare.report.reading import REFERENCE
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


def render(rows: dict[str, dict[str, dict[str, Any]]], rates: dict[str, float], model: str, settings: str) -> str:
    """The markdown `make bench` prints: the table, then what it leaves out, the matmul rates and MFU."""
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
    return "\n".join(lines) + "\n"
