"""Row reductions (one reduction loop, innermost): one row per iteration,
reduced into a vector of partial results (the elementwise vector: 64 lanes
on the Zen 4), combined once per row."""

from __future__ import annotations

from mlir import ir

from nnforge.targets.cpu.codegen.common import (
    MIN_VECTOR,
    clamp,
    has_computed_indices,
    hoist_accumulators,
    iterator_types,
    loop_count,
    sizes_text,
    static_loop_sizes,
    tile_outer,
)
from nnforge.targets.cpu.codegen.elementwise import row_lanes
from nnforge.targets.cpu.host import ScheduleSizes

# Ops that combine a reduction's partial results, as `tile_reduction_using_for`
# recognizes them (the yielded value combines the accumulator and one other value).
_COMBINERS = {
    "arith.addf", "arith.mulf", "arith.maximumf", "arith.minimumf", "arith.maxnumf",
    "arith.minnumf", "arith.addi", "arith.muli", "arith.maxsi", "arith.minsi",
    "arith.maxui", "arith.minui", "arith.andi", "arith.ori", "arith.xori",
}


def _is_row_reduction(op: ir.Operation) -> bool:
    """A one-result generic reducing its innermost loop only, with a plain combiner."""
    if op.name != "linalg.generic" or len(op.results) != 1 or has_computed_indices(op):
        return False
    iterators = iterator_types(op)
    if not iterators or "reduction" not in iterators[-1] or any("reduction" in i for i in iterators[:-1]):
        return False
    body = op.regions[0].blocks[0]
    accumulator = body.arguments[len(body.arguments) - 1]
    yielded = body.operations[len(body.operations) - 1].operands[0].maybe_downcast()
    if not isinstance(yielded, ir.OpResult):
        return False
    combiner = yielded.owner
    return (
        combiner.name in _COMBINERS
        and accumulator in list(combiner.operands)
        and len(list(accumulator.uses)) == 1
    )


def reduction_schedule(op: ir.Operation, parallel: bool, sizing: ScheduleSizes) -> str | None:
    """Rows one at a time; each row reduced into a vector of partial results.

    `tile_reduction_using_for` turns the innermost reduction into a loop of
    elementwise (vector-wide) accumulations into a vector held in registers,
    and one horizontal combination per row at the end, instead of one
    horizontal reduction per vector of input.
    """
    if not _is_row_reduction(op):
        return None
    rank = loop_count(op)
    size = static_loop_sizes(op)[-1]
    [lanes] = clamp([row_lanes(size, sizing)], [size])
    if lanes < MIN_VECTOR:
        return None
    partial = sizes_text([0] * (rank - 1) + [lanes])
    vector = sizes_text([1] * (rank - 1) + [lanes])
    return f"""{tile_outer("op", "row", [1] * (rank - 1) + [0], parallel)}
    %fill, %split, %combine, %loop = transform.structured.tile_reduction_using_for %row by tile_sizes = {partial}
        : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op)
    transform.structured.vectorize %fill vector_sizes {vector} : !transform.any_op
    transform.structured.vectorize %split vector_sizes {vector} : !transform.any_op
    transform.structured.vectorize %combine vector_sizes {vector} : !transform.any_op
    %f = transform.get_parent_op %loop {{op_name = "func.func"}} : (!transform.any_op) -> !transform.any_op""" + (
        hoist_accumulators("f")
    )
