"""Batch norm in training mode with the precision of PyTorch's CPU kernels.

PyTorch's CPU batch norm accumulates a channel's statistics (its mean and
variance in the forward, the sums of the output gradient and of its product
with the normalized input in the backward) in f64, over all the batch's
pixels of the channel: 16384 values for a batch of 16 32x32 images. Summed
in f32 (nnforge's vectorized reductions), they lose about ten times more
(the CNN of examples/training_workloads.py: its first batch norm's output
7e-7 from the exact result, eager's 4e-8), and a training run amplifies the
difference step after step. Here the forward and backward of a training-mode
batch norm in f32 are computed in f64, their results rounded to f32: the
statistics as precise as eager's, the elementwise part as well.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

_aten = torch.ops.aten

# Batch norm ops whose decomposition sums over the batch: training-mode
# forwards and the backward.
ACCUMULATING_OPS = (
    _aten._native_batch_norm_legit_functional.default,
    _aten._native_batch_norm_legit.default,
    _aten.native_batch_norm_backward.default,
)


def _in_double(original: Callable[..., Any]) -> Callable[..., Any]:
    def decomposition(*args: Any, **kwargs: Any) -> Any:
        tensors = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
        if any(t.dtype != torch.float32 for t in tensors):
            return original(*args, **kwargs)
        widened = [a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
        return tuple(
            r.float() if isinstance(r, torch.Tensor) and r.is_floating_point() else r
            for r in original(*widened, **kwargs)
        )

    return decomposition


def in_double(table: dict) -> dict:
    """`table` (a decomposition table) with its training batch norms
    computed in f64 for f32 inputs."""
    return {**table, **{op: _in_double(table[op]) for op in ACCUMULATING_OPS if op in table}}
