"""Editing an ONNX graph in place: its constants, who produces and uses each value, node attributes,
static shapes (onnx's shape inference), topological order, and a batch of node replacements
applied at once (`Edit`). Shared by `simplify` and `fusions`."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np


def initializers(graph) -> dict[str, np.ndarray]:
    """The graph's initializers as arrays, by name."""
    from onnx import numpy_helper

    return {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}


def attribute(node, name: str, default: Any = None) -> Any:
    """The value of `node`'s attribute `name`, or `default`."""
    from onnx import helper

    for item in node.attribute:
        if item.name == name:
            return helper.get_attribute_value(item)
    return default


def set_attribute(node, name: str, value: Any) -> None:
    """Sets (or adds) `node`'s attribute `name`."""
    from onnx import helper

    for index, item in enumerate(node.attribute):
        if item.name == name:
            del node.attribute[index]
            break
    node.attribute.append(helper.make_attribute(name, value))


def static_shapes(model) -> dict[str, tuple[int, ...]]:
    """The fully static shapes onnx's shape inference finds, by value name (initializers included)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph shape inference rejects: no shapes, no shape-dependent rewrites
        return {}
    shapes: dict[str, tuple[int, ...]] = {}
    graph = inferred.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        kind = value.type.tensor_type
        if kind.HasField("shape") and all(d.HasField("dim_value") for d in kind.shape.dim):
            shapes[value.name] = tuple(d.dim_value for d in kind.shape.dim)
    shapes.update((tensor.name, tuple(tensor.dims)) for tensor in model.graph.initializer)
    return shapes


def sort_nodes(graph) -> None:
    """Puts the graph's nodes in topological order (each after the producers of its inputs)."""
    producers = {output: index for index, node in enumerate(graph.node) for output in node.output}
    order: list[int] = []
    state: set[int] = set()
    for start in range(len(graph.node)):
        stack = [(start, False)]
        while stack:
            current, done = stack.pop()
            if done:
                order.append(current)
                continue
            if current in state:
                continue
            state.add(current)
            stack.append((current, True))
            for name in graph.node[current].input:
                if name in producers and producers[name] not in state:
                    stack.append((producers[name], False))
    nodes = [graph.node[index] for index in order]
    del graph.node[:]
    graph.node.extend(nodes)


def prune_initializers(graph) -> None:
    """Removes the initializers no node uses (in place: the others are not copied)."""
    used = {name for node in graph.node for name in node.input}
    for index in reversed(range(len(graph.initializer))):
        if graph.initializer[index].name not in used:
            del graph.initializer[index]


class Edit:
    """A view of a graph (constants, producers, users) and the node replacements made on it,
    applied by `commit`. Patterns match on values used once (`single`), so a replaced chain's
    intermediate values are used by nothing else."""

    def __init__(self, model):
        self.model = model
        self.graph = model.graph
        self._stored = {tensor.name: tensor for tensor in self.graph.initializer}
        self._arrays: dict[str, np.ndarray] = {}
        self._new: dict[str, np.ndarray] = {}
        self.outputs = {value.name for value in self.graph.output}
        self.users: Counter = Counter(name for node in self.graph.node for name in node.input)
        self.users.update(self.outputs)
        self.producers = {output: node for node in self.graph.node for output in node.output}
        self.consumers: dict[str, list] = {}
        for node in self.graph.node:
            for name in dict.fromkeys(node.input):
                self.consumers.setdefault(name, []).append(node)
        self.removed: set[int] = set()
        self.added: list = []
        self._shapes: dict[str, tuple[int, ...]] | None = None
        self._count = 0

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Static shapes of the graph as it was when the edit began."""
        if self._shapes is None:
            self._shapes = static_shapes(self.model)
        return self._shapes

    def constant(self, name: str) -> np.ndarray | None:
        """The value of the initializer `name` (converted when first asked for), None for other values."""
        if name in self._new:
            return self._new[name]
        if name not in self._arrays and name in self._stored:
            from onnx import numpy_helper

            self._arrays[name] = numpy_helper.to_array(self._stored[name])
        return self._arrays.get(name)

    def producer(self, name: str, *op_types: str):
        """The live node producing `name` when it is one of `op_types`, else None."""
        node = self.producers.get(name)
        if node is None or id(node) in self.removed or node.op_type not in op_types:
            return None
        return node

    def single(self, name: str, *op_types: str):
        """The producer of `name` (one of `op_types`) when `name` has exactly one use and is no graph output."""
        if self.users[name] != 1 or name in self.outputs:
            return None
        return self.producer(name, *op_types)

    def array(self, array: np.ndarray, hint: str) -> str:
        """A new initializer holding `array`."""
        name = self.fresh(hint)
        self._new[name] = array
        return name

    def fresh(self, hint: str) -> str:
        while True:
            self._count += 1
            name = f"{hint}/fused{self._count}"
            if name not in self.producers and name not in self._stored and name not in self._new:
                return name

    def replace(self, removed: list, added: list) -> None:
        """Removes the nodes `removed` and adds `added` (which produce what the removed ones did)."""
        self.removed.update(id(node) for node in removed)
        self.added.extend(added)

    def commit(self) -> int:
        """Applies the replacements; returns how many nodes fewer the graph has."""
        if not self.removed and not self.added:
            return 0
        before = len(self.graph.node)
        nodes = [node for node in self.graph.node if id(node) not in self.removed] + self.added
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        sort_nodes(self.graph)
        from onnx import numpy_helper

        self.graph.initializer.extend(numpy_helper.from_array(np.asarray(array), name)
                                      for name, array in self._new.items())
        prune_initializers(self.graph)
        return before - len(self.graph.node)
