"""Which `max_length` tokens of a longer text the model sees: its head, its tail, or both ends.

Long reviews often say what they think at the end; keeping the first and the last tokens beat the
first alone on IMDb (Sun et al. 2019, "How to fine-tune BERT for text classification?").
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizerBase

from ftcompare.errors import ConfigError

TRUNCATIONS = ("head", "tail", "head_tail")


def check_truncation(truncation: str) -> None:
    """One clear error for an unknown `data.truncation`, before any data loads."""
    if truncation not in TRUNCATIONS:
        raise ConfigError(
            f"data.truncation={truncation!r} is not a truncation. Fix: one of {', '.join(TRUNCATIONS)} "
            "(head: the first tokens; tail: the last; head_tail: the first half and the last half)"
        )


def encode(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int, truncation: str = "head"
) -> dict[str, list[list[int]]]:
    """Token ids (and the tokenizer's other per-token fields) of `texts`, at most `max_length` each with the
    special tokens kept; `truncation` says which content tokens stay when a text is longer."""
    check_truncation(truncation)
    if truncation == "head":
        return dict(tokenizer(texts, truncation=True, max_length=max_length))
    whole = tokenizer(texts, verbose=False)  # no length warning: the cut below is the point
    fields = [k for k in whole if isinstance(whole[k][0], list)]
    out: dict[str, list[Any]] = {k: [] for k in fields}
    for i, ids in enumerate(whole["input_ids"]):
        keep = _kept(tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True), max_length, truncation)
        for k in fields:
            out[k].append([whole[k][i][j] for j in keep])
    return out


def _kept(special: list[int], max_length: int, truncation: str) -> list[int]:
    """Positions kept: the special tokens around the text, and the chosen content tokens between them."""
    n = len(special)
    if n <= max_length:
        return list(range(n))
    content = [j for j, s in enumerate(special) if not s]
    first, last = content[0], content[-1]
    budget = max_length - (n - len(content))
    head = budget // 2 if truncation == "head_tail" else 0  # head_tail at 256: the first 127 and last 127
    tail = budget - head
    return [*range(first), *content[:head], *content[len(content) - tail :], *range(last + 1, n)]
