"""Shared fixtures: tiny random BERT/DistilBERT/RoBERTa folders, a small review CSV, composed configs."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from transformers import AutoModel, AutoTokenizer, BertConfig, DistilBertConfig, RobertaConfig

from ftcompare.config import embedded_data_path, embedded_model_path, register_resolvers

ROOT = Path(__file__).resolve().parents[1]
register_resolvers()
os.environ["HF_HUB_OFFLINE"] = "1"  # no network in CI: hub lookups in the tests' subprocesses fail at once

TINY_CONFIGS = {
    "bert": lambda: BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=512
    ),
    "distilbert": lambda: DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=512),
    "roberta": lambda: RobertaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=520,
        pad_token_id=0,
        bos_token_id=101,
        eos_token_id=102,
    ),
}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Randomly initialised 2-layer models saved as local folders, with the MiniLM WordPiece tokenizer."""
    root = tmp_path_factory.mktemp("tiny_models")
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
    paths = {}
    for arch, make_config in TINY_CONFIGS.items():
        config = make_config()
        config.vocab_size = tokenizer.vocab_size
        path = root / arch
        AutoModel.from_config(config).save_pretrained(path)
        # BERT takes token_type_ids; DistilBERT and RoBERTa tokenizers do not produce them
        tokenizer.model_input_names = (
            ["input_ids", "token_type_ids", "attention_mask"] if arch == "bert" else ["input_ids", "attention_mask"]
        )
        tokenizer.save_pretrained(path)
        paths[arch] = str(path)
    return paths


@pytest.fixture(scope="session")
def reviews_csv(tmp_path_factory: pytest.TempPathFactory) -> str:
    """400 IMDb reviews from the embedded data (balanced), as a small local CSV."""
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    counts = {"0": 0, "1": 0}
    with open(embedded_data_path(), newline="") as src, open(path, "w", newline="") as dst:
        writer = csv.writer(dst)
        writer.writerow(["text", "label"])
        for row in csv.DictReader(src):
            if row["source"] == "imdb" and counts[row["label"]] < 200:
                counts[row["label"]] += 1
                writer.writerow([row["text"], row["label"]])
    return str(path)


def tiny_overrides(model_path: str, data_path: str) -> list[str]:
    """Overrides for a tiny, fast run on local files."""
    return [
        f"model.name_or_path={model_path}",
        "data=files",
        f"data.source.data_files={data_path}",
        "data.train_size=64",
        "data.val_size=32",
        "data.test_size=32",
        "data.max_length=64",
        "data.batch_size=8",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1",
        "callbacks.progress_bar=null",
    ]


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose conf/train.yaml with overrides, outside of a Hydra run."""

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose("train", overrides=[f"paths.output_dir={tmp_path}", *overrides])

    return _compose


def quiet_trainer(**kwargs: Any) -> L.Trainer:
    """A CPU fp32 Lightning Trainer without logger, checkpoints, progress bar or summary; kwargs override."""
    args = {
        "num_sanity_val_steps": 0,
        "precision": "32-true",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
        **kwargs,
    }
    return L.Trainer(**args)
