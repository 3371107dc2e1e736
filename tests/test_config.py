"""Every option of every config group composes, resolves and (where no network or GPU is needed) instantiates."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import yaml
from helpers import ROOT, run_script
from hydra.utils import get_class, get_object, instantiate
from omegaconf import OmegaConf

from ftcompare import resolvers
from ftcompare.builders import build_module, build_trainer
from ftcompare.data import TextClassificationDataModule
from ftcompare.errors import ConfigError
from ftcompare.strategies import FineTuningStrategy, names, strategy_class
from ftcompare.validation import validate


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))


def test_every_target_in_conf_names_code_that_exists():
    """A renamed or moved class breaks the yaml that builds it: found here, not in the run that composes it."""
    targets = {}
    for path in sorted((ROOT / "conf").rglob("*.yaml")):
        nodes = [yaml.safe_load(path.read_text())]
        while nodes:
            node = nodes.pop()
            if isinstance(node, dict):
                if "_target_" in node:
                    targets[node["_target_"]] = path.relative_to(ROOT)
                nodes += node.values()
            elif isinstance(node, list):
                nodes += node
    assert len(targets) > 20 and {"ftcompare.callbacks.CostMonitor", "lightning.pytorch.Trainer"} <= set(targets)
    missing = {}
    for target, path in targets.items():
        try:
            get_object(target)
        except ImportError as err:
            missing[target] = f"{path}: {err}"
    assert not missing


def test_strategy_configs_are_the_registry():
    """One yaml per registered name, each naming itself and its registered class."""
    assert options("strategy") == names() == ["bitfit", "dora", "frozen", "full", "gradual", "ia3", "lora", "lora_all"]
    for name in names():
        node = OmegaConf.load(ROOT / "conf" / "strategy" / f"{name}.yaml").strategy
        assert node.name == name
        assert get_class(node._target_) is strategy_class(name)


GROUP_OPTIONS = [
    (group, option)
    for group in ("model", "data", "trainer", "callbacks", "logger", "debug", "experiment", "strategy")
    for option in options(group)
]


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_option_composes_resolves_and_validates(compose_cfg, group, option):
    overrides = [f"{group}={option}"]
    if option == "files":
        overrides.append("data.source.data_files=x.csv")
    cfg = compose_cfg(*overrides)
    OmegaConf.resolve(cfg)
    if option == "gpu" and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"trainer\.accelerator=gpu but this machine has no GPU"):
            validate(cfg)
        return
    validate(cfg)


@pytest.mark.parametrize("strategy", options("strategy"))
def test_every_strategy_instantiates_with_its_own_learning_rate(compose_cfg, tiny_models, strategy):
    cfg = compose_cfg(f"strategy={strategy}", f"model.name_or_path={tiny_models['bert']}")
    module = build_module(cfg)
    assert isinstance(module, FineTuningStrategy) and module.name == strategy
    trainable, total = module.parameter_counts()
    assert 0 < trainable <= total
    defaults = {"full": 1e-4, "frozen": 2e-3, "lora": 2e-3, "gradual": 3e-4}
    defaults |= {"bitfit": 1e-3, "ia3": 3e-3, "lora_all": 5e-4, "dora": 1e-3}
    assert cfg.optimizer.lr == defaults[strategy]


def test_a_strategy_yaml_sets_its_epochs_and_the_command_line_wins(compose_cfg):
    """frozen trains its cached head for 10 epochs, the rest 3; trainer.max_epochs on the command line wins."""
    epochs = {s: compose_cfg(f"strategy={s}").trainer.max_epochs for s in ("full", "frozen", "lora", "gradual")}
    assert epochs == {"full": 3, "frozen": 10, "lora": 3, "gradual": 3}
    assert compose_cfg("strategy=frozen", "trainer.max_epochs=1").trainer.max_epochs == 1


def test_lr_sweep_scales_each_strategys_own_default(compose_cfg):
    params = OmegaConf.load(ROOT / "conf" / "experiment" / "lr_sweep.yaml").hydra.sweeper.params
    multipliers = [float(m) for m in params.lr_multiplier.split(",")]
    grids = {
        strategy: sorted(compose_cfg(f"strategy={strategy}", f"lr_multiplier={m}").optimizer.lr for m in multipliers)
        for strategy in params.strategy.split(",")
    }
    assert grids["full"] == [3e-5, 1e-4, 3e-4] and grids["lora"] == [6e-4, 2e-3, 6e-3]
    assert min(grids["frozen"]) > max(grids["full"])  # heads and adapters want larger rates than full
    # an explicit learning rate still wins over the strategy default and its multiplier
    assert compose_cfg("strategy=lora", "optimizer.lr=2e-4", "lr_multiplier=3").optimizer.lr == 2e-4


@pytest.mark.parametrize("data", ["imdb", "imdb_hub", "files"])
def test_data_options_instantiate(compose_cfg, tiny_models, data):
    extra = ["data.source.data_files=x.csv"] if data == "files" else []
    cfg = compose_cfg(f"data={data}", f"model.name_or_path={tiny_models['bert']}", *extra)
    dm = instantiate(cfg.data, _convert_="all")
    assert isinstance(dm, TextClassificationDataModule)
    assert dm.label_names == (None if data == "files" else ["negative", "positive"])  # files: read from the data


@pytest.mark.parametrize("trainer", ["default", "cpu"])
def test_trainer_callbacks_and_logger_instantiate(compose_cfg, trainer):
    cfg = compose_cfg(f"trainer={trainer}")
    built = build_trainer(cfg)
    assert isinstance(built, L.Trainer)
    names = {type(c).__name__ for c in built.callbacks}
    assert {"ModelCheckpoint", "CostMonitor", "LearningRateMonitor", "ProgressBar"} <= names
    assert type(built.logger).__name__ == "TensorBoardLogger"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu avx2 avx512f avx512_bf16", True), ("fpu avx2 amx_bf16 amx_tile", True), ("fpu sse avx2 fma", False)],
)
def test_bf16_cpus_are_recognised_by_their_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert resolvers.cpu_supports_bf16(cpuinfo) is expected
    assert resolvers.cpu_supports_bf16(tmp_path / "missing") is False


@pytest.mark.parametrize(("bf16_cpu", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_precision_follows_the_cpu_when_there_is_no_gpu(compose_cfg, monkeypatch, bf16_cpu, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(resolvers, "cpu_supports_bf16", lambda: bf16_cpu)
    assert compose_cfg().trainer.precision == expected


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ("optimizer.lr=-1e-4", "optimizer.lr"),
        ("optimizer.lr=abc", "optimizer.lr"),
        ("lr_multiplier=0", "lr_multiplier"),
        ("data.batch_size=0", "data.batch_size"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
        ("data.max_length=4", "data.max_length"),
        ("model.name_or_path=./missing", "model.name_or_path"),
    ],
)
def test_validate_names_the_setting(compose_cfg, override, setting):
    with pytest.raises(ConfigError, match=setting):
        validate(compose_cfg(override))


def test_cfg_job_resolve_prints_the_config_without_a_run(tmp_path):
    """Hydra prints the resolved config before it makes a run folder: the run id has none to come from."""
    result = run_script("train.py", "--cfg", "job", "--resolve", "strategy=frozen", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = yaml.safe_load(result.stdout)
    assert printed["logger"]["tensorboard"]["version"] == "frozen_<run id>" and printed["optimizer"]["lr"] == 0.002
    assert not any(tmp_path.iterdir())  # nothing written
