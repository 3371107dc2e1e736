"""`ftc_sdpa` (the default `model.attn_implementation`): SDPA attention with a cheaper attention-dropout mask on
a CPU, registered with transformers' attention interface.

With dropout on, CPU attention leaves the fused SDPA kernel for the plain path, and drawing the Bernoulli mask is
most of the cost: here it comes from dropout.py (same distribution, a quarter of the generator calls, a 1-byte
mask kept for backward). Without dropout (p = 0, eval mode), and on CUDA, whose fused kernel draws the dropout
itself, the stock SDPA path runs unchanged."""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ftcompare import dropout as cheap

NAME = "ftc_sdpa"


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
    scores = torch.matmul(query, key.transpose(-1, -2)) * (scaling if scaling is not None else query.size(-1) ** -0.5)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # sdpa_mask: True where attending
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(query.dtype)
    output = torch.matmul(cheap.dropout(probs, dropout), value)
    return output.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, ftc_sdpa_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)
