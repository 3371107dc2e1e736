"""Peak training memory by category before a run: the strategy's module is built from the model's config under
fake tensors (shapes only: no weights, no memory, no training) and one training step traced with the tracker
a run uses (`tracking.TrackedStep`), in Lightning's order. `python estimate.py [-m] <train.py overrides>`."""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ftcompare.builders import build_module
from ftcompare.errors import ConfigError
from ftcompare.io import write_atomic, write_json
from ftcompare.memory.cuda_like import CudaLikeOps
from ftcompare.memory.hub_configs import HUB_CONFIGS
from ftcompare.memory.tracking import TrackedStep, at_peak_mib, parameter_mib
from ftcompare.models import FTC_ATTENTION, check_backbone, portable_name, weightless
from ftcompare.report.tables import markdown_table
from ftcompare.strategies import FineTuningStrategy
from ftcompare.validation import validate

log = logging.getLogger(__name__)
VIEWS = {
    "cuda_like": "what a GPU would hold (its fused attention and 1-byte dropout masks), traced on this machine",
    "cpu": "what a CPU holds (attention with dropout takes the unfused path there)",
}
_AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
_CAST = {"bf16-true": torch.bfloat16, "16-true": torch.float16}
_FULL = {"32-true", "32"}
SHOWN = ["gradients", "optimizer_state", "activations", "total"]


def estimate(cfg: DictConfig) -> list[dict[str, Any]]:
    """One row per tracked stage (gradual: its first and last): bytes by category at the step's peak, and the
    GPU sizes it fits. Written to `estimate.json` and `estimate.md` in the output folder."""
    view, sizes, reserve = _settings(cfg)
    validate(cfg)
    precision = _precision(cfg, view)
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.distributed._tools.mem_tracker import MemTracker  # noqa: F401  (the tracker the trace needs)
    except ImportError as err:
        raise ConfigError(f"the estimate needs torch's fake tensors and MemTracker ({err}). Fix: torch>=2.5") from err
    if view == "cuda_like" and OmegaConf.select(cfg, "model.attn_implementation") == FTC_ATTENTION:
        cfg.model.attn_implementation = "sdpa"  # the GPU's fused kernel, as the view promises
    model = OmegaConf.to_container(cfg.model, resolve=True)
    with weightless(HUB_CONFIGS):
        check_backbone(model, cfg.data.max_length)
        with torch.device("meta"):  # shapes only; fake tensors replace them below
            module = build_module(cfg)
    last = len(module.stage_steps(1)) - 1
    with FakeTensorMode():
        _materialize(module)
        rows = [_trace(module, cfg, stage, view, precision) for stage in sorted({0, last})]
    for row in rows:
        row |= {
            "model": portable_name(model["name_or_path"]),
            "strategy": cfg.strategy.name,
            "stages": last + 1,
            "batch_size": cfg.data.batch_size,
            "max_length": cfg.data.max_length,
            "precision": precision,
            "view": view,
        }
        if view == "cuda_like":
            row["fits_gb"] = [size for size in sizes if row["at_peak_mib"]["total"] + reserve <= size * 1024]
    out = Path(cfg.paths.output_dir)  # the Hydra job's folder (conf/paths)
    write_json(out / "estimate.json", {"rows": rows, "gpu_sizes_gb": sizes, "reserve_mib": reserve})
    text = write_table(out, rows, sizes, reserve)
    if not (HydraConfig.initialized() and HydraConfig.get().mode.name == "MULTIRUN"):
        log.info("\n%s\nwritten to %s", text, out / "estimate.md")
    return rows


def _materialize(module: torch.nn.Module) -> None:
    """Every parameter and buffer as a CPU tensor of the same shape (fake under FakeTensorMode), shared ones
    shared. The module is built on the meta device rather than under the fake mode, where copies made while
    building (torchmetrics' clones, peft's copy of the head) would mix fake modes."""
    made: dict[int, torch.Tensor] = {}
    for sub in module.modules():
        for tensors, is_param in ((sub._parameters, True), (sub._buffers, False)):
            for name, tensor in tensors.items():
                if tensor is None:
                    continue
                if id(tensor) not in made:
                    new = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu")
                    made[id(tensor)] = torch.nn.Parameter(new, tensor.requires_grad) if is_param else new
                tensors[name] = made[id(tensor)]


def _settings(cfg: DictConfig) -> tuple[str, list[float], float]:
    view = OmegaConf.select(cfg, "estimate.view")
    if view not in VIEWS:
        raise ConfigError(f"estimate.view={view!r} is not a view. Fix: estimate.view=cuda_like or estimate.view=cpu")
    sizes = OmegaConf.select(cfg, "estimate.gpu_sizes_gb")
    reserve = OmegaConf.select(cfg, "estimate.reserve_mib")
    if not sizes or not all(isinstance(s, (int, float)) and s > 0 for s in sizes):
        raise ConfigError(f"estimate.gpu_sizes_gb={sizes} must list card sizes in GB. Fix: e.g. [8,16,24,40,80]")
    if not isinstance(reserve, (int, float)) or reserve < 0:
        raise ConfigError(
            f"estimate.reserve_mib={reserve!r} must be a number >= 0. Fix: e.g. estimate.reserve_mib=1024"
        )
    return view, sorted(sizes), float(reserve)


def _precision(cfg: DictConfig, view: str) -> str:
    """The run's precision; for the GPU view an automatic choice is a GPU's (bf16-mixed), not this machine's."""
    auto = OmegaConf.is_interpolation(cfg.trainer, "precision")
    precision = "bf16-mixed" if auto and view == "cuda_like" else str(cfg.trainer.precision)
    if precision not in {*_AUTOCAST, *_CAST, *_FULL}:
        raise ConfigError(
            f"trainer.precision={precision} is not one the estimate traces. Fix: one of bf16-mixed, 16-mixed, "
            "bf16-true, 16-true, 32-true"
        )
    return precision


def _trace(module: FineTuningStrategy, cfg: DictConfig, stage: int, view: str, precision: str) -> dict[str, Any]:
    """Two training steps of `stage`; the second, with the optimizer state, tracked."""
    module.enter_stage(stage)
    module.train()
    if precision in _CAST:
        module.to(_CAST[precision])
    optimizer = instantiate(cfg.optimizer)(module.param_groups(module.named_parameters()))
    shape = (cfg.data.batch_size, cfg.data.max_length)
    batch = {
        "input_ids": torch.zeros(shape, dtype=torch.long),
        "attention_mask": torch.ones(shape, dtype=torch.long),
        "labels": torch.zeros(shape[0], dtype=torch.long),
    }
    clip = OmegaConf.select(cfg, "trainer.gradient_clip_val")
    for step in range(2):
        tracked = TrackedStep(module, [optimizer]) if step == 1 else None
        with CudaLikeOps() if view == "cuda_like" else nullcontext():
            _training_step(module, optimizer, batch, precision, clip, tracked)
    return {
        "stage": stage,
        "batch_shape": list(shape),
        **parameter_mib(module),
        "at_peak_mib": at_peak_mib(tracked.stop()),
    }


def _training_step(
    module: FineTuningStrategy,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    precision: str,
    clip: float | None,
    tracked: TrackedStep | None,
) -> None:
    """Lightning's order: forward and loss (under autocast), zero_grad, backward, clipping, optimizer step."""
    autocast = torch.autocast("cpu", dtype=_AUTOCAST[precision]) if precision in _AUTOCAST else nullcontext()
    with autocast:
        loss = F.cross_entropy(module(batch).float(), batch["labels"])
    optimizer.zero_grad()
    loss.backward()
    if tracked is not None:
        tracked.optimizer_phase()
    if clip:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip)
    optimizer.step()


def table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as the printed table (MiB)."""
    frame = pd.DataFrame(
        {
            "model": r["model"],
            "strategy": f"{r['strategy']} (stage {r['stage'] + 1} of {r['stages']})"
            if r["stages"] > 1
            else r["strategy"],
            "batch × length": f"{r['batch_size']} × {r['max_length']}",
            "precision": r["precision"],
            "trainable params": f"{r['parameters_trainable_mib']:.1f}",
            **{name.replace("_", " "): f"{r['at_peak_mib'][name]:.1f}" for name in SHOWN},
            **({"fits on (GB)": "/".join(f"{s:g}" for s in r["fits_gb"]) or "none"} if "fits_gb" in r else {}),
        }
        for r in rows
    )
    return frame.rename(columns={"total": "peak (MiB)"})


def write_table(out: Path, rows: list[dict[str, Any]], sizes: list[float], reserve: float) -> str:
    """`estimate.md` (with what the figures are) and `estimate.csv` in `out`; returns the markdown."""
    views = {r["view"] for r in rows}
    notes = [
        f"Predicted training memory at the step's peak, MiB, by category; view: {VIEWS[v]}." for v in sorted(views)
    ]
    if "cuda_like" in views:
        notes.append(
            f"fits on: the GPU sizes among {'/'.join(f'{s:g}' for s in sizes)} GB with {reserve:g} MiB left "
            "for the CUDA context and the allocator's cache."
        )
    text = markdown_table(table(rows)) + "\n\n" + "\n".join(notes) + "\n"
    write_atomic(out / "estimate.md", text)
    flat = [
        {k: v for k, v in r.items() if k != "at_peak_mib"} | {f"{k}_mib": v for k, v in r["at_peak_mib"].items()}
        for r in rows
    ]
    write_atomic(out / "estimate.csv", pd.DataFrame(flat).to_csv(index=False))
    return text


class TableOnMultirunEnd(Callback):
    """Hydra callback: one table for the whole sweep (`estimate.md`, `estimate.csv` in the sweep folder)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        records = [json.loads(p.read_text()) for p in _job_files(sweep_dir)]
        rows = [row for record in records for row in record["rows"]]
        if not rows:
            log.error("no estimate was made: see the errors above")
            return
        text = write_table(sweep_dir, rows, records[0]["gpu_sizes_gb"], records[0]["reserve_mib"])
        log.info("\n%s\nwritten to %s", text, sweep_dir / "estimate.md")


def _job_files(sweep_dir: Path) -> list[Path]:
    """The jobs' estimate.json in job order (the folders start with the job number)."""
    return sorted(sweep_dir.glob("*/estimate.json"), key=lambda p: int(p.parent.name.split("_")[0]))
