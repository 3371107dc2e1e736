"""`ftc_sdpa`: attention dropout from a cheaper mask, with the stock distribution, the stock results where no
dropout applies, and the gradients of the plain attention formula."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_CONFIGS
from transformers import AutoModelForSequenceClassification

from ftcompare.attention import NAME, attention_dropout, ftc_sdpa_attention, keep_mask, keep_threshold
from ftcompare.errors import ConfigError
from ftcompare.validation import validate

P = 0.1


def test_the_keep_rate_is_one_minus_p_and_survivors_are_scaled():
    torch.manual_seed(0)
    ones = torch.ones(64, 12, 128, 128)  # 12.6M draws
    dropped = attention_dropout(ones, P)
    _, rate = keep_threshold(P)
    assert rate == pytest.approx(1 - P, abs=1 / 65536)
    kept = dropped != 0
    assert kept.float().mean().item() == pytest.approx(rate, abs=5e-4)  # ~6 standard errors
    assert torch.all(dropped[kept] == 1 / rate)
    # every 16-bit lane of the 64-bit words is used: no lane keeps more or less than the others
    lanes = kept.flatten()[: kept.numel() // 4 * 4].view(-1, 4).float().mean(0)
    assert torch.allclose(lanes, torch.full((4,), rate), atol=1e-3), lanes


def test_masks_differ_per_call_and_repeat_for_the_same_seed():
    shape = torch.Size([4, 2, 32, 32])
    torch.manual_seed(1)
    first, _ = keep_mask(shape, P, torch.device("cpu"))
    second, _ = keep_mask(shape, P, torch.device("cpu"))
    torch.manual_seed(1)
    again, _ = keep_mask(shape, P, torch.device("cpu"))
    assert not torch.equal(first, second) and torch.equal(first, again)


def test_gradients_match_the_plain_formula_with_the_same_mask():
    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 3, 16, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 1, 16, 16, dtype=torch.bool)
    mask[0, :, :, 10:] = False  # padding in the first example
    torch.manual_seed(3)
    out, _ = ftc_sdpa_attention(torch.nn.Module(), q, k, v, mask, dropout=P, scaling=8**-0.5)
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    torch.manual_seed(3)
    keep, rate = keep_mask(torch.Size([2, 3, 16, 16]), P, q.device)
    scores = (q @ k.transpose(-1, -2) * 8**-0.5).masked_fill(~mask, torch.finfo(q.dtype).min)
    reference = ((scores.softmax(-1) * keep / rate) @ v).transpose(1, 2)
    assert torch.allclose(out, reference)
    for ours, theirs in zip(grads, torch.autograd.grad(reference.sum(), (q, k, v)), strict=True):
        assert torch.allclose(ours, theirs)


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_without_dropout_the_outputs_are_the_stock_attentions(family):
    """Eval mode, and training mode with every dropout at 0: the same logits and gradients as `sdpa`."""
    config = TINY_CONFIGS[family]()
    dropouts = ("attention_probs_dropout_prob", "hidden_dropout_prob", "attention_dropout", "dropout")
    for key in (*dropouts, "seq_classif_dropout"):
        if hasattr(config, key):
            setattr(config, key, 0.0)
    stock = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
    ours = AutoModelForSequenceClassification.from_config(config, attn_implementation=NAME)
    ours.load_state_dict(stock.state_dict())
    ids = torch.randint(5, 100, (3, 24))
    mask = torch.ones(3, 24, dtype=torch.long)
    mask[1, 15:] = 0
    for model in (stock, ours):
        model.train()
    a, b = (m(input_ids=ids, attention_mask=mask).logits for m in (stock, ours))
    assert torch.equal(a, b)
    a.sum().backward()
    b.sum().backward()
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(stock.parameters(), ours.parameters(), strict=True))


def test_training_with_dropout_takes_the_cheap_path(monkeypatch):
    config = TINY_CONFIGS["bert"]()
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation=NAME).train()
    calls = []
    monkeypatch.setattr("ftcompare.attention.keep_mask", lambda *a: calls.append(a) or keep_mask(*a))
    model(input_ids=torch.randint(5, 100, (2, 16))).logits.sum().backward()
    assert len(calls) == config.num_hidden_layers and calls[0][1] == config.attention_probs_dropout_prob


def test_an_unknown_attention_function_is_refused(compose_cfg):
    with pytest.raises(ConfigError, match=r"model\.attn_implementation='flash'"):
        validate(compose_cfg("model.attn_implementation=flash"))
