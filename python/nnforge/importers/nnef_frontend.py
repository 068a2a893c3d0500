"""NNEF models -> MLIR: the graph read by the `nnef` package, written as TOSA.

`import_nnef(path, level=...)` reads an NNEF model (a folder holding
graph.nnef and .dat tensor files, or a graph.nnef file) with
`nnef.load_graph`, lowering NNEF's compound ops (softmax, linear,
batch_normalization, ...) to its primitives as the package defines them,
infers shapes with `nnef.infer_shapes`, and writes each primitive as TOSA
text: NNEF's NCHW convolutions and pools become TOSA's NHWC ones between
transposes, NNEF's implicit trailing singleton dimensions become reshapes
before broadcasting. The text is parsed and verified in `nnforge.context()`;
levels "linalg" and "nnf" are reached through nnforge's TOSA-to-linalg
pipeline. An NNEF op without a mapping is an UnsupportedOpError naming it
and its count.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nnforge.errors import CompileError, ModelLoadError, UnsupportedOp, UnsupportedOpError
from nnforge.importers.levels import check_level

SUFFIX = ".nnef"
# Compound ops the nnef package lowers to the primitives written below.
_LOWERED = [
    "softmax", "linear", "leaky_relu", "elu", "prelu", "sqr", "sqrt", "softplus",
    "mean_reduce", "separable_conv", "l2_normalization", "local_response_normalization", "moments",
    "add_n", "clamp", "relu", "sigmoid", "tanh", "lt", "le", "ne",
]
_MLIR_TYPES = {"scalar": "f32", "integer": "i32", "logical": "i1"}
_NUMPY_TYPES = {"scalar": np.float32, "integer": np.int32, "logical": np.bool_}
_TO_NHWC = [0, 2, 3, 1]
_TO_NCHW = [0, 3, 1, 2]


class _Refused(Exception):
    """An NNEF op in a form with no TOSA lowering here (the reason says which)."""


def is_nnef(model) -> bool:
    """Whether `model` names an NNEF model (a .nnef folder or file, or a folder with graph.nnef)."""
    if not isinstance(model, (str, os.PathLike)):
        return False
    path = Path(model)
    return path.suffix == SUFFIX or (path.is_dir() and (path / "graph.nnef").is_file())


def load(path: str | os.PathLike):
    """The NNEF graph at `path`, compound ops lowered, shapes inferred; ModelLoadError if unreadable."""
    from nnforge.exporters.nnef_writer import nnef_module

    nnef = nnef_module()
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"NNEF model {path}: no such file or folder")
    try:
        graph = nnef.load_graph(str(path), lowered=_LOWERED)
        nnef.infer_shapes(graph)
    except nnef.Error as error:
        raise ModelLoadError(f"NNEF model {path} cannot be read: {error}") from None
    return graph


class _Writer:
    """TOSA text for one NNEF graph."""

    def __init__(self, graph):
        self.graph = graph
        self.lines: list[str] = []
        self.values: dict[str, str] = {}  # NNEF tensor -> SSA name
        self._count = 0

    def fresh(self) -> str:
        self._count += 1
        return f"%v{self._count}"

    def dtype(self, name: str) -> str:
        return self.graph.tensors[name].dtype

    def shape(self, name: str) -> list[int]:
        return list(self.graph.tensors[name].shape)

    @staticmethod
    def type(shape, element: str) -> str:
        return f"tensor<{'x'.join(str(d) for d in shape)}{'x' if shape else ''}{element}>"

    def ttype(self, name: str) -> str:
        return self.type(self.shape(name), _MLIR_TYPES[self.dtype(name)])

    def emit(self, text: str) -> str:
        result = self.fresh()
        self.lines.append(f"    {result} = {text}")
        return result

    def const(self, array: np.ndarray) -> str:
        element = {np.dtype(np.float32): "f32", np.dtype(np.int32): "i32", np.dtype(np.bool_): "i1",
                   np.dtype(np.int8): "i8"}[array.dtype]
        kind = self.type(array.shape, element)
        if array.size and np.all(array == array.reshape(-1)[0]) and (element != "f32" or np.isfinite(array).all()):
            value = array.reshape(-1)[0]
            literal = ("true" if value else "false") if element == "i1" else repr(float(value)) \
                if element == "f32" else str(int(value))
            body = f"dense<{literal}>"
        elif element == "i1":
            body = "dense<[" + ", ".join("true" if v else "false" for v in array.reshape(-1)) + "]>"
        else:
            body = f'dense<"0x{np.ascontiguousarray(array).tobytes().hex().upper()}">'
        if array.ndim > 1 and element == "i1" and not body.startswith("dense<t") and not body.startswith("dense<f"):
            # a flat list of booleans, reshaped: MLIR reads it for one dimension only
            return self.reshape(self.const(array.reshape(-1)), [array.size], list(array.shape), "logical")
        return self.emit(f'"tosa.const"() <{{values = {body} : {kind}}}> : () -> {kind}')

    def shape_value(self, values: list[int]) -> str:
        return self.emit(f"tosa.const_shape {{values = dense<[{', '.join(str(int(v)) for v in values)}]> : "
                         f"tensor<{len(values)}xindex>}} : () -> !tosa.shape<{len(values)}>")

    def zero(self, element: str = "f32") -> str:
        return self.const(np.zeros(1, {"f32": np.float32, "i8": np.int8}[element]))

    def operand(self, value, rank: int, dtype: str = "scalar") -> tuple[str, list[int], str]:
        """An argument (tensor name or literal) as (SSA name, shape, NNEF dtype) at `rank`
        (NNEF's implicit trailing singleton dimensions made explicit)."""
        if not isinstance(value, str):  # a literal
            array = np.full([1] * rank, value, dtype=_NUMPY_TYPES[dtype if not isinstance(value, bool) else "logical"])
            return self.const(array), [1] * rank, dtype if not isinstance(value, bool) else "logical"
        shape, dtype = self.shape(value), self.dtype(value)
        name = self.values[value]
        if len(shape) < rank:
            padded = shape + [1] * (rank - len(shape))
            name = self.reshape(name, shape, padded, dtype)
            shape = padded
        return name, shape, dtype

    def reshape(self, name: str, shape: list[int], target: list[int], dtype: str) -> str:
        element = _MLIR_TYPES[dtype]
        return self.emit(f"tosa.reshape {name}, {self.shape_value(target)} : "
                         f"({self.type(shape, element)}, !tosa.shape<{len(target)}>) -> {self.type(target, element)}")

    def transpose(self, name: str, shape: list[int], perms: list[int], dtype: str = "scalar") -> tuple[str, list[int]]:
        element = _MLIR_TYPES[dtype]
        moved = [shape[axis] for axis in perms]
        text = (f"tosa.transpose {name} {{perms = array<i32: {', '.join(map(str, perms))}>}} : "
                f"({self.type(shape, element)}) -> {self.type(moved, element)}")
        return self.emit(text), moved

    def variable_data(self, name: str) -> np.ndarray | None:
        """The data of a variable or constant tensor (read by `to_tosa_text`), or None."""
        return self.graph.tensors[name].data


_UNARY = {"exp": "exp", "log": "log", "abs": "abs", "floor": "floor", "ceil": "ceil", "rsqrt": "rsqrt",
          "rcp": "reciprocal", "copy": "identity", "sin": "sin", "cos": "cos", "not": "logical_not",
          "sigmoid": "sigmoid", "tanh": "tanh"}
_REDUCTIONS = {"sum_reduce": "reduce_sum", "max_reduce": "reduce_max", "min_reduce": "reduce_min",
               "all_reduce": "reduce_all", "any_reduce": "reduce_any"}
_BINARY = {"add": "add", "sub": "sub", "max": "maximum", "min": "minimum", "pow": "pow", "and": "logical_and",
           "or": "logical_or", "gt": "greater", "ge": "greater_equal", "eq": "equal"}


def _out(op) -> str:
    return next(iter(op.outputs.values()))


def _args(op) -> list:
    return list(op.inputs.values())


def _unary(w: _Writer, op) -> str:
    (x,) = _args(op)
    out = _out(op)
    name, shape, dtype = w.operand(x, len(w.shape(out)))
    kind = w.ttype(out)
    return w.emit(f"tosa.{_UNARY[op.name]} {name} : ({w.type(shape, _MLIR_TYPES[dtype])}) -> {kind}")


def _binary(w: _Writer, op) -> str:
    out = _out(op)
    rank = len(w.shape(out))
    x, y = _args(op)
    dtype = w.dtype(x) if isinstance(x, str) else w.dtype(y) if isinstance(y, str) else "scalar"
    (a, sa, da), (b, sb, db) = w.operand(x, rank, dtype), w.operand(y, rank, dtype)
    types = f"({w.type(sa, _MLIR_TYPES[da])}, {w.type(sb, _MLIR_TYPES[db])})"
    if op.name == "mul":
        return w.emit(f"tosa.mul {a}, {b}, {w.zero('i8')} : {types[:-1]}, tensor<1xi8>) -> {w.ttype(out)}")
    if op.name == "div":
        if da != "scalar":
            raise _Refused("integer division")
        reciprocal = w.emit(f"tosa.reciprocal {b} : ({w.type(sb, 'f32')}) -> {w.type(sb, 'f32')}")
        return w.emit(f"tosa.mul {a}, {reciprocal}, {w.zero('i8')} : {types[:-1]}, tensor<1xi8>) -> {w.ttype(out)}")
    return w.emit(f"tosa.{_BINARY[op.name]} {a}, {b} : {types} -> {w.ttype(out)}")


def _neg(w: _Writer, op) -> str:
    (x,) = _args(op)
    out = _out(op)
    name, shape, _ = w.operand(x, len(w.shape(out)))
    zero = w.zero()
    return w.emit(f"tosa.negate {name}, {zero}, {zero} : ({w.ttype(out)}, tensor<1xf32>, tensor<1xf32>) -> {w.ttype(out)}")


def _select(w: _Writer, op) -> str:
    out = _out(op)
    rank = len(w.shape(out))
    c, t, f = _args(op)
    dtype = w.dtype(t) if isinstance(t, str) else w.dtype(f) if isinstance(f, str) else "scalar"
    (cn, cs, cd), (tn, ts, td), (fn, fs, fd) = w.operand(c, rank, "logical"), w.operand(t, rank, dtype), \
        w.operand(f, rank, dtype)
    types = ", ".join(w.type(s, _MLIR_TYPES[d]) for s, d in ((cs, cd), (ts, td), (fs, fd)))
    return w.emit(f"tosa.select {cn}, {tn}, {fn} : ({types}) -> {w.ttype(out)}")


def _reshape(w: _Writer, op) -> str:
    (x,) = _args(op)
    return w.reshape(w.values[x], w.shape(x), w.shape(_out(op)), w.dtype(x))


def _transpose(w: _Writer, op) -> str:
    (x,) = _args(op)
    axes = list(op.attribs["axes"])
    axes += list(range(len(axes), len(w.shape(x))))
    return w.transpose(w.values[x], w.shape(x), axes, w.dtype(x))[0]


def _reduce(w: _Writer, op) -> str:
    (x,) = _args(op)
    name, shape, dtype = w.values[x], w.shape(x), w.dtype(x)
    kind = _REDUCTIONS[op.name]
    count = 1
    for axis in op.attribs["axes"]:
        reduced = list(shape)
        reduced[axis] = 1
        count *= shape[axis]
        name = w.emit(f"tosa.{kind} {name} {{axis = {axis} : i32}} : ({w.type(shape, _MLIR_TYPES[dtype])}) -> "
                      f"{w.type(reduced, _MLIR_TYPES[dtype])}")
        shape = reduced
    if op.attribs.get("normalize"):
        scale = w.const(np.full([1] * len(shape), 1.0 / count, np.float32))
        name = w.emit(f"tosa.mul {name}, {scale}, {w.zero('i8')} : ({w.type(shape, 'f32')}, "
                      f"{w.type([1] * len(shape), 'f32')}, tensor<1xi8>) -> {w.type(shape, 'f32')}")
    return name


def _matmul(w: _Writer, op) -> str:
    a, b = _args(op)
    out = _out(op)
    names = []
    for value, transposed in ((a, op.attribs["transposeA"]), (b, op.attribs["transposeB"])):
        name, shape = w.values[value], w.shape(value)
        if len(shape) not in (2, 3):
            raise _Refused(f"a rank-{len(shape)} operand")
        if len(shape) == 2:
            name, shape = w.reshape(name, shape, [1, *shape], "scalar"), [1, *shape]
        if transposed:
            name, shape = w.transpose(name, shape, [0, 2, 1])
        names.append((name, shape))
    (an, ash), (bn, bsh) = names
    result = [ash[0], ash[1], bsh[2]]
    zero = w.zero()
    name = w.emit(f"tosa.matmul {an}, {bn}, {zero}, {zero} : ({w.type(ash, 'f32')}, {w.type(bsh, 'f32')}, "
                  f"tensor<1xf32>, tensor<1xf32>) -> {w.type(result, 'f32')}")
    if result != w.shape(out):
        name = w.reshape(name, result, w.shape(out), "scalar")
    return name


def _padding(op, spatial_in: list[int], spatial_out: list[int], kernel: list[int],
             stride: list[int], dilation: list[int]) -> list[int]:
    """TOSA's [begin, end] pairs flattened; NNEF's empty padding is 'same' (auto) padding."""
    padding = list(op.attribs["padding"])
    if padding:
        return [p for pair in padding for p in pair]
    pads = []
    for size, out, k, s, d in zip(spatial_in, spatial_out, kernel, stride, dilation):
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return pads


def _fit(w: _Writer, nhwc: str, shape: list[int], pad: list[int], kernel: list[int], stride: list[int],
         dilation: list[int]) -> tuple[str, list[int], list[int]]:
    """TOSA's convolutions and pools take no padding or rows that no window reaches (NNEF's, like ONNX's,
    round the output size down): the end padding cut by that remainder, then the input's last rows.
    Returns the NHWC input, its shape and the padding."""
    pad, cut = list(pad), [0, 0]
    for axis in range(2):
        span = shape[1 + axis] - 1 + pad[2 * axis] + pad[2 * axis + 1] - (kernel[axis] - 1) * dilation[axis]
        extra = span % stride[axis] if span > 0 else 0
        trimmed = min(extra, pad[2 * axis + 1])
        pad[2 * axis + 1] -= trimmed
        cut[axis] = extra - trimmed
    if not any(cut):
        return nhwc, shape, pad
    kept = [shape[0], shape[1] - cut[0], shape[2] - cut[1], shape[3]]
    sliced = w.emit(f"tosa.slice {nhwc}, {w.shape_value([0, 0, 0, 0])}, {w.shape_value(kept)} : "
                    f"({w.type(shape, 'f32')}, !tosa.shape<4>, !tosa.shape<4>) -> {w.type(kept, 'f32')}")
    return sliced, kept, pad


def _run_time_filter(w: _Writer, filter_: str, groups: int) -> tuple[str, list[int]]:
    """A filter computed at run time (a jax model's weights are inputs) as TOSA's: OHWI, or
    [h, w, channels, multiplier] for a depthwise convolution."""
    out_channels, per_group, kh, kw = w.shape(filter_)
    if groups == 1:
        return w.transpose(w.values[filter_], [out_channels, per_group, kh, kw], _TO_NHWC)
    split = [groups, out_channels // groups, kh, kw]
    return w.transpose(w.reshape(w.values[filter_], w.shape(filter_), split, "scalar"), split, [2, 3, 0, 1])


def _conv(w: _Writer, op) -> str:
    x, filter_, bias = _args(op)
    out = _out(op)
    if op.attribs["border"] not in ("constant", "ignore"):
        raise _Refused(f"border {op.attribs['border']!r}")
    weights = w.variable_data(filter_)
    shape = w.shape(x)
    if len(shape) != 4:
        raise _Refused("a convolution that is not 2-D")
    out_channels, per_group, kh, kw = w.shape(filter_)
    groups = op.attribs["groups"] or shape[1]  # 0: one group per channel
    depthwise = groups == shape[1] and per_group == 1
    if weights is None and groups != 1 and not depthwise:
        raise _Refused("a grouped convolution's filter computed at run time")
    stride = list(op.attribs["stride"]) or [1, 1]
    dilation = list(op.attribs["dilation"]) or [1, 1]
    out_shape = w.shape(out)
    pad = _padding(op, shape[2:], out_shape[2:], [kh, kw], stride, dilation)
    run_time_bias = isinstance(bias, str) and w.variable_data(bias) is None  # added after the convolution
    if run_time_bias:
        bias_data = np.zeros(1, np.float32)
    elif isinstance(bias, str):
        bias_data = w.variable_data(bias)
    else:
        bias_data = np.full(1, bias, np.float32)
    biases = np.ascontiguousarray(np.broadcast_to(bias_data.reshape(-1), (out_channels,))).astype(np.float32)
    nhwc, nhwc_shape = w.transpose(w.values[x], shape, _TO_NHWC)
    nhwc, nhwc_shape, pad = _fit(w, nhwc, nhwc_shape, pad, [kh, kw], stride, dilation)
    result = [out_shape[axis] for axis in _TO_NHWC]
    zero = w.zero()
    attributes = (f"{{acc_type = f32, dilation = array<i64: {dilation[0]}, {dilation[1]}>, "
                  f"pad = array<i64: {', '.join(map(str, pad))}>, stride = array<i64: {stride[0]}, {stride[1]}>}}")

    def convolution(kind: str, source: str, source_shape: list[int], filt: np.ndarray | tuple[str, list[int]],
                    bias: np.ndarray) -> str:
        produced = [*result[:3], bias.size]
        filter_value, filter_shape = (w.const(filt), filt.shape) if isinstance(filt, np.ndarray) else filt
        return w.emit(
            f"tosa.{kind} {source}, {filter_value}, {w.const(bias)}, {zero}, {zero} {attributes} : "
            f"({w.type(source_shape, 'f32')}, {w.type(filter_shape, 'f32')}, tensor<{bias.size}xf32>, "
            f"tensor<1xf32>, tensor<1xf32>) -> {w.type(produced, 'f32')}")

    if weights is None:
        convolved = convolution("conv2d" if groups == 1 else "depthwise_conv2d", nhwc, nhwc_shape,
                                _run_time_filter(w, filter_, groups), biases)
    elif groups == 1:
        convolved = convolution("conv2d", nhwc, nhwc_shape,
                                np.ascontiguousarray(weights.transpose(_TO_NHWC)).astype(np.float32), biases)
    elif depthwise:
        multiplier = out_channels // groups
        filt = np.ascontiguousarray(weights.reshape(groups, multiplier, kh, kw).transpose(2, 3, 0, 1)).astype(np.float32)
        convolved = convolution("depthwise_conv2d", nhwc, nhwc_shape, filt, biases)
    else:  # each group's channels convolved on their own, the results concatenated
        per_output = out_channels // groups
        group_shape = [*nhwc_shape[:3], per_group]
        parts = []
        for group in range(groups):
            part = w.emit(f"tosa.slice {nhwc}, {w.shape_value([0, 0, 0, group * per_group])}, "
                          f"{w.shape_value(group_shape)} : ({w.type(nhwc_shape, 'f32')}, !tosa.shape<4>, "
                          f"!tosa.shape<4>) -> {w.type(group_shape, 'f32')}")
            outputs = slice(group * per_output, (group + 1) * per_output)
            parts.append(convolution("conv2d", part, group_shape,
                                     np.ascontiguousarray(weights[outputs].transpose(_TO_NHWC)).astype(np.float32),
                                     np.ascontiguousarray(biases[outputs])))
        part_type = w.type([*result[:3], per_output], "f32")
        convolved = w.emit(f"tosa.concat {', '.join(parts)} {{axis = 3 : i32}} : "
                           f"({', '.join([part_type] * groups)}) -> {w.type(result, 'f32')}")
    nchw = w.transpose(convolved, result, _TO_NCHW)[0]
    if not run_time_bias:
        return nchw
    added, added_shape, _ = w.operand(bias, 4)  # NNEF's [1, C] bias as [1, C, 1, 1]
    return w.emit(f"tosa.add {nchw}, {added} : ({w.ttype(out)}, {w.type(added_shape, 'f32')}) -> {w.ttype(out)}")


def _pool(w: _Writer, op) -> str:
    (x,) = _args(op)
    out = _out(op)
    size = list(op.attribs["size"])
    shape = w.shape(x)
    stride = list(op.attribs["stride"]) or [1] * len(size)
    if len(shape) != 4 or size[:2] != [1, 1] or stride[:2] != [1, 1] or any(d != 1 for d in op.attribs["dilation"]):
        raise _Refused("pooling over other than the two spatial axes of an NCHW tensor, or dilated")
    padding = list(op.attribs["padding"])
    if padding and any(p != 0 for pair in padding[:2] for p in pair):
        raise _Refused("padding of the batch or channel axes")
    out_shape = w.shape(out)
    pad = ([p for pair in padding[2:] for p in pair] if padding else
           _padding(op, shape[2:], out_shape[2:], size[2:], stride[2:], [1, 1]))
    border = op.attribs["border"]
    if op.name == "avg_pool" and border != "ignore" and any(pad):
        raise _Refused(f"average pooling with border {border!r} over padding (TOSA excludes padding)")
    nhwc, nhwc_shape = w.transpose(w.values[x], shape, _TO_NHWC)
    nhwc, nhwc_shape, pad = _fit(w, nhwc, nhwc_shape, pad, size[2:], stride[2:], [1, 1])
    result = [out_shape[axis] for axis in _TO_NHWC]
    attributes = (f"kernel = array<i64: {size[2]}, {size[3]}>, pad = array<i64: {', '.join(map(str, pad))}>, "
                  f"stride = array<i64: {stride[2]}, {stride[3]}>")
    if op.name == "max_pool":
        pooled = w.emit(f"tosa.max_pool2d {nhwc} {{{attributes}}} : ({w.type(nhwc_shape, 'f32')}) -> "
                        f"{w.type(result, 'f32')}")
    else:
        zero = w.zero()
        pooled = w.emit(f"tosa.avg_pool2d {nhwc}, {zero}, {zero} {{acc_type = f32, {attributes}}} : "
                        f"({w.type(nhwc_shape, 'f32')}, tensor<1xf32>, tensor<1xf32>) -> {w.type(result, 'f32')}")
    return w.transpose(pooled, result, _TO_NCHW)[0]


def _batch_normalization(w: _Writer, op) -> str:
    """offset + scale * (input - mean) / sqrt(variance + epsilon) over axis 1. Constant parameters are folded
    into one product and sum, whatever shape holds their channel values (nnef-tools writes [1, 1, 1, 1, C]
    from ONNX, which NNEF's broadcasting would not align with the channels); others broadcast as NNEF's."""
    x, *parameters = _args(op)
    out = _out(op)
    shape = w.shape(x)
    rank, channels = len(shape), (shape[1] if len(shape) > 1 else 1)
    f = w.ttype(x)
    folded = []
    for value in parameters:
        data = np.full(1, value, np.float32) if not isinstance(value, str) else w.variable_data(value)
        if data is not None and np.asarray(data).size in (1, channels):
            folded.append(np.broadcast_to(np.asarray(data, np.float64).reshape(-1), (channels,)))
    if len(folded) == 4:
        mean, variance, offset, scale = folded
        factor = scale / np.sqrt(variance + op.attribs["epsilon"])
        along = [channels if axis == 1 else 1 for axis in range(rank)]
        product, sum_ = (w.const(np.ascontiguousarray(a.reshape(along)).astype(np.float32))
                         for a in (factor, offset - mean * factor))
        scaled = w.emit(f"tosa.mul {w.values[x]}, {product}, {w.zero('i8')} : ({f}, {w.type(along, 'f32')}, "
                        f"tensor<1xi8>) -> {f}")
        return w.emit(f"tosa.add {scaled}, {sum_} : ({f}, {w.type(along, 'f32')}) -> {w.ttype(out)}")
    (mean, sm, _), (variance, sv, _), (offset, so, _), (scale, ss, _) = (w.operand(v, rank) for v in parameters)

    def kind(s: list[int]) -> str:
        return w.type(s, "f32")

    centered = w.emit(f"tosa.sub {w.values[x]}, {mean} : ({f}, {kind(sm)}) -> {f}")
    epsilon = w.const(np.full([1] * rank, op.attribs["epsilon"], np.float32))
    shifted = w.emit(f"tosa.add {variance}, {epsilon} : ({kind(sv)}, {kind([1] * rank)}) -> {kind(sv)}")
    inverse = w.emit(f"tosa.rsqrt {shifted} : ({kind(sv)}) -> {kind(sv)}")
    normalized = w.emit(f"tosa.mul {centered}, {inverse}, {w.zero('i8')} : ({f}, {kind(sv)}, tensor<1xi8>) -> {f}")
    scaled = w.emit(f"tosa.mul {normalized}, {scale}, {w.zero('i8')} : ({f}, {kind(ss)}, tensor<1xi8>) -> {f}")
    return w.emit(f"tosa.add {scaled}, {offset} : ({f}, {kind(so)}) -> {w.ttype(out)}")


def _box(w: _Writer, op) -> str:
    """A window sum over any axes (nnef's lowering of local_response_normalization): the input padded
    with zeros, then for each windowed axis the sum of its shifted slices (a box is separable)."""
    (x,) = _args(op)
    out = _out(op)
    shape, out_shape = w.shape(x), w.shape(_out(op))
    rank = len(shape)
    size = list(op.attribs["size"])
    stride = list(op.attribs["stride"]) or [1] * rank
    dilation = list(op.attribs["dilation"]) or [1] * rank
    border = op.attribs["border"]
    if any(s != 1 for s in stride):
        raise _Refused("a strided box")
    if border not in ("constant", "ignore"):
        raise _Refused(f"border {border!r}")
    pad = _padding(op, shape, out_shape, size, stride, dilation)
    name = w.values[x]
    current = [extent + pad[2 * axis] + pad[2 * axis + 1] for axis, extent in enumerate(shape)]
    if any(pad):
        fill = w.zero()
        name = w.emit(f"tosa.pad {name}, {w.shape_value(pad)}, {fill} : ({w.ttype(x)}, !tosa.shape<{2 * rank}>, "
                      f"tensor<1xf32>) -> {w.type(current, 'f32')}")
    counts = []  # per axis: how many input elements each output position sums (border 'ignore')
    for axis in range(rank):
        inside = np.pad(np.ones(shape[axis], np.float32), (pad[2 * axis], pad[2 * axis + 1]))
        counts.append(sum(inside[j * dilation[axis]:j * dilation[axis] + out_shape[axis]]
                          for j in range(size[axis])))
        if size[axis] == 1:
            continue
        sliced = list(current)
        sliced[axis] = out_shape[axis]
        total = None
        for j in range(size[axis]):
            starts = [0] * rank
            starts[axis] = j * dilation[axis]
            part = w.emit(f"tosa.slice {name}, {w.shape_value(starts)}, {w.shape_value(sliced)} : "
                          f"({w.type(current, 'f32')}, !tosa.shape<{rank}>, !tosa.shape<{rank}>) -> "
                          f"{w.type(sliced, 'f32')}")
            total = part if total is None else w.emit(
                f"tosa.add {total}, {part} : ({w.type(sliced, 'f32')}, {w.type(sliced, 'f32')}) -> "
                f"{w.type(sliced, 'f32')}")
        name, current = total, sliced
    if not op.attribs["normalize"]:
        return name
    if border == "constant":  # padding counts as zeros in the window
        divisor = np.full([1] * rank, float(np.prod(size)), np.float32)
    else:  # the count of input elements in each window: a product over the axes
        divisor = np.ones([1] * rank, np.float32)
        for axis, count in enumerate(counts):
            if np.any(count != count[0]):
                divisor = divisor * count.reshape([-1 if a == axis else 1 for a in range(rank)])
            else:
                divisor = divisor * count[0]
    scale = w.const(np.ascontiguousarray(1.0 / divisor).astype(np.float32))
    return w.emit(f"tosa.mul {name}, {scale}, {w.zero('i8')} : ({w.ttype(out)}, {w.type(divisor.shape, 'f32')}, "
                  f"tensor<1xi8>) -> {w.ttype(out)}")


def _round(w: _Writer, op) -> str:
    """Round to nearest, ties to even (as onnx's Round, nnef-tools' reading): floor(x), one more where
    x - floor(x) is above one half, or exactly one half and floor(x) odd (x - floor(x) is exact)."""
    (x,) = _args(op)
    out = _out(op)
    name, shape, _ = w.operand(x, len(w.shape(out)))
    f, b, i8 = w.type(shape, "f32"), w.type(shape, "i1"), "tensor<1xi8>"
    one = [1] * len(shape)
    c = {value: w.const(np.full(one, value, np.float32)) for value in (0.5, 1.0, 2.0)}
    ct = w.type(one, "f32")
    shift = w.zero("i8")
    floor = w.emit(f"tosa.floor {name} : ({f}) -> {f}")
    fraction = w.emit(f"tosa.sub {name}, {floor} : ({f}, {f}) -> {f}")
    above = w.emit(f"tosa.greater {fraction}, {c[0.5]} : ({f}, {ct}) -> {b}")
    halfway = w.emit(f"tosa.equal {fraction}, {c[0.5]} : ({f}, {ct}) -> {b}")
    halved = w.emit(f"tosa.mul {floor}, {c[0.5]}, {shift} : ({f}, {ct}, {i8}) -> {f}")
    twice = w.emit(f"tosa.mul {w.emit(f'tosa.floor {halved} : ({f}) -> {f}')}, {c[2.0]}, {shift} : "
                   f"({f}, {ct}, {i8}) -> {f}")
    even = w.emit(f"tosa.equal {floor}, {twice} : ({f}, {f}) -> {b}")
    odd_halfway = w.emit(f"tosa.logical_and {halfway}, {w.emit(f'tosa.logical_not {even} : ({b}) -> {b}')} : "
                         f"({b}, {b}) -> {b}")
    up = w.emit(f"tosa.logical_or {above}, {odd_halfway} : ({b}, {b}) -> {b}")
    return w.emit(f"tosa.select {up}, {w.emit(f'tosa.add {floor}, {c[1.0]} : ({f}, {ct}) -> {f}')}, {floor} : "
                  f"({b}, {f}, {f}) -> {w.ttype(out)}")


def _cast(w: _Writer, op) -> str:
    """NNEF's cast as onnx's Cast (nnef-tools' reading): floats to integers truncate toward zero, to
    logicals compare with zero."""
    (x,) = _args(op)
    out = _out(op)
    name, source, target = w.values[x], w.dtype(x), w.dtype(out)
    shape = w.shape(x)
    if source == target:
        return w.emit(f"tosa.identity {name} : ({w.ttype(x)}) -> {w.ttype(out)}")
    if source == "scalar" and target == "integer":
        f = w.ttype(x)
        floor = w.emit(f"tosa.floor {name} : ({f}) -> {f}")
        ceil = w.emit(f"tosa.ceil {name} : ({f}) -> {f}")
        negative = w.emit(f"tosa.greater {w.const(np.zeros([1] * len(shape), np.float32))}, {name} : "
                          f"({w.type([1] * len(shape), 'f32')}, {f}) -> {w.type(shape, 'i1')}")
        name = w.emit(f"tosa.select {negative}, {ceil}, {floor} : ({w.type(shape, 'i1')}, {f}, {f}) -> {f}")
    return w.emit(f"tosa.cast {name} : ({w.ttype(x)}) -> {w.ttype(out)}")


def _gather(w: _Writer, op) -> str:
    """NNEF's gather (numpy's take along `axis`) as TOSA's [1, K, C] gather: the axis moved to the front."""
    x, indices = _args(op)
    if not isinstance(indices, str):
        raise _Refused("a literal index")
    shape, dtype = w.shape(x), w.dtype(x)
    axis = op.attribs["axis"] % len(shape)
    rows, rest = shape[axis], shape[:axis] + shape[axis + 1:]
    order = [axis] + [a for a in range(len(shape)) if a != axis]
    name, moved = (w.values[x], shape) if axis == 0 else w.transpose(w.values[x], shape, order, dtype)
    columns = int(np.prod(rest))
    name = w.reshape(name, moved, [1, rows, columns], dtype)
    index_shape = w.shape(indices)
    width = int(np.prod(index_shape))
    data = w.variable_data(indices)
    if data is not None:  # negative indices count from the end, as numpy's
        index = w.const(np.ascontiguousarray(np.where(data < 0, data + rows, data).astype(np.int32).reshape(1, width)))
    else:
        index = w.reshape(w.values[indices], index_shape, [1, width], "integer")
        i = w.type([1, width], "i32")
        one = w.type([1, 1], "i32")
        negative = w.emit(f"tosa.greater {w.const(np.zeros((1, 1), np.int32))}, {index} : ({one}, {i}) -> "
                          f"{w.type([1, width], 'i1')}")
        wrapped = w.emit(f"tosa.add {index}, {w.const(np.full((1, 1), rows, np.int32))} : ({i}, {one}) -> {i}")
        index = w.emit(f"tosa.select {negative}, {wrapped}, {index} : ({w.type([1, width], 'i1')}, {i}, {i}) -> {i}")
    element = _MLIR_TYPES[dtype]
    gathered = w.emit(f"tosa.gather {name}, {index} : ({w.type([1, rows, columns], element)}, "
                      f"{w.type([1, width], 'i32')}) -> {w.type([1, width, columns], element)}")
    front = index_shape + rest
    name = w.reshape(gathered, [1, width, columns], front, dtype)
    if axis == 0:
        return name
    count = len(index_shape)
    back = ([count + a for a in range(axis)] + list(range(count))
            + [count + a for a in range(axis, len(rest))])
    return w.transpose(name, front, back, dtype)[0]


def _concat(w: _Writer, op) -> str:
    (values,) = _args(op)
    out = _out(op)
    types = ", ".join(w.ttype(v) for v in values)
    return w.emit(f"tosa.concat {', '.join(w.values[v] for v in values)} {{axis = {op.attribs['axis']} : i32}} : "
                  f"({types}) -> {w.ttype(out)}")


def _slice(w: _Writer, op) -> str:
    (x,) = _args(op)
    shape = w.shape(x)
    starts = [0] * len(shape)
    strides = list(op.attribs.get("stride") or [])
    if any(s != 1 for s in strides):
        raise _Refused("strided slices")
    for axis, begin in zip(op.attribs["axes"], op.attribs["begin"]):
        starts[axis] = begin + shape[axis] if begin < 0 else begin
    sizes = w.shape(_out(op))
    return w.emit(f"tosa.slice {w.values[x]}, {w.shape_value(starts)}, {w.shape_value(sizes)} : "
                  f"({w.ttype(x)}, !tosa.shape<{len(shape)}>, !tosa.shape<{len(shape)}>) -> {w.ttype(_out(op))}")


def _pad(w: _Writer, op) -> str:
    (x,) = _args(op)
    if op.attribs["border"] != "constant":
        raise _Refused(f"border {op.attribs['border']!r}")
    shape = w.shape(x)
    padding = [p for pair in op.attribs["padding"] for p in pair]
    padding += [0] * (2 * len(shape) - len(padding))
    fill = w.const(np.full(1, op.attribs["value"], np.float32))
    return w.emit(f"tosa.pad {w.values[x]}, {w.shape_value(padding)}, {fill} : ({w.ttype(x)}, "
                  f"!tosa.shape<{len(padding)}>, tensor<1xf32>) -> {w.ttype(_out(op))}")


def _tile(w: _Writer, op) -> str:
    (x,) = _args(op)
    repeats = list(op.attribs["repeats"])
    return w.emit(f"tosa.tile {w.values[x]}, {w.shape_value(repeats)} : ({w.ttype(x)}, "
                  f"!tosa.shape<{len(repeats)}>) -> {w.ttype(_out(op))}")


def _clamp(w: _Writer, op) -> str:
    x, low, high = _args(op)
    if isinstance(low, str) or isinstance(high, str):
        raise _Refused("bounds computed at run time")
    name, shape, dtype = w.operand(x, len(w.shape(_out(op))))
    return w.emit(f"tosa.clamp {name} {{max_val = {float(high)!r} : f32, min_val = {float(low)!r} : f32}} : "
                  f"({w.type(shape, 'f32')}) -> {w.ttype(_out(op))}")


def _relu(w: _Writer, op) -> str:
    (x,) = _args(op)
    name, shape, _ = w.operand(x, len(w.shape(_out(op))))
    return w.emit(f"tosa.clamp {name} {{max_val = 3.40282347E+38 : f32, min_val = 0.000000e+00 : f32}} : "
                  f"({w.type(shape, 'f32')}) -> {w.ttype(_out(op))}")


_LOWERINGS: dict[str, Callable[[_Writer, object], str]] = {
    **{name: _unary for name in _UNARY}, **{name: _binary for name in _BINARY}, "mul": _binary, "div": _binary,
    "neg": _neg, "select": _select, "reshape": _reshape, "squeeze": _reshape, "unsqueeze": _reshape,
    "transpose": _transpose, **{name: _reduce for name in _REDUCTIONS}, "box": _box, "round": _round,
    "batch_normalization": _batch_normalization,
    "cast": _cast, "gather": _gather,
    "matmul": _matmul, "conv": _conv, "max_pool": _pool, "avg_pool": _pool, "concat": _concat, "slice": _slice,
    "pad": _pad, "tile": _tile, "clamp": _clamp, "relu": _relu,
}


def to_tosa_text(graph, what: str) -> str:
    """The NNEF graph as the text of a TOSA module with one function, @main."""
    w = _Writer(graph)
    refused: Counter = Counter()
    reasons: dict[str, str] = {}
    arguments = []
    for index, name in enumerate(graph.inputs):
        if graph.tensors[name].dtype not in _MLIR_TYPES:
            raise ModelLoadError(f"{what}: input {name} has type {graph.tensors[name].dtype}")
        w.values[name] = f"%arg{index}"
        arguments.append(f"%arg{index}: {w.ttype(name)}")
    for op in graph.operations:
        if op.name == "external":
            continue
        if op.name in ("variable", "constant"):
            out = _out(op)
            tensor = graph.tensors[out]
            data = tensor.data if op.name == "variable" else np.array(op.attribs["value"])
            if data is None:
                raise ModelLoadError(f"{what}: variable {out} has no data")
            data = np.asarray(data).astype(_NUMPY_TYPES[tensor.dtype])
            # a constant's one value fills its shape (of any rank, 0 too)
            data = np.full(tensor.shape, data.reshape(-1)[0]) if data.size == 1 else data.reshape(tensor.shape)
            w.values[out] = w.const(np.array(data, order="C"))  # (ascontiguousarray makes 0-d arrays 1-d)
            graph.tensors[out] = tensor._replace(data=data)
            continue
        lowering = _LOWERINGS.get(op.name)
        try:
            if lowering is None:
                raise _Refused("no TOSA lowering")
            w.values[_out(op)] = lowering(w, op)
        except _Refused as reason:
            refused[op.name] += 1
            reasons.setdefault(op.name, str(reason))
            w.values[_out(op)] = w.fresh()
    if refused:
        raise UnsupportedOpError([UnsupportedOp(kind, count, reason=reasons[kind]) for kind, count in refused.items()],
                                 context=what)
    results = ", ".join(w.ttype(name) for name in graph.outputs)
    body = "\n".join(w.lines)
    returned = ", ".join(w.values[name] for name in graph.outputs)
    return (f"func.func @main({', '.join(arguments)}) -> ({results}) {{\n{body}\n"
            f"    return {returned} : {results}\n}}\n")


def io_names(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """The input and output names of the NNEF model at `path` (its weights are not read)."""
    from nnforge.exporters.nnef_writer import nnef_module

    nnef = nnef_module()
    try:
        graph = nnef.load_graph(str(path), load_variables=False)
    except nnef.Error as error:
        raise ModelLoadError(f"NNEF model {path} cannot be read: {error}") from None
    return list(graph.inputs), list(graph.outputs)


def import_nnef(path: str | os.PathLike, *, level: str = "linalg"):
    """Imports an NNEF model (a folder with graph.nnef and .dat files, or a graph.nnef file) into MLIR.

    Returns an `mlir.ir.Module` in `nnforge.context()`, verified, at `level`
    ("tosa", "linalg" or "nnf"). Raises ModelLoadError for a missing or
    unreadable model, UnsupportedOpError naming each NNEF op without a TOSA
    lowering and its count.
    """
    from mlir import ir, passmanager

    from nnforge import pipelines
    from nnforge.importers import handover

    check_level(level, ("tosa", "linalg", "nnf"))
    what = f"NNEF model {path}"
    graph = load(path)
    text = to_tosa_text(graph, what)
    module = handover.to_nnforge_module(text, what)
    if level == "tosa":
        return module
    with module.context:
        try:
            passmanager.PassManager.parse(f"builtin.module({pipelines.TOSA_TO_LINALG})").run(module.operation)
        except ir.MLIRError as error:
            raise CompileError(f"{what}: TOSA to linalg failed: {error}") from None
    if level == "nnf":
        handover.raise_to_nnf(module)
    return module
