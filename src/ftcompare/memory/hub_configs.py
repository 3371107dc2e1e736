"""The architecture configs of the hub models in conf/model/, as published on the Hugging Face Hub: the memory
estimate needs only a model's shapes, so it works offline for these without their weights."""

from __future__ import annotations

from typing import Any

_BASE = {
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "initializer_range": 0.02,
}

HUB_CONFIGS: dict[str, dict[str, Any]] = {
    "bert-base-uncased": {
        **_BASE,
        "model_type": "bert",
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "pad_token_id": 0,
        "type_vocab_size": 2,
        "vocab_size": 30522,
    },
    "roberta-base": {
        **_BASE,
        "model_type": "roberta",
        "bos_token_id": 0,
        "eos_token_id": 2,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 514,
        "pad_token_id": 1,
        "type_vocab_size": 1,
        "vocab_size": 50265,
    },
    "distilbert-base-uncased": {
        "model_type": "distilbert",
        "activation": "gelu",
        "attention_dropout": 0.1,
        "dim": 768,
        "dropout": 0.1,
        "hidden_dim": 3072,
        "initializer_range": 0.02,
        "max_position_embeddings": 512,
        "n_heads": 12,
        "n_layers": 6,
        "pad_token_id": 0,
        "qa_dropout": 0.1,
        "seq_classif_dropout": 0.2,
        "sinusoidal_pos_embds": False,
        "tie_weights_": True,
        "vocab_size": 30522,
    },
}
