"""The `torch.compile` backend: `torch.compile(model, backend="nnforge")`.

TorchDynamo hands each captured FX graph to `nnforge_backend`. A graph that
needs autograd (an input requires grad, grad mode on: a training step) goes
through AOTAutograd, its forward and backward graphs compiled by nnforge
(`nnforge.integrations.torch_training`). Any other graph (inference:
`torch.no_grad()`, `eval()`) becomes an `NNForgeGraph`, a callable
compiling the graph with `nnforge.compile` for the input shapes it is
called with: one compiled model per distinct set of input shapes,
dtypes and integer arguments (dynamo passes the sizes of dynamic dimensions
as integer arguments; each set is compiled as static shapes, which keeps
every compiled model fully specialised). After `MAX_SPECIALIZATIONS` of
them, or whenever nnforge cannot take the graph or its inputs (an
`NNForgeError`, inputs that are not dense CPU tensors), the graph runs
eagerly through `gm.forward` from then on, after one warning naming the
reason. The compiled model itself never raises nnforge's errors.

`stats()` says what the backend did: graphs compiled per kind, recompiles
for new shapes, fallbacks with their reasons (see `backend_stats`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils import _pytree as pytree

from nnforge.errors import NNForgeError
from nnforge.integrations import torch_training
from nnforge.integrations.backend_stats import reset_stats, stats
from nnforge.integrations.specialized_graph import (
    MAX_SPECIALIZATIONS,
    GraphFallback,
    SpecializedGraph,
    TensorCall,
    one_line,
    unsupported_tensor,
)

__all__ = ["MAX_SPECIALIZATIONS", "NNForgeGraph", "nnforge_backend", "reset_stats", "stats"]


class _GraphWithFixedArguments(torch.nn.Module):
    """The FX graph as a module of its tensor inputs, the integer ones fixed.

    `torch.export` (and so `nnforge.compile`) takes tensors only; dynamo
    passes sizes of dynamic dimensions as integers alongside them.
    Parameters (dynamo passes a module's parameters as graph inputs) are
    buffers of this module instead: the model's weights, which nnforge
    compiles as constants (packed once, kept in its weights file) rather
    than reading them anew on every call.
    """

    def __init__(self, gm: torch.fx.GraphModule, arguments: Sequence[Any]):
        super().__init__()
        self.gm = gm
        self.arguments = list(arguments)
        self.tensor_positions = [
            index for index, value in enumerate(arguments)
            if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter)
        ]
        self.parameter_positions = [
            index for index, value in enumerate(arguments) if isinstance(value, torch.nn.Parameter)
        ]
        for position in self.parameter_positions:
            self.register_buffer(f"parameter{position}", arguments[position].detach())

    def forward(self, *tensors: torch.Tensor) -> Any:
        arguments = list(self.arguments)
        for position, tensor in zip(self.tensor_positions, tensors):
            arguments[position] = tensor
        for position in self.parameter_positions:
            arguments[position] = getattr(self, f"parameter{position}")
        return self.gm(*arguments)


def _unsupported_input(value: Any) -> str | None:
    """Why nnforge cannot take this graph input, or None."""
    if isinstance(value, torch.Tensor):
        if value.requires_grad and torch.is_grad_enabled():
            return "an input requires grad (the graph was compiled for inference)"
        return unsupported_tensor(value)
    if isinstance(value, (int, torch.SymInt)) and not isinstance(value, bool):
        return None
    return f"an input is a {type(value).__name__}, not a tensor"


def _output_structure(
    gm: torch.fx.GraphModule,
) -> tuple[int, pytree.TreeSpec, list[torch.dtype | None]] | str:
    """(tensor output count, nesting of the outputs, each output's dtype where
    recorded), or why they are not all tensors."""
    output_node = next(node for node in gm.graph.nodes if node.op == "output")
    leaves, spec = pytree.tree_flatten(output_node.args[0])
    dtypes: list[torch.dtype | None] = []
    for leaf in leaves:
        if not isinstance(leaf, torch.fx.Node):
            return f"the graph returns a constant {type(leaf).__name__}, not only tensors"
        # Dynamo records each value's example; a plain symbolic trace does not
        # (the output count is checked after compiling then).
        value = leaf.meta.get("example_value", leaf.meta.get("val"))
        if value is not None and not isinstance(value, torch.Tensor):
            return f"the graph returns a {type(value).__name__}, not only tensors"
        dtypes.append(value.dtype if value is not None else None)
    return len(leaves), spec, dtypes


def _key(arguments: Sequence[Any]) -> tuple:
    """What a compiled model is specialised for: shapes, dtypes, devices,
    integer values, and the parameters themselves (compiled as constants:
    one changed in place, or another in its place, compiles anew)."""

    def key(value: Any) -> Any:
        if isinstance(value, torch.nn.Parameter):
            return (value.shape, value.dtype, value.device, value.data_ptr(), value._version)
        if isinstance(value, torch.Tensor):
            return (value.shape, value.dtype, value.device, value.layout, value.requires_grad)
        return value if isinstance(value, int) else type(value)

    return (torch.is_grad_enabled(), *(key(value) for value in arguments))


class NNForgeGraph(SpecializedGraph):
    """A dynamo graph compiled by nnforge per input shapes, or run eagerly."""

    def __init__(self, gm: torch.fx.GraphModule, example_inputs: Sequence[Any]):
        super().__init__("inference")
        self.gm = gm
        structure = _output_structure(gm)
        if isinstance(structure, str):
            self.fall_back(structure)
        else:
            self.output_count, self.output_spec, self.output_dtypes = structure
        # Compile for the example inputs now when they are concrete, so that
        # failures surface (and warn) at torch.compile time.
        if self.fallback_reason is None and not any(
            isinstance(value, torch.SymInt) for value in example_inputs
        ):
            self.specialization(list(example_inputs))

    unsupported = staticmethod(_unsupported_input)
    key = staticmethod(_key)

    def build(self, arguments: Sequence[Any]) -> tuple[TensorCall, list[int]]:
        import nnforge

        wrapper = _GraphWithFixedArguments(self.gm, arguments)
        tensors = tuple(arguments[position].detach() for position in wrapper.tensor_positions)
        # Outside TorchDynamo's tracing context (the backend is called inside
        # it): torch.export would otherwise take up dynamo's guards and fail
        # on them (NameError 'L' once inductor has compiled in the process).
        with torch._guards.tracing(None):
            compiled = nnforge.compile(wrapper, tensors)
        if len(compiled.signature.outputs) != self.output_count:
            raise GraphFallback(
                f"the compiled model has {len(compiled.signature.outputs)} outputs, "
                f"the graph {self.output_count} (does it mutate its inputs?)"
            )
        return TensorCall(compiled, tensors, self.output_dtypes), wrapper.tensor_positions

    def __call__(self, *arguments: Any) -> Any:
        specialization = self.specialization(arguments)
        if specialization is not None:
            call, tensor_positions = specialization
            try:
                outputs = call([arguments[position] for position in tensor_positions])
            except NNForgeError as error:
                self.fall_back(f"running the compiled model failed: {one_line(error)}")
            else:
                return pytree.tree_unflatten(outputs, self.output_spec)
        return self.gm.forward(*arguments)


def nnforge_backend(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
    """TorchDynamo backend: `torch.compile(model, backend="nnforge")`."""
    if torch.is_grad_enabled() and any(
        isinstance(value, torch.Tensor) and value.requires_grad for value in example_inputs
    ):
        return torch_training.training_backend(gm, example_inputs)
    return NNForgeGraph(gm, example_inputs)
