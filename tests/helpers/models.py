"""Tiny random BERT, DistilBERT and RoBERTa: every architecture the strategies must handle, in seconds."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModel, AutoTokenizer, BertConfig, DistilBertConfig, RobertaConfig

from ftcompare.resolvers import embedded_model_path

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


def save_tiny_models(root: Path) -> dict[str, str]:
    """Randomly initialised 2-layer models saved as local folders, with the MiniLM WordPiece tokenizer."""
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
