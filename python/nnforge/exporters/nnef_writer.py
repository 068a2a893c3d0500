"""A TOSA graph (`tosa_graph.Graph`) written as an NNEF folder (graph.nnef + .dat tensor files).

The graph is built as the `nnef` package's `Graph` of `Operation`s and
saved with `nnef.save_graph`. NNEF's convolutions and pools are NCHW with
OIHW filters, as ONNX's: constant filters are transposed when written and
the activations around them transposed by `transpose` ops. Constants are
`variable`s (one .dat file each), single finite values `constant`s. NNEF has fixed
shapes only: a dynamic dimension is refused, as is an op without a mapping
(an `UnsupportedOpError` naming each kind and its count).
"""

from __future__ import annotations

import re
import shutil
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from nnforge.errors import ModelLoadError, SaveError
from nnforge.exporters.graph_writer import (TO_NCHW, TO_NHWC, GraphBuilder, Refusals, Refused, dispatch, io_names,
                                            is_relu, write_nodes)
from nnforge.exporters.tosa_graph import Graph, Node

_ELEMENTWISE = {
    "tosa.add": "add", "tosa.sub": "sub", "tosa.maximum": "max", "tosa.minimum": "min", "tosa.pow": "pow",
    "tosa.abs": "abs", "tosa.exp": "exp", "tosa.log": "log", "tosa.tanh": "tanh", "tosa.sigmoid": "sigmoid",
    "tosa.floor": "floor", "tosa.ceil": "ceil", "tosa.sin": "sin", "tosa.cos": "cos",
    "tosa.equal": "eq", "tosa.greater": "gt", "tosa.greater_equal": "ge", "tosa.logical_and": "and",
    "tosa.logical_or": "or", "tosa.logical_not": "not", "tosa.select": "select", "tosa.identity": "copy",
}
# NNEF's parameter names of each elementwise op, in order.
_PARAMETERS = {1: ("x",), 2: ("x", "y"), 3: ("condition", "true_value", "false_value")}
_REDUCTIONS = {"tosa.reduce_sum": "sum_reduce", "tosa.reduce_max": "max_reduce", "tosa.reduce_min": "min_reduce",
               "tosa.reduce_all": "all_reduce", "tosa.reduce_any": "any_reduce"}

def nnef_module():
    try:
        import nnef
    except ImportError as error:
        raise ModelLoadError("NNEF needs the nnef package: pip install 'nnforge[exchange]'") from error
    return nnef


def nnef_dtype(dtype: np.dtype) -> str:
    if dtype == np.bool_:
        return "logical"
    if np.issubdtype(dtype, np.integer):
        return "integer"
    return "scalar"


def identifier(name: str) -> str:
    """`name` as an NNEF identifier (letters, digits, underscores; not starting with a digit)."""
    text = re.sub(r"\W", "_", name)
    return text if text and not text[0].isdigit() else f"t_{text}"


class _Builder(GraphBuilder):
    """The NNEF tensors and operations being written for one graph."""

    def __init__(self, graph: Graph):
        super().__init__(graph)
        self.nnef = nnef_module()
        self.operations: list = []
        self.tensors: dict = {}
        self.names: dict[str, str] = {}
        self._count = 0
        self.pooled_pads = _pads_into_max_pools(graph)
        # NCHW pads written by the pools that take them through a transpose (by the pad's result)
        self.pooled_nchw_pads = {node.inputs[0] for node in graph.nodes
                                 if node.kind == "tosa.transpose" and node.outputs[0] in self.pooled_pads}

    def fresh(self) -> str:
        self._count += 1
        return f"t{self._count}"

    def tensor(self, name: str, dtype: str, shape, data=None) -> str:
        self.tensors[name] = self.nnef.Tensor(name, dtype, list(shape) if shape is not None else None, data, None)
        return name

    def value(self, name: str) -> str:
        """The NNEF tensor of a graph value (constants written as variables/constants on first use)."""
        if name in self.names:
            return self.names[name]
        array = self.graph.constants.get(name)
        if array is None:
            raise Refused(f"value {name} used before it is defined")
        self.names[name] = self.array(array)
        return self.names[name]

    def array(self, array: np.ndarray) -> str:
        name = self.fresh()
        dtype = nnef_dtype(array.dtype)
        shape = list(array.shape)
        if array.size == 1 and (dtype != "scalar" or np.isfinite(array).all()):  # NNEF has no infinite literal
            value = array.reshape(()).item()
            self.tensor(name, dtype, shape)
            self.operations.append(self.nnef.Operation(
                "constant", OrderedDict(shape=shape, value=[value]), OrderedDict(), OrderedDict(output=self.nnef.Identifier(name)), dtype))
            return name
        # The nnef package writes the sized numpy types only (np.int64, not
        # np.longlong, which MLIR's buffers of i64 give): dtype by its code.
        array = array.astype(np.float32 if dtype == "scalar" else np.dtype(array.dtype.str))
        self.tensor(name, dtype, shape, np.ascontiguousarray(array))
        self.operations.append(self.nnef.Operation(
            "variable", OrderedDict(shape=shape, label=name), OrderedDict(), OrderedDict(output=self.nnef.Identifier(name)), dtype))
        return name

    def op(self, kind: str, inputs: dict, attributes: dict, output: str | None, dtype: str,
           shape, output_parameter: str = "output") -> str:
        output_name = output if output is not None else self.fresh()
        self.tensor(output_name, dtype, shape)
        self.operations.append(self.nnef.Operation(
            kind, OrderedDict(attributes), OrderedDict((key, self.reference(value)) for key, value in inputs.items()),
            OrderedDict({output_parameter: self.nnef.Identifier(output_name)}), None))
        return output_name

    def reference(self, value):
        """An op's argument: tensor names as NNEF identifiers, literals as they are."""
        if isinstance(value, str):
            return self.nnef.Identifier(value)
        if isinstance(value, list):
            return [self.reference(item) for item in value]
        return value

    def result(self, node: Node) -> tuple[str, str, list]:
        """The NNEF name, dtype and shape of a node's first result."""
        kind = node.output_types[0]
        if any(size is None for size in kind.shape):
            raise Refused("a dynamic dimension (NNEF shapes are fixed)")
        name = self.names.setdefault(node.outputs[0], self.fresh())
        return name, nnef_dtype(kind.dtype), list(kind.shape)


def _elementwise(builder: _Builder, node: Node) -> None:
    output, dtype, shape = builder.result(node)
    computed = node.inputs[1:] if node.kind == "tosa.select" else node.inputs
    if node.kind != "tosa.identity" and any(np.issubdtype(builder.dtype(name), np.integer) for name in computed):
        raise Refused("integer operands (NNEF computes on scalars and logicals only)")
    parameters = _PARAMETERS[len(node.inputs)]
    result = "y" if len(node.inputs) == 1 else "z"
    if node.kind == "tosa.select":
        result = "output"
    builder.op(_ELEMENTWISE[node.kind], {p: builder.value(v) for p, v in zip(parameters, node.inputs)}, {},
               output, dtype, shape, result)


def _reciprocal(builder: _Builder, node: Node) -> None:
    # 1 / x (and 1 / sqrt(x)): NNEF's rcp and rsqrt are ops nnef-tools cannot convert to other formats.
    output, dtype, shape = builder.result(node)
    x = builder.value(node.inputs[0])
    if node.kind == "tosa.rsqrt":
        x = builder.op("sqrt", {"x": x}, {}, None, dtype, shape, "y")
    builder.op("div", {"x": 1.0, "y": x}, {}, output, dtype, shape, "z")


# NNEF 1.0 has no erf: Abramowitz and Stegun's 7.1.26, absolute error at most 1.5e-7,
# erf(x) = sign(x) (1 - t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-x^2)) with t = 1 / (1 + p |x|).
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _erf(builder: _Builder, node: Node) -> None:
    output, dtype, shape = builder.result(node)
    if dtype != "scalar":
        raise Refused("an integer erf")

    def op(kind: str, result: str = "z", out: str | None = None, out_type: str = dtype, **inputs) -> str:
        return builder.op(kind, inputs, {}, out, out_type, shape, result)

    x = builder.value(node.inputs[0])
    t = op("div", x=1.0, y=op("add", x=op("mul", x=op("abs", "y", x=x), y=_ERF_P), y=1.0))
    polynomial = op("mul", x=t, y=_ERF_A[-1])
    for coefficient in reversed(_ERF_A[:-1]):
        polynomial = op("mul", x=t, y=op("add", x=polynomial, y=coefficient))
    gaussian = op("exp", "y", x=op("neg", "y", x=op("mul", x=x, y=x)))
    magnitude = op("sub", x=1.0, y=op("mul", x=polynomial, y=gaussian))
    op("select", "output", output, condition=op("gt", out_type="logical", x=0.0, y=x),
       true_value=op("neg", "y", x=magnitude), false_value=magnitude)


def _mul(builder: _Builder, node: Node) -> None:
    if len(node.inputs) > 2:
        builder.require_zero(node.inputs[2:3], "shift")
    output, dtype, shape = builder.result(node)
    builder.op("mul", {"x": builder.value(node.inputs[0]), "y": builder.value(node.inputs[1])}, {},
               output, dtype, shape, "z")


def _negate(builder: _Builder, node: Node) -> None:
    builder.require_zero(node.inputs[1:3], "zero points")
    output, dtype, shape = builder.result(node)
    builder.op("neg", {"x": builder.value(node.inputs[0])}, {}, output, dtype, shape, "y")


def _clamp(builder: _Builder, node: Node) -> None:
    output, dtype, shape = builder.result(node)
    x = builder.value(node.inputs[0])
    if is_relu(node):
        builder.op("relu", {"x": x}, {}, output, dtype, shape, "y")
    else:
        builder.op("clamp", {"x": x, "a": float(node.attributes["min_val"]), "b": float(node.attributes["max_val"])},
                   {}, output, dtype, shape, "y")


def _cast(builder: _Builder, node: Node) -> None:
    source = builder.graph.types[node.inputs[0]].dtype
    output, dtype, shape = builder.result(node)
    x = builder.value(node.inputs[0])
    if nnef_dtype(source) == dtype:  # NNEF has one integer and one float type: widths are not kept
        builder.op("copy", {"x": x}, {}, output, dtype, shape, "y")
        return
    if nnef_dtype(source) == "scalar" and dtype == "integer":  # TOSA rounds to nearest even; NNEF's cast truncates
        x = builder.op("round", {"x": x}, {}, None, "scalar", shape, "y")
    operation = builder.nnef.Operation("cast", OrderedDict(), OrderedDict(input=builder.nnef.Identifier(x)),
                                       OrderedDict(output=builder.nnef.Identifier(output)), dtype)
    builder.tensor(output, dtype, shape)
    builder.operations.append(operation)


def _reshape(builder: _Builder, node: Node) -> None:
    output, dtype, shape = builder.result(node)
    builder.op("reshape", {"input": builder.value(node.inputs[0])}, {"shape": shape}, output, dtype, shape)


def _transpose(builder: _Builder, node: Node) -> None:
    if node.outputs[0] in builder.pooled_pads:  # a padded NCHW input: written by the max pools that take it
        return
    output, dtype, shape = builder.result(node)
    builder.op("transpose", {"input": builder.value(node.inputs[0])}, {"axes": node.attributes["perms"]},
               output, dtype, shape)


def _reduce(builder: _Builder, node: Node) -> None:
    output, dtype, shape = builder.result(node)
    builder.op(_REDUCTIONS[node.kind], {"input": builder.value(node.inputs[0])}, {"axes": [node.attributes["axis"]]},
               output, dtype, shape)


def _gather(builder: _Builder, node: Node) -> None:
    # TOSA: out[n, w, c] = values[n, indices[n, w], c]; NNEF's gather (numpy's take) on each batch row,
    # concatenated: NNEF has no integer arithmetic to offset the indices by row.
    output, dtype, shape = builder.result(node)
    values, indices = node.inputs[0], node.inputs[1]
    batch, rows, channels = builder.graph.types[values].shape
    _, width = builder.graph.types[indices].shape
    values, indices = builder.value(values), builder.value(indices)
    parts = []
    for n in range(batch):
        row_values, row_indices = values, indices
        if batch > 1:
            row_values = builder.op("slice", {"input": values}, {"axes": [0], "begin": [n], "end": [n + 1]},
                                    None, dtype, [1, rows, channels])
            row_indices = builder.op("slice", {"input": indices}, {"axes": [0], "begin": [n], "end": [n + 1]},
                                     None, "integer", [1, width])
        row_values = builder.op("reshape", {"input": row_values}, {"shape": [rows, channels]}, None, dtype,
                                [rows, channels])
        row_indices = builder.op("reshape", {"input": row_indices}, {"shape": [width]}, None, "integer", [width])
        gathered = builder.op("gather", {"input": row_values, "indices": row_indices}, {"axis": 0}, None, dtype,
                              [width, channels])
        parts.append(builder.op("reshape", {"input": gathered}, {"shape": [1, width, channels]},
                                output if batch == 1 else None, dtype, [1, width, channels]))
    if batch > 1:
        builder.op("concat", {"values": parts}, {"axis": 0}, output, dtype, shape, "value")


def _concat(builder: _Builder, node: Node) -> None:
    output, dtype, shape = builder.result(node)
    builder.op("concat", {"values": [builder.value(v) for v in node.inputs]}, {"axis": node.attributes["axis"]},
               output, dtype, shape, "value")


def _slice(builder: _Builder, node: Node) -> None:
    output, dtype, shape = builder.result(node)
    starts = builder.shape(node.inputs[1])
    builder.op("slice", {"input": builder.value(node.inputs[0])},
               {"axes": list(range(len(starts))), "begin": starts,
                "end": [start + size for start, size in zip(starts, shape)]}, output, dtype, shape)


def _pad(builder: _Builder, node: Node) -> None:
    output, dtype, shape = builder.result(node)
    padding = builder.shape(node.inputs[1])
    fill = builder.constant(node.inputs[2])
    if fill is None:
        raise Refused("a padding value computed at run time")
    if not np.isfinite(fill.reshape(-1)[0]):
        raise Refused("an infinite padding value (NNEF has no infinite literal)")
    builder.op("pad", {"input": builder.value(node.inputs[0])},
               {"padding": list(zip(padding[0::2], padding[1::2])), "border": "constant",
                "value": float(fill.reshape(-1)[0])}, output, dtype, shape)


def _tile(builder: _Builder, node: Node) -> None:
    output, dtype, shape = builder.result(node)
    builder.op("tile", {"input": builder.value(node.inputs[0])}, {"repeats": builder.shape(node.inputs[1])},
               output, dtype, shape)


def _matmul(builder: _Builder, node: Node) -> None:
    builder.require_zero(node.inputs[2:4], "zero points")
    output, dtype, shape = builder.result(node)
    builder.op("matmul", {"A": builder.value(node.inputs[0]), "B": builder.value(node.inputs[1])},
               {"transposeA": False, "transposeB": False}, output, dtype, shape, "C")


def _to_nchw(builder: _Builder, name: str) -> str:
    kind = builder.graph.types[name]
    shape = [kind.shape[axis] for axis in TO_NCHW[4]]
    return builder.op("transpose", {"input": builder.value(name)}, {"axes": TO_NCHW[4]}, None, "scalar", shape)


def _to_nhwc(builder: _Builder, node: Node, value: str) -> None:
    output, dtype, shape = builder.result(node)
    builder.op("transpose", {"input": value}, {"axes": TO_NHWC[4]}, output, dtype, shape)


def _nchw_shape(node: Node) -> list:
    return [node.output_types[0].shape[axis] for axis in TO_NCHW[4]]


def _filter(builder: _Builder, node: Node) -> tuple[str, int]:
    """The convolution's filter as NNEF's [out, in / groups, h, w] tensor (rearranged now if constant,
    else by ops in the graph: a jax model's weights are inputs), and its group count."""
    weights = builder.constant(node.inputs[1])
    shape = builder.graph.types[node.inputs[1]].shape
    if node.kind == "tosa.depthwise_conv2d":
        kh, kw, channels, multiplier = shape
        if weights is not None:
            return builder.array(np.ascontiguousarray(
                weights.transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, kh, kw))), channels
        moved = builder.op("transpose", {"input": builder.value(node.inputs[1])}, {"axes": [2, 3, 0, 1]}, None,
                           "scalar", [channels, multiplier, kh, kw])
        target = [channels * multiplier, 1, kh, kw]
        return builder.op("reshape", {"input": moved}, {"shape": target}, None, "scalar", target), channels
    if weights is not None:
        return builder.array(np.ascontiguousarray(weights.transpose(TO_NCHW[4]))), 1
    return _to_nchw(builder, node.inputs[1]), 1


def _convolution(builder: _Builder, node: Node) -> None:
    builder.require_zero(node.inputs[3:5], "zero points")
    bias = builder.constant(node.inputs[2])
    if bias is None:
        raise Refused("biases computed at run time")
    out_channels = node.output_types[0].shape[-1]
    weights, groups = _filter(builder, node)
    pad = node.attributes["pad"]
    convolved = builder.op(
        "conv",
        {"input": _to_nchw(builder, node.inputs[0]), "filter": weights,
         "bias": builder.array(np.broadcast_to(bias, (out_channels,)).reshape(1, out_channels))},
        {"border": "constant", "padding": [(pad[0], pad[1]), (pad[2], pad[3])],
         "stride": node.attributes["stride"], "dilation": node.attributes["dilation"], "groups": groups},
        None, "scalar", _nchw_shape(node))
    _to_nhwc(builder, node, convolved)


def _pads_into_max_pools(graph: Graph) -> dict[str, tuple[str, list[int], bool]]:
    """tosa.pad by -inf of the spatial axes whose only users are max pools (torch-mlir's ceil-mode
    pooling), directly (NHWC) or through the transpose to NHWC (NCHW): by the pools' input, (the pad's
    input, its [top, bottom, left, right] padding, whether that input is NCHW). NNEF has no infinite
    literal: these pads are written as the pools' own padding (border 'ignore'), and neither the pad nor
    the transpose is written."""
    users: dict[str, set[str]] = {}
    for node in graph.nodes:
        for name in node.inputs:
            users.setdefault(name, set()).add(node.kind)
    pads: dict[str, tuple[str, list[int]]] = {}
    for node in graph.nodes:
        if node.kind != "tosa.pad" or node.inputs[1] not in graph.shapes or node.outputs[0] in graph.outputs:
            continue
        fill, padding = graph.constants.get(node.inputs[2]), graph.shapes[node.inputs[1]]
        if fill is not None and fill.size == 1 and np.isneginf(fill.reshape(-1)[0]) and len(padding) == 8:
            pads[node.outputs[0]] = (node.inputs[0], padding)
    found = {}
    for node in graph.nodes:
        if node.kind == "tosa.pad" and node.outputs[0] in pads:
            source, padding = pads[node.outputs[0]]
            if not any(padding[:2] + padding[6:]) and users.get(node.outputs[0]) == {"tosa.max_pool2d"}:
                found[node.outputs[0]] = (source, padding[2:6], False)
        elif (node.kind == "tosa.transpose" and node.inputs[0] in pads and node.attributes["perms"] == TO_NHWC[4]
              and users.get(node.inputs[0]) == {"tosa.transpose"} and node.outputs[0] not in graph.outputs
              and users.get(node.outputs[0]) == {"tosa.max_pool2d"}):
            source, padding = pads[node.inputs[0]]
            if not any(padding[:4]):
                found[node.outputs[0]] = (source, padding[4:8], True)
    return found


def _pad_into_pool(builder: _Builder, node: Node) -> None:
    if node.outputs[0] not in builder.pooled_pads and node.outputs[0] not in builder.pooled_nchw_pads:
        _pad(builder, node)  # else written by the max pools that take it


def _pool(builder: _Builder, node: Node) -> None:
    if node.kind == "tosa.avg_pool2d":
        builder.require_zero(node.inputs[1:3], "zero points")
    source, pad = node.inputs[0], list(node.attributes["pad"])
    nchw = None
    if source in builder.pooled_pads:
        source, padding, is_nchw = builder.pooled_pads[source]
        pad = [size + extra for size, extra in zip(pad, padding)]
        nchw = builder.value(source) if is_nchw else None
    kernel, stride = node.attributes["kernel"], node.attributes["stride"]
    pooled = builder.op(
        "avg_pool" if node.kind == "tosa.avg_pool2d" else "max_pool",
        {"input": nchw if nchw is not None else _to_nchw(builder, source)},
        {"size": [1, 1, *kernel], "border": "ignore", "padding": [(0, 0), (0, 0), (pad[0], pad[1]), (pad[2], pad[3])],
         "stride": [1, 1, *stride], "dilation": []},
        None, "scalar", _nchw_shape(node))
    _to_nhwc(builder, node, pooled)


_WRITERS: dict[str, Callable[[_Builder, Node], None]] = {
    **{kind: _elementwise for kind in _ELEMENTWISE},
    **{kind: _reduce for kind in _REDUCTIONS},
    "tosa.mul": _mul, "tosa.negate": _negate, "tosa.erf": _erf, "tosa.reciprocal": _reciprocal,
    "tosa.rsqrt": _reciprocal, "tosa.clamp": _clamp, "tosa.cast": _cast,
    "tosa.reshape": _reshape, "tosa.transpose": _transpose, "tosa.concat": _concat, "tosa.slice": _slice,
    "tosa.pad": _pad_into_pool, "tosa.tile": _tile, "tosa.gather": _gather, "tosa.matmul": _matmul, "tosa.conv2d": _convolution,
    "tosa.depthwise_conv2d": _convolution, "tosa.avg_pool2d": _pool, "tosa.max_pool2d": _pool,
}


def to_graph(graph: Graph, input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
             *, name: str = "nnforge"):
    """The graph as an `nnef.Graph`; UnsupportedOpError for ops (or dynamic shapes) NNEF cannot hold."""
    builder = _Builder(graph)
    input_names, output_names = io_names(graph, input_names, output_names)
    inputs, outputs = [identifier(n) for n in input_names], [identifier(n) for n in output_names]
    refusals = Refusals()
    for value, nnef_name in zip(graph.inputs, inputs):
        kind = graph.types[value]
        if any(size is None for size in kind.shape):
            refusals.add("dynamic input dimension", "NNEF shapes are fixed", nnef_name)
        builder.names[value] = builder.tensor(nnef_name, nnef_dtype(kind.dtype), kind.shape)
        builder.operations.append(builder.nnef.Operation(
            "external", OrderedDict(shape=list(kind.shape)), OrderedDict(),
            OrderedDict(output=builder.nnef.Identifier(nnef_name)),
            nnef_dtype(kind.dtype)))
    # Values returned under a name of their own are written under it (or copied to it).
    for value, nnef_name in zip(graph.outputs, outputs):
        if value not in graph.inputs and value not in graph.constants and value not in builder.names:
            builder.names[value] = nnef_name

    def name_results(node: Node) -> None:  # a refused node's users are judged on their own
        for output in node.outputs:
            builder.names.setdefault(output, builder.fresh())

    write_nodes(graph, builder, dispatch(_WRITERS, "no NNEF op"), refusals, on_refused=name_results)
    refusals.raise_any("the export to NNEF")
    for value, nnef_name in zip(graph.outputs, outputs):
        if builder.names.get(value) != nnef_name:
            kind = graph.types[value]
            builder.op("copy", {"x": builder.value(value)}, {}, nnef_name, nnef_dtype(kind.dtype), kind.shape, "y")
    return builder.nnef.Graph(identifier(name), builder.tensors, builder.operations, inputs, outputs)


def save(graph, path: Path) -> None:
    """Writes the NNEF graph as the folder `path` (graph.nnef and a .dat file per variable)."""
    nnef = nnef_module()
    path = Path(path)
    if path.exists():
        raise SaveError(f"cannot write {path}: it exists (NNEF models are folders; remove it first)")
    # Written beside `path` and renamed, so that a failure leaves no half-written model.
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        nnef.save_graph(graph, str(partial))
        partial.rename(path)
    except OSError as error:
        raise SaveError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
