"""`nnforge simplify`: an ONNX model imported, simplified and written back as ONNX.

The model goes through nnforge's exchange level: imported at level "tosa",
canonicalized, folded (`tosa-layerwise-constant-fold`) and CSE'd by MLIR's
passes, written by `onnx_writer`. The written graph is then cleaned where
TOSA's folders stop (they fold no broadcasting arithmetic on constants):
every node whose inputs are all constants is evaluated (onnx's reference
evaluator) into an initializer, and a per-channel multiplication, addition
or subtraction by a constant after a convolution (a batch normalization,
as torch-mlir lowers it) is folded into the convolution's filter and bias,
other chains of them become one Mul and one Add, and transposes move below
elementwise ops and concatenations until pairs cancel.
Graph input and output names and dynamic dimensions are the source's.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from nnforge.errors import CompileError

# MLIR's part: canonicalization, constant folding and CSE at the TOSA level.
TOSA_PIPELINE = "builtin.module(func.func(tosa-layerwise-constant-fold),canonicalize,cse)"
# Ops never evaluated ahead of time (their results can be much larger than their inputs).
_NOT_FOLDED = {"Tile", "Expand", "ConstantOfShape", "Range"}


def _initializers(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}


def _evaluate(node, values: dict[str, np.ndarray]) -> list[np.ndarray] | None:
    """The outputs of `node` on constant inputs, or None where the reference evaluator cannot run it."""
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    from nnforge.exporters.onnx_writer import OPSET

    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(values[name].dtype), None)
              for name in node.input if name]
    outputs = [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None) for name in node.output]
    model = helper.make_model(helper.make_graph([node], "fold", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    try:
        results = ReferenceEvaluator(model).run(None, {name: values[name] for name in node.input if name})
    except Exception:  # an op the reference evaluator lacks: left as it is
        return None
    return [np.asarray(result) for result in results]


def fold_constants(model) -> int:
    """Evaluates every node whose inputs are all constants into initializers; returns how many."""
    from onnx import numpy_helper

    graph = model.graph
    values = _initializers(graph)
    outputs = {value.name for value in graph.output}
    kept, folded = [], 0
    for node in graph.node:
        if (node.op_type not in _NOT_FOLDED and node.input and all(not name or name in values for name in node.input)
                and not outputs.intersection(node.output)):
            results = _evaluate(node, values)
            if results is not None:
                values.update(zip(node.output, results))
                folded += 1
                continue
        kept.append(node)
    used = {name for node in kept for name in node.input}
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(array, name) for name, array in values.items() if name in used)
    return folded


def _channel_vector(constant: np.ndarray, rank: int, axis: int, channels: int) -> np.ndarray | None:
    """`constant` as a per-channel vector when it broadcasts along `axis` only, else None."""
    if constant.ndim > rank:
        return None
    shape = (1,) * (rank - constant.ndim) + constant.shape
    if any(size != 1 for index, size in enumerate(shape) if index != axis) or shape[axis] not in (1, channels):
        return None
    return np.broadcast_to(constant.reshape(-1), (channels,)).astype(np.float32)


def fold_into_convolutions(model) -> int:
    """Folds per-channel Mul/Add/Sub by constants after a Conv (through one Transpose) into its weights."""
    from onnx import helper, numpy_helper

    graph = model.graph
    values = _initializers(graph)
    users: Counter = Counter(name for node in graph.node for name in node.input)
    users.update(value.name for value in graph.output)
    producers = {output: node for node in graph.node for output in node.output}
    removed: set[int] = set()
    renamed: dict[str, str] = {}
    fused = 0
    for node in graph.node:
        if node.op_type not in ("Mul", "Add", "Sub") or id(node) in removed:
            continue
        constant_at = [i for i, name in enumerate(node.input) if name in values]
        if len(constant_at) != 1 or (node.op_type == "Sub" and constant_at != [1]):
            continue
        source = node.input[1 - constant_at[0]]
        transpose = producers.get(source)
        channel_axis, conv = 1, transpose
        if transpose is not None and transpose.op_type == "Transpose":
            perm = list(helper.get_attribute_value(transpose.attribute[0]))
            channel_axis = perm.index(1)
            conv = producers.get(transpose.input[0])
            if users[transpose.input[0]] != 1:
                continue
        if (conv is None or conv.op_type != "Conv" or users[source] != 1 or len(conv.input) < 3
                or conv.input[1] not in values or conv.input[2] not in values):
            continue
        weights, bias = values[conv.input[1]], values[conv.input[2]]
        vector = _channel_vector(values[node.input[constant_at[0]]], weights.ndim, channel_axis, weights.shape[0])
        if vector is None:
            continue
        if node.op_type == "Mul":
            weights = weights * vector.reshape(-1, *([1] * (weights.ndim - 1)))
            bias = bias * vector
        else:
            bias = bias + vector if node.op_type == "Add" else bias - vector
        for name, array in ((conv.input[1], weights), (conv.input[2], bias)):
            values[name] = array.astype(np.float32)
        renamed[node.output[0]] = source
        removed.add(id(node))
        fused += 1
    if not fused:
        return 0
    kept = [node for node in graph.node if id(node) not in removed]
    outputs = {value.name for value in graph.output}
    for node in kept:
        node.input[:] = [_resolve(renamed, name) for name in node.input]
    for output in outputs & set(renamed):  # a graph output's name stays: its producer takes it over
        producer = producers[_resolve(renamed, output)]
        producer.output[:] = [output if name == _resolve(renamed, output) else name for name in producer.output]
        for node in kept:
            node.input[:] = [output if name == _resolve(renamed, output) else name for name in node.input]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(array, name) for name, array in values.items() if name in used)
    return fused


def _affine(node, values: dict[str, np.ndarray]) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(tensor input, scale, offset) of a Mul/Add/Sub of a tensor by a constant (x*scale + offset), else None."""
    if node.op_type not in ("Mul", "Add", "Sub") or len(node.input) != 2:
        return None
    constant = [i for i, name in enumerate(node.input) if name in values]
    if len(constant) != 1 or (node.op_type == "Sub" and constant != [1]):
        return None
    value = values[node.input[constant[0]]]
    if value.dtype.kind != "f":
        return None
    one, zero = np.ones((), value.dtype), np.zeros((), value.dtype)
    if node.op_type == "Mul":
        return node.input[1 - constant[0]], value, zero
    return node.input[1 - constant[0]], one, value if node.op_type == "Add" else -value


def fold_affine_chains(model) -> int:
    """Replaces chains of three or more Mul/Add/Sub by constants (a batch
    normalization not after a convolution) by one Mul and one Add; returns
    how many nodes went."""
    from onnx import helper, numpy_helper

    graph = model.graph
    values = _initializers(graph)
    users: Counter = Counter(name for node in graph.node for name in node.input)
    users.update(value.name for value in graph.output)
    producers = {output: node for node in graph.node for output in node.output}
    removed: set[int] = set()
    added = []
    saved = 0
    for node in reversed(list(graph.node)):
        if id(node) in removed or _affine(node, values) is None:
            continue
        chain = [node]
        while True:
            source = _affine(chain[-1], values)[0]
            previous = producers.get(source)
            if previous is None or users[source] != 1 or _affine(previous, values) is None:
                break
            chain.append(previous)
        if len(chain) < 3:
            continue
        scale, offset = np.ones((), np.float32), np.zeros((), np.float32)
        for link in reversed(chain):  # first op first
            _, link_scale, link_offset = _affine(link, values)
            scale, offset = scale * link_scale, offset * link_scale + link_offset
        source = _affine(chain[-1], values)[0]
        result = node.output[0]
        scale_name, offset_name = f"{result}/scale", f"{result}/offset"
        values[scale_name] = scale.astype(values[source].dtype if source in values else np.float32)
        values[offset_name] = offset.astype(values[scale_name].dtype)
        scaled = f"{result}/scaled"
        added.append((id(chain[-1]), [helper.make_node("Mul", [source, scale_name], [scaled]),
                                      helper.make_node("Add", [scaled, offset_name], [result])]))
        removed.update(id(link) for link in chain)
        saved += len(chain) - 2
    if not saved:
        return 0
    replacements = dict(added)
    nodes = []
    for node in graph.node:
        if id(node) in replacements:
            nodes.extend(replacements[id(node)])
        elif id(node) not in removed:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    _sort(graph)
    used = {name for node in graph.node for name in node.input}
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(np.asarray(array), name)
                             for name, array in values.items() if name in used)
    return saved


# Elementwise ops a transpose commutes with (the first input is the tensor; the others scalars).
_UNARY = {"Relu", "Clip", "Sigmoid", "Tanh", "Exp", "Log", "Neg", "Abs", "Sqrt", "Reciprocal", "Erf", "Identity",
          "Floor", "Ceil", "Sin", "Cos", "Softplus", "LeakyRelu"}
_BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"}


def sink_transposes(model) -> int:
    """Moves Transpose nodes below the elementwise ops and concatenations they
    feed (all operands transposed alike, or a binary op's other operand
    constant), so that consecutive transposes meet and cancel. Returns how
    many moved."""
    from onnx import helper, numpy_helper

    graph = model.graph
    values = _initializers(graph)
    outputs = {value.name for value in graph.output}
    moved = 0
    changed = True
    while changed:
        changed = False
        users: Counter = Counter(name for node in graph.node for name in node.input)
        producers = {output: node for node in graph.node for output in node.output}

        def single_transpose(name: str):
            node = producers.get(name)
            return node if node is not None and node.op_type == "Transpose" and users[name] == 1 \
                and name not in outputs else None

        for node in graph.node:
            if node.op_type in _UNARY:
                transposes = [single_transpose(node.input[0])]
                if transposes[0] is None or any(n in producers for n in node.input[1:]):
                    continue
            elif node.op_type in _BINARY and len(node.input) == 2:
                transposes = [single_transpose(name) for name in node.input]
                perms = [list(helper.get_attribute_value(t.attribute[0])) if t else None for t in transposes]
                if None not in transposes:
                    if perms[0] != perms[1]:
                        continue
                else:
                    # one operand transposed, the other a constant of the same rank: transpose the constant
                    index = 0 if transposes[0] is not None else 1
                    other = node.input[1 - index]
                    if transposes[index] is None or other not in values or values[other].ndim != len(perms[index]):
                        continue
                    inverse = list(np.argsort(perms[index]))
                    name = f"{other}/transposed{moved}"
                    values[name] = np.ascontiguousarray(values[other].transpose(inverse))
                    graph.initializer.append(numpy_helper.from_array(values[name], name))
                    node.input[1 - index] = name
                    transposes = [transposes[index]]
            elif node.op_type == "Concat":
                transposes = [single_transpose(name) for name in node.input]
                perms = {tuple(helper.get_attribute_value(t.attribute[0])) if t else None for t in transposes}
                if None in perms or len(perms) != 1 or len(set(node.input)) != len(node.input):
                    continue
                perm = perms.pop()
                axis = next(a for a in node.attribute if a.name == "axis")
                axis.i = perm[axis.i % len(perm)]
            else:
                continue
            first = transposes[0]
            result, intermediate = node.output[0], first.output[0]
            for transpose in transposes:
                position = list(node.input).index(transpose.output[0])
                node.input[position] = transpose.input[0]
            node.output[0] = intermediate
            first.input[0] = intermediate
            first.output[0] = result
            for extra in transposes[1:]:
                graph.node.remove(extra)
            moved += 1
            changed = True
            break
        if changed:
            _sort(graph)
    return moved


def _sort(graph) -> None:
    """Puts the graph's nodes in topological order (each after the producers of its inputs)."""
    producers = {output: index for index, node in enumerate(graph.node) for output in node.output}
    order: list[int] = []
    state: dict[int, bool] = {}

    def visit(index: int) -> None:
        stack = [(index, False)]
        while stack:
            current, done = stack.pop()
            if done:
                order.append(current)
                continue
            if current in state:
                continue
            state[current] = True
            stack.append((current, True))
            for name in graph.node[current].input:
                if name in producers and producers[name] not in state:
                    stack.append((producers[name], False))

    for index in range(len(graph.node)):
        visit(index)
    nodes = [graph.node[index] for index in order]
    del graph.node[:]
    graph.node.extend(nodes)


def _resolve(renamed: dict[str, str], name: str) -> str:
    while name in renamed:
        name = renamed[name]
    return name


def simplify(model: str | os.PathLike | Any, path: str | os.PathLike) -> tuple[int, int]:
    """Writes the simplified ONNX `model` to `path`; returns its node counts (before, after)."""
    import onnx
    from mlir import ir, passmanager

    from nnforge.exporters import import_tosa, onnx_writer, to_onnx

    source = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    imported = import_tosa(model)
    with imported.module.context:
        try:
            passmanager.PassManager.parse(TOSA_PIPELINE).run(imported.module.operation)
        except ir.MLIRError as error:
            raise CompileError(f"simplifying at the TOSA level failed: {error}") from None
    proto = to_onnx(imported, name=source.graph.name or Path(path).stem)
    while fold_constants(proto) + fold_into_convolutions(proto) + sink_transposes(proto) + fold_affine_chains(proto):
        nodes = onnx_writer.cancel_transposes(list(proto.graph.node), {value.name for value in proto.graph.output})
        del proto.graph.node[:]
        proto.graph.node.extend(nodes)
    onnx_writer.save(proto, Path(path))
    return len(source.graph.node), len(proto.graph.node)
