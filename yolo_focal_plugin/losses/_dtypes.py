"""Which dtype a loss computes in and which it returns (one rule for every path).

* compute: float64 stays float64; every other floating dtype (float32, float16, bfloat16) is
  computed in float32.
* return: the input's dtype, except a half input under autocast, which returns float32 as
  autocast's BCE and cross-entropy do.
"""
from __future__ import annotations

import torch
from torch import Tensor

_HALF = (torch.float16, torch.bfloat16)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 input, float32 for anything else (half inputs are upcast)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _out_dtype(x: Tensor) -> torch.dtype:
    """dtype of the returned loss: float32 for a half input under autocast, else the input's dtype.

    Autocast runs ``binary_cross_entropy_with_logits`` and ``cross_entropy`` in float32 and returns
    float32; YOLOv5's AMP loop relies on that. A float16 loss would receive GradScaler's upstream
    gradient (65536 x batch size x gains) in float16, where it overflows to inf on every step.
    """
    if x.dtype in _HALF and torch.is_autocast_enabled(x.device.type):
        return torch.float32
    return x.dtype
