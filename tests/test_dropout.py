"""dropout.py and `ftc_sdpa`: dropout from a cheaper mask, with the stock distribution, the stock results where no
dropout applies, the gradients of the plain formulas, and every dropout of a run's model swapped."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_CONFIGS, tiny_overrides
from torch import nn
from transformers import AutoModelForSequenceClassification

from ftcompare.attention import NAME, ftc_sdpa_attention
from ftcompare.builders import build_module
from ftcompare.dropout import (
    CHEAP_MASKS_EVERYWHERE,
    FastDropout,
    draws_own_mask,
    dropout,
    keep_mask,
    keep_threshold,
    use_fast_dropout,
)
from ftcompare.errors import ConfigError
from ftcompare.validation import validate

P = 0.1


def test_the_keep_rate_is_one_minus_p_and_survivors_are_scaled():
    torch.manual_seed(0)
    ones = torch.ones(64, 12, 128, 128)  # 12.6M draws
    dropped = dropout(ones, P)
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
    monkeypatch.setattr("ftcompare.dropout.keep_mask", lambda *a: calls.append(a) or keep_mask(*a))
    model(input_ids=torch.randint(5, 100, (2, 16))).logits.sum().backward()
    assert len(calls) == config.num_hidden_layers and calls[0][1] == config.attention_probs_dropout_prob


def test_cuda_keeps_torchs_fused_dropout_unless_the_cheap_masks_are_asked_for(monkeypatch):
    """The accuracy check of the fast defaults runs the CPU's masks on a GPU (FTC_CHEAP_MASKS=1)."""
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert draws_own_mask(cuda) and not draws_own_mask(cpu)
    monkeypatch.setenv(CHEAP_MASKS_EVERYWHERE, "1")
    assert not draws_own_mask(cuda) and not draws_own_mask(cpu)


def test_an_unknown_attention_function_is_refused(compose_cfg):
    with pytest.raises(ConfigError, match=r"model\.attn_implementation='flash'"):
        validate(compose_cfg("model.attn_implementation=flash"))


def test_fast_dropout_matches_its_formula_and_passes_through_where_no_dropout_applies():
    torch.manual_seed(4)
    x = torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True)
    layer = FastDropout(P)
    torch.manual_seed(5)
    out = layer(x)
    torch.manual_seed(5)
    keep, rate = keep_mask(x.shape, P, x.device)
    assert torch.allclose(out, x * keep / rate, rtol=1e-15)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.allclose(grad, keep.to(x.dtype) / rate, rtol=1e-15)
    assert layer.eval()(x) is x and FastDropout(0.0)(x) is x


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_activations_drop_through_a_mask_in_their_dtype_to_the_same_bits(dtype):
    """The 0/1 mask in the activations' dtype (one vectorised product) gives bit for bit the boolean formula."""
    torch.manual_seed(6)
    x = torch.randn(4, 33, 24).to(dtype).requires_grad_()
    grad = torch.randn(4, 33, 24).to(dtype)
    torch.manual_seed(7)
    out = dropout(x, P)
    (grad_x,) = torch.autograd.grad(out, x, grad)
    torch.manual_seed(7)
    keep, rate = keep_mask(x.shape, P, x.device)
    assert torch.equal(out, torch.where(keep, x * (1 / rate), 0))
    assert torch.equal(grad_x, torch.where(keep, grad * (1 / rate), 0))


def test_attention_in_bf16_stays_within_rounding_of_the_fp32_formula():
    """The hand-written attention in bf16 (softmax straight to bf16, the scale applied to the output) against the
    plain formula in fp32 on the same bf16 inputs and mask: differences of bf16 rounding only."""
    torch.manual_seed(8)
    q, k, v = (torch.randn(2, 4, 64, 32).bfloat16().requires_grad_() for _ in range(3))
    mask = torch.ones(2, 1, 64, 64, dtype=torch.bool)
    mask[1, :, :, 40:] = False
    torch.manual_seed(9)
    out, _ = ftc_sdpa_attention(torch.nn.Module(), q, k, v, mask, dropout=P, scaling=32**-0.5)
    grads = torch.autograd.grad(out.float().sum(), (q, k, v))
    torch.manual_seed(9)
    keep, rate = keep_mask(torch.Size([2, 4, 64, 64]), P, q.device)
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    scores = (q32 @ k32.transpose(-1, -2) * 32**-0.5).masked_fill(~mask, torch.finfo(torch.float32).min)
    reference = ((scores.softmax(-1) * keep / rate) @ v32).transpose(1, 2)
    assert (out.float() - reference).abs().max() < 0.02 * reference.abs().max()
    for ours, theirs in zip(grads, torch.autograd.grad(reference.sum(), (q32, k32, v32)), strict=True):
        assert (ours.float() - theirs).abs().max() < 0.02 * theirs.abs().max()


@pytest.mark.parametrize("strategy", ["full", "lora", "gradual"])
def test_a_run_module_has_every_dropout_fast_unless_switched_off(compose_cfg, tiny_models, reviews_csv, strategy):
    """Hidden, head and (LoRA) adapter dropouts; state dict untouched; `model.fast_dropout=false` keeps torch's."""
    overrides = [f"strategy={strategy}", *tiny_overrides(tiny_models["bert"], reviews_csv)]
    fast, stock = (build_module(compose_cfg(*overrides, f"model.fast_dropout={v}")) for v in ("true", "false"))
    kinds = [type(m) for m in fast.modules() if isinstance(m, nn.Dropout)]
    assert kinds and set(kinds) == {FastDropout}, kinds
    assert not any(isinstance(m, FastDropout) for m in stock.modules())
    assert fast.state_dict().keys() == stock.state_dict().keys()
    if strategy == "lora":
        assert any("lora_dropout" in name for name, m in fast.named_modules() if isinstance(m, FastDropout))
    assert "fast_dropout" not in fast.hparams.model  # not a property of the weights: checkpoints load anywhere


def test_the_swap_keeps_mode_and_p_and_skips_in_place_dropout():
    model = nn.Sequential(
        nn.Dropout(0.2), nn.Sequential(nn.Dropout(0.3, inplace=True)), nn.ModuleDict({"a": nn.Dropout(0.1)})
    )
    model[2].eval()
    assert use_fast_dropout(model) == 2
    assert (type(model[0]), model[0].p, model[0].training) == (FastDropout, 0.2, True)
    assert (type(model[2]["a"]), model[2]["a"].training) == (FastDropout, False)
    assert type(model[1][0]) is nn.Dropout


def test_fast_dropout_must_be_a_boolean(compose_cfg):
    with pytest.raises(ConfigError, match=r"model\.fast_dropout='yes please'"):
        validate(compose_cfg("model.fast_dropout='yes please'"))
