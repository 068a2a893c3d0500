"""A TOSA module read into plain Python: the graph the exporters write.

The exporters (`onnx_writer`, `nnef_writer`) do not walk MLIR themselves:
this module reads the entry function of a module at the tosa level (as
`nnforge.import_torch` / `import_onnx` return it, in `nnforge.context()`)
with the `mlir` bindings into a `Graph` of `Node`s whose operands are value
names, whose attributes are Python values, and whose constants are numpy
arrays. `tosa.const_shape` values are resolved to lists of ints.

Weights that torch-mlir hands over as `dense_resource` blobs are read from
the module's `dialect_resources` section (the bindings give no access to a
resource's bytes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnforge.errors import CompileError, UnsupportedOp, UnsupportedOpError

# MLIR element type (as printed) -> numpy dtype.
_DTYPES = {
    "f16": np.float16, "f32": np.float32, "f64": np.float64, "i1": np.bool_,
    "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64,
    "ui8": np.uint8, "ui16": np.uint16, "ui32": np.uint32, "ui64": np.uint64,
}
# MLIR element types numpy holds through ml_dtypes (ONNX has each of them).
_ML_DTYPES = {"bf16": "bfloat16", "f8E4M3FN": "float8_e4m3fn", "f8E4M3FNUZ": "float8_e4m3fnuz",
              "f8E5M2": "float8_e5m2", "f8E5M2FNUZ": "float8_e5m2fnuz", "i4": "int4", "ui4": "uint4"}
_RESOURCE_NAME = re.compile(r"dense_resource<([^>]+)>")
_RESOURCE_ENTRY = re.compile(r'^\s*([\w.$-]+|"[^"]*"): "0x([0-9A-Fa-f]*)"', re.MULTILINE)
# Ops that only pass a value through (to the exporters: an alias).
_ALIASES = ("tensor.cast",)


@dataclass(frozen=True)
class TensorType:
    """A tensor's element type (numpy dtype) and shape (None for a dynamic size)."""

    dtype: np.dtype
    shape: tuple[int | None, ...]


@dataclass
class Node:
    """One op: its kind ("tosa.conv2d"), operand and result value names, attributes."""

    kind: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, Any]
    output_types: list[TensorType]
    location: str = ""


@dataclass
class Graph:
    """The entry function: inputs, nodes in order, constants, outputs (value names)."""

    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    shapes: dict[str, list[int]] = field(default_factory=dict)  # tosa.const_shape values
    types: dict[str, TensorType] = field(default_factory=dict)


def numpy_dtype(element_type) -> np.dtype:
    """The numpy dtype of an MLIR element type; UnsupportedOpError naming it if none."""
    name = str(element_type)
    if name in _ML_DTYPES:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, _ML_DTYPES[name]))
    if name not in _DTYPES:
        raise UnsupportedOpError([UnsupportedOp(f"element type {name}", 1)], context="the exporters")
    return np.dtype(_DTYPES[name])


def tensor_type(mlir_type) -> TensorType:
    from mlir import ir

    shaped = ir.ShapedType(mlir_type)
    if not shaped.has_rank:
        raise UnsupportedOpError([UnsupportedOp(f"unranked tensor {mlir_type}", 1)], context="the exporters")
    shape = tuple(None if shaped.is_dynamic_dim(axis) else size for axis, size in enumerate(shaped.shape))
    return TensorType(numpy_dtype(shaped.element_type), shape)


def _resources(module_text: str) -> dict[str, bytes]:
    """Blob name -> bytes (without the 4-byte alignment prefix) of the module's resources."""
    start = module_text.rfind("{-#")
    if start < 0:
        return {}
    return {name.strip('"'): bytes.fromhex(data)[4:]
            for name, data in _RESOURCE_ENTRY.findall(module_text[start:])}


def _elements(attribute, resources: dict[str, bytes]) -> np.ndarray:
    """A dense or dense_resource elements attribute as a numpy array."""
    from mlir import ir

    shaped = ir.ShapedType(attribute.type)
    if str(shaped.element_type) == "index":  # tosa.const_shape's values
        dense = ir.DenseElementsAttr(attribute)
        if dense.is_splat:
            return np.full(shaped.shape, _scalar(dense.get_splat_value()), dtype=np.int64)
        values = ir.DenseIntElementsAttr(attribute)
        # the bindings read index values as unsigned: -1 (a dynamic size) comes back as 2**64 - 1
        return np.array([values[i] - (1 << 64) if values[i] >= 1 << 63 else values[i]
                         for i in range(len(values))], dtype=np.int64)
    kind = tensor_type(attribute.type)
    shape = tuple(kind.shape)
    match = _RESOURCE_NAME.match(str(attribute))
    if match:
        data = resources.get(match.group(1))
        if data is None:
            raise CompileError(f"the module has no data for resource {match.group(1)}")
        return np.frombuffer(data, dtype=kind.dtype).reshape(shape).copy()
    dense = ir.DenseElementsAttr(attribute)
    if dense.is_splat:
        return np.full(shape, _scalar(dense.get_splat_value()), dtype=kind.dtype)
    try:
        return np.array(dense, copy=True).astype(kind.dtype, copy=False).reshape(shape)
    except TypeError:  # no buffer of this element type in the bindings (bf16, float8, i4)
        return _printed_elements(str(attribute), kind.dtype, shape)


_ELEMENT_LITERAL = re.compile(r"0x[0-9A-Fa-f]+|true|false|[-+]?(?:inf|nan|[0-9][0-9.]*(?:[eE][-+]?[0-9]+)?)")


def _printed_elements(text: str, dtype: np.dtype, shape: tuple) -> np.ndarray:
    """The elements of a printed dense attribute: a hex blob, or literals (a hex literal is an element's bits)."""
    body = text[text.index("<") + 1:text.rindex(":")]
    if body.lstrip().startswith('"0x'):
        return np.frombuffer(bytes.fromhex(body.strip().strip('>"')[2:]), dtype=dtype).reshape(shape).copy()
    bits = np.dtype(f"uint{8 * dtype.itemsize}") if dtype.itemsize in (1, 2, 4, 8) else None
    values = []
    for literal in _ELEMENT_LITERAL.findall(body):
        if literal.startswith("0x") and bits is not None:
            values.append(np.array(int(literal, 16), dtype=bits).view(dtype))
        else:
            values.append(np.array({"true": 1, "false": 0}.get(literal, literal), dtype=np.float64).astype(dtype))
    return np.array(values, dtype=dtype).reshape(shape)


def _scalar(attribute) -> Any:
    from mlir import ir

    if isinstance(attribute, ir.FloatAttr):
        return ir.FloatAttr(attribute).value
    if isinstance(attribute, ir.BoolAttr):
        return ir.BoolAttr(attribute).value
    if isinstance(attribute, ir.IntegerAttr):
        return ir.IntegerAttr(attribute).value
    raise CompileError(f"unexpected splat value {attribute}")


def _attribute(attribute) -> Any:
    """An op attribute as a Python value (arrays as lists, types as dtypes)."""
    from mlir import ir

    if isinstance(attribute, ir.DenseI64ArrayAttr):
        return list(ir.DenseI64ArrayAttr(attribute))
    if isinstance(attribute, ir.DenseI32ArrayAttr):
        return list(ir.DenseI32ArrayAttr(attribute))
    if isinstance(attribute, ir.DenseBoolArrayAttr):
        return list(ir.DenseBoolArrayAttr(attribute))
    if isinstance(attribute, ir.BoolAttr):
        return ir.BoolAttr(attribute).value
    if isinstance(attribute, ir.IntegerAttr):
        return ir.IntegerAttr(attribute).value
    if isinstance(attribute, ir.FloatAttr):
        return ir.FloatAttr(attribute).value
    if isinstance(attribute, ir.StringAttr):
        return ir.StringAttr(attribute).value
    if isinstance(attribute, ir.TypeAttr):
        return str(ir.TypeAttr(attribute).value)
    return str(attribute)  # enums (tosa.resize's mode, nan_mode): their printed form


def entry_function(module):
    """The module's public function (the one `nnforge.compile` would call)."""
    functions = [op for op in module.body.operations if op.operation.name == "func.func"]
    public = [f for f in functions if "sym_visibility" not in f.attributes
              or str(f.attributes["sym_visibility"]) == '"public"']
    if len(public) != 1:
        raise CompileError(f"the module to export has {len(public)} public functions, not one")
    return public[0]


def read(module) -> Graph:
    """The entry function of a tosa-level module as a `Graph`.

    Ops with regions (tosa.cond_if, tosa.while_loop) and calls are
    returned as nodes too; the writers refuse what they cannot map.
    """
    from mlir import ir

    with module.context:
        resources = _resources(module.operation.get_asm(large_elements_limit=None))
        function = entry_function(module)
        block = function.regions[0].blocks[0]
        graph = Graph()
        names: dict[Any, str] = {}

        def name_of(value) -> str:
            return names[value]

        for index, argument in enumerate(block.arguments):
            names[argument] = f"input_{index}"
            graph.inputs.append(names[argument])
            graph.types[names[argument]] = tensor_type(argument.type)
        counter = 0
        for op in block.operations:
            op = op.operation
            kind = op.name
            if kind == "func.return":
                graph.outputs = [name_of(value) for value in op.operands]
                break
            if kind in _ALIASES:
                names[op.results[0]] = name_of(op.operands[0])
                continue
            outputs = []
            for result in op.results:
                names[result] = f"v{counter}"
                counter += 1
                outputs.append(names[result])
            if kind in ("tosa.const", "arith.constant") and isinstance(op.results[0].type, ir.ShapedType):
                attribute = op.attributes["values" if kind == "tosa.const" else "value"]
                graph.constants[outputs[0]] = _elements(attribute, resources)
                graph.types[outputs[0]] = tensor_type(op.results[0].type)
                continue
            if kind == "tosa.const_shape":
                graph.shapes[outputs[0]] = [int(v) for v in _elements(op.attributes["values"], resources).ravel()]
                continue
            attributes = {name: _attribute(op.attributes[name]) for name in op.attributes}
            types = []
            for result in op.results:
                if isinstance(result.type, ir.ShapedType):
                    types.append(tensor_type(result.type))
                    graph.types[names[result]] = types[-1]
                else:
                    types.append(None)
            graph.nodes.append(Node(kind, [name_of(v) for v in op.operands], outputs, attributes, types,
                                    str(op.location)))
    fold_constants(graph)
    return graph


# Ops evaluated exactly on constants (masks from iotas, as jax builds a causal
# mask), by their numpy function of the operands and attributes.
_FOLDERS = {
    "tosa.equal": lambda node, a, b: np.equal(a, b),
    "tosa.greater": lambda node, a, b: np.greater(a, b),
    "tosa.greater_equal": lambda node, a, b: np.greater_equal(a, b),
    "tosa.logical_and": lambda node, a, b: np.logical_and(a, b),
    "tosa.logical_or": lambda node, a, b: np.logical_or(a, b),
    "tosa.logical_xor": lambda node, a, b: np.logical_xor(a, b),
    "tosa.logical_not": lambda node, a: np.logical_not(a),
    "tosa.select": lambda node, condition, a, b: np.where(condition, a, b),
    "tosa.reshape": lambda node, a, _: a.reshape(node.output_types[0].shape),
    "tosa.transpose": lambda node, a: a.transpose(node.attributes["perms"]),
}
# The largest constant folding makes (elements): larger ones stay computed.
_MAX_FOLDED_ELEMENTS = 1 << 20


def fold_constants(graph: Graph) -> int:
    """Replaces the nodes of `_FOLDERS` whose operands are all constants by
    their results (constants); returns how many."""
    kept, folded = [], 0
    for node in graph.nodes:
        kind = node.output_types[0] if len(node.output_types) == 1 else None
        operands = [graph.constants.get(name, graph.shapes.get(name)) for name in node.inputs]
        if (node.kind not in _FOLDERS or kind is None or None in kind.shape or any(v is None for v in operands)
                or np.prod(kind.shape, dtype=np.int64) > _MAX_FOLDED_ELEMENTS):
            kept.append(node)
            continue
        value = _FOLDERS[node.kind](node, *(np.asarray(v) for v in operands))
        graph.constants[node.outputs[0]] = np.broadcast_to(value, kind.shape).astype(kind.dtype)
        graph.types[node.outputs[0]] = kind
        folded += 1
    graph.nodes = kept
    return folded
