"""Equal ops scheduled once: each linalg op outside dispatch regions is put
in a dispatch region of its own, and nnf-outline-dispatch-regions makes one
function of each class of equal regions (weights aside). The functions are
scheduled like the ops they hold, and inlined back with the dispatch
functions. ResNet-18's 141 schedules become 87 (its four 64-channel 3x3
convolutions are one, its batch norms' scale computations a few), which
halves the time of the vectorize stage.
"""

from __future__ import annotations

from mlir import ir, passmanager

from nnforge.dialects import nnf
from nnforge.importers.handover import walk_ops
from nnforge.targets.cpu.codegen.common import DISPATCH_FUNCTION, is_in_dispatch, linalg_ops

# Marks the regions made around one op, and then their calls.
_ALONE = "nnf.scheduled_alone"

OUTLINE = "builtin.module(nnf-outline-dispatch-regions)"


def outline_equal_ops(module: ir.Module) -> None:
    """Moves each linalg op at the top level of a function (not in a
    dispatch region) into a function, equal ops into one. The functions are
    not marked as dispatch functions: their op is scheduled as it would be
    in place (`is_in_dispatch` is false inside)."""
    with module.context:
        for op in linalg_ops(module):
            if op.parent.name == "func.func" and not is_in_dispatch(op) and len(op.results) > 0:
                _wrap_in_dispatch(op)
        passmanager.PassManager.parse(OUTLINE).run(module.operation)
        outlined = set()
        for operation in list(walk_ops(module.operation)):
            if _ALONE not in operation.attributes:
                continue
            if operation.name == "func.call":
                outlined.add(ir.FlatSymbolRefAttr(operation.attributes["callee"]).value)
                del operation.attributes[_ALONE]
            else:  # left in place: it reads a slice (see nnf-outline-dispatch-regions)
                _dissolve(operation)
        for function in module.body.operations:
            if function.operation.name == "func.func" and ir.StringAttr(function.attributes["sym_name"]).value in outlined:
                del function.attributes[DISPATCH_FUNCTION]


def _wrap_in_dispatch(op: ir.Operation) -> None:
    """Puts `op` in an `nnf.dispatch` of its own, marked `_ALONE`: the values
    it uses from outside become the region's inputs, constants are cloned in
    (nnf-outline-dispatch-regions passes those holding data back as inputs)."""
    outside = _values_from_outside(op)
    inputs = [value for value in outside if not _is_constant(value)]
    with ir.InsertionPoint(op), op.location:
        dispatch = nnf.DispatchOp([result.type for result in op.results], inputs)
        dispatch.attributes[_ALONE] = ir.UnitAttr.get()
        for result, replacement in zip(op.results, dispatch.results):
            result.replace_all_uses_with(replacement)
        block = dispatch.body.blocks.append(*[value.type for value in inputs])
    with ir.InsertionPoint(block), op.location:
        replacements = dict(zip(inputs, block.arguments))
        for value in outside:
            if value not in replacements:
                replacements[value] = value.owner.clone().results[0]
        nnf.YieldOp(list(op.results))
    op.move_before(block.operations[len(block.operations) - 1])
    for value, replacement in replacements.items():
        for use in list(value.uses):
            if _contains(op, use.owner.operation):
                use.owner.operands[use.operand_number] = replacement


def _dissolve(dispatch: ir.Operation) -> None:
    """Moves the ops of `dispatch` in front of it and erases it (what
    nnf-inline-dispatch-regions does to every region)."""
    block = dispatch.regions[0].blocks[0]
    for argument, value in zip(block.arguments, dispatch.operands):
        argument.replace_all_uses_with(value)
    operations = list(block.operations)
    for operation in operations[:-1]:
        operation.move_before(dispatch)
    for result, value in zip(dispatch.results, operations[-1].operands):
        result.replace_all_uses_with(value)
    dispatch.erase()


def _values_from_outside(op: ir.Operation) -> list[ir.Value]:
    """The values `op` and the ops nested in it use that are defined
    outside `op`, in order of first use."""
    found: list[ir.Value] = []

    def visit(operation: ir.Operation) -> None:
        for operand in operation.operands:
            if operand not in found and not _defined_in(op, operand):
                found.append(operand)
        for region in operation.regions:
            for block in region.blocks:
                for child in block.operations:
                    visit(child.operation)

    visit(op)
    return found


def _is_constant(value: ir.Value) -> bool:
    return isinstance(value, ir.OpResult) and value.owner.name == "arith.constant"


def _defined_in(op: ir.Operation, value: ir.Value) -> bool:
    """Whether `value` is a result or block argument inside `op` (not `op`'s own results)."""
    if isinstance(value, ir.OpResult):
        return value.owner != op and _contains(op, value.owner)
    return _contains(op, ir.BlockArgument(value).owner.owner)


def _contains(op: ir.Operation, other: ir.Operation) -> bool:
    """Whether `other` is `op` or nested in it."""
    op, other = op.operation, other.operation
    while other is not None:
        if other == op:
            return True
        if other.name == "builtin.module":
            return False
        other = other.parent.operation if other.parent is not None else None
    return False
