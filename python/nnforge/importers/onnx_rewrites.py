"""ONNX-level rewrites into forms torch-mlir's ONNX conversion accepts.

Each rewrite keeps the model's meaning exactly and applies only where the
values it needs are known before import (static shapes, constant operands);
elsewhere the node is left as it is, and torch-mlir names it if it cannot
convert it. Run after shape inference.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def rewrite(proto: Any, level: str = "linalg") -> int:
    """Applies every rewrite (those for an import to `level` too) to the main
    graph of `proto` in place; returns how many nodes were rewritten."""
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    graph = _Graph(proto.graph, opset)
    rewrites = {**_REWRITES, **_LEVEL_REWRITES.get(level, {})}
    rewritten = 0
    for node in list(proto.graph.node):
        rewrite_node = rewrites.get(node.op_type)
        if rewrite_node is not None and rewrite_node(graph, node):
            rewritten += 1
    return rewritten


class _Graph:
    """What the rewrites know of a graph: constant values, shapes, names."""

    def __init__(self, graph: Any, opset: int):
        from onnx import TensorProto

        self.graph = graph
        self.opset = opset
        # Constant tensors by name, read as arrays only when a rewrite asks
        # (weights can be large); external data stays unread.
        self.constant_tensors = {
            t.name: t for t in graph.initializer if t.data_location != TensorProto.EXTERNAL
        }
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constant_tensors[node.output[0]] = node.attribute[0].t
        # Value name -> dimensions (None where unknown), for values of known rank.
        self.shapes: dict[str, list[int | None]] = {}
        self.element_types: dict[str, int] = {}
        for value in [*graph.input, *graph.value_info, *graph.output]:
            tensor = value.type.tensor_type
            self.element_types[value.name] = tensor.elem_type
            if tensor.HasField("shape"):
                dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
                self.shapes[value.name] = dims
        for name, tensor in self.constant_tensors.items():
            self.element_types[name] = tensor.data_type
            self.shapes[name] = list(tensor.dims)
        self.taken = {t.name for t in graph.initializer} | {v.name for v in graph.input}
        for node in graph.node:
            self.taken.update(node.input)
            self.taken.update(node.output)

    def static_shape(self, name: str) -> list[int] | None:
        if name in self.constant_tensors:
            return list(self.constant_tensors[name].dims)
        dims = self.shapes.get(name)
        return dims if dims is not None and None not in dims else None

    def constant(self, node: Any, position: int) -> np.ndarray | None:
        """The constant value of input `position` of `node`, if it has one."""
        from onnx import numpy_helper

        if position < len(node.input) and node.input[position] in self.constant_tensors:
            return numpy_helper.to_array(self.constant_tensors[node.input[position]])
        return None

    def fresh(self, base: str) -> str:
        name, suffix = base, 0
        while name in self.taken:
            suffix += 1
            name = f"{base}_{suffix}"
        self.taken.add(name)
        return name

    def add_constant(self, base: str, values: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.fresh(base)
        self.graph.initializer.append(numpy_helper.from_array(values, name))
        self.constant_tensors[name] = self.graph.initializer[-1]
        return name

    def insert_around(self, anchor: Any, before: list[Any] = (), after: list[Any] = ()) -> None:
        """Inserts nodes just before and after `anchor`, keeping the graph
        sorted (in place: the graph's other nodes stay the same objects)."""
        position = list(self.graph.node).index(anchor)
        for offset, node in enumerate(after):
            self.graph.node.insert(position + 1 + offset, node)
        for offset, node in enumerate(before):
            self.graph.node.insert(position + offset, node)

    def replace(self, node: Any, replacement: list[Any]) -> list[Any]:
        """Puts `replacement` where `node` was; returns the inserted nodes as
        they now are in the graph (the graph holds copies)."""
        position = list(self.graph.node).index(node)
        self.insert_around(node, before=replacement)
        self.graph.node.remove(node)
        return list(self.graph.node[position:position + len(replacement)])


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _set_attributes(node: Any, drop: tuple[str, ...] = (), **values: Any) -> None:
    from onnx import helper

    kept = [a for a in node.attribute if a.name not in drop and a.name not in values]
    del node.attribute[:]
    node.attribute.extend(kept)
    node.attribute.extend(helper.make_attribute(key, value) for key, value in values.items())


def _node_builder(graph: _Graph, node: Any, nodes: list[Any]):
    """A function appending a node named after `node` to `nodes`; returns its output's name."""
    from onnx import helper

    def add(op_type: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        output = output or graph.fresh(f"{node.name}_{op_type.lower()}")
        nodes.append(helper.make_node(op_type, inputs, [output], name=graph.fresh(f"{node.name}_{op_type}"), **attrs))
        return output

    return add


def _resize(graph: _Graph, node: Any) -> bool:
    """Resize with `axes` or a `keep_aspect_ratio_policy` -> scales or sizes
    for every dimension and policy "stretch" (all torch-mlir converts)."""
    attributes = _attributes(node)
    axes = attributes.get("axes")
    policy = attributes.get("keep_aspect_ratio_policy", b"stretch").decode()
    shape = graph.static_shape(node.input[0]) if node.input else None
    if (axes is None and policy == "stretch") or shape is None:
        return False
    roi = graph.constant(node, 1)
    if axes is not None and roi is not None and roi.size:
        return False  # an roi for some axes only: tf_crop_and_resize, which torch-mlir lacks anyway
    full = _full_rank_resize_operand(graph, node, shape, axes, policy)
    if full is None:
        return False
    position, values = full
    node.input[position] = graph.add_constant(f"{node.name}_{'sizes' if position == 3 else 'scales'}", values)
    _set_attributes(node, drop=("axes", "keep_aspect_ratio_policy"))
    return True


def _full_rank_resize_operand(
    graph: _Graph, node: Any, shape: list[int], axes: list[int] | None, policy: str
) -> tuple[int, np.ndarray] | None:
    """(input position, values) of Resize's scales or sizes spelled out for
    every dimension, as ONNX defines them; None where that cannot be done exactly."""
    rank = len(shape)
    axes = [axis % rank for axis in axes] if axes is not None else list(range(rank))
    scales, sizes = graph.constant(node, 2), graph.constant(node, 3)
    if sizes is not None and sizes.size == len(axes):
        target = list(shape)
        for axis, size in zip(axes, sizes.tolist()):
            target[axis] = int(size)
        if policy != "stretch":
            ratios = [target[axis] / shape[axis] for axis in axes]
            scale = min(ratios) if policy == "not_larger" else max(ratios)
            for axis in axes:
                target[axis] = int(scale * shape[axis] + 0.5)
            # Resize maps coordinates with `scale`; sizes imply size/input per
            # axis, so they must agree for the rewrite to keep the meaning.
            if any(target[axis] / shape[axis] != scale for axis in axes):
                return None
        return 3, np.array(target, dtype=np.int64)
    if scales is not None and scales.size == len(axes) and policy == "stretch":
        full = [1.0] * rank
        for axis, scale in zip(axes, scales.tolist()):
            full[axis] = scale
        return 2, np.array(full, dtype=np.float32)
    return None


def _matmul(graph: _Graph, node: Any) -> bool:
    """MatMul of a vector with a batch of matrices -> a matrix product and a
    squeeze, as numpy defines it (torch-mlir lowers only some rank pairs)."""
    from onnx import helper

    ranks = [len(graph.shapes[name]) if name in graph.shapes else None for name in node.input]
    if ranks[0] == 1 and ranks[1] is not None and ranks[1] >= 3:
        vector, unsqueezed_axis, squeezed_axis = 0, 0, -2
    elif ranks[1] == 1 and ranks[0] is not None and ranks[0] >= 3:
        vector, unsqueezed_axis, squeezed_axis = 1, 1, -1
    else:
        return False
    matrix = graph.fresh(f"{node.name}_matrix")
    product = graph.fresh(f"{node.name}_product")
    unsqueeze = helper.make_node(
        "Unsqueeze", [node.input[vector], graph.add_constant(f"{node.name}_axis", np.array([unsqueezed_axis]))],
        [matrix], name=graph.fresh(f"{node.name}_unsqueeze"),
    )
    squeeze = helper.make_node(
        "Squeeze", [product, graph.add_constant(f"{node.name}_axis", np.array([squeezed_axis]))],
        [node.output[0]], name=graph.fresh(f"{node.name}_squeeze"),
    )
    node.input[vector] = matrix
    node.output[0] = product
    graph.insert_around(node, before=[unsqueeze], after=[squeeze])
    return True


def _explicit_pads(graph: _Graph, node: Any) -> bool:
    """auto_pad SAME_UPPER/SAME_LOWER -> explicit pads, from static shapes
    (torch-mlir converts auto_pad for some ops only)."""
    attributes = _attributes(node)
    auto_pad = attributes.get("auto_pad", b"NOTSET").decode()
    shape = graph.static_shape(node.input[0])
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER") or shape is None:
        return False
    kernel = attributes.get("kernel_shape")
    if kernel is None:  # convolutions: from the weight's shape
        weight = graph.static_shape(node.input[1]) if len(node.input) > 1 else None
        kernel = weight[2:] if weight is not None else None
    if kernel is None or "output_shape" in attributes:
        return False
    spatial = shape[2:]
    strides = attributes.get("strides", [1] * len(spatial))
    dilations = attributes.get("dilations", [1] * len(spatial))
    begins, ends, unpadded = [], [], []
    for i, size in enumerate(spatial):
        extent = (kernel[i] - 1) * dilations[i] + 1
        if node.op_type == "ConvTranspose":
            output_padding = attributes.get("output_padding", [0] * len(spatial))[i]
            unpadded.append(strides[i] * (size - 1) + output_padding + extent)
            total = unpadded[-1] - size * strides[i]  # SAME: the output is size * stride
        else:
            total = max(0, (-(-size // strides[i]) - 1) * strides[i] + extent - size)
        if total < 0:
            return False
        small, large = total // 2, total - total // 2
        begin = small if auto_pad == "SAME_UPPER" else large
        begins.append(begin)
        ends.append(total - begin)
    if node.op_type == "ConvTranspose" and begins != ends:
        _crop_after(graph, node, unpadded, begins, ends)
    else:
        _set_attributes(node, drop=("auto_pad",), pads=begins + ends)
    return True


def _crop_after(graph: _Graph, node: Any, unpadded: list[int], begins: list[int], ends: list[int]) -> None:
    """Asymmetric ConvTranspose padding (which torch-mlir rejects) as no
    padding and a Slice cropping the result (`unpadded`: its spatial size):
    padding a transposed convolution removes output rows and columns."""
    from onnx import helper

    spatial = len(begins)
    uncropped = graph.fresh(f"{node.name}_uncropped")
    crop = helper.make_node(
        "Slice",
        [
            uncropped,
            graph.add_constant(f"{node.name}_starts", np.array(begins, dtype=np.int64)),
            graph.add_constant(f"{node.name}_ends", np.array([u - e for u, e in zip(unpadded, ends)], dtype=np.int64)),
            graph.add_constant(f"{node.name}_axes", np.arange(2, 2 + spatial, dtype=np.int64)),
        ],
        [node.output[0]],
        name=graph.fresh(f"{node.name}_crop"),
    )
    node.output[0] = uncropped
    _set_attributes(node, drop=("auto_pad",), pads=[0] * (2 * spatial))
    graph.insert_around(node, after=[crop])


def _cumprod(graph: _Graph, node: Any) -> bool:
    """CumProd -> a Scan over axis 0 whose body multiplies a running product
    (exact, in the same order), which torch-mlir lowers to a loop; it has no
    CumProd. Its Scan conversion handles neither other axes nor directions
    (it ignores the latter), so the scanned axis is transposed to the front
    and a reverse product scans a reversed copy (a Gather) instead."""
    from onnx import helper

    shape, axis = graph.static_shape(node.input[0]), graph.constant(node, 1)
    element_type = graph.element_types.get(node.input[0])
    if shape is None or axis is None or axis.size != 1 or not element_type:
        return False
    attributes = _attributes(node)
    axis = int(axis.reshape(())) % len(shape)
    order = [axis] + [i for i in range(len(shape)) if i != axis]
    rest = [shape[i] for i in order[1:]]
    nodes: list[Any] = []
    add = _node_builder(graph, node, nodes)

    reversed_indices = graph.add_constant(f"{node.name}_reversed", np.arange(shape[axis] - 1, -1, -1, dtype=np.int64))
    scanned = node.input[0]
    if axis != 0:
        scanned = add("Transpose", [scanned], perm=order)
    if attributes.get("reverse", 0):
        scanned = add("Gather", [scanned, reversed_indices], axis=0)
    product, item, updated, emitted = (graph.fresh(f"{node.name}_{n}") for n in ("product", "item", "updated", "emitted"))
    body = helper.make_graph(
        [
            helper.make_node("Mul", [product, item], [updated]),
            helper.make_node("Identity", [product if attributes.get("exclusive", 0) else updated], [emitted]),
        ],
        f"{node.name}_body",
        [helper.make_tensor_value_info(name, element_type, rest) for name in (product, item)],
        [helper.make_tensor_value_info(name, element_type, rest) for name in (updated, emitted)],
    )
    ones = graph.add_constant(f"{node.name}_ones", np.ones(rest, dtype=helper.tensor_dtype_to_np_dtype(element_type)))
    result = graph.fresh(f"{node.name}_scanned")
    nodes.append(helper.make_node(
        "Scan", [ones, scanned], [graph.fresh(f"{node.name}_final"), result],
        name=graph.fresh(f"{node.name}_scan"), body=body, num_scan_inputs=1,
    ))
    if attributes.get("reverse", 0):
        result = add("Gather", [result, reversed_indices], axis=0)
    if axis != 0:
        result = add("Transpose", [result], perm=[int(i) for i in np.argsort(order)])
    add("Identity", [result], output=node.output[0])
    graph.replace(node, nodes)
    return True


def _compress(graph: _Graph, node: Any) -> bool:
    """Compress with a constant condition -> a Gather of the selected
    indices (torch-mlir's Compress conversion fails on static shapes)."""
    from onnx import helper

    condition = graph.constant(node, 1)
    if condition is None or condition.ndim != 1:
        return False
    indices = graph.add_constant(f"{node.name}_indices", np.flatnonzero(condition).astype(np.int64))
    data, before = node.input[0], []
    axis = _attributes(node).get("axis")
    if axis is None:  # Compress a flattened view
        data = graph.fresh(f"{node.name}_flat")
        before.append(helper.make_node(
            "Reshape", [node.input[0], graph.add_constant(f"{node.name}_shape", np.array([-1], np.int64))],
            [data], name=graph.fresh(f"{node.name}_flatten"),
        ))
    before.append(helper.make_node(
        "Gather", [data, indices], [node.output[0]], name=graph.fresh(f"{node.name}_gather"), axis=axis or 0,
    ))
    graph.replace(node, before)
    return True


def _lp_normalization(graph: _Graph, node: Any) -> bool:
    """LpNormalization -> x / ReduceLp(x) with 0 where the norm is 0, as
    ONNX defines it (torch-mlir's conversion divides by 0 there)."""
    from onnx import helper

    attributes = _attributes(node)
    p, axis = attributes.get("p", 2), attributes.get("axis", -1)
    element_type = graph.element_types.get(node.input[0])
    if p not in (1, 2) or not element_type:
        return False
    norm, is_zero, quotient = (graph.fresh(f"{node.name}_{n}") for n in ("norm", "is_zero", "quotient"))
    reduce_inputs, reduce_attributes = [node.input[0]], {"keepdims": 1}
    if graph.opset >= 18:
        reduce_inputs.append(graph.add_constant(f"{node.name}_axes", np.array([axis], np.int64)))
    else:
        reduce_attributes["axes"] = [axis]
    zero = graph.add_constant(f"{node.name}_zero", np.zeros((), helper.tensor_dtype_to_np_dtype(element_type)))
    nodes = [
        helper.make_node(f"ReduceL{p}", reduce_inputs, [norm], name=graph.fresh(f"{node.name}_reduce"),
                         **reduce_attributes),
        helper.make_node("Equal", [norm, zero], [is_zero], name=graph.fresh(f"{node.name}_equal")),
        helper.make_node("Div", [node.input[0], norm], [quotient], name=graph.fresh(f"{node.name}_div")),
        helper.make_node("Where", [is_zero, zero, quotient], [node.output[0]], name=graph.fresh(f"{node.name}_where")),
    ]
    graph.replace(node, nodes)
    return True


# ONNX's float8 element types (TensorProto.FLOAT8E4M3FN ... FLOAT8E5M2FNUZ) and the types a cast
# to them saturates from (FLOAT, FLOAT16, DOUBLE, BFLOAT16).
_FLOAT8 = (17, 18, 19, 20)
_SATURATED_SOURCES = (1, 10, 11, 16)


def _saturating_float8_cast(graph: _Graph, node: Any) -> bool:
    """A Cast or CastLike to float8 that saturates (ONNX's default) -> a Clip to the type's finite
    range, then the cast without saturation: torch-mlir's conversion casts without saturating
    (out of range becomes infinite or NaN), and refuses a Cast that saturates."""
    import ml_dtypes
    from onnx import helper

    if _attributes(node).get("saturate", 1) == 0:
        return False
    target = _attributes(node).get("to") if node.op_type == "Cast" else graph.element_types.get(node.input[1])
    source = graph.element_types.get(node.input[0])
    if target not in _FLOAT8 or source not in _SATURATED_SOURCES:
        return False
    largest = float(ml_dtypes.finfo(helper.tensor_dtype_to_np_dtype(target)).max)
    dtype = helper.tensor_dtype_to_np_dtype(source)
    low = graph.add_constant(f"{node.name}_lowest", np.array(-largest, dtype))
    high = graph.add_constant(f"{node.name}_largest", np.array(largest, dtype))
    clipped = graph.fresh(f"{node.name}_clipped")
    graph.insert_around(node, before=[
        helper.make_node("Clip", [node.input[0], low, high], [clipped], name=graph.fresh(f"{node.name}_clip"))])
    if node.input[0] in graph.shapes:  # torch-mlir's conversions want the types of the values they read
        graph.graph.value_info.append(helper.make_tensor_value_info(clipped, source, graph.shapes[node.input[0]]))
    node.input[0] = clipped
    _set_attributes(node, saturate=0)
    return True


def _python_mod_of_infinite_divisors(graph: _Graph, node: Any) -> bool:
    """Mod of floats with fmod=0 (the divisor's sign, as Python's %) -> the same Mod where the
    divisor is finite, else x where x is 0 or has the divisor's sign, the divisor where not
    (-3 % inf = inf, 3 % inf = 3). torch-mlir's TOSA lowering computes x - y floor(x / y),
    NaN for an infinite y; its linalg lowering is right."""
    from onnx import TensorProto, helper

    element_type = graph.element_types.get(node.input[0])
    shapes = [graph.static_shape(name) for name in node.input]
    if (_attributes(node).get("fmod", 0) != 0 or None in shapes
            or element_type not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)):
        return False
    shape = list(np.broadcast_shapes(*map(tuple, shapes)))
    x, y = node.input
    nodes: list[Any] = []
    add = _node_builder(graph, node, nodes)
    zero = graph.add_constant(f"{node.name}_zero", np.zeros((), helper.tensor_dtype_to_np_dtype(element_type)))
    remainder = add("Mod", [x, y], fmod=0)
    x_finite_y_infinite = add("And", [add("IsInf", [y]), add("Not", [add("IsInf", [x])])])
    x_is_zero_or_has_the_sign_of_y = add("Or", [add("Equal", [add("Less", [x, zero]), add("Less", [y, zero])]),
                                                 add("Equal", [x, zero])])
    add("Where", [x_finite_y_infinite, add("Where", [x_is_zero_or_has_the_sign_of_y, x, y]), remainder],
        output=node.output[0])
    for created in nodes[:-1]:  # torch-mlir's conversions want the types of the values they read
        kind = element_type if created.op_type in ("Mod", "Where") else TensorProto.BOOL
        graph.graph.value_info.append(helper.make_tensor_value_info(created.output[0], kind, shape))
    graph.replace(node, nodes)
    return True


def _has_static_full_sequences(graph: _Graph, node: Any) -> bool:
    """Whether an RNN/GRU/LSTM's input has a static shape and no
    sequence_lens input shortens its sequences."""
    has_lengths = len(node.input) > 4 and node.input[4]
    return graph.static_shape(node.input[0]) is not None and not has_lengths


def _reverse_recurrence(graph: _Graph, node: Any) -> bool:
    """RNN/GRU/LSTM in direction "reverse" -> the forward op on the sequence
    reversed in time, its Y reversed back (torch-mlir converts "forward"
    only). Needs a static sequence length and no sequence_lens."""
    from onnx import helper

    attributes = _attributes(node)
    if attributes.get("direction", b"forward") != b"reverse" or not _has_static_full_sequences(graph, node):
        return False
    shape = graph.static_shape(node.input[0])
    reversed_time = graph.add_constant(f"{node.name}_reversed", np.arange(shape[0] - 1, -1, -1, dtype=np.int64))
    reversed_input = graph.fresh(f"{node.name}_reversed_input")
    before = [helper.make_node("Gather", [node.input[0], reversed_time], [reversed_input],
                               name=graph.fresh(f"{node.name}_reverse_input"), axis=0)]
    after = []
    if node.output and node.output[0]:
        forward_output = graph.fresh(f"{node.name}_forward_output")
        after.append(helper.make_node("Gather", [forward_output, reversed_time], [node.output[0]],
                                      name=graph.fresh(f"{node.name}_reverse_output"), axis=0))
        node.output[0] = forward_output
    node.input[0] = reversed_input
    _set_attributes(node, direction="forward")
    graph.insert_around(node, before=before, after=after)
    return True


# RNN/GRU/LSTM inputs with a leading num_directions axis: W, R, B,
# initial_h, initial_c, P; and the attributes listing values per direction.
_PER_DIRECTION_INPUTS = (1, 2, 3, 5, 6, 7)
_PER_DIRECTION_ATTRIBUTES = ("activations", "activation_alpha", "activation_beta")


def _bidirectional_recurrence(graph: _Graph, node: Any) -> bool:
    """A bidirectional RNN/GRU/LSTM -> a forward and a reverse one on each
    direction's weights (the reverse one rewritten in turn), Y concatenated
    along the direction axis, Y_h and Y_c along the first."""
    from onnx import helper

    attributes = _attributes(node)
    if attributes.get("direction") != b"bidirectional" or not _has_static_full_sequences(graph, node):
        return False
    nodes, halves = [], []
    for direction in (0, 1):
        bounds = [graph.add_constant(f"{node.name}_{what}", np.array([value], np.int64))
                  for what, value in (("start", direction), ("end", direction + 1), ("axis", 0))]
        inputs = list(node.input)
        for position in _PER_DIRECTION_INPUTS:
            if position < len(inputs) and inputs[position]:
                half = graph.fresh(f"{inputs[position]}_{direction}")
                nodes.append(helper.make_node("Slice", [inputs[position], *bounds], [half],
                                              name=graph.fresh(f"{node.name}_slice")))
                inputs[position] = half
        own = {key: value for key, value in attributes.items() if key != "direction"}
        for key in _PER_DIRECTION_ATTRIBUTES:
            if key in own:
                count = len(own[key]) // 2
                own[key] = own[key][direction * count:(direction + 1) * count]
        outputs = [graph.fresh(f"{name}_{direction}") if name else "" for name in node.output]
        halves.append(helper.make_node(
            node.op_type, inputs, outputs, name=graph.fresh(f"{node.name}_{('forward', 'reverse')[direction]}"),
            direction=("forward", "reverse")[direction], **own,
        ))
    concatenations = [
        helper.make_node("Concat", [halves[0].output[i], halves[1].output[i]], [name],
                         name=graph.fresh(f"{node.name}_concat"), axis=1 if i == 0 else 0)
        for i, name in enumerate(node.output) if name
    ]
    replaced = graph.replace(node, [*nodes, *halves, *concatenations])
    _reverse_recurrence(graph, replaced[len(nodes) + 1])
    return True


def _recurrence(graph: _Graph, node: Any) -> bool:
    return _reverse_recurrence(graph, node) or _bidirectional_recurrence(graph, node)


def _gelu_tanh(graph: _Graph, node: Any) -> bool:
    """Gelu with approximate="tanh" -> its formula, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    (torch-mlir's conversion computes the erf form, up to 2e-3 away)."""
    from onnx import helper

    element_type = graph.element_types.get(node.input[0])
    if _attributes(node).get("approximate", b"none") != b"tanh" or not element_type:
        return False
    dtype = helper.tensor_dtype_to_np_dtype(element_type)
    nodes: list[Any] = []
    add = _node_builder(graph, node, nodes)

    def constant(value: float) -> str:
        return graph.add_constant(f"{node.name}_c", np.array(value, dtype))

    x = node.input[0]
    cube = add("Mul", [add("Mul", [x, x]), x])
    inner = add("Mul", [add("Add", [x, add("Mul", [cube, constant(0.044715)])]), constant(np.sqrt(2 / np.pi))])
    half_x = add("Mul", [x, constant(0.5)])
    add("Mul", [half_x, add("Add", [add("Tanh", [inner]), constant(1.0)])], output=node.output[0])
    graph.replace(node, nodes)
    return True


def _space_to_depth(graph: _Graph, node: Any) -> bool:
    """SpaceToDepth in mode "CRD" -> reshape, transpose, reshape (torch-mlir's
    conversion ignores the mode and computes "DCR"). Needs a static shape."""
    shape = graph.static_shape(node.input[0])
    attributes = _attributes(node)
    block = attributes.get("blocksize", 0)
    if attributes.get("mode", b"DCR") != b"CRD" or shape is None or len(shape) != 4 or block < 1:
        return False
    n, c, h, w = shape
    if h % block or w % block:
        return False
    nodes: list[Any] = []
    add = _node_builder(graph, node, nodes)
    split = graph.add_constant(f"{node.name}_shape", np.array([n, c, h // block, block, w // block, block], np.int64))
    merged = graph.add_constant(f"{node.name}_shape", np.array([n, c * block * block, h // block, w // block], np.int64))
    moved = add("Transpose", [add("Reshape", [node.input[0], split])], perm=[0, 1, 3, 5, 2, 4])
    add("Reshape", [moved, merged], output=node.output[0])
    graph.replace(node, nodes)
    return True


def _dequantize_per_axis(graph: _Graph, node: Any) -> bool:
    """DequantizeLinear with a scale per slice along `axis` -> (x - zero point) * scale
    broadcast along that axis (torch-mlir's conversion applies the wrong scales)."""
    from onnx import TensorProto

    rank = len(graph.shapes.get(node.input[0], [])) or None
    scale_shape = graph.static_shape(node.input[1]) if len(node.input) > 1 else None
    attributes = _attributes(node)
    if rank is None or scale_shape is None or len(scale_shape) != 1 or scale_shape[0] < 2 \
            or attributes.get("block_size", 0):
        return False
    scale_type = graph.element_types.get(node.input[1])
    output_type = attributes.get("output_dtype", 0) or scale_type
    if not scale_type or output_type not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE):
        return False
    axis = attributes.get("axis", 1) % rank
    nodes: list[Any] = []
    add = _node_builder(graph, node, nodes)
    broadcast = [1] * rank
    broadcast[axis] = scale_shape[0]
    along_axis = graph.add_constant(f"{node.name}_shape", np.array(broadcast, np.int64))
    values = add("Cast", [node.input[0]], to=TensorProto.FLOAT)
    if len(node.input) > 2 and node.input[2]:
        zero = add("Reshape", [add("Cast", [node.input[2]], to=TensorProto.FLOAT), along_axis])
        values = add("Sub", [values, zero])
    scale = add("Reshape", [add("Cast", [node.input[1]], to=TensorProto.FLOAT), along_axis])
    add("Cast", [add("Mul", [values, scale])], output=node.output[0], to=output_type)
    graph.replace(node, nodes)
    return True


def _qlinear_matmul(graph: _Graph, node: Any) -> bool:
    """QLinearMatMul of batches (rank above 2) -> an int32 matrix product of the
    inputs less their zero points, scaled by a_scale * b_scale / y_scale in
    double precision, rounded half to even, offset and saturated: what ONNX
    defines (torch-mlir's conversion is wrong beyond rank 2). Needs scalar
    scales and zero points."""
    from onnx import TensorProto, helper

    ranks = [len(graph.shapes[name]) if name in graph.shapes else None for name in (node.input[0], node.input[3])]
    if None in ranks or max(ranks) <= 2 or len(node.input) != 8:
        return False
    for name in (node.input[1], node.input[2], node.input[4], node.input[5], node.input[6], node.input[7]):
        shape = graph.static_shape(name)
        if shape is None or int(np.prod(shape)) != 1:
            return False
    output_type = graph.element_types.get(node.input[7])
    if output_type not in (TensorProto.INT8, TensorProto.UINT8):
        return False
    limits = np.iinfo(helper.tensor_dtype_to_np_dtype(output_type))
    nodes: list[Any] = []
    add = _node_builder(graph, node, nodes)

    def centred(values: str, zero_point: str) -> str:
        return add("Sub", [add("Cast", [values], to=TensorProto.INT32), add("Cast", [zero_point], to=TensorProto.INT32)])

    def double(name: str) -> str:
        return add("Cast", [name], to=TensorProto.DOUBLE)

    product = add("MatMul", [centred(node.input[0], node.input[2]), centred(node.input[3], node.input[5])])
    scale = add("Div", [add("Mul", [node.input[1], node.input[4]]), node.input[6]])
    scaled = add("Add", [add("Mul", [double(product), double(scale)]), double(node.input[7])])
    low = graph.add_constant(f"{node.name}_min", np.array(limits.min, np.float64))
    high = graph.add_constant(f"{node.name}_max", np.array(limits.max, np.float64))
    add("Cast", [add("Clip", [add("Round", [scaled]), low, high])], output=node.output[0], to=output_type)
    graph.replace(node, nodes)
    return True


def _pad_wrap(graph: _Graph, node: Any) -> bool:
    """Pad in mode "wrap" -> slices of the other end concatenated on each padded
    axis (torch-mlir's lowering never finishes). Needs constant pads of at
    most one period and a static shape."""
    shape = graph.static_shape(node.input[0])
    pads = graph.constant(node, 1)
    if _attributes(node).get("mode", b"constant") != b"wrap" or shape is None or pads is None:
        return False
    axes = graph.constant(node, 3)
    rank = len(shape)
    axes = [int(a) % rank for a in axes] if axes is not None else list(range(rank))
    pads = [int(p) for p in pads.ravel()]
    if len(pads) != 2 * len(axes) or any(not 0 <= p <= shape[a] for a, p in zip(axes * 2, pads)):
        return False
    nodes: list[Any] = []
    add = _node_builder(graph, node, nodes)
    current = node.input[0]

    def piece(start: int, end: int, axis: int) -> str:
        bounds = [graph.add_constant(f"{node.name}_{what}", np.array([value], np.int64))
                  for what, value in (("start", start), ("end", end), ("axis", axis))]
        return add("Slice", [current, *bounds])

    for index, axis in enumerate(axes):
        before, after = pads[index], pads[index + len(axes)]
        if before or after:
            parts = ([piece(shape[axis] - before, shape[axis], axis)] if before else []) + [current] + \
                    ([piece(0, after, axis)] if after else [])
            current = add("Concat", parts, axis=axis)
    add("Identity", [current], output=node.output[0])
    graph.replace(node, nodes)
    return True


def _in_float32(graph: _Graph, node: Any) -> bool:
    """A product or log-softmax of float16 values -> the same op on float32
    copies, its results rounded back to float16: onnxruntime's and PyTorch's
    CPU kernels accumulate float16 in float32, and onnx's reference results are
    those (torch-mlir's lowering sums in float16, a unit in the last place off)."""
    from onnx import TensorProto, helper

    float16 = TensorProto.FLOAT16
    if not any(graph.element_types.get(name) == float16 for name in node.input if name) or \
            not all(graph.element_types.get(name) == float16 for name in node.output if name):
        return False
    before, after = [], []
    for position, name in enumerate(node.input):
        if name and graph.element_types.get(name) == float16:
            widened = graph.fresh(f"{name}_float32")
            before.append(helper.make_node("Cast", [name], [widened], name=graph.fresh(f"{node.name}_widen"),
                                           to=TensorProto.FLOAT))
            node.input[position] = widened
    for position, name in enumerate(node.output):
        if name and graph.element_types.get(name) == float16:
            wide = graph.fresh(f"{name}_float32")
            after.append(helper.make_node("Cast", [wide], [name], name=graph.fresh(f"{node.name}_narrow"),
                                          to=float16))
            node.output[position] = wide
    graph.insert_around(node, before=before, after=after)
    return True



def _softmax(graph: _Graph, node: Any) -> bool:
    """Softmax of float16 values (opset 13 on) -> its ONNX function body,
    Exp(x - ReduceMax(x)) / ReduceSum(...), each step rounded to float16 as
    the body's types say and the sum accumulated in float32, as onnx's
    reference computes it (one float32 softmax rounded once is up to 2 units
    in the last place away from it: test_attention_4d_causal_fp16_expanded).
    Where the sum overflows float16 (over 65504 terms near the row's maximum)
    the quotient is taken in float32 instead of the body's zeros.
    Before opset 13 (inputs coerced to 2-D): `_in_float32`."""
    from onnx import TensorProto

    float16 = TensorProto.FLOAT16
    x, y = node.input[0], node.output[0]
    if graph.opset < 13 or graph.element_types.get(x) != float16 or graph.element_types.get(y) != float16:
        return _in_float32(graph, node)
    axis = _attributes(node).get("axis", -1)
    nodes: list[Any] = []
    add = _node_builder(graph, node, nodes)
    axes = graph.add_constant(f"{node.name}_axes", np.array([axis], np.int64))
    maximum = add("ReduceMax", [x, axes], keepdims=1) if graph.opset >= 18 else \
        add("ReduceMax", [x], axes=[axis], keepdims=1)
    exp = add("Exp", [add("Sub", [x, maximum])])
    wide_exp = add("Cast", [exp], to=TensorProto.FLOAT)
    wide_sum = add("ReduceSum", [wide_exp, axes], keepdims=1)
    # The sum as the body rounds it (in float32 to divide), or where that is
    # infinite, the float32 sum.
    rounded = add("Cast", [add("Cast", [wide_sum], to=float16)], to=TensorProto.FLOAT)
    divisor = add("Where", [add("IsInf", [rounded]), wide_sum, rounded])
    add("Cast", [add("Div", [wide_exp, divisor])], output=y, to=float16)
    graph.replace(node, nodes)
    return True


def _gemm(graph: _Graph, node: Any) -> bool:
    """Gemm without C and with alpha other than 1 -> Gemm with alpha 1 and a
    multiplication by alpha (torch-mlir's conversion drops alpha when C is
    absent: A B instead of alpha A B); float16 accumulated in float32 as
    `_in_float32`, alpha applied before the result is rounded back."""
    from onnx import TensorProto, helper

    alpha = _attributes(node).get("alpha", 1.0)
    has_c = len(node.input) > 2 and node.input[2]
    floats = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)
    element_type = graph.element_types.get(node.input[0])
    widened = _in_float32(graph, node)
    if has_c or alpha == 1.0 or element_type not in floats:
        return widened
    if widened:
        element_type = TensorProto.FLOAT
    _set_attributes(node, drop=("alpha",))
    product = graph.fresh(f"{node.name}_product")
    scaled = node.output[0]
    node.output[0] = product
    scale = graph.add_constant(f"{node.name}_alpha", np.array(alpha, helper.tensor_dtype_to_np_dtype(element_type)))
    graph.insert_around(node, after=[helper.make_node("Mul", [product, scale], [scaled],
                                                      name=graph.fresh(f"{node.name}_alpha"))])
    return True


def _matmul_in_float32(graph: _Graph, node: Any) -> bool:
    """Both MatMul rewrites: vector-batch products, float16 accumulation."""
    reshaped = _matmul(graph, node)
    return _in_float32(graph, node) or reshaped


def _lrn(graph: _Graph, node: Any) -> bool:
    """LRN -> x / (bias + alpha / size * sum of squares over the channel window)^beta, the sum a 1x1
    convolution by a band of ones (torch-mlir's conversion goes through aten.avg_pool3d, which has
    no TOSA form). Needs a known channel count."""
    from onnx import helper

    dims = graph.shapes.get(node.input[0])
    element_type = graph.element_types.get(node.input[0])
    if dims is None or len(dims) < 3 or dims[1] is None or not element_type:
        return False
    attributes = _attributes(node)
    size = attributes["size"]
    dtype = helper.tensor_dtype_to_np_dtype(element_type)
    channels = dims[1]
    out, into = np.arange(channels)[:, None], np.arange(channels)[None, :]
    band = (into >= out - (size - 1) // 2) & (into <= out + size // 2)  # ceil((size - 1) / 2) = size // 2
    nodes: list[Any] = []
    add = _node_builder(graph, node, nodes)

    def constant(value: float) -> str:
        return graph.add_constant(f"{node.name}_c", np.array(value, dtype))

    x = node.input[0]
    filters = graph.add_constant(f"{node.name}_band", band.astype(dtype).reshape(channels, channels,
                                                                                 *[1] * (len(dims) - 2)))
    total = add("Conv", [add("Mul", [x, x]), filters])
    scaled = add("Add", [add("Mul", [total, constant(attributes.get("alpha", 1e-4) / size)]),
                         constant(attributes.get("bias", 1.0))])
    add("Div", [x, add("Pow", [scaled, constant(attributes.get("beta", 0.75))])], output=node.output[0])
    graph.replace(node, nodes)
    return True


def _reshape_as_flatten(graph: _Graph, node: Any) -> bool:
    """Reshape of a tensor with a dynamic leading size to [that size, the product of the others] (a
    constant shape such as [0, -1] or [-1, 64]) -> Flatten (torch-mlir's TOSA conversion of a Reshape
    reads the dynamic size at run time, which TOSA cannot; its Flatten keeps the size dynamic)."""
    dims = graph.shapes.get(node.input[0])
    shape = graph.constant(node, 1)
    if (dims is None or len(dims) < 2 or shape is None or shape.shape != (2,)
            or _attributes(node).get("allowzero", 0) or dims[0] is not None):
        return False
    for axis in range(1, len(dims)):
        if None in dims[:axis][1:] or None in dims[axis:]:
            continue
        inner = int(np.prod(dims[axis:], dtype=np.int64))
        if list(shape) in ([0, inner], [-1, inner], [0, -1]) and (axis == 1 or list(shape) != [0, -1]):
            graph.replace(node, [_flatten(node, axis)])
            return True
    return False


def _flatten(node: Any, axis: int) -> Any:
    from onnx import helper

    return helper.make_node("Flatten", [node.input[0]], [node.output[0]], name=node.name, axis=axis)


# Rewrites for an import to one level only (where the other levels' lowerings are right).
_LEVEL_REWRITES = {"tosa": {"Mod": _python_mod_of_infinite_divisors}}

# Rewrites tried only after torch-mlir fails on the op (its own conversion is used where it works).
_FALLBACKS = {"LRN": _lrn, "Reshape": _reshape_as_flatten}


def decompose(proto: Any, op_types: set[str]) -> Any:
    """A copy of `proto` whose nodes of `op_types` that have a fallback rewrite are rewritten,
    shapes inferred again; `proto` itself when none is."""
    import onnx

    wanted = op_types & set(_FALLBACKS)
    if not any(node.op_type in wanted for node in proto.graph.node):
        return proto
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    opset = next((o.version for o in copy.opset_import if o.domain in ("", "ai.onnx")), 0)
    graph = _Graph(copy.graph, opset)
    if not sum(_FALLBACKS[node.op_type](graph, node) for node in list(copy.graph.node) if node.op_type in wanted):
        return proto
    return onnx.shape_inference.infer_shapes(copy, data_prop=True)


_REWRITES = {
    "Attention": _in_float32,
    "Cast": _saturating_float8_cast,
    "CastLike": _saturating_float8_cast,
    "Compress": _compress,
    "DequantizeLinear": _dequantize_per_axis,
    "Gelu": _gelu_tanh,
    "Pad": _pad_wrap,
    "QLinearMatMul": _qlinear_matmul,
    "SpaceToDepth": _space_to_depth,
    "CumProd": _cumprod,
    "GRU": _recurrence,
    "LpNormalization": _lp_normalization,
    "LSTM": _recurrence,
    "RNN": _recurrence,
    "Resize": _resize,
    "MatMul": _matmul_in_float32,
    "Gemm": _gemm,
    "Softmax": _softmax,
    "LogSoftmax": _in_float32,
    "Conv": _explicit_pads,
    "ConvTranspose": _explicit_pads,
    "AveragePool": _explicit_pads,
    "MaxPool": _explicit_pads,
    "LpPool": _explicit_pads,
}
