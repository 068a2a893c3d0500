"""What the format writers (`onnx_writer`, `nnef_writer`) share.

A writer maps each TOSA op kind of a `tosa_graph.Graph` to a function that
adds the format's nodes to a builder. The functions raise `Refused` for an
op in a form the format cannot hold; `write_nodes` runs them over the graph
and turns every refusal into one `UnsupportedOpError` naming each op kind,
its count, where it stands and why, before anything is written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from nnforge.errors import UnsupportedOp, UnsupportedOpError
from nnforge.exporters.tosa_graph import Graph, Node

# NHWC <-> NCHW (rank 4) and NDHWC <-> NCDHW (rank 5): TOSA's layouts against ONNX's and NNEF's.
TO_NCHW = {4: [0, 3, 1, 2], 5: [0, 4, 1, 2, 3]}
TO_NHWC = {4: [0, 2, 3, 1], 5: [0, 2, 3, 4, 1]}


class Refused(Exception):
    """A TOSA op in a form the format has no mapping for (the message says which)."""


class GraphBuilder:
    """Reads the TOSA graph for the writers: constants, resolved shapes, value types."""

    def __init__(self, graph: Graph):
        self.graph = graph

    def constant(self, name: str) -> np.ndarray | None:
        return self.graph.constants.get(name)

    def shape(self, name: str) -> list[int]:
        """The values of a `tosa.const_shape` operand."""
        if name not in self.graph.shapes:
            raise Refused(f"a shape operand computed at run time ({name})")
        return self.graph.shapes[name]

    def dtype(self, name: str) -> np.dtype:
        return self.graph.types[name].dtype

    def require_zero(self, names: Sequence[str], what: str) -> None:
        """Refuses unless each of `names` is a constant zero (TOSA's zero points and shifts)."""
        for name in names:
            value = self.constant(name)
            if value is None or np.any(value != 0):
                raise Refused(f"{what} not zero (quantized form)")


def is_relu(node: Node) -> bool:
    """Whether a `tosa.clamp` is max(x, 0): its upper bound the type's largest value."""
    dtype = node.output_types[0].dtype
    limit = np.finfo(dtype).max if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).max
    return node.attributes["min_val"] == 0 and node.attributes["max_val"] >= limit


def io_names(graph: Graph, input_names: Sequence[str] | None,
             output_names: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """The given names, or input_<i> and output / output_<i>."""
    inputs = list(input_names or [f"input_{i}" for i in range(len(graph.inputs))])
    outputs = list(output_names or (["output"] if len(graph.outputs) == 1 else
                                    [f"output_{i}" for i in range(len(graph.outputs))]))
    return inputs, outputs


class Refusals:
    """Refused op kinds with their counts, locations and first reason."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.reasons: dict[str, str] = {}
        self.locations: dict[str, list[str]] = {}

    def add(self, kind: str, reason: str, location: str = "") -> None:
        self.counts[kind] += 1
        self.reasons.setdefault(kind, reason)
        if location:
            self.locations.setdefault(kind, []).append(location)

    def raise_any(self, context: str) -> None:
        if self.counts:
            raise UnsupportedOpError(
                [UnsupportedOp(kind, count, tuple(self.locations.get(kind, ())), self.reasons[kind])
                 for kind, count in self.counts.items()], context=context)


def write_nodes(graph: Graph, builder: Any, write: Callable[[Any, Node], None], refusals: Refusals,
                on_refused: Callable[[Node], None] | None = None) -> None:
    """Writes each node with `write(builder, node)`; a refused node is recorded in `refusals`."""
    for node in graph.nodes:
        try:
            write(builder, node)
        except Refused as reason:
            refusals.add(node.kind, str(reason), _short(node.location))
            if on_refused is not None:
                on_refused(node)


def dispatch(writers: Mapping[str, Callable[[Any, Node], None]], unmapped: str) -> Callable[[Any, Node], None]:
    """A `write` for `write_nodes` calling the writer of each node's kind; `unmapped` says why one has none."""
    def write(builder: Any, node: Node) -> None:
        writer = writers.get(node.kind)
        if writer is None:
            raise Refused(unmapped)
        writer(builder, node)

    return write


def _short(location: str) -> str:
    """An MLIR location without its `loc(...)` wrapper; unknown locations dropped."""
    text = location.removeprefix("loc(").removesuffix(")")
    return "" if text in ("unknown", "") else text
