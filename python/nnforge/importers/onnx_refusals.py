"""ONNX op forms torch-mlir converts without error but computes wrongly.

Measured against onnx's reference outputs (its backend test suite): these
forms would compile and return wrong numbers. Where `onnx_rewrites` has an
exact rewrite it runs first; what reaches `refusals` is refused at import
with an `UnsupportedOpError` naming the node, the attributes and why, and
forms that ONNX defines as functions are expanded into their bodies instead
(`to_expand`), which torch-mlir computes right.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nnforge.errors import UnsupportedOp


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _given(node: Any, position: int) -> bool:
    return position < len(node.input) and bool(node.input[position])


# Function ops computed right once expanded into their ONNX bodies: op type ->
# whether a node is in the form torch-mlir's own conversion gets wrong.
EXPANDED: dict[str, Callable[[Any], bool]] = {
    # Weighted losses: torch-mlir's conversion divides by the wrong total (inf).
    "SoftmaxCrossEntropyLoss": lambda node: _given(node, 2),
}


def to_expand(proto: Any) -> set[str]:
    """The op types of main-graph nodes to expand into their function bodies."""
    return {node.op_type for node in proto.graph.node
            if node.op_type in EXPANDED and EXPANDED[node.op_type](node)}


def _grid_sample(node: Any, values: Any) -> str | None:
    attributes = _attributes(node)
    mode = _text(attributes.get("mode", b"linear"))
    padding = _text(attributes.get("padding_mode", b"zeros"))
    if mode == "nearest":
        return "torch-mlir's lowering picks other neighbours than ONNX's nearest mode (wrong values)"
    if padding == "zeros":
        return ("torch-mlir's lowering reads uninitialized memory for grid points outside the input "
                "(onnx's test_gridsample_zeros_padding gave other values from run to run)")
    return None


def _sequence_lengths(node: Any, values: Any) -> str | None:
    """torch-mlir's recurrent lowerings run every sequence to the full length:
    right only where sequence_lens says so (constant, all the full length)."""
    if not _given(node, 4):
        return None
    lengths = values.constant(node.input[4])
    shape = values.shapes.get(node.input[0])
    if lengths is None or not shape or shape[0] is None or (lengths != shape[0]).any():
        return "torch-mlir's lowering ignores sequence_lens (every sequence runs to the full length)"
    return None


def _lstm(node: Any, values: Any) -> str | None:
    if _given(node, 7):
        return "torch-mlir's lowering ignores the peephole weights P"
    return _sequence_lengths(node, values)


def _resize(node: Any, values: Any) -> str | None:
    """align_corners maps coordinates with the size ONNX computes before
    rounding (input x scale); torch-mlir uses the rounded output size."""
    attributes = _attributes(node)
    if _text(attributes.get("coordinate_transformation_mode", b"half_pixel")) != "align_corners":
        return None
    if _text(attributes.get("mode", b"nearest")) == "nearest" or _given(node, 3):
        return None
    scales = values.constant(node.input[2]) if _given(node, 2) else None
    shape = values.shapes.get(node.input[0])
    if scales is None or shape is None or len(scales) != len(shape):
        return "align_corners with scales not known before import: torch-mlir may map coordinates wrongly"
    if any(d is not None and float(d * s) != int(d * s) for d, s in zip(shape, scales.tolist())):
        return ("align_corners with scales whose output size is not whole (input x scale): ONNX maps "
                "coordinates by the unrounded size, torch-mlir's lowering by the rounded one")
    return None


def _split_to_sequence(node: Any, values: Any) -> str | None:
    if _given(node, 1) and values.constant(node.input[1]) is None:
        return "a split computed at run time: torch-mlir's lowering makes one piece"
    return None


def _unsigned_4bit(node: Any, values: Any) -> str | None:
    from onnx import TensorProto

    if values.element_types.get(node.input[0]) == TensorProto.UINT4:
        return "torch-mlir hands uint4 over as signless i4, which TOSA's cast reads as signed (8..15 become negative)"
    return None


def _left_over(what: str) -> Callable[[Any, Any], str | None]:
    """The forms `onnx_rewrites` rewrites exactly where shapes and constants allow."""

    def check(node: Any, values: Any) -> str | None:
        attributes = _attributes(node)
        if node.op_type == "Gelu" and _text(attributes.get("approximate", b"none")) == "tanh":
            return f"{what} (torch-mlir's conversion computes the erf form)"
        if node.op_type == "SpaceToDepth" and _text(attributes.get("mode", b"DCR")) == "CRD":
            return f"{what} (torch-mlir's conversion ignores the mode)"
        if node.op_type == "Pad" and _text(attributes.get("mode", b"constant")) == "wrap":
            return f"{what} (torch-mlir's lowering never finishes)"
        if node.op_type == "DequantizeLinear" and _given(node, 1):
            shape = values.shapes.get(node.input[1])  # one scale for all: [] or [1]
            if shape is None or any(d != 1 for d in shape) or attributes.get("block_size", 0):
                return f"{what} (torch-mlir's conversion applies the wrong scales per axis or block)"
        if node.op_type == "QLinearMatMul":
            ranks = [len(values.shapes[n]) if n in values.shapes else None for n in node.input[0:4:3]]
            if None in ranks or max(ranks) > 2:
                return f"{what} (torch-mlir's conversion is wrong beyond rank 2)"
        return None

    return check


_NEEDS_STATIC = "needs static shapes and constant operands here to be computed right"
REFUSED: dict[str, Callable[[Any, Any], str | None]] = {
    "GridSample": _grid_sample,
    "LSTM": _lstm,
    "GRU": _sequence_lengths,
    "RNN": _sequence_lengths,
    "Resize": _resize,
    "SplitToSequence": _split_to_sequence,
    "Cast": _unsigned_4bit,
    "CastLike": _unsigned_4bit,
    **{op: _left_over(_NEEDS_STATIC) for op in ("Gelu", "SpaceToDepth", "Pad", "DequantizeLinear", "QLinearMatMul")},
}


# Ops whose results depend on whether their integer operands are signed.
SIGNEDNESS_DEPENDENT = ("Cast", "CastLike", "DequantizeLinear", "Less", "LessOrEqual", "Greater", "GreaterOrEqual",
                        "Max", "Min", "Div", "Mod", "ReduceMax", "ReduceMin", "ArgMax", "ArgMin", "TopK", "Clip")


def _unsigned_at_tosa(node: Any, values: Any) -> str | None:
    """TOSA has no unsigned integers: torch-mlir's TOSA lowering hands uint8/16/32/64 over as signless
    integers and casts, compares and divides them as signed (a uint8 200 cast to float gives -56)."""
    from onnx import TensorProto

    unsigned = {TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64}
    if node.op_type in SIGNEDNESS_DEPENDENT and any(values.element_types.get(name) in unsigned
                                                    for name in node.input if name):
        return "at the TOSA level, which has no unsigned integers, torch-mlir computes it on unsigned values as signed"
    return None


def refusals(proto: Any, describe: Callable[[Any], str], level: str = "linalg") -> list[UnsupportedOp]:
    """The main-graph nodes in a form torch-mlir computes wrongly at `level`, one UnsupportedOp each.

    `describe(node)` names a node for the message.
    """
    from nnforge.importers.onnx_validation import GraphValues

    values = GraphValues(proto)
    found = []
    for node in proto.graph.node:
        check = REFUSED.get(node.op_type)
        reason = check(node, values) if check else None
        if not reason and level == "tosa":
            reason = _unsigned_at_tosa(node, values)
        if reason:
            shown = ", ".join(f"{k}={_text(v)}" for k, v in sorted(_attributes(node).items())
                              if isinstance(v, (int, float, bytes, str, list)))
            kind = f"onnx.{node.op_type}" + (f" ({shown})" if shown else "")
            found.append(UnsupportedOp(kind, 1, (describe(node),), reason))
    return found
