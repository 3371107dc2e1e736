"""`ftc_sdpa` (the default `model.attn_implementation`): SDPA attention with a cheaper attention dropout on a CPU,
registered with transformers' attention interface.

With dropout on, CPU attention leaves the fused SDPA kernel for the plain path, where drawing the Bernoulli mask and
the passes over the (batch, heads, length, length) probabilities cost more than the matmuls. Here the mask comes
from dropout.py (same distribution, a quarter of the generator calls) and `_DropoutAttention` computes the same
formula in fewer passes over those probabilities: softmax straight into the activations' dtype, the keep-mask in that
dtype (one vectorised product), the 1 / keep-rate scale applied to the small (length, head dim) output instead of the
probabilities, and only the probabilities and the mask kept for backward. Without dropout (p = 0, eval mode), and on
CUDA, whose fused kernel draws the dropout itself, the stock SDPA path runs unchanged."""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ftcompare import dropout as cheap

NAME = "ftc_sdpa"


class _DropoutAttention(torch.autograd.Function):
    """dropout(softmax(q k^T * scaling + mask)) @ v in the inputs' dtype, (batch, heads, length, head dim) out;
    saves q, k, v, the probabilities and the keep-mask, and computes the gradients of that formula by hand."""

    @staticmethod
    def forward(
        ctx: Any,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        p: float,
        scaling: float,
    ) -> torch.Tensor:
        with torch.autocast(query.device.type, enabled=False):  # q, k, v already carry the dtype autocast chose
            scores = torch.matmul(query, key.transpose(-1, -2)).mul_(scaling)
            if attention_mask is not None:
                if attention_mask.dtype == torch.bool:  # sdpa_mask: True where attending
                    scores.masked_fill_(~attention_mask, torch.finfo(scores.dtype).min)
                else:
                    scores.add_(attention_mask)
            probs = torch.softmax(scores, dim=-1)  # accumulates in fp32 for bf16/fp16 inputs, as softmax(dtype=fp32)
            del scores
            keep, rate = cheap.keep_mask(probs.shape, p, probs.device, probs.dtype)
            output = torch.matmul(probs * keep, value).mul_(1 / rate)
        ctx.save_for_backward(query, key, value, probs, keep)
        ctx.scaling, ctx.scale = scaling, 1 / rate
        return output

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        query, key, value, probs, keep = ctx.saved_tensors
        grad = grad * ctx.scale
        grad_value = torch.matmul((probs * keep).transpose(-1, -2), grad)
        grad_probs = torch.matmul(grad, value.transpose(-1, -2)).mul_(keep)
        grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        del grad_probs
        grad_query = torch.matmul(grad_scores, key).mul_(ctx.scaling)
        grad_key = torch.matmul(grad_scores.transpose(-1, -2), query).mul_(ctx.scaling)
        return grad_query, grad_key, grad_value, None, None, None


def ftc_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature; (batch, length, heads, head dim) out, as SDPA's."""
    if dropout == 0.0 or cheap.draws_own_mask(query.device):  # CUDA's fused kernel draws its own dropout
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    scaling = scaling if scaling is not None else query.size(-1) ** -0.5
    output = _DropoutAttention.apply(query, key, value, attention_mask, dropout, scaling)
    return output.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, ftc_sdpa_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)
