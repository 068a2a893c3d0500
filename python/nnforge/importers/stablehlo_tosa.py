"""StableHLO -> TOSA in torch-mlir's MLIR (run by `torch_mlir_worker`).

TOSA is the exporters' exchange level (`nnforge.exporters`): this is how jax
models reach ONNX and NNEF. StableHLO's own TOSA conversion is not in
torch-mlir's wheel, so each op of the normalized module (`stablehlo_lowering`)
is rewritten here into TOSA 1.0 ops, built generically by name; torch-mlir's
verifier and canonicalizer then check and fold the result, and nnforge's MLIR
verifies it again after the hand-over.

Every op without a rewrite, and every op in a form TOSA has no equivalent of
(grouped convolutions, strided slices, interior padding, dynamic shapes,
unsigned integers, ...), is reported with its location before anything is
rewritten.

This module imports only torch-mlir's IR bindings and numpy.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from torch_mlir import ir
from torch_mlir._mlir_libs import _stablehlo

# Element types TOSA has (unsigned integers and complex numbers are not).
_TOSA_ELEMENTS = frozenset({"f32", "f16", "bf16", "i1", "i8", "i16", "i32", "i64"})
_FLOATS = frozenset({"f32", "f16", "bf16"})

# Elementwise ops with a TOSA op of the same operands and meaning.
_SAME_OP = {
    "stablehlo.add": "tosa.add", "stablehlo.subtract": "tosa.sub", "stablehlo.maximum": "tosa.maximum",
    "stablehlo.minimum": "tosa.minimum", "stablehlo.abs": "tosa.abs", "stablehlo.select": "tosa.select",
}
# Elementwise ops on floats only, with their TOSA op.
_FLOAT_OP = {
    "stablehlo.power": "tosa.pow", "stablehlo.exponential": "tosa.exp", "stablehlo.log": "tosa.log",
    "stablehlo.tanh": "tosa.tanh", "stablehlo.logistic": "tosa.sigmoid", "stablehlo.floor": "tosa.floor",
    "stablehlo.ceil": "tosa.ceil", "stablehlo.cosine": "tosa.cos", "stablehlo.sine": "tosa.sin",
    "stablehlo.rsqrt": "tosa.rsqrt",
}
# Logical ops: on i1 the logical TOSA op, on wider integers the bitwise one.
_LOGICAL_OP = {"stablehlo.and": "and", "stablehlo.or": "or", "stablehlo.xor": "xor"}
# A reduction's body op -> (TOSA reduction, TOSA op combining with the init value).
_REDUCTIONS = {
    "stablehlo.add": ("tosa.reduce_sum", "tosa.add"),
    "stablehlo.multiply": ("tosa.reduce_product", "tosa.mul"),
    "stablehlo.maximum": ("tosa.reduce_max", "tosa.maximum"),
    "stablehlo.minimum": ("tosa.reduce_min", "tosa.minimum"),
    "stablehlo.and": ("tosa.reduce_all", "tosa.logical_and"),
    "stablehlo.or": ("tosa.reduce_any", "tosa.logical_or"),
}
# The element types an iota is computed in, as numpy's.
_IOTA_DTYPES = {"f32": np.float32, "f16": np.float16, "i8": np.int8, "i16": np.int16, "i32": np.int32,
                "i64": np.int64}
# The value that leaves the combination unchanged, per reduction body op.
_IDENTITIES = {
    "stablehlo.add": 0.0, "stablehlo.multiply": 1.0, "stablehlo.maximum": -math.inf,
    "stablehlo.minimum": math.inf, "stablehlo.and": 1.0, "stablehlo.or": 0.0,
}


# --- types and values ---------------------------------------------------------

def _type(value) -> ir.RankedTensorType:
    return ir.RankedTensorType(value.type)


def _shape(value) -> list[int]:
    return list(_type(value).shape)


def _element(value) -> str:
    return str(_type(value).element_type)


def _tensor(shape: list[int], element) -> ir.RankedTensorType:
    return ir.RankedTensorType.get(list(shape), element)


def _build(name: str, result_type, operands: list, **attributes) -> ir.Value:
    """One op `name` at the current insertion point; its single result."""
    return ir.Operation.create(name, results=[result_type], operands=operands, attributes=attributes).result


def _like(name: str, value, operands: list, shape: list[int] | None = None, **attributes) -> ir.Value:
    """Op `name` whose result has `value`'s element type (and `shape`, or `value`'s shape)."""
    return _build(name, _tensor(_shape(value) if shape is None else shape, _type(value).element_type),
                  operands, **attributes)


def _shape_value(values: list[int]) -> ir.Value:
    """A `tosa.const_shape` of `values`."""
    text = ", ".join(str(int(v)) for v in values)
    return _build("tosa.const_shape", ir.Type.parse(f"!tosa.shape<{len(values)}>"), [],
                  values=ir.Attribute.parse(f"dense<[{text}]> : tensor<{len(values)}xindex>"))


def _i64_array(values) -> ir.Attribute:
    return ir.DenseI64ArrayAttr.get([int(v) for v in values])


def _constant(element, shape: list[int], number: float) -> ir.Value:
    """A splat `tosa.const` of `number`."""
    scalar = (ir.FloatAttr.get(element, number) if str(element) in _FLOATS
              else ir.IntegerAttr.get(element, int(number)))
    tensor = _tensor(shape, element)
    return _build("tosa.const", tensor, [], values=ir.DenseElementsAttr.get_splat(tensor, scalar))


def _zero_point(value) -> ir.Value:
    return _constant(_type(value).element_type, [1], 0)


def _splat_number(value) -> float | None:
    """The number a splat constant `value` (TOSA's or StableHLO's, maybe
    broadcast or reshaped) holds, else None."""
    owner = value.owner
    while isinstance(owner, ir.OpView) and owner.operation.name in ("stablehlo.broadcast_in_dim",
                                                                     "stablehlo.reshape"):
        owner = owner.operands[0].owner
    if not isinstance(owner, ir.OpView) or owner.operation.name not in ("tosa.const", "stablehlo.constant"):
        return None
    attribute = ir.DenseElementsAttr(owner.attributes["values" if owner.operation.name == "tosa.const" else "value"])
    if not attribute.is_splat:
        return None
    scalar = attribute.get_splat_value()
    if isinstance(scalar, ir.BoolAttr):
        return float(scalar.value)
    return float(ir.FloatAttr(scalar).value) if str(scalar.type) in _FLOATS else float(ir.IntegerAttr(scalar).value)


def _is_identity(value, body: str) -> bool:
    """Whether `value` is a constant that combining with by `body` leaves any value unchanged."""
    identity = _IDENTITIES[body]
    element = _element(value)
    if element not in _FLOATS and element != "i1" and math.isinf(identity):
        bounds = np.iinfo(f"int{element[1:]}")
        identity = float(bounds.min if identity < 0 else bounds.max)
    return _splat_number(value) == identity


def _reshape(value, shape: list[int]) -> ir.Value:
    if _shape(value) == list(shape):
        return value
    number = _splat_number(value)
    if number is not None:
        return _constant(_type(value).element_type, shape, number)
    return _like("tosa.reshape", value, [value, _shape_value(shape)], shape)


def _transpose(value, permutation: list[int]) -> ir.Value:
    if list(permutation) == sorted(permutation):
        return value
    shape = _shape(value)
    return _like("tosa.transpose", value, [value], [shape[p] for p in permutation],
                 perms=ir.DenseI32ArrayAttr.get([int(p) for p in permutation]))


def _broadcast(value, shape: list[int]) -> ir.Value:
    """`value` (of `shape`'s rank, dims 1 or equal) tiled to `shape`."""
    current = _shape(value)
    if current == list(shape):
        return value
    number = _splat_number(value)
    if number is not None:
        return _constant(_type(value).element_type, shape, number)
    multiples = [target // size for size, target in zip(current, shape)]
    return _like("tosa.tile", value, [value, _shape_value(multiples)], shape)


def _mul(result_type, left, right) -> ir.Value:
    shift = _constant(ir.IntegerType.get_signless(8), [1], 0)
    return _build("tosa.mul", result_type, [left, right, shift])


def _inverse(permutation: list[int]) -> list[int]:
    return [permutation.index(axis) for axis in range(len(permutation))]


def _broadcast_shape(shapes: list[list[int]]) -> list[int]:
    return [max(sizes) for sizes in zip(*shapes)]


def _elementwise(name: str, op, operands: list | None = None) -> ir.Value:
    """TOSA op `name` on `op`'s operands (broadcast to its result's rank; the
    first tiled to the result's shape where the operands do not cover it)."""
    result_type = op.results[0].type
    shape = list(ir.RankedTensorType(result_type).shape)
    operands = [_reshape(o, [1] * len(shape)) if not _shape(o) and shape else o
                for o in (op.operands if operands is None else operands)]
    if _broadcast_shape([_shape(o) for o in operands]) != shape:
        operands[0] = _broadcast(operands[0], shape)
    if name == "tosa.mul":
        return _mul(result_type, *operands)
    return _build(name, result_type, operands)


# --- refusals -----------------------------------------------------------------

def _array(op, name: str, default: int = 0, rank: int = 0) -> list[int]:
    """The integers of `op`'s array attribute `name`, or `rank` times `default` where it has none."""
    if name not in op.attributes:
        return [default] * rank
    attribute = op.attributes[name]
    if str(attribute).startswith("array<i1"):
        return [int(v) for v in ir.DenseBoolArrayAttr(attribute)]
    if str(attribute).startswith("array<"):
        return list(ir.DenseI64ArrayAttr(attribute))
    return [int(v) for v in ir.DenseIntElementsAttr(attribute)]


def _pairs(op, name: str, rank: int) -> list[tuple[int, int]]:
    flat = _array(op, name, 0, 2 * rank)
    return [(flat[2 * i], flat[2 * i + 1]) for i in range(rank)]


def _integer(op, name: str, default: int = 1) -> int:
    return ir.IntegerAttr(op.attributes[name]).value if name in op.attributes else default


def _type_refusal(op) -> str | None:
    for value in [*op.operands, *op.results]:
        try:
            tensor = _type(value)
        except ValueError:  # not a ranked tensor (a token, a tuple)
            return f"{op.name} (on {value.type})"
        if not tensor.has_static_shape:
            return f"{op.name} (dynamic shape)"
        if str(tensor.element_type) not in _TOSA_ELEMENTS:
            return f"{op.name} ({tensor.element_type} elements)"
    return None


def _body_op(op) -> str | None:
    """The name of the single op a reduction's body applies to its block arguments, else None."""
    block = op.regions[0].blocks[0]
    operations = [o.operation for o in block.operations]
    if len(operations) != 2 or operations[1].name != "stablehlo.return":
        return None
    combine = operations[0]
    if list(combine.operands) != list(block.arguments) or list(operations[1].operands) != list(combine.results):
        return None
    return combine.name


def _convolution_refusal(op) -> str | None:
    numbers = _stablehlo.ConvDimensionNumbers(op.attributes["dimension_numbers"])
    spatial = len(numbers.input_spatial_dimensions)
    if spatial not in (1, 2):
        return f"stablehlo.convolution ({spatial}-d)"
    if any(v != 1 for v in _array(op, "lhs_dilation", 1, spatial)):
        return "stablehlo.convolution (input dilation)"
    if any(_array(op, "window_reversal", 0, spatial)) or _integer(op, "batch_group_count") != 1:
        return "stablehlo.convolution (reversed window or batch groups)"
    if any(low < 0 or high < 0 for low, high in _pairs(op, "padding", spatial)):
        return "stablehlo.convolution (negative padding)"
    if _element(op.operands[0]) not in _FLOATS:
        return "stablehlo.convolution (integer)"
    return None


def _pool_axes(op) -> list[int]:
    """The axes a window op slides along (window, stride or padding not trivial)."""
    rank = len(_shape(op.operands[0]))
    windows, strides = _array(op, "window_dimensions", 1, rank), _array(op, "window_strides", 1, rank)
    padding = _pairs(op, "padding", rank)
    return [axis for axis in range(rank) if windows[axis] != 1 or strides[axis] != 1 or padding[axis] != (0, 0)]


def _reduce_window_refusal(op) -> str | None:
    body = _body_op(op)
    rank = len(_shape(op.operands[0]))
    if len(op.results) != 1 or body not in ("stablehlo.maximum", "stablehlo.add"):
        return "stablehlo.reduce_window (not a max or sum pool)"
    if rank != 4 or len(_pool_axes(op)) != 2:
        return "stablehlo.reduce_window (not over two axes of a 4-d tensor)"
    dilated = _array(op, "base_dilations", 1, rank) + _array(op, "window_dilations", 1, rank)
    padded = any(pair != (0, 0) for pair in _pairs(op, "padding", rank))
    if any(v != 1 for v in dilated) or (body == "stablehlo.add" and padded):
        return "stablehlo.reduce_window (dilated, or a padded sum)"
    if not _is_identity(op.operands[1], body):
        return "stablehlo.reduce_window (initial value not the identity)"
    if _element(op.operands[0]) not in _FLOATS:
        return "stablehlo.reduce_window (integer)"
    return None


def _gather_refusal(op) -> str | None:
    table, indices = op.operands
    numbers = _stablehlo.GatherDimensionNumbers(op.attributes["dimension_numbers"])
    collapsed = list(numbers.collapsed_slice_dims)
    sizes = _array(op, "slice_sizes")
    index_shape = _shape(indices)
    vector = numbers.index_vector_dim
    row_lookup = (len(_shape(table)) == 2 and len(collapsed) == 1 and list(numbers.start_index_map) == collapsed
                  and not list(numbers.operand_batching_dims) and len(list(numbers.offset_dims)) == 1
                  and sizes[collapsed[0]] == 1 and sizes[1 - collapsed[0]] == _shape(table)[1 - collapsed[0]]
                  and (vector == len(index_shape) or (vector == len(index_shape) - 1 and index_shape[vector] == 1)))
    return None if row_lookup else "stablehlo.gather (not a lookup of whole rows or columns)"


def _refusal(op) -> str | None:
    """Why `op` cannot be rewritten (its kind and form), or None."""
    name = op.name
    if name == "stablehlo.custom_call":
        return f"stablehlo.custom_call @{ir.StringAttr(op.attributes['call_target_name']).value}"
    if name not in _REWRITES:
        return name
    refusal = _type_refusal(op)
    if refusal:
        return refusal
    element = _element(op.results[0]) if op.results else ""
    if (name in _FLOAT_OP or name in _FLOAT_ONLY) and _element(op.operands[0]) not in _FLOATS:
        return f"{name} (integer)"
    if name == "stablehlo.remainder" and element != "i32":
        return f"{name} ({element})"
    if name == "stablehlo.gather":
        return _gather_refusal(op)
    if name == "stablehlo.iota" and element not in _IOTA_DTYPES:
        return f"{name} ({element})"
    if name == "stablehlo.divide" and element not in _FLOATS and element != "i32":
        return f"{name} ({element})"
    if name == "stablehlo.convolution":
        return _convolution_refusal(op)
    if name == "stablehlo.reduce":
        if len(op.results) != 1:
            return None if _arg_reduction(op) else "stablehlo.reduce (several operands)"
        if _body_op(op) not in _REDUCTIONS:
            return "stablehlo.reduce (body not one add, multiply, maximum, minimum, and, or)"
    if name == "stablehlo.reduce_window":
        return _reduce_window_refusal(op)
    if name == "stablehlo.pad" and any(_array(op, "interior_padding")):
        return "stablehlo.pad (interior padding)"
    if name == "stablehlo.compare":
        kind = op.attributes["compare_type"] if "compare_type" in op.attributes else None
        if kind is not None and "UNSIGNED" in str(kind):
            return "stablehlo.compare (unsigned)"
    return None


# --- rewrites -----------------------------------------------------------------

def _same(op) -> ir.Value:
    return _elementwise(_SAME_OP[op.name], op)


def _float(op) -> ir.Value:
    return _elementwise(_FLOAT_OP[op.name], op)


def _logical(op) -> ir.Value:
    kind = "logical" if _element(op.results[0]) == "i1" else "bitwise"
    return _elementwise(f"tosa.{kind}_{_LOGICAL_OP[op.name]}", op)


def _not(op) -> ir.Value:
    return _elementwise("tosa.logical_not" if _element(op.results[0]) == "i1" else "tosa.bitwise_not", op)


def _multiply(op) -> ir.Value:
    return _elementwise("tosa.logical_and" if _element(op.results[0]) == "i1" else "tosa.mul", op)


def _divide(op) -> ir.Value:
    if _element(op.results[0]) not in _FLOATS:
        return _elementwise("tosa.intdiv", op)
    left, right = op.operands
    return _elementwise("tosa.mul", op, [left, _like("tosa.reciprocal", right, [right])])


def _negate(op) -> ir.Value:
    value = op.operands[0]
    if _element(value) in _FLOATS:
        return _like("tosa.negate", value, [value, _zero_point(value), _zero_point(value)])
    return _elementwise("tosa.sub", op, [_constant(_type(value).element_type, _shape(value), 0), value])


def _sqrt(op) -> ir.Value:
    value = op.operands[0]
    return _elementwise("tosa.pow", op, [value, _constant(_type(value).element_type, _shape(value), 0.5)])


def _exponential_minus_one(op) -> ir.Value:
    value = op.operands[0]
    one = _constant(_type(value).element_type, _shape(value), 1.0)
    return _elementwise("tosa.sub", op, [_like("tosa.exp", value, [value]), one])


def _log_plus_one(op) -> ir.Value:
    value = op.operands[0]
    one = _constant(_type(value).element_type, _shape(value), 1.0)
    return _like("tosa.log", value, [_like("tosa.add", value, [value, one])])


def _sign(op) -> ir.Value:
    value = op.operands[0]
    element, shape = _type(value).element_type, _shape(value)
    zero = _constant(element, shape, 0)
    boolean = _tensor(shape, ir.IntegerType.get_signless(1))
    positive = _build("tosa.greater", boolean, [value, zero])
    negative = _build("tosa.greater", boolean, [zero, value])
    inner = _like("tosa.select", value, [negative, _constant(element, shape, -1), value])
    return _like("tosa.select", value, [positive, _constant(element, shape, 1), inner])


def _is_finite(op) -> ir.Value:
    value = op.operands[0]
    infinity = _constant(_type(value).element_type, _shape(value), math.inf)
    # |x| < inf: false for infinities and NaN
    return _build("tosa.greater", op.results[0].type, [infinity, _like("tosa.abs", value, [value])])


def _tan(op) -> ir.Value:
    value = op.operands[0]
    cosine = _like("tosa.cos", value, [value])
    return _mul(op.results[0].type, _like("tosa.sin", value, [value]), _like("tosa.reciprocal", value, [cosine]))


def _remainder(op) -> ir.Value:
    """Of integers: x - (x / y) * y, the quotient truncated as both round it."""
    left, right = op.operands
    quotient = _like("tosa.intdiv", left, [left, right])
    return _like("tosa.sub", left, [left, _mul(left.type, quotient, right)])


def _compare(op) -> ir.Value:
    direction = _stablehlo.ComparisonDirectionAttr(op.attributes["comparison_direction"]).value
    left, right = op.operands
    if direction in ("LT", "LE"):
        left, right = right, left
    name = {"EQ": "tosa.equal", "NE": "tosa.equal", "GT": "tosa.greater", "LT": "tosa.greater",
            "GE": "tosa.greater_equal", "LE": "tosa.greater_equal"}[direction]
    result = _elementwise(name, op, [left, right])
    return _build("tosa.logical_not", result.type, [result]) if direction == "NE" else result


def _convert(op) -> ir.Value:
    value, result_type = op.operands[0], op.results[0].type
    source, target = _element(value), str(ir.RankedTensorType(result_type).element_type)
    if source == target:
        return value
    shape = _shape(value)
    if target == "i1":  # nonzero
        equal = _build("tosa.equal", result_type, [value, _constant(_type(value).element_type, shape, 0)])
        return _build("tosa.logical_not", result_type, [equal])
    element = ir.RankedTensorType(result_type).element_type
    if source == "i1":
        return _build("tosa.select", result_type,
                      [value, _constant(element, shape, 1), _constant(element, shape, 0)])
    if source in _FLOATS and target not in _FLOATS:
        # StableHLO truncates toward zero; TOSA's cast rounds to nearest.
        negative = _build("tosa.greater", _tensor(shape, ir.IntegerType.get_signless(1)),
                          [_constant(_type(value).element_type, shape, 0), value])
        value = _like("tosa.select", value, [negative, _like("tosa.ceil", value, [value]),
                                             _like("tosa.floor", value, [value])])
    return _build("tosa.cast", result_type, [value])


def _clamp(op) -> ir.Value:
    low, value, high = op.operands
    low_number, high_number = _splat_number(low), _splat_number(high)
    element = _type(value).element_type
    if low_number is not None and high_number is not None:
        def bound(number: float) -> ir.Attribute:
            return (ir.FloatAttr.get(element, number) if str(element) in _FLOATS
                    else ir.IntegerAttr.get(element, int(number)))

        return _like("tosa.clamp", value, [value], min_val=bound(low_number), max_val=bound(high_number))
    raised = _elementwise("tosa.maximum", op, [value, low])
    return _elementwise("tosa.minimum", op, [raised, high])


def _constant_op(op) -> ir.Value:
    return _build("tosa.const", op.results[0].type, [], values=op.attributes["value"])


def _iota(op) -> ir.Value:
    result_type = ir.RankedTensorType(op.results[0].type)
    shape, axis = list(result_type.shape), _integer(op, "iota_dimension", 0)
    counts = np.arange(shape[axis]).reshape([-1 if d == axis else 1 for d in range(len(shape))])
    values = np.broadcast_to(counts, shape).astype(_IOTA_DTYPES[str(result_type.element_type)])
    return _build("tosa.const", result_type, [], values=ir.DenseElementsAttr.get(np.ascontiguousarray(values)))


def _feeds_only_elementwise(value) -> bool:
    return all(use.owner.name in _BROADCASTING for use in value.uses)


def _broadcast_in_dim(op) -> ir.Value:
    value = op.operands[0]
    target = _shape(op.results[0])
    dimensions = _array(op, "broadcast_dimensions")
    order = sorted(range(len(dimensions)), key=lambda i: dimensions[i])
    value = _transpose(value, order)
    full = [1] * len(target)
    for index, source in enumerate(order):
        full[dimensions[source]] = _shape(value)[index]
    value = _reshape(value, full)
    # Elementwise TOSA ops broadcast dims of size 1 themselves.
    return value if _feeds_only_elementwise(op.results[0]) else _broadcast(value, target)


def _reshape_op(op) -> ir.Value:
    return _reshape(op.operands[0], _shape(op.results[0]))


def _transpose_op(op) -> ir.Value:
    return _transpose(op.operands[0], _array(op, "permutation"))


def _concatenate(op) -> ir.Value:
    return _build("tosa.concat", op.results[0].type, list(op.operands),
                  axis=ir.IntegerAttr.get(ir.IntegerType.get_signless(32), _integer(op, "dimension", 0)))


def _slice_value(value, start: list[int], size: list[int]) -> ir.Value:
    if list(size) == _shape(value):
        return value
    return _like("tosa.slice", value, [value, _shape_value(start), _shape_value(size)], size)


def _pad_value(value, low: list[int], high: list[int], padding_value) -> ir.Value:
    if not any(low) and not any(high):
        return value
    shape = [size + before + after for size, before, after in zip(_shape(value), low, high)]
    padding = [v for pair in zip(low, high) for v in pair]
    return _like("tosa.pad", value, [value, _shape_value(padding), _reshape(padding_value, [1])], shape)


def _every_stride(value, axis: int, stride: int) -> ir.Value:
    """Elements 0, stride, 2 * stride, ... along `axis`: the axis split into
    [count, stride] (padded at its end to a whole multiple), the first column kept."""
    shape = _shape(value)
    count = -(-shape[axis] // stride)
    padded_high = [0] * len(shape)
    padded_high[axis] = count * stride - shape[axis]
    value = _pad_value(value, [0] * len(shape), padded_high, _constant(_type(value).element_type, [], 0))
    split = [*shape[:axis], count, stride, *shape[axis + 1:]]
    value = _reshape(value, split)
    kept = [*shape[:axis], count, 1, *shape[axis + 1:]]
    value = _slice_value(value, [0] * len(split), kept)
    return _reshape(value, [*shape[:axis], count, *shape[axis + 1:]])


def _slice(op) -> ir.Value:
    value = op.operands[0]
    start, limit = _array(op, "start_indices"), _array(op, "limit_indices")
    strides = _array(op, "strides", 1, len(start))
    value = _slice_value(value, start, [end - begin for begin, end in zip(start, limit)])
    for axis, stride in enumerate(strides):
        if stride != 1:
            value = _every_stride(value, axis, stride)
    return value


def _pad(op) -> ir.Value:
    """Edge padding; where negative, the edge sliced off after the positive padding."""
    value, padding_value = op.operands
    low, high = _array(op, "edge_padding_low"), _array(op, "edge_padding_high")
    value = _pad_value(value, [max(v, 0) for v in low], [max(v, 0) for v in high], padding_value)
    start = [max(-v, 0) for v in low]
    size = [size - begin - max(-v, 0) for size, begin, v in zip(_shape(value), start, high)]
    return _slice_value(value, start, size)


def _reverse(op) -> ir.Value:
    value = op.operands[0]
    for axis in _array(op, "dimensions"):
        value = _like("tosa.reverse", value, [value], axis=ir.IntegerAttr.get(ir.IntegerType.get_signless(32), axis))
    return value


def _dot_general(op) -> ir.Value:
    left, right = op.operands
    numbers = _stablehlo.DotDimensionNumbers(op.attributes["dot_dimension_numbers"])
    left_batch, right_batch = list(numbers.lhs_batching_dimensions), list(numbers.rhs_batching_dimensions)
    left_sum, right_sum = list(numbers.lhs_contracting_dimensions), list(numbers.rhs_contracting_dimensions)
    left_shape, right_shape = _shape(left), _shape(right)
    left_free = [d for d in range(len(left_shape)) if d not in left_batch + left_sum]
    right_free = [d for d in range(len(right_shape)) if d not in right_batch + right_sum]
    batch = math.prod(left_shape[d] for d in left_batch)
    rows, inner = math.prod(left_shape[d] for d in left_free), math.prod(left_shape[d] for d in left_sum)
    columns = math.prod(right_shape[d] for d in right_free)
    left = _reshape(_transpose(left, left_batch + left_free + left_sum), [batch, rows, inner])
    right = _reshape(_transpose(right, right_batch + right_sum + right_free), [batch, inner, columns])
    element = ir.RankedTensorType(op.results[0].type).element_type
    product = _build("tosa.matmul", _tensor([batch, rows, columns], element),
                     [left, right, _zero_point(left), _zero_point(right)])
    return _reshape(product, _shape(op.results[0]))


def _convolution(op) -> ir.Value:
    """As TOSA's NHWC convolution (a 1-D one over 1 x W): depthwise where each
    input channel is a group, else one convolution per group, concatenated."""
    image, kernel = op.operands
    numbers = _stablehlo.ConvDimensionNumbers(op.attributes["dimension_numbers"])
    spatial = len(numbers.input_spatial_dimensions)
    result_shape = _shape(op.results[0])
    image = _transpose(image, [numbers.input_batch_dimension, *numbers.input_spatial_dimensions,
                               numbers.input_feature_dimension])
    out_layout = [numbers.output_batch_dimension, *numbers.output_spatial_dimensions,
                  numbers.output_feature_dimension]
    out_shape = [result_shape[d] for d in out_layout]
    strides = _array(op, "window_strides", 1, spatial)
    dilations = _array(op, "rhs_dilation", 1, spatial)
    padding = [v for pair in _pairs(op, "padding", spatial) for v in pair]
    groups, channels = _integer(op, "feature_group_count"), _shape(image)[-1]
    depthwise = groups == channels and groups != 1
    if depthwise:  # [spatial..., 1, channels * multiplier] -> [spatial..., channels, multiplier]
        kernel = _transpose(kernel, [*numbers.kernel_spatial_dimensions, numbers.kernel_input_feature_dimension,
                                     numbers.kernel_output_feature_dimension])
        kernel = _reshape(kernel, [*_shape(kernel)[:spatial], channels, _shape(kernel)[-1] // channels])
    else:  # OHWI
        kernel = _transpose(kernel, [numbers.kernel_output_feature_dimension, *numbers.kernel_spatial_dimensions,
                                     numbers.kernel_input_feature_dimension])
    if spatial == 1:
        image = _reshape(image, [_shape(image)[0], 1, *_shape(image)[1:]])
        kernel_shape = _shape(kernel)
        kernel = _reshape(kernel, [1, *kernel_shape] if depthwise else [kernel_shape[0], 1, *kernel_shape[1:]])
        strides, dilations, padding = [1, *strides], [1, *dilations], [0, 0, *padding]
        out_shape = [out_shape[0], 1, *out_shape[1:]]
    element = _type(image).element_type
    attributes = {"pad": _i64_array(padding), "stride": _i64_array(strides), "dilation": _i64_array(dilations),
                  "acc_type": ir.TypeAttr.get(element)}

    def convolve(kind: str, source, weights) -> ir.Value:
        produced = [*out_shape[:-1], _shape(weights)[0] if kind == "tosa.conv2d" else out_shape[-1]]
        bias = _constant(element, [produced[-1]], 0)
        return _build(kind, _tensor(produced, element),
                      [source, weights, bias, _zero_point(source), _zero_point(weights)], **attributes)

    if depthwise:
        result = convolve("tosa.depthwise_conv2d", image, kernel)
    elif groups == 1:
        result = convolve("tosa.conv2d", image, kernel)
    else:
        per_input, per_output = channels // groups, out_shape[-1] // groups
        image_shape, kernel_shape = _shape(image), _shape(kernel)
        parts = [convolve("tosa.conv2d",
                          _slice_value(image, [0, 0, 0, group * per_input], [*image_shape[:3], per_input]),
                          _slice_value(kernel, [group * per_output, 0, 0, 0], [per_output, *kernel_shape[1:]]))
                 for group in range(groups)]
        result = _build("tosa.concat", _tensor(out_shape, element), parts,
                        axis=ir.IntegerAttr.get(ir.IntegerType.get_signless(32), 3))
    if spatial == 1:
        result = _reshape(result, [out_shape[0], *out_shape[2:]])
    return _transpose(result, _inverse(out_layout))


def _gather(op) -> ir.Value:
    """A lookup of whole rows (or columns) of a matrix: TOSA's gather of
    rows, the indices clamped into range as StableHLO's gather does."""
    table, indices = op.operands
    numbers = _stablehlo.GatherDimensionNumbers(op.attributes["dimension_numbers"])
    axis = list(numbers.collapsed_slice_dims)[0]
    table = _transpose(table, [axis, 1 - axis])
    rows, width = _shape(table)
    batch = [size for index, size in enumerate(_shape(indices)) if index != numbers.index_vector_dim]
    count = math.prod(batch)
    indices = _reshape(indices, [1, count])
    int32 = ir.IntegerType.get_signless(32)
    if _element(indices) != "i32":
        indices = _build("tosa.cast", _tensor([1, count], int32), [indices])
    indices = _like("tosa.clamp", indices, [indices], min_val=ir.IntegerAttr.get(int32, 0),
                    max_val=ir.IntegerAttr.get(int32, rows - 1))
    found = _like("tosa.gather", table, [_reshape(table, [1, rows, width]), indices], [1, count, width])
    found = _reshape(found, [*batch, width])
    order = list(range(len(batch)))
    order.insert(list(numbers.offset_dims)[0], len(batch))
    return _transpose(found, order)


# jax's reducer of (value, position) pairs for argmax (first comparison GT) and argmin (LT): the
# extreme value (a NaN first), ties to the lower position. Each op: its name, operands as indices into
# the block arguments (value, position, other value, other position) or into the body's own results.
_ARG_REDUCER = (
    ("stablehlo.compare", ("a0", "a2")), ("stablehlo.compare", ("a0", "a0")), ("stablehlo.or", ("r0", "r1")),
    ("stablehlo.compare", ("a0", "a2")), ("stablehlo.compare", ("a1", "a3")), ("stablehlo.and", ("r3", "r4")),
    ("stablehlo.or", ("r2", "r5")), ("stablehlo.select", ("r2", "a0", "a2")),
    ("stablehlo.select", ("r6", "a1", "a3")), ("stablehlo.return", ("r7", "r8")),
)


def _arg_direction(op) -> str | None:
    """"GT" (argmax) or "LT" (argmin) where the body of the two-operand reduce `op` is jax's
    argmax or argmin reducer, else None."""
    block = op.regions[0].blocks[0]
    body = [o.operation for o in block.operations]
    names = {f"a{index}": argument for index, argument in enumerate(block.arguments)}
    names.update({f"r{index}": o.results[0] for index, o in enumerate(body) if len(o.results) == 1})
    if len(body) != len(_ARG_REDUCER) or any(
            o.name != kind or list(o.operands) != [names[n] for n in operands]
            for o, (kind, operands) in zip(body, _ARG_REDUCER)):
        return None
    directions = [_stablehlo.ComparisonDirectionAttr(o.attributes["comparison_direction"]).value
                  for o in body if o.name == "stablehlo.compare"]
    if directions[1:] != ["NE", "EQ", "LT"] or directions[0] not in ("GT", "LT"):
        return None
    return directions[0]


def _arg_reduction(op) -> bool:
    """Whether `op` is jax's argmax or argmin: a reduction of float values and their iota positions
    along one axis, from -inf (argmax) or inf (argmin) and position 0."""
    if len(op.operands) != 4 or _element(op.operands[0]) not in _FLOATS:
        return False
    positions, axes = op.operands[1].owner, _array(op, "dimensions")
    if (len(axes) != 1 or not isinstance(positions, ir.OpView) or positions.operation.name != "stablehlo.iota"
            or _integer(positions, "iota_dimension", 0) != axes[0]):
        return False
    direction = _arg_direction(op)
    start = -math.inf if direction == "GT" else math.inf
    return direction is not None and _splat_number(op.operands[2]) == start and _splat_number(op.operands[3]) == 0


def _arg_reduce(op, direction: str) -> tuple[ir.Value, ir.Value]:
    """(the extreme values, their first positions): TOSA's argmax, of the negated values for argmin."""
    values = op.operands[0]
    axis = _array(op, "dimensions")[0]
    i32 = ir.IntegerType.get_signless(32)
    axis_attribute = ir.IntegerAttr.get(i32, axis)
    searched = values if direction == "GT" else _like("tosa.negate", values,
                                                       [values, _zero_point(values), _zero_point(values)])
    positions_type = ir.RankedTensorType(op.results[1].type)
    positions = _build("tosa.argmax", _tensor(positions_type.shape, i32), [searched], axis=axis_attribute)
    if str(positions_type.element_type) != "i32":
        positions = _build("tosa.cast", positions_type, [positions])
    kept = _shape(values)
    kept[axis] = 1
    extreme = _like("tosa.reduce_max" if direction == "GT" else "tosa.reduce_min", values, [values], kept,
                    axis=axis_attribute)
    return _reshape(extreme, _shape(op.results[0])), positions


def _reduce(op) -> ir.Value | tuple[ir.Value, ir.Value]:
    if len(op.results) == 2:  # recognized by `_arg_reduction`
        return _arg_reduce(op, _arg_direction(op))
    value, initial = op.operands
    body = _body_op(op)
    reduction, combine = _REDUCTIONS[body]
    for axis in sorted(_array(op, "dimensions")):
        shape = _shape(value)
        shape[axis] = 1
        value = _like(reduction, value, [value], shape,
                      axis=ir.IntegerAttr.get(ir.IntegerType.get_signless(32), axis))
    value = _reshape(value, _shape(op.results[0]))
    if _is_identity(initial, body):
        return value
    initial = _reshape(initial, [1] * len(_shape(value)))
    return _mul(value.type, value, initial) if combine == "tosa.mul" else _build(combine, value.type, [value, initial])


def _reduce_window(op) -> ir.Value:
    value = op.operands[0]
    rank = 4
    axes = _pool_axes(op)
    others = [axis for axis in range(rank) if axis not in axes]
    layout = [others[0], *axes, others[1]]  # as NHWC
    windows, strides = _array(op, "window_dimensions", 1, rank), _array(op, "window_strides", 1, rank)
    padding = [v for axis in axes for v in _pairs(op, "padding", rank)[axis]]
    value = _transpose(value, layout)
    result_shape = _shape(op.results[0])
    pooled_shape = [result_shape[d] for d in layout]
    attributes = {"kernel": _i64_array(windows[a] for a in axes), "stride": _i64_array(strides[a] for a in axes),
                  "pad": _i64_array(padding)}
    if _body_op(op) == "stablehlo.maximum":
        pooled = _like("tosa.max_pool2d", value, [value], pooled_shape, **attributes)
    else:  # a sum: the unpadded mean times the window's size
        element = _type(value).element_type
        mean = _like("tosa.avg_pool2d", value, [value, _zero_point(value), _zero_point(value)], pooled_shape,
                     acc_type=ir.TypeAttr.get(element), **attributes)
        area = math.prod(windows[a] for a in axes)
        pooled = _mul(mean.type, mean, _constant(element, [1] * rank, area))
    return _transpose(pooled, _inverse(layout))


_REWRITES: dict[str, Callable] = {
    **{name: _same for name in _SAME_OP}, **{name: _float for name in _FLOAT_OP},
    **{name: _logical for name in _LOGICAL_OP},
    "stablehlo.not": _not, "stablehlo.multiply": _multiply, "stablehlo.divide": _divide,
    "stablehlo.negate": _negate, "stablehlo.sqrt": _sqrt, "stablehlo.exponential_minus_one": _exponential_minus_one,
    "stablehlo.log_plus_one": _log_plus_one, "stablehlo.sign": _sign, "stablehlo.compare": _compare,
    "stablehlo.convert": _convert, "stablehlo.clamp": _clamp, "stablehlo.constant": _constant_op,
    "stablehlo.iota": _iota, "stablehlo.broadcast_in_dim": _broadcast_in_dim, "stablehlo.reshape": _reshape_op,
    "stablehlo.transpose": _transpose_op, "stablehlo.concatenate": _concatenate, "stablehlo.slice": _slice,
    "stablehlo.pad": _pad, "stablehlo.reverse": _reverse, "stablehlo.dot_general": _dot_general,
    "stablehlo.convolution": _convolution, "stablehlo.reduce": _reduce, "stablehlo.reduce_window": _reduce_window,
    "stablehlo.is_finite": _is_finite, "stablehlo.tan": _tan, "stablehlo.remainder": _remainder,
    "stablehlo.gather": _gather,
}
# Ops rewritten for float operands only.
_FLOAT_ONLY = frozenset({"stablehlo.sqrt", "stablehlo.exponential_minus_one", "stablehlo.log_plus_one",
                         "stablehlo.is_finite", "stablehlo.tan"})
# Ops rewritten into broadcasting TOSA ops (a broadcast feeding only them need not be tiled).
_BROADCASTING = frozenset({*_SAME_OP, *_FLOAT_OP, *_LOGICAL_OP, "stablehlo.multiply", "stablehlo.divide",
                           "stablehlo.compare"})
# Ops whose results are their operands.
_PASS_THROUGH = frozenset({"stablehlo.optimization_barrier"})


def _entry_ops(module) -> list:
    return [op.operation for function in module.body.operations if function.operation.name == "func.func"
            for op in function.regions[0].blocks[0].operations]


def refusals(module) -> list[list[str]]:
    """[kind, location] of each op of `module`'s functions that has no TOSA rewrite."""
    found = []
    for op in _entry_ops(module):
        if op.name.startswith("func.") or op.name in _PASS_THROUGH:
            continue
        kind = _refusal(op)
        if kind:
            found.append([kind, str(op.location)])
    return found


def convert(module) -> list[list[str]]:
    """Rewrites `module`'s StableHLO into TOSA in place, unless some op has no
    rewrite: then returns their [kind, location] and changes nothing."""
    refused = refusals(module)
    if refused:
        return refused
    rewritten = []
    for op in _entry_ops(module):
        if op.name in _PASS_THROUGH:
            for result, operand in zip(op.results, op.operands):
                result.replace_all_uses_with(operand)
        elif not op.name.startswith("func."):
            with ir.InsertionPoint(op), op.location:
                values = _REWRITES[op.name](op)
                for result, value in zip(op.results, values if isinstance(values, tuple) else (values,)):
                    result.replace_all_uses_with(value)
        else:
            continue
        rewritten.append(op)
    for op in reversed(rewritten):
        op.erase()
    return []
