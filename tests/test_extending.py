"""docs/extending.md's worked example, run as written: a new strategy from one module and one yaml, through the
registry, trained by `train.py` next to a built-in one."""

from __future__ import annotations

import json
import re

import pytest
import torch
from helpers import ROOT, run_script, tiny_overrides

from ftcompare.strategies import FineTuningStrategy, register


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (ROOT / "docs" / "extending.md").read_text(), flags=re.S)


def test_the_documented_strategy_trains_through_the_registry(tmp_path, tiny_models, reviews_csv):
    module, yaml = code_blocks("python")[0], code_blocks("yaml")[0]
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "head_only.py").write_text(module)
    (tmp_path / "conf" / "strategy").mkdir(parents=True)
    yaml = yaml.replace("ftcompare.strategies.head_only.HeadOnly", "head_only.HeadOnly")  # outside the package
    (tmp_path / "conf" / "strategy" / "head_only.yaml").write_text(yaml)
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py",
        "-m",
        "strategy=full,head_only",
        *tiny_overrides(tiny_models["bert"], reviews_csv),
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        f"hydra.sweep.dir={sweep}",
        env={"PYTHONPATH": f"{ROOT}:{tmp_path / 'plugins'}"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = {r["strategy"]: r for r in (json.loads(p.read_text()) for p in sweep.glob("*/metrics.json"))}
    assert set(records) == {"full", "head_only"}
    probe = records["head_only"]
    assert probe["hparams"]["lr"] == 1e-3  # the yaml's default_lr
    state = torch.load(probe["checkpoint"], weights_only=True)["state_dict"]
    saved = {key: value for key, value in state.items() if key.startswith("model.")}  # not the metrics' state
    heads = ("model.classifier.", "model.bert.pooler.")
    assert saved and all(key.startswith(heads) for key in saved), sorted(saved)
    assert probe["cost"]["params/trainable"] == sum(t.numel() for t in saved.values())
    assert records["full"]["cost"]["params/trainable_pct"] == 100
    assert "head_only" in (sweep / "summary.md").read_text()


def test_a_name_cannot_be_taken_twice():
    class Another(FineTuningStrategy):
        pass

    with pytest.raises(ValueError, match="'lora' is already registered to LoRA"):
        register("lora")(Another)
