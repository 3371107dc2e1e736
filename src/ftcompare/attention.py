"""`ftc_sdpa`: SDPA attention with a cheaper attention-dropout mask on CPU, registered with transformers'
attention interface (`model.attn_implementation=ftc_sdpa`).

With dropout on, CPU attention leaves the fused SDPA kernel for the plain path, and drawing the Bernoulli mask
is most of the cost. Here the keep-mask comes from 64-bit random words split into four 16-bit lanes compared to
a threshold: the same distribution (keep rate 1 - p, to 1/65536) from a quarter of the generator calls, kept as
a 1-byte mask for the backward pass. Without dropout (p = 0, eval mode) the stock SDPA path runs unchanged.
On a GPU, stock `sdpa` is the better choice: its fused kernel draws the dropout inside the kernel."""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "ftc_sdpa"
_LANES = 65536  # 16-bit lanes: the keep rate is 1 - p to within 1 / 65536


def keep_threshold(p: float) -> tuple[int, float]:
    """(threshold on a signed 16-bit lane, the exact keep rate it gives) for dropout probability `p`."""
    dropped = round(p * _LANES)
    return dropped - _LANES // 2, 1 - dropped / _LANES


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """A boolean keep-mask of `shape` drawn from the default generator, and its keep rate."""
    threshold, rate = keep_threshold(p)
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), 2**63 - 1)
    return words.view(torch.int16)[:n].view(shape) >= threshold, rate


class _Dropout(torch.autograd.Function):
    """x * keep / rate, saving only the 1-byte mask for backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, rate: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = 1 / rate
        return torch.where(keep, x * ctx.scale, 0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad * ctx.scale, 0), None, None


def attention_dropout(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout of attention probabilities with the cheap mask."""
    keep, rate = keep_mask(probs.shape, p, probs.device)
    return _Dropout.apply(probs, keep, rate)


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
    if dropout == 0.0:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    scores = torch.matmul(query, key.transpose(-1, -2)) * (scaling if scaling is not None else query.size(-1) ** -0.5)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # sdpa_mask: True where attending
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(query.dtype)
    output = torch.matmul(attention_dropout(probs, dropout), value)
    return output.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, ftc_sdpa_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)
