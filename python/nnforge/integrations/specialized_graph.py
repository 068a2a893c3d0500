"""A graph of the `torch.compile` backend compiled once per set of input
shapes, or run eagerly from the first failure on.

Shared by the inference graphs of `torch_backend` and AOTAutograd's
forward and backward graphs of `torch_training`: the inputs nnforge can
take, the cache of compiled models (`MAX_SPECIALIZATIONS` per graph), the
fallback after one warning naming the reason, and the counts
`backend_stats` reports.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from nnforge.errors import NNForgeError
from nnforge.integrations import backend_stats
from nnforge.runtime import Executable, StaticCall, numpy_dtype

# Distinct input shape sets compiled per graph before it runs eagerly.
MAX_SPECIALIZATIONS = 8


def one_line(error: Exception) -> str:
    """An error's message on one line."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def unsupported_tensor(value: torch.Tensor) -> str | None:
    """Why nnforge cannot take this tensor as an input, or None."""
    if value.layout != torch.strided:
        return f"an input has layout {value.layout}, not dense"
    if value.device.type != "cpu":
        return f"an input is on {value.device}, not the CPU"
    if value.is_complex() or value.is_quantized:
        return f"an input has dtype {value.dtype}"
    return None


class TensorCall:
    """A compiled model called on tensors of the shapes and types it was
    compiled for (the graph's specialisation key vouches for them): their
    memory is passed as it is (copied only where not contiguous), the results
    are tensors over the buffers the code allocated (`runtime.StaticCall`'s
    DLPack capsules).

    The compiled code's integers are signless (torch-mlir lowers uint8 to
    i8): an input is passed as the bits it holds, and a result whose graph
    dtype (`output_dtypes`, where known) has the same bits under another
    signedness is viewed as that dtype."""

    def __init__(self, model: Executable, examples: Sequence[torch.Tensor],
                 output_dtypes: Sequence[torch.dtype | None] = ()):
        self.model = model
        examples = [
            _as_signless(tensor.detach(), numpy_dtype(spec.dtype))
            for tensor, spec in zip(examples, model.signature.inputs)
        ]
        self.call = StaticCall(model, examples)
        self.output_dtypes = list(output_dtypes)

    def __call__(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        tensors = [tensor if tensor.is_contiguous() else tensor.contiguous() for tensor in tensors]
        results = [torch.from_dlpack(capsule) for capsule in self.call([tensor.data_ptr() for tensor in tensors])]
        for index, (result, dtype) in enumerate(zip(results, self.output_dtypes)):
            if dtype is not None and result.dtype != dtype and _same_integer_bits(result.dtype, dtype):
                results[index] = result.view(dtype)
        return results


def _as_signless(tensor: torch.Tensor, compiled: np.dtype) -> torch.Tensor:
    """`tensor` viewed as the compiled input's integer dtype where that has
    its bits under another signedness (uint8 as int8); else as it is."""
    if compiled.kind not in "iu":
        return tensor
    target = torch.from_numpy(np.empty(0, compiled)).dtype
    return tensor.view(target) if _same_integer_bits(tensor.dtype, target) else tensor


def _same_integer_bits(a: torch.dtype, b: torch.dtype) -> bool:
    """Whether `a` and `b` are integer dtypes of one width (int8 and uint8)."""
    return (not a.is_floating_point and not b.is_floating_point and a != torch.bool and b != torch.bool
            and not a.is_complex and not b.is_complex and a.itemsize == b.itemsize)


class GraphFallback(Exception):
    """Why a graph runs eagerly though nothing failed (a random op, an output
    count that does not match); the message is the reason as it stands."""


class SpecializedGraph:
    """A graph compiled per set of input shapes (`specialization`), or run
    eagerly after one warning (`fallback_reason` says why).

    Subclasses say what an input nnforge cannot take is (`unsupported`),
    what a compiled model is specialised for (`key`) and how it is compiled
    (`build`, raising `NNForgeError` or `GraphFallback`).
    """

    def __init__(self, kind: str):
        self.kind = kind  # one of backend_stats.KINDS
        self.compiled: dict[tuple, Any] = {}
        self.fallback_reason: str | None = None

    def unsupported(self, value: Any) -> str | None:
        """Why nnforge cannot take this graph input, or None."""
        raise NotImplementedError

    def key(self, arguments: Sequence[Any]) -> tuple:
        """What a compiled model is specialised for."""
        raise NotImplementedError

    def build(self, arguments: Sequence[Any]) -> Any:
        """The model compiled for these arguments."""
        raise NotImplementedError

    def fall_back(self, reason: str) -> None:
        """Runs the graph eagerly from now on, after one warning."""
        self.fallback_reason = reason
        self.compiled.clear()
        backend_stats.fell_back(self.kind, reason)
        graph = "graph" if self.kind == "inference" else f"{self.kind} graph"
        warnings.warn(f"nnforge backend: running this {graph} eagerly: {reason}", RuntimeWarning, stacklevel=4)

    def specialization(self, arguments: Sequence[Any]) -> Any:
        """The model compiled for these arguments (compiled now if new), or
        None when the graph runs eagerly."""
        if self.fallback_reason is not None:
            return None
        key = self.key(arguments)
        found = self.compiled.get(key)
        if found is not None:
            return found
        for value in arguments:
            reason = self.unsupported(value)
            if reason:
                self.fall_back(reason)
                return None
        if len(self.compiled) >= MAX_SPECIALIZATIONS:
            self.fall_back(f"more than {MAX_SPECIALIZATIONS} distinct input shapes")
            return None
        start = time.perf_counter()
        try:
            built = self.build(arguments)
        except NNForgeError as error:
            self.fall_back(f"nnforge cannot compile it: {one_line(error)}")
            return None
        except GraphFallback as fallback:
            self.fall_back(str(fallback))
            return None
        backend_stats.compiled(self.kind, time.perf_counter() - start, new_shape=bool(self.compiled))
        self.compiled[key] = built
        return built
