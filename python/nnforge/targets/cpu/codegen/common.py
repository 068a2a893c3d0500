"""What every schedule uses: the static loop sizes of linalg ops, transform IR
as text (tiling, hoisting accumulators), the attributes that find ops again
after a pass ran, and applying a script with the transform interpreter."""

from __future__ import annotations

from dataclasses import dataclass

from mlir import ir, passmanager
from mlir.dialects import linalg

from nnforge.errors import CompileError
from nnforge.importers.handover import walk_ops

# Innermost loops narrower than this (statically) stay scalar.
MIN_VECTOR = 4
# Ops with fewer iterations than this run on one thread: starting the others
# costs more than they save.
PARALLEL_MIN_ITERATIONS = 1 << 16

# The attribute that tags each op with the sequence scheduling it.
_TAG = "nnforge_schedule_id"
# The attribute that numbers the ops of a dispatch region for its sequence.
MEMBER = "nnforge_dispatch_member"
# The attribute that finds row segments again after a pass ran on their
# function (which invalidates handles), unique per segment in a process.
SEGMENT = "nnforge_segment"
# The attribute that finds a region's tile loop again after a pass ran on
# the region.
TILE_LOOP = "nnforge_tile_loop"
# The attribute giving a depthwise convolution in a region the rows its tiles
# are a multiple of.
TILE_ROWS = "nnforge_tile_rows"
# The attribute giving a contraction that reads the collapsed rows of a
# producer in its region the columns of a band of those rows.
BAND_COLUMNS = "nnforge_band_columns"


@dataclass(frozen=True)
class Scheduled:
    """One op and the transform ops (text) that schedule it, on handle %op."""

    op: ir.Operation
    body: str


def linalg_ops(module: ir.Module) -> list[ir.Operation]:
    """The linalg structured ops of `module`, in program order."""
    found: list[ir.Operation] = []

    def visit(operation: ir.Operation) -> None:
        for region in operation.regions:
            for block in region.blocks:
                for child in block.operations:
                    child = child.operation
                    if child.name.startswith("linalg.") and child.name != "linalg.yield":
                        found.append(child)
                    else:
                        visit(child)

    visit(module.operation)
    return found


# The attribute of the functions nnf-outline-dispatch-regions makes of
# dispatch regions.
DISPATCH_FUNCTION = "nnf.dispatch_function"


def dispatches(module: ir.Module) -> list[ir.Operation]:
    """The dispatch regions of `module`: the functions they were outlined
    into (nnf-outline-dispatch-regions), then the nnf.dispatch ops left in
    place, in program order."""
    outlined = [
        op.operation for op in module.body.operations
        if op.operation.name == "func.func" and DISPATCH_FUNCTION in op.operation.attributes
    ]
    return outlined + [op for op in walk_ops(module.operation) if op.name == "nnf.dispatch"]


def sizes_text(values: list[int]) -> str:
    """`values` as a list in transform IR (tile or vector sizes): "[8, 32, 1]"."""
    return "[" + ", ".join(str(v) for v in values) + "]"


def loop_count(op: ir.Operation) -> int:
    """Number of loops of a linalg op (its iteration domain's rank)."""
    maps = linalg.get_indexing_maps(op)
    return ir.AffineMapAttr(maps[0]).value.n_dims if maps else 0


def static_loop_sizes(op: ir.Operation) -> list[int | None]:
    """Static size of each loop of a linalg op (None where dynamic or unknown)."""
    sizes: list[int | None] = [None] * loop_count(op)
    for map_attr, operand in zip(linalg.get_indexing_maps(op), op.operands):
        if not isinstance(operand.type, ir.ShapedType):
            continue
        shape = ir.ShapedType(operand.type)
        for position, expr in enumerate(ir.AffineMapAttr(map_attr).value.results):
            expr = expr.maybe_downcast()
            if isinstance(expr, ir.AffineDimExpr) and not shape.is_dynamic_dim(position):
                sizes[expr.position] = shape.shape[position]
    return sizes


def clamp(tiles: list[int], sizes: list[int | None]) -> list[int]:
    """Tile/vector sizes no larger than static loop sizes (fewer masked lanes)."""
    return [tile if size is None else min(tile, size) for tile, size in zip(tiles, sizes)]


def worth_parallel(op: ir.Operation) -> bool:
    """Whether the op has enough iterations to share among threads, and
    makes no run-time checks."""
    return not makes_runtime_checks(op) and has_many_iterations(op)


def makes_runtime_checks(op: ir.Operation) -> bool:
    """Whether the op checks its data at run time: a failed check returns to
    the caller from the calling thread only (see nnf-assert-to-runtime-error)."""
    return any(inner.name == "cf.assert" for inner in walk_ops(op))


def has_many_iterations(op: ir.Operation) -> bool:
    """Whether the op has enough iterations to be worth several threads."""
    volume = 1
    for size in static_loop_sizes(op):
        if size is None:
            return True
        volume *= size
    return volume >= PARALLEL_MIN_ITERATIONS


def tile_outer(target: str, result: str, tiles: list[int], parallel: bool) -> str:
    """Transform ops tiling handle `%target` by `tiles` (0: not tiled) into `%result`.

    Parallel: one `scf.forall` (later OpenMP threads); else nested `scf.for`.
    Nothing to tile: `%result` is `%target`.
    """
    count = sum(1 for tile in tiles if tile)
    if count == 0:
        return f"""
    %{result} = transform.cast %{target} : !transform.any_op to !transform.any_op"""
    if parallel:
        return f"""
    %{result}, %{result}_forall = transform.structured.tile_using_forall %{target} tile_sizes {sizes_text(tiles)}
        : (!transform.any_op) -> (!transform.any_op, !transform.any_op)"""
    loops = ", ".join(["!transform.any_op"] * count)
    return f"""
    %{result}, %{result}_loops:{count} = transform.structured.tile_using_for %{target} tile_sizes {sizes_text(tiles)}
        : (!transform.any_op) -> (!transform.any_op, {loops})"""


def copy_operand(target: str, result: str, op: ir.Operation, operand: int) -> str:
    """Transform ops copying operand `operand` of the linalg op on handle
    `%target` (its tile, once tiled) into a buffer of its own, contiguous,
    a row at a time (`row_copies`: rows of a tile, a few hundred elements
    at most); `%result` is the op reading the copy. `op` is the op the
    handle stands for, before any tiling (its operand count, loop count and
    element types); static shapes only.

    A row left a 2-D copy became a call of the runtime's strided memrefCopy
    or of libc's memcpy: 6% of a 2048^2 matmul's time, 7% of ResNet-18's on
    the Intel Xeon."""
    element_types = [ir.ShapedType(value.type).element_type for value in op.operands]
    zeros = ", ".join(f"{'0' if isinstance(t, ir.IntegerType) else '0.0'} : {t}" for t in element_types)
    nofold = sizes_text([int(index == operand) for index in range(len(op.operands))])
    outer_dims = ir.ShapedType(op.operands[operand].type).rank - 1
    return f"""
    %{result}, %{result}_pad, %{result}_copy_back = transform.structured.pad %{target} {{
        padding_values = [{zeros}], padding_dimensions = {sizes_text(list(range(loop_count(op))))},
        nofold_flags = {nofold}, copy_back_op = "none"
      }} : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op)
    %{result}_copy = transform.structured.rewrite_in_destination_passing_style %{result}_pad
        : (!transform.any_op) -> !transform.any_op
""" + row_copies(f"{result}_copy", f"{result}_row", outer_dims + 1, False)


def row_copies(target: str, name: str, rank: int, parallel: bool) -> str:
    """Transform ops copying with `%target` (a copy of rank `rank`) one row
    at a time, every outer loop tiled by 1 and the row whole, the row's unit
    dimensions folded away and the row copy vectorized. Handles are named
    after `name`."""
    tiles = [1] * (rank - 1) + [0]
    loop = f"%{name}_forall" if parallel else f"%{name}_loops#{rank - 2}"
    # Generalized first: the unit-dimension folding takes generics only.
    return f"""{tile_outer(target, name, tiles, parallel)}
    %{name}_generic = transform.structured.generalize %{name} : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to {loop} {{
      transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices
    }} : !transform.any_op
    %{name}_segment = transform.structured.match ops{{["linalg.generic"]}} in {loop} : (!transform.any_op) -> !transform.any_op
    transform.structured.vectorize %{name}_segment : !transform.any_op"""


def hoist_accumulators(function: str, patterns: str = "") -> str:
    """Transform ops that clean up the vectorized code of function handle
    `%function` and hoist each loop-invariant accumulator (a transfer
    read and write of the same slice) out of its loop, into registers.

    Masks are lowered first: the canonicalizer asserts on some masked
    transfers on tensors. Canonicalization may fold single-iteration loops
    away, so the loops are found again, in the function."""
    return f"""
    transform.apply_patterns to %{function} {{
      transform.apply_patterns.vector.lower_masked_transfers
    }} : !transform.any_op
    transform.apply_patterns to %{function} {{{patterns}
      transform.apply_patterns.canonicalization
    }} : !transform.any_op
    transform.apply_cse to %{function} : !transform.any_op
    %loops = transform.structured.match ops{{["scf.for"]}} in %{function} : (!transform.any_op) -> !transform.any_op
    transform.loop.hoist_loop_invariant_subsets %loops : !transform.any_op"""


def has_computed_indices(op: ir.Operation) -> bool:
    """Whether an indexing map of `op` has a result other than a loop index or 0."""
    if "indexing_maps" not in op.attributes:
        return False
    for attribute in ir.ArrayAttr(op.attributes["indexing_maps"]):
        for result in ir.AffineMapAttr(attribute).value.results:
            if isinstance(result, ir.AffineDimExpr):
                continue
            if isinstance(result, ir.AffineConstantExpr) and result.value == 0:
                continue
            return True
    return False


def iterator_types(op: ir.Operation) -> list[str]:
    """The iterator types of a linalg op's loops, as attribute text (none for named ops without them)."""
    if "iterator_types" not in op.attributes:
        return []
    return [str(i) for i in ir.ArrayAttr(op.attributes["iterator_types"])]


def set_i64(op: ir.Operation, name: str, value: int) -> None:
    """Sets attribute `name` of `op` to the i64 `value`."""
    with op.context:
        op.attributes[name] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), value)


def _sequence(scheduled: list[Scheduled], tail: str) -> str:
    """The transform script: one failure-suppressing sequence per op, then `tail`."""
    parts = []
    for index, item in enumerate(scheduled):
        parts.append(
            f"""
  %op{index} = transform.structured.match attributes{{{_TAG} = {index} : i64}} in %root
      : (!transform.any_op) -> !transform.any_op
  transform.sequence %op{index} : !transform.any_op failures(suppress) {{
  ^bb0(%op: !transform.any_op):{item.body}
  }}"""
        )
    return f"""
module attributes {{transform.with_named_sequence}} {{
transform.named_sequence @__transform_main(%root: !transform.any_op {{transform.readonly}}) {{
{"".join(parts)}
  %funcs = transform.structured.match ops{{["func.func"]}} in %root : (!transform.any_op) -> !transform.any_op
{tail}
  transform.yield
}}
}}"""


def apply_schedules(module: ir.Module, scheduled: list[Scheduled], tail: str, what: str) -> None:
    """Tags the ops, runs the script through `transform-interpreter`, cleans up."""
    with module.context:
        for index, item in enumerate(scheduled):
            set_i64(item.op, _TAG, index)
        script = ir.Module.parse(_sequence(scheduled, tail))
        module.operation.attributes["transform.with_named_sequence"] = ir.UnitAttr.get()
        sequence = script.body.operations[0]
        module.body.append(sequence.detach_from_parent())
        try:
            passmanager.PassManager.parse("builtin.module(transform-interpreter)").run(
                module.operation
            )
        except ir.MLIRError as error:
            raise CompileError(f"the {what} schedule failed: {error}") from None
        finally:
            for operation in list(module.body.operations):
                if operation.operation.name == "transform.named_sequence":
                    operation.operation.erase()
            del module.operation.attributes["transform.with_named_sequence"]
        for op in walk_ops(module.operation):
            for name in (_TAG, MEMBER, SEGMENT, TILE_LOOP, TILE_ROWS, BAND_COLUMNS):
                if name in op.attributes:
                    del op.attributes[name]


def is_in_dispatch(op: ir.Operation) -> bool:
    """Whether `op` lies in a dispatch region: an `nnf.dispatch`, or a
    function one was outlined into."""
    parent = op.parent
    while parent is not None and parent.name != "builtin.module":
        if parent.name == "nnf.dispatch":
            return True
        if parent.name == "func.func":
            return DISPATCH_FUNCTION in parent.attributes
        parent = parent.parent
    return False
