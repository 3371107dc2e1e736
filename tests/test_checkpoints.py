"""Checkpoints and export: a LoRA checkpoint holds adapter + head only and goes back onto the base model the
run names (a different base is refused); `export.py` writes folders that plain transformers / peft load and
that give the trained model's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import TINY_CONFIGS, run_script
from omegaconf import OmegaConf
from peft import AutoPeftModelForSequenceClassification
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from ftcompare import resolvers
from ftcompare.builders import build_module
from ftcompare.errors import ConfigError
from ftcompare.runs import load_trained, run_config


@pytest.fixture
def trained(tiny_run) -> dict[str, dict]:
    """metrics.json of a tiny LoRA run and a tiny full fine-tuning run."""
    return {strategy: tiny_run(strategy) for strategy in ("lora", "full")}


def test_lora_checkpoint_holds_only_what_trained(trained):
    lora = torch.load(trained["lora"]["checkpoint"], weights_only=True)
    full = torch.load(trained["full"]["checkpoint"], weights_only=True)
    saved = set(lora["state_dict"])
    assert any("lora_A" in k for k in saved) and any("modules_to_save" in k for k in saved)
    assert not any(k.endswith("query.base_layer.weight") or "word_embeddings" in k for k in saved)
    assert set(lora["pretrained"]["names"]).isdisjoint(saved) and len(lora["pretrained"]["names"]) > 20
    assert "pretrained" not in full and any("word_embeddings" in k for k in full["state_dict"])
    assert trained["lora"]["cost"]["checkpoint_size_mb"] < trained["full"]["cost"]["checkpoint_size_mb"] / 10


def test_lora_checkpoint_is_refused_on_another_base_model(trained, tmp_path):
    ckpt = Path(trained["lora"]["checkpoint"])
    run = run_config(ckpt)
    module = load_trained(ckpt, run)  # the base named in the run's config: loads strictly
    other = tmp_path / "other_bert"
    torch.manual_seed(1)
    model = AutoModel.from_config(TINY_CONFIGS["bert"]())
    model.config.vocab_size = module.model.config.vocab_size
    model.resize_token_embeddings(module.model.config.vocab_size)
    model.save_pretrained(other)
    AutoTokenizer.from_pretrained(run.model.name_or_path).save_pretrained(other)
    run.model.name_or_path = str(other)
    impostor = build_module(run)
    with pytest.raises(ConfigError, match="loaded other weights"):
        impostor.on_load_checkpoint(torch.load(ckpt, weights_only=True))


def test_a_run_is_read_back_with_the_values_it_resolved_when_it_trained(trained, monkeypatch):
    """eval/predict/export use the run's resolved_config.yaml, not what the resolvers answer where they run."""
    record = trained["lora"]
    ckpt = Path(record["checkpoint"])
    assert "${" not in (ckpt.parent.parent / "resolved_config.yaml").read_text()
    other_machine = record["hparams"]["precision"] != "bf16-mixed"  # a CPU that would choose the other precision
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(resolvers, "cpu_supports_bf16", lambda: other_machine)
    composed = OmegaConf.load(ckpt.parent.parent / ".hydra" / "config.yaml")
    assert composed.trainer.precision != record["hparams"]["precision"]  # re-resolved here, it would differ
    run = run_config(ckpt)
    assert run.trainer.precision == record["hparams"]["precision"]
    assert run.optimizer.lr == record["hparams"]["lr"] and run.model.name_or_path == record["model"]
    assert run.data.train_size == record["data"]["train_size"] and run.trainer.limit_train_batches == 3


@pytest.mark.parametrize(("strategy", "merge"), [("lora", "true"), ("lora", "false"), ("full", "true")])
def test_export_loads_with_plain_transformers_or_peft(trained, tmp_path, strategy, merge):
    ckpt = trained[strategy]["checkpoint"]
    result = run_script("export.py", f"ckpt_path={ckpt}", f"merge={merge}", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "model"
    as_adapter = strategy == "lora" and merge == "false"
    assert (folder / "adapter_config.json").is_file() == as_adapter
    loader = AutoPeftModelForSequenceClassification if as_adapter else AutoModelForSequenceClassification
    exported = loader.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    module = load_trained(Path(ckpt), run_config(Path(ckpt)))
    inputs = tokenizer(["A moving film.", "Dull and far too long."], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected, got = module(dict(inputs)), exported(**inputs).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert json.loads((folder / "export.json").read_text())["strategy"] == strategy


def test_export_refuses_the_frozen_strategy_s_own_head(tmp_path, tiny_run):
    ckpt = tiny_run("frozen")["checkpoint"]
    result = run_script("export.py", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'x'}")
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and last.startswith("error: strategy 'frozen'") and "Fix:" in last
    assert not (tmp_path / "x" / "model").exists()
