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
elementwise ops and concatenations until pairs cancel. Identical nodes are
computed once, a Conv read by several batch normalizations is copied for
each to fold into, and an identity writing a graph output goes.
Graph input and output names and dynamic dimensions are the source's.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from nnforge.errors import CompileError
from nnforge.exporters.fusions import fuse
from nnforge.exporters.onnx_edit import (Edit, attribute, initializers, prune_initializers, set_attribute,
                                         sort_nodes)

# MLIR's part: canonicalization, constant folding and CSE at the TOSA level.
TOSA_PIPELINE = "builtin.module(func.func(tosa-layerwise-constant-fold),canonicalize,cse)"
# Ops whose results can be much larger than their inputs: evaluated ahead of time only up to this many elements.
_GROWING = {"Tile", "Expand", "ConstantOfShape", "Range"}
_MAX_GROWN_ELEMENTS = 1 << 16


def _grown_size(node, values: dict[str, np.ndarray]) -> float:
    """How many elements a Tile, Expand, ConstantOfShape or Range on constants gives."""
    inputs = [values[name] for name in node.input if name]
    if node.op_type == "Tile":
        return float(np.prod(inputs[0].shape, dtype=np.float64) * np.prod(inputs[1], dtype=np.float64))
    if node.op_type == "Expand":
        try:
            return float(np.prod(np.broadcast_shapes(inputs[0].shape, tuple(int(d) for d in inputs[1])),
                                 dtype=np.float64))
        except ValueError:
            return np.inf
    if node.op_type == "ConstantOfShape":
        return float(np.prod(inputs[0], dtype=np.float64))
    start, limit, delta = (float(np.asarray(value).reshape(-1)[0]) for value in inputs)
    return max(0.0, np.ceil((limit - start) / delta)) if delta else np.inf


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
    values = initializers(graph)
    outputs = {value.name for value in graph.output}
    kept, folded = [], 0
    for node in graph.node:
        if (node.input and all(not name or name in values for name in node.input)
                and not outputs.intersection(node.output)
                and (node.op_type not in _GROWING or _grown_size(node, values) <= _MAX_GROWN_ELEMENTS)):
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


# Ops whose equal nodes give different values: never merged.
_RANDOM = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli",
           "Dropout"}


def merge_duplicates(model) -> int:
    """Common subexpressions: a node with the op, attributes and inputs (constants compared by value)
    of an earlier one is dropped and its outputs read from the earlier one's. Returns how many went."""
    import hashlib

    graph = model.graph
    constants = {tensor.name: (tensor.data_type, tuple(tensor.dims),
                               hashlib.sha1(_tensor_bytes(tensor)).hexdigest()) for tensor in graph.initializer}
    outputs = {value.name for value in graph.output}
    seen: dict[tuple, Any] = {}
    renamed: dict[str, str] = {}
    kept = []
    for node in graph.node:
        node.input[:] = [_resolve(renamed, name) for name in node.input]
        if node.op_type in _RANDOM:
            kept.append(node)
            continue
        key = (node.domain, node.op_type, tuple(constants.get(name, name) for name in node.input),
               tuple(attribute.SerializeToString(deterministic=True) for attribute in node.attribute))
        earlier = seen.get(key)
        if earlier is None or outputs.intersection(node.output) or len(earlier.output) != len(node.output):
            seen.setdefault(key, node)
            kept.append(node)
            continue
        renamed.update(zip(node.output, earlier.output))
    if len(kept) == len(graph.node):
        return 0
    removed = len(graph.node) - len(kept)
    del graph.node[:]
    graph.node.extend(kept)
    prune_initializers(graph)
    return removed


def _tensor_bytes(tensor) -> bytes:
    """The bytes of an initializer's value (its raw data, or its typed fields serialized)."""
    if tensor.HasField("raw_data"):
        return tensor.raw_data
    from onnx import numpy_helper

    return numpy_helper.to_array(tensor).tobytes()


def split_shared_convolutions(model) -> int:
    """A Conv whose result only per-channel Mul/Add/Sub by constants read (batch normalizations of one
    convolution, as a CSE'd import leaves them) is copied once per reader, so that each folds into its
    own copy (`fold_into_convolutions`). Returns how many copies were made."""
    from onnx import helper

    edit = Edit(model)
    copies = 0
    for conv in list(edit.graph.node):
        if conv.op_type != "Conv" or conv.output[0] in edit.outputs \
                or any(edit.constant(name) is None for name in conv.input[1:] if name):
            continue
        readers = edit.consumers.get(conv.output[0], [])
        weights = edit.constant(conv.input[1])
        if len(readers) < 2 or edit.users[conv.output[0]] != len(readers) or not all(
                _per_channel(reader, conv.output[0], edit, weights.ndim, weights.shape[0]) for reader in readers):
            continue
        for reader in readers[1:]:
            inputs = [edit.array(edit.constant(name).copy(), name) for name in conv.input[1:] if name]
            copy = helper.make_node("Conv", [conv.input[0], *inputs], [edit.fresh(conv.output[0])], name=conv.name)
            copy.attribute.extend(conv.attribute)
            reader.input[:] = [copy.output[0] if name == conv.output[0] else name for name in reader.input]
            edit.added.append(copy)
            copies += 1
    edit.commit()
    return copies


def _per_channel(node, source: str, edit: Edit, rank: int, channels: int) -> bool:
    """Whether `node` is a Mul/Add/Sub of `source` by a constant per-channel vector (axis 1)."""
    if node.op_type not in ("Mul", "Add", "Sub") or len(node.input) != 2 or list(node.input).count(source) != 1:
        return False
    other = node.input[1] if node.input[0] == source else node.input[0]
    constant = edit.constant(other)
    if constant is None or (node.op_type == "Sub" and node.input[1] != other):
        return False
    return _channel_vector(constant, rank, 1, channels) is not None


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
    values = initializers(graph)
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
        if (conv is None or conv.op_type != "Conv" or users[source] != 1 or conv.input[1] not in values
                or len(conv.input) > 2 and conv.input[2] and conv.input[2] not in values):
            continue
        weights = values[conv.input[1]]
        vector = _channel_vector(values[node.input[constant_at[0]]], weights.ndim, channel_axis, weights.shape[0])
        if vector is None:
            continue
        if len(conv.input) < 3 or not conv.input[2]:  # a convolution without bias gets a zero one
            del conv.input[2:]
            conv.input.append(f"{conv.output[0]}/bias")
            values[conv.input[2]] = np.zeros(weights.shape[0], np.float32)
        bias = values[conv.input[2]]
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
    values = initializers(graph)
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
    sort_nodes(graph)
    used = {name for node in graph.node for name in node.input}
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(np.asarray(array), name)
                             for name, array in values.items() if name in used)
    return saved


# Elementwise ops a transpose commutes with (the first input is the tensor; the others constants).
_UNARY = {"Relu", "Clip", "Sigmoid", "Tanh", "Exp", "Log", "Neg", "Abs", "Sqrt", "Reciprocal", "Erf", "Identity",
          "Floor", "Ceil", "Sin", "Cos", "Softplus", "LeakyRelu"}
_BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"}
# Ops whose axes a transpose renumbers: the axes in an attribute or a constant input.
_REDUCE = {"ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2",
           "ReduceLogSumExp", "ReduceSumSquare"}


def _perm(node) -> list[int]:
    return list(attribute(node, "perm"))


def _sinkable(user, value: str, perm: list[int], edit: Edit) -> bool:
    """Whether `user` of the transposed `value` can take the transpose's input instead (its result
    transposed after it)."""
    rank = len(perm)
    op = user.op_type
    if op == "Transpose":
        return True
    if op in ("Concat", *_BINARY):
        if op != "Concat" and len(user.input) != 2:
            return False
        for name in user.input:
            other = edit.producer(name, "Transpose")
            constant = edit.constant(name)
            if name != value and not (other is not None and _perm(other) == perm) \
                    and not (constant is not None and constant.ndim <= rank and (op != "Concat" or constant.ndim == rank)):
                return False
        return True
    if user.input[0] != value or value in user.input[1:]:
        return False
    constants = all(not name or edit.constant(name) is not None for name in user.input[1:])
    if op in _UNARY or op in ("Slice", "Softmax", "LogSoftmax"):
        return constants
    if op == "Pad":
        return constants and len(user.input) <= 3
    if op in _REDUCE:
        return constants and attribute(user, "keepdims", 1) == 1
    return False


def _sink_into(user, value: str, source: str, perm: list[int], edit: Edit) -> list:
    """Rewrites `user` to read `source` (= `value` untransposed); returns the transpose of its result."""
    from onnx import helper

    rank = len(perm)
    if user.op_type == "Transpose":
        user.input[0] = source
        set_attribute(user, "perm", [perm[axis] for axis in _perm(user)])
        return []
    inverse = [int(axis) for axis in np.argsort(perm)]
    for position, name in enumerate(user.input):
        other = edit.producer(name, "Transpose")
        if name == value:
            user.input[position] = source
        elif other is not None and _perm(other) == perm and edit.constant(name) is None:
            user.input[position] = other.input[0]
        elif user.op_type in ("Concat", *_BINARY):  # a constant operand
            constant = edit.constant(name)
            if constant.ndim and any(size != 1 for size in constant.shape):
                full = constant.reshape((1,) * (rank - constant.ndim) + constant.shape)
                user.input[position] = edit.array(np.ascontiguousarray(full.transpose(inverse)), name)
    axis_of = lambda axis: perm[int(axis) % rank]  # noqa: E731 - an axis of the transposed value, untransposed
    if user.op_type in ("Concat", "Softmax", "LogSoftmax"):
        set_attribute(user, "axis", axis_of(attribute(user, "axis", -1)))
    elif user.op_type == "Slice":
        axes = edit.constant(user.input[3]) if len(user.input) > 3 and user.input[3] else \
            np.arange(edit.constant(user.input[1]).size)
        axes_name = edit.array(np.array([axis_of(a) for a in axes.reshape(-1)], np.int64), "axes")
        user.input[:] = [*user.input[:3], axes_name, *user.input[4:]]
    elif user.op_type == "Pad":
        pads = edit.constant(user.input[1]).reshape(-1)
        moved = np.zeros_like(pads)
        for axis in range(rank):
            moved[perm[axis]], moved[rank + perm[axis]] = pads[axis], pads[rank + axis]
        user.input[1] = edit.array(moved, "pads")
    elif user.op_type in _REDUCE:
        if len(user.input) > 1 and user.input[1]:
            axes = edit.constant(user.input[1]).reshape(-1)
            user.input[1] = edit.array(np.array([axis_of(a) for a in axes], np.int64), "axes")
        elif attribute(user, "axes") is not None:
            set_attribute(user, "axes", [axis_of(a) for a in attribute(user, "axes")])
    result = user.output[0]
    user.output[0] = edit.fresh(result)
    return [helper.make_node("Transpose", [user.output[0]], [result], perm=perm)]


def sink_transposes(model) -> int:
    """Moves Transpose nodes below the elementwise ops, concatenations, slices, pads, reductions and
    softmaxes that use them (all operands transposed alike, or the others constant), when every
    use allows it, so that consecutive transposes meet and cancel. Returns how many moved."""
    moved = 0
    while True:
        edit = Edit(model)
        for node in edit.graph.node:
            if node.op_type != "Transpose" or node.output[0] in edit.outputs:
                continue
            perm, value = _perm(node), node.output[0]
            users = edit.consumers.get(value, [])
            if users and all(_sinkable(user, value, perm, edit) for user in users):
                added = [transpose for user in users for transpose in _sink_into(user, value, node.input[0], perm,
                                                                                  edit)]
                edit.replace([node], added)
                break
        else:
            return moved
        edit.commit()
        _drop_identity_transposes(model)
        moved += 1


def _drop_identity_transposes(model) -> None:
    """Removes Transposes whose permutation is the identity (not those writing a graph output)."""
    graph = model.graph
    outputs = {value.name for value in graph.output}
    renamed = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "Transpose"
               and _perm(node) == sorted(_perm(node)) and node.output[0] not in outputs}
    if not renamed:
        return
    kept = [node for node in graph.node if node.output[0] not in renamed or node.op_type != "Transpose"]
    for node in kept:
        node.input[:] = [_resolve(renamed, name) for name in node.input]
    del graph.node[:]
    graph.node.extend(kept)


def drop_output_identities(model) -> int:
    """An Identity or identity Transpose writing a graph output goes: the node producing its input
    writes the output instead (not where that input is a graph input or output). Returns how many."""
    graph = model.graph
    outputs = {value.name for value in graph.output}
    inputs = {value.name for value in graph.input}
    producers = {output: node for node in graph.node for output in node.output}
    dropped = []
    for node in graph.node:
        if node.output[0] not in outputs or not (node.op_type == "Identity" or node.op_type == "Transpose"
                                                 and _perm(node) == sorted(_perm(node))):
            continue
        source = node.input[0]
        if source in inputs or source in outputs or source not in producers:
            continue
        producer = producers.pop(source)
        producer.output[:] = [node.output[0] if name == source else name for name in producer.output]
        for user in graph.node:
            user.input[:] = [node.output[0] if name == source else name for name in user.input]
        dropped.append(node)
    for node in dropped:
        graph.node.remove(node)
    return len(dropped)


def _resolve(renamed: dict[str, str], name: str) -> str:
    while name in renamed:
        name = renamed[name]
    return name


def _cancel_transposes(model) -> None:
    from nnforge.exporters import onnx_writer

    nodes = onnx_writer.cancel_transposes(list(model.graph.node), {value.name for value in model.graph.output})
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _sink_where_fewer(model) -> int:
    """`sink_transposes` kept where the graph ends up with no more nodes (moving a transpose used
    several times puts one after each use, which pays only where they cancel); returns the moves kept."""
    import onnx

    trial = onnx.ModelProto()
    trial.CopyFrom(model)
    moved = sink_transposes(trial)
    _cancel_transposes(trial)
    if not moved or len(trial.graph.node) > len(model.graph.node):
        return 0
    model.CopyFrom(trial)
    return moved


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
    while (fold_constants(proto) + drop_output_identities(proto) + merge_duplicates(proto) + split_shared_convolutions(proto)
           + fold_into_convolutions(proto) + _sink_where_fewer(proto) + fold_affine_chains(proto) + fuse(proto)):
        _cancel_transposes(proto)
    onnx_writer.lowest_opset(proto)
    onnx_writer.save(proto, Path(path))
    return len(source.graph.node), len(proto.graph.node)
