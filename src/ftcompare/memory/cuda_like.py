"""What a GPU would hold, traced on a CPU: the kernels a GPU takes save less for the backward pass than the
CPU's do, and the estimate's `cuda_like` view swaps in ops that save the same as the GPU's."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


class CudaLikeOps(TorchFunctionMode):
    """Two substitutions, each saving for backward what the CUDA kernel saves:

    - attention with dropout: a GPU's fused SDPA kernel draws its dropout inside the kernel (a seed and offset,
      no mask) and saves no attention matrix; on a CPU dropout sends SDPA to the unfused path, which keeps the
      fp32 probabilities and the mask. Traced without dropout, the CPU takes its fused kernel, which saves what
      the GPU's does (queries, keys, values, output, log-sum-exp).
    - dropout elsewhere: CUDA's fused dropout keeps a 1-byte mask, the CPU a mask of the input's dtype;
      `torch.native_dropout` keeps the 1-byte one.
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        if func is F.scaled_dot_product_attention:  # (query, key, value, attn_mask, dropout_p, ...)
            if len(args) > 4:
                args = (*args[:4], 0.0, *args[5:])
            else:
                kwargs["dropout_p"] = 0.0
        elif func is F.dropout:
            names = ("input", "p", "training", "inplace")
            bound = {**dict(zip(names, args, strict=False)), **kwargs}
            if bound.get("training", True) and bound.get("p", 0.5) > 0:
                return torch.native_dropout(bound["input"], bound.get("p", 0.5), True)[0]
        return func(*args, **kwargs)
