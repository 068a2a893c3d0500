"""Weights beside the module, not in it, across the hand-over.

A frontend may import a model's large tensors as arguments of its entry
function, appended after the inputs, and keep their bytes (numpy arrays)
aside: torch-mlir's child process then never receives them, nothing prints
them as text or parses them back. `bind` makes those arguments constants
again in nnforge's module, each a `dense_resource` whose blob is the array
itself (no copy), so that the compiler sees the same module as if the
weights had travelled inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nnforge.errors import CompileError

# Tensors at least this large travel as arguments; smaller ones (shapes,
# scalars, index tables) stay literals, where torch-mlir may fold them.
MIN_BYTES = 16 * 1024
# The name of each weight's resource blob: this prefix and its position.
RESOURCE_PREFIX = "nnforge_weight_"


def bind(module: Any, arrays: Sequence[Any]) -> None:
    """Replaces the last `len(arrays)` arguments of the entry function of
    `module` (an `mlir.ir.Module`) by constants holding `arrays` (numpy
    arrays, kept alive by the module's context)."""
    if not arrays:
        return
    # Here, not at the top: torch-mlir's child process imports this
    # package, and must not load the `mlir` package's MLIR next to its own.
    from mlir import ir
    from mlir.dialects import arith, memref

    from nnforge.entry import entry_function

    function = entry_function(module)
    function_name = ir.StringAttr(function.attributes["sym_name"]).value
    block = function.regions[0].blocks[0]
    count = len(block.arguments)
    first = count - len(arrays)
    if first < 0:
        raise CompileError(f"@{function_name} takes {count} arguments, fewer than its {len(arrays)} weights")
    with module.context, ir.Location.unknown(), ir.InsertionPoint.at_block_begin(block):
        for index, array in enumerate(arrays):
            argument = block.arguments[first + index]
            name = f"{RESOURCE_PREFIX}{index}"
            if isinstance(argument.type, ir.RankedTensorType):
                tensor = ir.RankedTensorType(argument.type)
                _check_size(array, tensor, function_name, first + index)
                value = arith.ConstantOp(tensor, ir.DenseResourceElementsAttr.get_from_buffer(array, name, tensor)).result
            elif isinstance(argument.type, ir.MemRefType):
                # A module torch-mlir bufferized (see torch_mlir_worker): the
                # weight becomes a global (not constant: bufferization made
                # no promise about writes to arguments).
                buffer = ir.MemRefType(argument.type)
                _check_size(array, buffer, function_name, first + index)
                tensor = ir.RankedTensorType.get(buffer.shape, buffer.element_type)
                with ir.InsertionPoint(module.body):
                    memref.GlobalOp(
                        name, ir.TypeAttr.get(buffer), sym_visibility="private",
                        initial_value=ir.DenseResourceElementsAttr.get_from_buffer(array, name, tensor),
                    )
                value = memref.GetGlobalOp(buffer, name).result
            else:
                raise CompileError(f"argument {first + index} of @{function_name} holds a weight but has type {argument.type}")
            argument.replace_all_uses_with(value)
        for index in reversed(range(first, count)):
            block.erase_argument(index)
        function_type = ir.FunctionType(ir.TypeAttr(function.attributes["function_type"]).value)
        function.attributes["function_type"] = ir.TypeAttr.get(
            ir.FunctionType.get(list(function_type.inputs)[:first], function_type.results)
        )
        if "arg_attrs" in function.attributes:
            function.attributes["arg_attrs"] = ir.ArrayAttr.get(list(ir.ArrayAttr(function.attributes["arg_attrs"]))[:first])


def _check_size(array: Any, shaped: Any, function_name: str, index: int) -> None:
    """CompileError unless `array` holds exactly the bytes of the shaped type."""
    from mlir import ir

    element = shaped.element_type
    bits = next((kind(element).width for kind in (ir.FloatType, ir.IntegerType) if isinstance(element, kind)), None)
    if not shaped.has_static_shape or array.size != _product(shaped.shape) or bits != array.itemsize * 8:
        raise CompileError(
            f"argument {index} of @{function_name} ({shaped}) does not match its weight "
            f"({list(array.shape)}, {array.dtype})"
        )


def _product(shape: Sequence[int]) -> int:
    product = 1
    for size in shape:
        product *= size
    return product
