"""The entry point every tool but `train.py` shares: compose `conf/<name>.yaml`, run the task, and turn bad
input into one `error: ...` line and exit code 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ftcompare import CONF_DIR
from ftcompare.console import quiet_libraries
from ftcompare.errors import ConfigError, bad_input_exits
from ftcompare.io import discard_unused_run_dir
from ftcompare.resolvers import register_resolvers


def hydra_entry(config_name: str, task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """`main` for an entry script: `main = hydra_entry("eval", evaluate)`. The config names the job
    (`hydra.job.name`), which names its log file."""
    register_resolvers()

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
    def main(cfg: DictConfig) -> Any:
        quiet_libraries(cfg.get("verbose", False))
        with bad_input_exits(on_error=lambda: discard_unused_run_dir(Path(HydraConfig.get().runtime.output_dir))):
            missing = sorted(OmegaConf.missing_keys(cfg))
            if missing:
                raise ConfigError(
                    f"{', '.join(missing)} not given. Fix: e.g. python {config_name}.py "
                    + " ".join(f"{key}=..." for key in missing)
                    + f" (the settings and examples are in conf/{config_name}.yaml)"
                )
            return task(cfg)

    return main
