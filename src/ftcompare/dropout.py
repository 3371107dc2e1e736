"""Dropout with a cheaper keep-mask on a CPU, with the same distribution: used by every `nn.Dropout` of a run's
model when `model.fast_dropout` is on (the default), and by the `ftc_sdpa` attention (attention.py).

On a CPU torch draws the Bernoulli mask element by element, which costs more than the matmuls around it. Here the
mask comes from 64-bit random words split into four 16-bit lanes compared to a threshold: keep rate 1 - p to
within 1 / 65536, from a quarter of the generator calls, kept as a 1-byte mask for the backward pass. On a CPU the
words come from numpy's SFC64 generator, seeded by one draw of torch's default generator: 4x faster than torch's
serial Mersenne Twister, and as reproducible under `torch.manual_seed`. On a CUDA device torch's fused dropout is
already cheap and runs unchanged, unless `FTC_CHEAP_MASKS=1` is set: then the cheap masks run there too, to check
their accuracy on a GPU in minutes (`make check-fast-defaults`, docs/results.md)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import is_fake

_LANES = 65536  # 16-bit lanes: the keep rate is 1 - p to within 1 / 65536


def keep_threshold(p: float) -> tuple[int, float]:
    """(threshold on a signed 16-bit lane, the exact keep rate it gives) for dropout probability `p`."""
    dropped = round(p * _LANES)
    return dropped - _LANES // 2, 1 - dropped / _LANES


def keep_mask(
    shape: torch.Size, p: float, device: torch.device, dtype: torch.dtype = torch.bool
) -> tuple[torch.Tensor, float]:
    """A keep-mask of `shape` drawn from the default generator (1 where kept, 0 where dropped), and its keep rate.

    The same draws give the same mask in any `dtype`; a mask in the activations' dtype multiplies them in one
    vectorised pass, which a boolean mask does not (its conversion costs more than the product)."""
    threshold, rate = keep_threshold(p)
    n = shape.numel()
    lanes = _random_words((n + 3) // 4, device).view(torch.int16)[:n].view(shape)
    keep = torch.empty(shape, dtype=dtype, device=device)
    return torch.ge(lanes, threshold, out=keep), rate


def _random_words(count: int, device: torch.device) -> torch.Tensor:
    """`count` uniform 64-bit words, drawn on a CPU by SFC64 from a seed that torch's default generator gives
    (elsewhere, and for the memory estimate's fake tensors, by torch)."""
    if device.type == "cpu":
        seed = torch.empty((), dtype=torch.int64).random_()
        if not is_fake(seed):
            return torch.from_numpy(np.random.SFC64(int(seed)).random_raw(count).view(np.int64))
    return torch.empty(count, dtype=torch.int64, device=device).random_(-(2**63), 2**63 - 1)


class _Dropout(torch.autograd.Function):
    """x * keep / rate, saving only the mask for backward: 1 byte a value for 32-bit activations, and for 16-bit
    ones a mask in their dtype, whose product takes one vectorised pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, rate: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = 1 / rate
        return _masked(x, keep, ctx.scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return _masked(grad, keep, ctx.scale), None, None


CHEAP_MASKS_EVERYWHERE = "FTC_CHEAP_MASKS"  # =1: the cheap masks on CUDA too (the accuracy check of the fast defaults)


def _masked(x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
    """x * scale where kept, 0 elsewhere; the same values from a boolean mask or a 0/1 one."""
    if keep.dtype == torch.bool:
        return torch.where(keep, x * scale, 0)
    return (x * keep).mul_(scale)


def draws_own_mask(device: torch.device) -> bool:
    """Whether torch's own dropout is the cheaper one on `device` (CUDA's fused kernels)."""
    return device.type == "cuda" and os.environ.get(CHEAP_MASKS_EVERYWHERE) != "1"


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout as `F.dropout(x, p, training)`, with the cheap mask where torch's costs more."""
    if not training or p == 0.0:
        return x
    if draws_own_mask(x.device) or p == 1.0:
        return F.dropout(x, p, training)
    mask_dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.bool
    keep, rate = keep_mask(x.shape, p, x.device, mask_dtype)
    return _Dropout.apply(x, keep, rate)


class FastDropout(nn.Dropout):
    """`nn.Dropout` drawing its mask with `dropout`; same `p`, same state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def use_fast_dropout(module: nn.Module) -> int:
    """Replace every plain, not-in-place `nn.Dropout` below `module` by a `FastDropout`; how many were replaced."""
    targets = [
        (parent, name, child)
        for parent in module.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Dropout and not child.inplace
    ]
    for parent, name, child in targets:
        parent._modules[name] = FastDropout(child.p).train(child.training)
    return len(targets)
