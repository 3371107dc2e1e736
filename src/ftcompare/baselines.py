"""The classical baseline of docs/reference-figures.md, re-measured on the exact split a run uses.

TF-IDF (1-2 grams, min_df 2, sublinear tf) + logistic regression (C=16), once on the whole review
and once on the `data.max_length` tokens the transformer sees (`data.truncation`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ftcompare.builders import build_datamodule
from ftcompare.data.datamodule import split_fingerprint
from ftcompare.data.truncation import encode
from ftcompare.io import write_json

log = logging.getLogger(__name__)


def tfidf_accuracy(splits: dict[str, tuple[list[str], list[int]]]) -> dict[str, float]:
    """Fit on `train`, return accuracy on every other split."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    texts, labels = splits["train"]
    classifier = LogisticRegression(C=16, max_iter=2000).fit(vectorizer.fit_transform(texts), labels)
    return {
        name: float(classifier.score(vectorizer.transform(texts), labels))
        for name, (texts, labels) in splits.items()
        if name != "train"
    }


def run(cfg: DictConfig) -> dict[str, Any]:
    """Baseline accuracies on the configured split, whole text and truncated to the model's window; written to
    `baselines.json` in the output folder."""
    datamodule = build_datamodule(cfg)
    splits = datamodule.raw_splits()
    tokenizer, max_length, truncation = datamodule.tokenizer, cfg.data.max_length, datamodule.hparams.truncation

    def window(texts: list[str]) -> list[str]:
        ids = encode(tokenizer, texts, max_length, truncation)["input_ids"]
        return tokenizer.batch_decode(ids, skip_special_tokens=True)

    whole = {name: (list(ds["text"]), list(ds["labels"])) for name, ds in splits.items()}
    lengths = tokenizer(whole["test"][0])["input_ids"]
    result = {
        "tfidf_whole_text": tfidf_accuracy(whole),
        f"tfidf_{truncation}_{max_length}_tokens": tfidf_accuracy({k: (window(t), y) for k, (t, y) in whole.items()}),
        f"test_share_longer_than_{max_length}_tokens": sum(len(i) > max_length for i in lengths) / len(lengths),
    }
    for key, value in result.items():
        log.info("%s: %s", key, value)
    # which examples it was fitted and scored on: a report reuses this file only for runs on the same splits
    result["split_fingerprints"] = {name: split_fingerprint(ds) for name, ds in splits.items()}
    write_json(Path(cfg.paths.output_dir) / "baselines.json", result)
    return result
