"""A TOSA graph (`tosa_graph.Graph`) written as an ONNX model (opset 21).

Each TOSA op maps to one ONNX node or a short chain of them, built with
`onnx.helper`. TOSA's convolutions and pools work on NHWC tensors with OHWI
filters; ONNX's on NCHW with OIHW: the writer transposes constant filters
itself and puts Transpose nodes around the op for the activations, then
cancels the pairs of transposes that undo each other (torch-mlir wraps each
NCHW convolution in NCHW->NHWC->NCHW transposes). Weights become
initializers; those of `EXTERNAL_DATA_THRESHOLD` bytes or more are saved as
external data beside the model. An op without a mapping is refused before
anything is written, with an `UnsupportedOpError` naming each kind and its
count (`graph_writer`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from nnforge.errors import CompileError, SaveError
from nnforge.exporters.graph_writer import (TO_NCHW, TO_NHWC, GraphBuilder, Refusals, Refused, io_names, is_relu,
                                            write_nodes)
from nnforge.exporters.tosa_graph import Graph, Node, TensorType, numpy_dtype

OPSET = 21
IR_VERSION = 10  # the IR version of opset 21
# Initializers of this many bytes or more go to the external data file.
EXTERNAL_DATA_THRESHOLD = 1 << 20

# TOSA ops that are one ONNX node with the same operands.
_ONE_TO_ONE = {
    "tosa.add": "Add", "tosa.sub": "Sub", "tosa.intdiv": "Div", "tosa.maximum": "Max",
    "tosa.minimum": "Min", "tosa.pow": "Pow", "tosa.abs": "Abs", "tosa.exp": "Exp",
    "tosa.log": "Log", "tosa.tanh": "Tanh", "tosa.sigmoid": "Sigmoid", "tosa.erf": "Erf",
    "tosa.floor": "Floor", "tosa.ceil": "Ceil", "tosa.reciprocal": "Reciprocal", "tosa.sin": "Sin",
    "tosa.cos": "Cos", "tosa.equal": "Equal", "tosa.greater": "Greater",
    "tosa.greater_equal": "GreaterOrEqual", "tosa.logical_and": "And", "tosa.logical_or": "Or",
    "tosa.logical_xor": "Xor", "tosa.logical_not": "Not", "tosa.bitwise_and": "BitwiseAnd",
    "tosa.bitwise_or": "BitwiseOr", "tosa.bitwise_xor": "BitwiseXor", "tosa.bitwise_not": "BitwiseNot",
    "tosa.select": "Where", "tosa.identity": "Identity",
}
_REDUCTIONS = {
    "tosa.reduce_sum": "ReduceSum", "tosa.reduce_max": "ReduceMax", "tosa.reduce_min": "ReduceMin",
    "tosa.reduce_product": "ReduceProd", "tosa.reduce_all": "ReduceMin", "tosa.reduce_any": "ReduceMax",
}


def _onnx():
    try:
        import onnx
    except ImportError as error:
        from nnforge.errors import ModelLoadError

        raise ModelLoadError("exporting ONNX needs the onnx package: pip install 'nnforge[exchange]'") from error
    return onnx


class _Builder(GraphBuilder):
    """The ONNX nodes and initializers being written for one graph."""

    def __init__(self, graph: Graph):
        super().__init__(graph)
        self.nodes: list = []
        self.initializers: dict[str, np.ndarray] = {}
        self.float32_of: dict[str, str] = {}  # a bfloat16 value -> the float32 value it was rounded from
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"%{hint}{self._count}"

    def value(self, name: str) -> str:
        """`name` as an ONNX value: a constant of the graph becomes an initializer."""
        if name in self.graph.constants and name not in self.initializers:
            self.initializers[name] = self.graph.constants[name]
        return name

    def array(self, array: np.ndarray, hint: str = "c") -> str:
        name = self.fresh(hint)
        self.initializers[name] = array
        return name

    def node(self, op_type: str, inputs: Sequence[str], output: str | None = None, **attributes) -> str:
        onnx = _onnx()
        output = output or self.fresh(op_type)
        self.nodes.append(onnx.helper.make_node(op_type, list(inputs), [output], **attributes))
        return output


def _float_only(node: Node, builder: _Builder) -> None:
    dtype = builder.graph.types[node.inputs[0]].dtype
    if not np.issubdtype(dtype, np.floating) or node.output_types[0].dtype != dtype:
        raise Refused(f"integer or mixed types ({dtype} -> {node.output_types[0].dtype})")


def _nchw(builder: _Builder, name: str, rank: int) -> str:
    return builder.node("Transpose", [builder.value(name)], perm=TO_NCHW[rank])


def _filter(builder: _Builder, name: str, permutation: list[int], shape: tuple[int, ...] | None = None) -> str:
    """A filter in ONNX's layout: transposed here when constant, by a node otherwise."""
    weights = builder.constant(name)
    if weights is not None:
        weights = np.ascontiguousarray(weights.transpose(permutation))
        return builder.array(weights.reshape(shape) if shape else weights, "w")
    moved = builder.node("Transpose", [builder.value(name)], perm=permutation)
    if shape:
        moved = builder.node("Reshape", [moved, builder.array(np.array(shape, np.int64), "shape")])
    return moved


def _bias(builder: _Builder, name: str, channels: int) -> str | None:
    """A constant bias as a vector of `channels`; None for one computed at run time (added after the op)."""
    bias = builder.constant(name)
    if bias is None:
        return None
    return builder.array(np.ascontiguousarray(np.broadcast_to(bias, (channels,))), "b")


def _to_result(builder: _Builder, node: Node, nchw: str, bias: str | None, rank: int) -> None:
    """The op's NCHW result back in TOSA's NHWC layout as its result, a run-time bias added there."""
    if bias is not None:
        builder.node("Transpose", [nchw], node.outputs[0], perm=TO_NHWC[rank])
        return
    nhwc = builder.node("Transpose", [nchw], perm=TO_NHWC[rank])
    builder.node("Add", [nhwc, builder.value(node.inputs[2])], node.outputs[0])


def _convolution(builder: _Builder, node: Node) -> None:
    _float_only(node, builder)
    builder.require_zero(node.inputs[3:5], "zero points")
    rank = len(builder.graph.types[node.inputs[0]].shape)
    out_channels = node.output_types[0].shape[-1]
    attributes = {"strides": node.attributes["stride"], "dilations": node.attributes["dilation"]}
    pad = node.attributes["pad"]
    if node.kind == "tosa.depthwise_conv2d":
        kh, kw, channels, multiplier = builder.graph.types[node.inputs[1]].shape
        weights = _filter(builder, node.inputs[1], [2, 3, 0, 1], (channels * multiplier, 1, kh, kw))
        attributes["group"] = channels
    else:
        weights = _filter(builder, node.inputs[1], TO_NCHW[rank])
    # TOSA: [begin, end] per spatial axis; ONNX: all begins, then all ends.
    attributes["pads"] = pad[0::2] + pad[1::2]
    bias = _bias(builder, node.inputs[2], out_channels)
    convolved = builder.node("Conv", [_nchw(builder, node.inputs[0], rank), weights, *([bias] if bias else [])],
                             **attributes)
    _to_result(builder, node, convolved, bias, rank)


def _transpose_convolution(builder: _Builder, node: Node) -> None:
    _float_only(node, builder)
    builder.require_zero(node.inputs[3:5], "zero points")
    out_pad = node.attributes["out_pad"]  # top, bottom, left, right
    stride = node.attributes["stride"]
    begins = [-out_pad[0], -out_pad[2]]
    ends = [-out_pad[1], -out_pad[3]]
    output_padding = [max(0, -end) for end in ends]
    if any(b < 0 for b in begins) or any(p >= s for p, s in zip(output_padding, stride)):
        raise Refused(f"out_pad {out_pad} (no ONNX ConvTranspose padding matches)")
    ends = [max(0, end) for end in ends]
    bias = _bias(builder, node.inputs[2], node.output_types[0].shape[-1])
    convolved = builder.node(
        "ConvTranspose",
        [_nchw(builder, node.inputs[0], 4), _filter(builder, node.inputs[1], [3, 0, 1, 2]), *([bias] if bias else [])],
        strides=stride, pads=begins + ends, output_padding=output_padding,
    )
    _to_result(builder, node, convolved, bias, 4)


def _pool(builder: _Builder, node: Node) -> None:
    pad = node.attributes["pad"]
    attributes = {"kernel_shape": node.attributes["kernel"], "strides": node.attributes["stride"],
                  "pads": pad[0::2] + pad[1::2]}
    if node.kind == "tosa.avg_pool2d":
        _float_only(node, builder)
        builder.require_zero(node.inputs[1:3], "zero points")
        op_type, attributes["count_include_pad"] = "AveragePool", 0
    else:
        op_type = "MaxPool"
    pooled = builder.node(op_type, [_nchw(builder, node.inputs[0], 4)], **attributes)
    builder.node("Transpose", [pooled], node.outputs[0], perm=TO_NHWC[4])


def _matmul(builder: _Builder, node: Node) -> None:
    """MatMul in the result's type, the operands cast to it: exact for integers into 32 or 64 bits
    (onnxruntime's MatMul has them) and for float16 into float32 (the products are exact)."""
    builder.require_zero(node.inputs[2:4], "zero points")
    target = node.output_types[0].dtype
    sources = {builder.dtype(name) for name in node.inputs[:2]}
    widened = (target.kind in "iu" and target.itemsize >= 4 and all(d.kind in "iu" for d in sources)) or (
        target == np.float32 and sources <= {np.dtype(np.float16), np.dtype(np.float32)})
    if not widened:
        _float_only(node, builder)
    onnx = _onnx()
    operands = [builder.value(name) if builder.dtype(name) == target else
                builder.node("Cast", [builder.value(name)], to=onnx.helper.np_dtype_to_tensor_dtype(target))
                for name in node.inputs[:2]]
    builder.node("MatMul", operands, node.outputs[0])


def _mul(builder: _Builder, node: Node) -> None:
    if len(node.inputs) > 2:
        builder.require_zero(node.inputs[2:3], "shift")
    builder.node("Mul", [builder.value(node.inputs[0]), builder.value(node.inputs[1])], node.outputs[0])


def _negate(builder: _Builder, node: Node) -> None:
    builder.require_zero(node.inputs[1:3], "zero points")
    builder.node("Neg", [builder.value(node.inputs[0])], node.outputs[0])


def _rsqrt(builder: _Builder, node: Node) -> None:
    builder.node("Reciprocal", [builder.node("Sqrt", [builder.value(node.inputs[0])])], node.outputs[0])


def _clamp(builder: _Builder, node: Node) -> None:
    if is_relu(node):
        builder.node("Relu", [builder.value(node.inputs[0])], node.outputs[0])
        return
    dtype = node.output_types[0].dtype
    bounds = [builder.array(np.array(node.attributes[bound], dtype), "clip") for bound in ("min_val", "max_val")]
    builder.node("Clip", [builder.value(node.inputs[0]), *bounds], node.outputs[0])


def _cast(builder: _Builder, node: Node) -> None:
    onnx = _onnx()
    source = builder.graph.types[node.inputs[0]].dtype
    target = node.output_types[0].dtype
    value = builder.value(node.inputs[0])
    if np.issubdtype(source, np.floating) and np.issubdtype(target, np.integer):
        value = builder.node("Round", [value])  # TOSA rounds to nearest even; ONNX's Cast truncates
    # A cast to float8 in TOSA (MLIR's truncf) does not saturate: out of range is infinite or NaN,
    # where ONNX's Cast saturates unless told not to.
    saturate = {"saturate": 0} if target.name.startswith("float8") else {}
    builder.node("Cast", [value], node.outputs[0], to=onnx.helper.np_dtype_to_tensor_dtype(target), **saturate)


def _reshape(builder: _Builder, node: Node) -> None:
    shape = builder.shape(node.inputs[1])
    builder.node("Reshape", [builder.value(node.inputs[0]), builder.array(np.array(shape, np.int64), "shape")],
                 node.outputs[0], allowzero=int(0 in shape))


def _transpose(builder: _Builder, node: Node) -> None:
    builder.node("Transpose", [builder.value(node.inputs[0])], node.outputs[0], perm=node.attributes["perms"])


def _reduce(builder: _Builder, node: Node) -> None:
    axes = builder.array(np.array([node.attributes["axis"]], np.int64), "axes")
    builder.node(_REDUCTIONS[node.kind], [builder.value(node.inputs[0]), axes], node.outputs[0], keepdims=1)


def _argmax(builder: _Builder, node: Node) -> None:
    """ArgMax; of floats with TOSA's default nan_mode (PROPAGATE: a NaN is the maximum), the first NaN's
    position where the axis has one (onnxruntime's ArgMax passes NaNs over)."""
    onnx = _onnx()
    x, axis = builder.value(node.inputs[0]), node.attributes["axis"]
    indices = builder.node("ArgMax", [x], axis=axis, keepdims=0)
    if np.issubdtype(builder.dtype(node.inputs[0]), np.floating) \
            and "IGNORE" not in str(node.attributes.get("nan_mode", "")):
        nan = builder.node("Cast", [builder.node("IsNaN", [x])], to=onnx.TensorProto.FLOAT)
        first_nan = builder.node("ArgMax", [nan], axis=axis, keepdims=0)
        has_nan = builder.node("ReduceMax", [nan, builder.array(np.array([axis], np.int64), "axes")], keepdims=0)
        has_nan = builder.node("Cast", [has_nan], to=onnx.TensorProto.BOOL)
        indices = builder.node("Where", [has_nan, first_nan, indices])
    builder.node("Cast", [indices], node.outputs[0],
                 to=onnx.helper.np_dtype_to_tensor_dtype(node.output_types[0].dtype))


def _concat(builder: _Builder, node: Node) -> None:
    builder.node("Concat", [builder.value(name) for name in node.inputs], node.outputs[0],
                 axis=node.attributes["axis"])


def _slice(builder: _Builder, node: Node) -> None:
    starts = builder.shape(node.inputs[1])
    sizes = builder.shape(node.inputs[2])
    ends = [start + size if size >= 0 else np.iinfo(np.int64).max for start, size in zip(starts, sizes)]
    arrays = [builder.array(np.array(values, np.int64), hint)
              for values, hint in ((starts, "starts"), (ends, "ends"), (list(range(len(starts))), "axes"))]
    builder.node("Slice", [builder.value(node.inputs[0]), *arrays], node.outputs[0])


def _pad(builder: _Builder, node: Node) -> None:
    padding = builder.shape(node.inputs[1])
    pads = builder.array(np.array(padding[0::2] + padding[1::2], np.int64), "pads")
    fill = builder.constant(node.inputs[2])
    if fill is not None:
        value = builder.array(fill.reshape(()), "fill")
    else:
        value = builder.node("Reshape", [builder.value(node.inputs[2]), builder.array(np.zeros(0, np.int64))])
    builder.node("Pad", [builder.value(node.inputs[0]), pads, value], node.outputs[0])


def _tile(builder: _Builder, node: Node) -> None:
    multiples = builder.array(np.array(builder.shape(node.inputs[1]), np.int64), "repeats")
    builder.node("Tile", [builder.value(node.inputs[0]), multiples], node.outputs[0])


def _reverse(builder: _Builder, node: Node) -> None:
    arrays = [builder.array(np.array([value], np.int64))
              for value in (-1, np.iinfo(np.int64).min, node.attributes["axis"], -1)]
    builder.node("Slice", [builder.value(node.inputs[0]), *arrays], node.outputs[0])


def _gather(builder: _Builder, node: Node) -> None:
    # TOSA: out[n, w, c] = values[n, indices[n, w], c]; GatherND with one batch axis.
    onnx = _onnx()
    indices = builder.node("Cast", [builder.value(node.inputs[1])], to=onnx.TensorProto.INT64)
    indices = builder.node("Unsqueeze", [indices, builder.array(np.array([2], np.int64), "axes")])
    builder.node("GatherND", [builder.value(node.inputs[0]), indices], node.outputs[0], batch_dims=1)


def _scatter(builder: _Builder, node: Node) -> None:
    # TOSA: out = values_in, then out[n, indices[n, w], c] = input[n, w, c]; ScatterND on (n, index) pairs.
    onnx = _onnx()
    batch, width = builder.graph.types[node.inputs[1]].shape
    if batch is None or width is None:
        raise Refused("dynamic indices (the batch coordinates are written as a constant)")
    rows = np.ascontiguousarray(np.broadcast_to(np.arange(batch, dtype=np.int64).reshape(batch, 1, 1),
                                                (batch, width, 1)))
    indices = builder.node("Cast", [builder.value(node.inputs[1])], to=onnx.TensorProto.INT64)
    indices = builder.node("Unsqueeze", [indices, builder.array(np.array([2], np.int64), "axes")])
    pairs = builder.node("Concat", [builder.array(rows, "rows"), indices], axis=2)
    builder.node("ScatterND", [builder.value(node.inputs[0]), pairs, builder.value(node.inputs[2])], node.outputs[0])


def _arithmetic_right_shift_64(builder: _Builder, node: Node) -> None:
    """x >> y of int64 on bits: a negative x as the complement of its complement's logical shift
    (BitShift is unsigned only); a shift out of [0, 64) as one of 63, filling with the sign."""
    onnx = _onnx()
    x, y = (builder.value(name) for name in node.inputs)
    zero = builder.array(np.array(0, np.int64), "zero")
    negative = builder.node("Less", [x, zero])
    magnitude = builder.node("Where", [negative, builder.node("BitwiseNot", [x]), x])
    beyond = builder.node("Or", [builder.node("Less", [y, zero]),
                                 builder.node("GreaterOrEqual", [y, builder.array(np.array(64, np.int64), "width")])])
    y = builder.node("Where", [beyond, builder.array(np.array(63, np.int64), "last"), y])
    shifted = builder.node("BitShift", [builder.node("Cast", [value], to=onnx.TensorProto.UINT64)
                                        for value in (magnitude, y)], direction="RIGHT")
    shifted = builder.node("Cast", [shifted], to=onnx.TensorProto.INT64)
    builder.node("Where", [negative, builder.node("BitwiseNot", [shifted]), shifted], node.outputs[0])


def _arithmetic_right_shift(builder: _Builder, node: Node) -> None:
    # floor(x / 2**y) (with round: floor(x / 2**y + 1/2)), exact in float64 for integers of 32 bits or fewer.
    onnx = _onnx()
    dtype = node.output_types[0].dtype
    if dtype == np.int64 and not node.attributes.get("round"):
        _arithmetic_right_shift_64(builder, node)
        return
    if dtype.kind != "i" or dtype.itemsize > 4:
        raise Refused(f"{dtype} operands (computed exactly in float64 for signed integers of 32 bits or fewer; "
                      "int64 without rounding on bits)")
    x, y = (builder.node("Cast", [builder.value(name)], to=onnx.TensorProto.DOUBLE) for name in node.inputs)
    # A negative shift fills with the sign bit, as one past the width does (ONNX's BitShift).
    width = builder.array(np.array(8.0 * dtype.itemsize), "width")
    y = builder.node("Where", [builder.node("Less", [y, builder.array(np.array(0.0), "zero")]), width, y])
    quotient = builder.node("Div", [x, builder.node("Pow", [builder.array(np.array(2.0), "two"), y])])
    if node.attributes.get("round"):
        quotient = builder.node("Add", [quotient, builder.array(np.array(0.5), "half")])
    builder.node("Cast", [builder.node("Floor", [quotient])], node.outputs[0],
                 to=onnx.helper.np_dtype_to_tensor_dtype(dtype))


def _logical_left_shift(builder: _Builder, node: Node) -> None:
    """x << y on the bits of integers of any sign: BitShift (unsigned only in opset 21) between casts to
    and from an unsigned type, 0 where y is negative or not below the width (ONNX's and PyTorch's left
    shift; x86 would take y modulo the width). 8- and 16-bit integers go through 32 bits (onnxruntime's
    Where lacks them); the cast back keeps the low bits."""
    onnx = _onnx()
    dtype = node.output_types[0].dtype
    if dtype.kind not in "iu":
        raise Refused(f"{dtype} operands")
    wide = np.dtype(np.int32) if dtype.itemsize < 4 else dtype
    x, y = (builder.node("Cast", [builder.value(name)], to=onnx.helper.np_dtype_to_tensor_dtype(wide))
            for name in node.inputs)
    unsigned = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(f"uint{8 * wide.itemsize}"))
    shifted = builder.node("BitShift", [builder.node("Cast", [value], to=unsigned) for value in (x, y)],
                           direction="LEFT")
    zero = builder.array(np.array(0, wide), "zero")
    in_range = builder.node("And", [builder.node("GreaterOrEqual", [y, zero]),
                                    builder.node("Less", [y, builder.array(np.array(8 * dtype.itemsize, wide), "width")])])
    shifted = builder.node("Cast", [shifted], to=onnx.helper.np_dtype_to_tensor_dtype(wide))
    if wide == dtype:
        builder.node("Where", [in_range, shifted, zero], node.outputs[0])
    else:
        builder.node("Cast", [builder.node("Where", [in_range, shifted, zero])], node.outputs[0],
                     to=onnx.helper.np_dtype_to_tensor_dtype(dtype))


def _one_to_one(builder: _Builder, node: Node) -> None:
    builder.node(_ONE_TO_ONE[node.kind], [builder.value(name) for name in node.inputs], node.outputs[0])


# Integer types onnxruntime's CPU Max and Min lack (it has them for 32 and 64 bits).
_NARROW_INTEGERS = (np.int8, np.uint8, np.int16, np.uint16)


def _extremum(builder: _Builder, node: Node) -> None:
    """Max or Min; of 8- or 16-bit integers in int32 between casts (exact), which onnxruntime runs."""
    dtype = node.output_types[0].dtype
    if dtype not in _NARROW_INTEGERS:
        _one_to_one(builder, node)
        return
    onnx = _onnx()
    wide = [builder.node("Cast", [builder.value(name)], to=onnx.TensorProto.INT32) for name in node.inputs]
    builder.node("Cast", [builder.node(_ONE_TO_ONE[node.kind], wide)], node.outputs[0],
                 to=onnx.helper.np_dtype_to_tensor_dtype(dtype))


def _select(builder: _Builder, node: Node) -> None:
    """Where; between booleans as (c and a) or (not c and b), which onnxruntime runs."""
    if node.output_types[0].dtype != np.bool_:
        _one_to_one(builder, node)
        return
    condition, chosen, other = (builder.value(name) for name in node.inputs)
    taken = builder.node("And", [condition, chosen])
    left = builder.node("And", [builder.node("Not", [condition]), other])
    builder.node("Or", [taken, left], node.outputs[0])


_WRITERS: dict[str, Callable[[_Builder, Node], None]] = {
    **{kind: _one_to_one for kind in _ONE_TO_ONE},
    "tosa.maximum": _extremum, "tosa.minimum": _extremum, "tosa.select": _select,
    **{kind: _reduce for kind in _REDUCTIONS},
    "tosa.conv2d": _convolution, "tosa.conv3d": _convolution, "tosa.depthwise_conv2d": _convolution,
    "tosa.transpose_conv2d": _transpose_convolution,
    "tosa.avg_pool2d": _pool, "tosa.max_pool2d": _pool, "tosa.matmul": _matmul, "tosa.mul": _mul,
    "tosa.negate": _negate, "tosa.rsqrt": _rsqrt, "tosa.clamp": _clamp, "tosa.cast": _cast,
    "tosa.reshape": _reshape, "tosa.transpose": _transpose, "tosa.argmax": _argmax,
    "tosa.concat": _concat, "tosa.slice": _slice, "tosa.pad": _pad, "tosa.tile": _tile,
    "tosa.reverse": _reverse, "tosa.gather": _gather, "tosa.scatter": _scatter,
    "tosa.arithmetic_right_shift": _arithmetic_right_shift, "tosa.logical_left_shift": _logical_left_shift,
}


# Ops written on bfloat16 values as they are; the others compute in float32 between casts.
_BFLOAT16_AS_IS = {"tosa.cast", "tosa.reshape", "tosa.identity"}


def _write(builder: _Builder, node: Node) -> None:
    """Writes `node`; on bfloat16 values (which onnxruntime's CPU kernels mostly lack) in float32:
    its operands cast up (or taken from the float32 op that computed them) and its results rounded
    to bfloat16 for the ops and graph outputs that take bfloat16."""
    writer = _WRITERS.get(node.kind)
    if writer is None:
        raise Refused("no ONNX mapping")
    bfloat16 = numpy_dtype("bf16")
    types = [builder.graph.types.get(name) for name in node.inputs] + node.output_types
    if node.kind in _BFLOAT16_AS_IS or not any(kind is not None and kind.dtype == bfloat16 for kind in types):
        writer(builder, node)
        return
    onnx = _onnx()
    float32 = np.dtype(np.float32)

    def widened(kind: TensorType | None) -> TensorType | None:
        return TensorType(float32, kind.shape) if kind is not None and kind.dtype == bfloat16 else kind

    inputs = []
    for name in node.inputs:
        kind = builder.graph.types.get(name)
        if kind is None or kind.dtype != bfloat16:
            inputs.append(name)
            continue
        constant = builder.constant(name)
        if constant is not None:
            wide = builder.fresh("f32")
            builder.graph.constants[wide] = constant.astype(float32)
        elif name in builder.float32_of:
            wide = builder.float32_of[name]
        else:
            wide = builder.node("Cast", [builder.value(name)], to=onnx.TensorProto.FLOAT)
        builder.graph.types[wide] = widened(kind)
        inputs.append(wide)
    outputs = [builder.fresh("f32") if kind is not None and kind.dtype == bfloat16 else name
               for name, kind in zip(node.outputs, node.output_types)]
    for wide, kind in zip(outputs, node.output_types):
        builder.graph.types[wide] = widened(kind)
    writer(builder, Node(node.kind, inputs, outputs, node.attributes, [widened(k) for k in node.output_types],
                         node.location))
    for name, wide in zip(node.outputs, outputs):
        if wide != name:  # unused roundings are dropped with the other dead nodes
            builder.node("Cast", [wide], name, to=onnx.TensorProto.BFLOAT16)
            builder.float32_of[name] = wide


def supported_kinds() -> list[str]:
    """The TOSA ops the writer maps."""
    return sorted(_WRITERS)


def cancel_transposes(nodes: list, keep: set[str]) -> list:
    """Merges chains of Transpose nodes (dropping those that compose to the
    identity) and removes the nodes nothing uses any more."""
    onnx = _onnx()
    producer = {node.output[0]: node for node in nodes if node.op_type == "Transpose"}
    renamed: dict[str, str] = {}
    for node in nodes:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        if node.op_type != "Transpose" or node.input[0] not in producer:
            continue
        first = producer[node.input[0]]
        inner = list(onnx.helper.get_attribute_value(first.attribute[0]))
        outer = list(onnx.helper.get_attribute_value(node.attribute[0]))
        composed = [inner[axis] for axis in outer]
        if composed == sorted(composed) and node.output[0] not in keep:
            renamed[node.output[0]] = first.input[0]
        else:
            node.input[0] = first.input[0]
            del node.attribute[:]
            node.attribute.append(onnx.helper.make_attribute("perm", composed))
    return _live(nodes, keep)


def _live(nodes: list, keep: set[str]) -> list:
    used = set(keep)
    live = []
    for node in reversed(nodes):
        if any(name in used for name in node.output):
            live.append(node)
            used.update(node.input)
    return live[::-1]


def _value_info(name: str, kind, dims: Sequence[str | int | None] | None = None):
    onnx = _onnx()
    shape = [size if size is not None else (dims[axis] if dims and isinstance(dims[axis], str)
                                             else f"{name}_dim{axis}")
             for axis, size in enumerate(kind.shape)]
    return onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(kind.dtype), shape)


def _source_dtype(dtype: np.dtype, declared: int | None) -> np.dtype | None:
    """The source's declared type of an input or output where it differs from the TOSA level's in
    signedness only (torch-mlir imports unsigned integers as signless ones), else None."""
    if not declared:
        return None
    source = np.dtype(_onnx().helper.tensor_dtype_to_np_dtype(declared))
    if source != dtype and source.name.removeprefix("u") == dtype.name.removeprefix("u") and "int" in dtype.name:
        return source
    return None


def to_model(graph: Graph, input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
             *, input_dims: Sequence[Sequence[str | int | None]] | None = None,
             input_types: Sequence[int | None] | None = None, output_types: Sequence[int | None] | None = None,
             name: str = "nnforge"):
    """The graph as an `onnx.ModelProto`; UnsupportedOpError for ops without a mapping.

    `input_dims`: the source's input dimensions (its `dim_param` names are kept). `input_types`,
    `output_types`: the source's ONNX element types; an unsigned integer that the TOSA level holds as
    the signless integer of its width is declared as the source declares it and cast, bit for bit,
    at the graph's edge.
    """
    onnx = _onnx()
    builder = _Builder(graph)
    refusals = Refusals()
    write_nodes(graph, builder, _write, refusals)
    refusals.raise_any("the export to ONNX")
    input_names, output_names = io_names(graph, input_names, output_names)
    if len(input_names) != len(graph.inputs) or len(output_names) != len(graph.outputs):
        raise CompileError(f"{len(input_names)} input and {len(output_names)} output names for a graph of "
                           f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs")
    renamed: dict[str, str] = {}
    casts_in, declared_inputs = [], []
    for index, (value, input_name) in enumerate(zip(graph.inputs, input_names)):
        kind = graph.types[value]
        source = _source_dtype(kind.dtype, input_types[index] if input_types else None)
        renamed[value] = input_name if source is None else builder.fresh("signless")
        if source is not None:
            casts_in.append(onnx.helper.make_node("Cast", [input_name], [renamed[value]],
                                                  to=onnx.helper.np_dtype_to_tensor_dtype(kind.dtype)))
            kind = TensorType(source, kind.shape)
        declared_inputs.append(_value_info(input_name, kind, input_dims[index] if input_dims else None))
    produced = {output for node in builder.nodes for output in node.output}
    declared_outputs = []
    for index, (value, output) in enumerate(zip(graph.outputs, output_names)):
        kind = graph.types[value]
        source = _source_dtype(kind.dtype, output_types[index] if output_types else None)
        if source is not None:
            builder.node("Cast", [builder.value(value)], output, to=onnx.helper.np_dtype_to_tensor_dtype(source))
            kind = TensorType(source, kind.shape)
        elif value in produced and value not in renamed:
            renamed[value] = output
        else:  # an input, a constant or a value returned twice: copied under its name
            builder.node("Identity", [builder.value(value)], output)
        declared_outputs.append(_value_info(output, kind))
    for node in builder.nodes:
        node.input[:] = [renamed.get(n, n) for n in node.input]
        node.output[:] = [renamed.get(n, n) for n in node.output]
    nodes = cancel_transposes(casts_in + builder.nodes, set(output_names))
    used = {name for node in nodes for name in node.input}
    initializers = [onnx.numpy_helper.from_array(np.asarray(array), name)
                    for name, array in builder.initializers.items() if name in used]
    onnx_graph = onnx.helper.make_graph(nodes, name, declared_inputs, declared_outputs, initializers)
    return onnx.helper.make_model(onnx_graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                  ir_version=IR_VERSION, producer_name="nnforge")


# The oldest opset `lowest_opset` writes (the floor for exported models).
MIN_OPSET = 17
# (op, version) pairs whose version only added the attributes named: a node without them means the same under
# the op's previous version. onnxruntime runs AveragePool-19 (dilations) through a generic kernel, several times
# slower than AveragePool-11's pooling kernel.
_ADDED_ATTRIBUTES = {("AveragePool", 19): ("dilations",)}


def _same_since(node, version: int) -> bool:
    """Whether `node` means under the default domain's `version` what it means under OPSET."""
    from onnx import defs

    try:
        older = defs.get_schema(node.op_type, version, "").since_version
    except defs.SchemaError:  # the op is newer than `version`
        return False
    newer = defs.get_schema(node.op_type, OPSET, "").since_version
    while newer > older:
        added = _ADDED_ATTRIBUTES.get((node.op_type, newer))
        if added is None or any(item.name in added for item in node.attribute):
            return False
        newer = defs.get_schema(node.op_type, newer - 1, "").since_version
    return True


def lowest_opset(model) -> int:
    """Sets `model`'s default-domain opset to the oldest, from MIN_OPSET, under which each of its nodes means
    what it does under OPSET (runtimes may pick other kernels by version); returns it."""
    nodes = list(model.graph.node)
    if any(item.type in (item.GRAPH, item.GRAPHS) for node in nodes for item in node.attribute) \
            or any(node.domain not in ("", "ai.onnx") for node in nodes):
        return OPSET
    version = next(v for v in range(MIN_OPSET, OPSET + 1) if all(_same_since(node, v) for node in nodes))
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = version
    return version


def save(model, path: Path) -> None:
    """Writes `model` to `path` (large initializers beside it as `<name>.data`) and checks the file fully."""
    onnx = _onnx()
    path = Path(path)
    external = any(t.data_location == 0 and len(t.raw_data) >= EXTERNAL_DATA_THRESHOLD
                   for t in model.graph.initializer)
    location = path.name + ".data"
    try:
        if external:
            (path.parent / location).unlink(missing_ok=True)  # onnx appends to an existing file
        onnx.save_model(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                        location=location, size_threshold=EXTERNAL_DATA_THRESHOLD)
    except OSError as error:
        raise SaveError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise CompileError(f"the exported ONNX model {path} does not pass onnx's checker: {error}") from None
