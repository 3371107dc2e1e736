"""The entry point every tool but `train.py` shares: compose `conf/<name>.yaml`, run the task, and turn bad
input into one `error: ...` line and exit code 2."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from ftcompare import CONF_DIR
from ftcompare.errors import bad_input_exits
from ftcompare.resolvers import register_resolvers


def hydra_entry(config_name: str, task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """`main` for an entry script: `main = hydra_entry("eval", evaluate)`. The config names the job
    (`hydra.job.name`), which names its log file."""
    register_resolvers()

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
    def main(cfg: DictConfig) -> Any:
        with bad_input_exits():
            return task(cfg)

    return main
