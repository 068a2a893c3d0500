"""Gradients of embeddings and max pooling without scatter ops.

PyTorch computes them by scattering (`index_put` with accumulation), which
torch-mlir lowers only through its TMTensor dialect: a module holding one is
bufferized and lowered to loops inside torch-mlir, and the whole backward
graph then gets nnforge's naive code generation (the tiny GPT-2's backward
took 28 ms instead of about 1). Here, for the training graphs:

- `embedding_dense_backward` is a matrix product of the one-hot rows of the
  indices with the output gradient, while that product stays small
  (`ONE_HOT_LIMIT` multiply-adds); a non-finite gradient element then makes
  its whole column non-finite, not only its row.
- `max_pool2d_with_indices_backward` of windows that do not overlap (stride
  = kernel, no padding or dilation) puts each output gradient where its
  index points with a comparison and a select: each input element gets at
  most one, so the values are eager's exactly.

Other cases keep PyTorch's decomposition (or the op itself).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

_aten = torch.ops.aten

# The most multiply-adds (rows x indices x width) an embedding's gradient
# takes as a one-hot product (the tiny GPT-2: 512 x 128 x 64).
ONE_HOT_LIMIT = 1 << 26


def _embedding_backward(original: Callable[..., Any] | None) -> Callable[..., Any]:
    def decomposition(grad_output: torch.Tensor, indices: torch.Tensor, num_weights: int, padding_idx: int,
                      scale_grad_by_freq: bool) -> Any:
        width = tuple(grad_output.shape[indices.ndim:])
        count = indices.numel()
        if scale_grad_by_freq or count * num_weights * math.prod(width) > ONE_HOT_LIMIT:
            return original(grad_output, indices, num_weights, padding_idx, scale_grad_by_freq) \
                if original else NotImplemented
        dtype = grad_output.dtype
        computation = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        flat = indices.reshape(count)
        rows = torch.arange(num_weights, dtype=flat.dtype, device=flat.device)
        one_hot = (rows.unsqueeze(1) == flat.unsqueeze(0)) & (flat != padding_idx).unsqueeze(0)
        gradient = torch.mm(one_hot.to(computation), grad_output.reshape(count, -1).to(computation))
        return gradient.reshape(num_weights, *width).to(dtype)

    return decomposition


def _pair(value: Sequence[int] | int) -> tuple[int, ...]:
    return (value, value) if isinstance(value, int) else tuple(value) * (2 if len(value) == 1 else 1)


def _max_pool_backward(original: Callable[..., Any] | None) -> Callable[..., Any]:
    def decomposition(grad_output: torch.Tensor, x: torch.Tensor, kernel_size: Sequence[int],
                      stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int], ceil_mode: bool,
                      indices: torch.Tensor) -> Any:
        kernel = _pair(kernel_size)
        steps = _pair(stride) if stride else kernel
        height, width = x.shape[-2:]
        rows, columns = grad_output.shape[-2:]
        if (steps != kernel or any(_pair(padding)) or any(d != 1 for d in _pair(dilation))
                or rows * kernel[0] > height or columns * kernel[1] > width):
            return original(grad_output, x, kernel_size, stride, padding, dilation, ceil_mode, indices) \
                if original else NotImplemented

        def spread(t: torch.Tensor) -> torch.Tensor:
            """[..., rows, columns] -> [..., rows * kh, columns * kw], each value over its window."""
            lead = t.shape[:-2]
            expanded = t.reshape(*lead, rows, 1, columns, 1).expand(*lead, rows, kernel[0], columns, kernel[1])
            return expanded.reshape(*lead, rows * kernel[0], columns * kernel[1])

        position = (torch.arange(rows * kernel[0], device=x.device).unsqueeze(1) * width
                    + torch.arange(columns * kernel[1], device=x.device).unsqueeze(0))
        zero = torch.zeros((), dtype=grad_output.dtype, device=x.device)
        gradient = torch.where(spread(indices) == position, spread(grad_output), zero)
        # Rows and columns no window covers (floor mode) get no gradient.
        return torch.nn.functional.pad(gradient, (0, width - columns * kernel[1], 0, height - rows * kernel[0]))

    return decomposition


def without_scatter(table: dict) -> dict:
    """`table` (a decomposition table) with the gradients above, which fall
    back on its own entries for the cases they leave."""
    return {
        **table,
        _aten.embedding_dense_backward.default: _embedding_backward(table.get(_aten.embedding_dense_backward.default)),
        _aten.max_pool2d_with_indices_backward.default: _max_pool_backward(
            table.get(_aten.max_pool2d_with_indices_backward.default)
        ),
    }
