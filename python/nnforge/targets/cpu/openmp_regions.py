"""The OpenMP regions of lowered CPU code, as nnforge's runtime runs them.

`convert-scf-to-openmp` makes each parallel loop an `omp.parallel` region
holding one static `omp.wsloop`; LLVM translates them into calls of six
`__kmpc_*` entry points, which nnforge's runtime implements
(cpp/runtime/openmp.c) on the OpenMP runtime `nnforge.openmp` binds. Here,
at compile time: checking that a module holds nothing else and dropping
the barrier before each region's end (the object compiler points the calls
at the runtime's names: cpp/lib/Target/CPU/ObjectFiles.cpp).
"""

from __future__ import annotations

from mlir import ir

from nnforge.errors import CompileError

# The OpenMP ops of lowered parallel loops (convert-scf-to-openmp) that
# nnforge's runtime can run (cpp/runtime/openmp.c implements the entry
# points LLVM translates them to), with the operand groups (MLIR's ODS
# order) and attributes each may use: parallel regions, with a thread count,
# of static worksharing loops.
OPENMP_OPS = ("omp.parallel", "omp.wsloop", "omp.loop_nest", "omp.yield", "omp.terminator")
_OPENMP_OPERANDS = {
    "omp.parallel": (("allocate", "allocator", "if", "num_threads", "private", "reduction"), {"num_threads"}),
    "omp.wsloop": (("allocate", "allocator", "linear", "linear_step", "private", "reduction", "schedule_chunk"), set()),
}
_OPENMP_ATTRIBUTES = {
    "omp.parallel": {"operandSegmentSizes"},
    "omp.wsloop": {"operandSegmentSizes", "nowait", "schedule_kind"},
}


def _unsupported_openmp(op: ir.Operation) -> str | None:
    """What of `op` nnforge's runtime cannot run, or None."""
    if op.name not in OPENMP_OPS:
        return "the op"
    if op.name not in _OPENMP_OPERANDS:
        return None
    groups, allowed_groups = _OPENMP_OPERANDS[op.name]
    sizes = list(ir.DenseI32ArrayAttr(op.attributes["operandSegmentSizes"]))
    if len(sizes) != len(groups):
        return f"operand groups {sizes} (expected {', '.join(groups)})"
    used = [group for group, size in zip(groups, sizes) if size and group not in allowed_groups]
    if used:
        return f"{', '.join(used)} operands"
    attributes = {op.attributes[index].name for index in range(len(op.attributes))}
    extra = sorted(attributes - _OPENMP_ATTRIBUTES[op.name])
    if extra:
        return f"attributes {', '.join(extra)}"
    if "schedule_kind" in attributes and "static" not in str(op.attributes["schedule_kind"]):
        return f"schedule {op.attributes['schedule_kind']}"
    return None


def finish(module: ir.Module) -> None:
    """Checks the OpenMP ops of lowered parallel loops and drops their
    redundant barriers.

    Raises CompileError for constructs beyond parallel regions of static
    worksharing loops (reductions, other schedules, conditions, thread
    binding): they would call OpenMP entry points nnforge does not provide.
    A worksharing loop that ends its region (as convert-scf-to-openmp makes
    them) gets `nowait`: the region's end already waits for every thread,
    and OpenMPIRBuilder would put a barrier before it too.
    """
    from nnforge.importers.handover import walk_ops

    for op in walk_ops(module.operation):
        if not op.name.startswith("omp."):
            continue
        problem = _unsupported_openmp(op)
        if problem:
            raise CompileError(
                f"the parallel loops were lowered to an OpenMP construct nnforge's runtime does not "
                f"run: {op.name} with {problem} at {op.location} (compile with threads=1)"
            )
        if op.name == "omp.wsloop" and _ends_parallel_region(op):
            op.attributes["nowait"] = ir.UnitAttr.get(module.context)


def _ends_parallel_region(op: ir.Operation) -> bool:
    """Whether only the terminator of an enclosing omp.parallel follows `op`."""
    parent = op.parent
    if parent is None or parent.name != "omp.parallel":
        return False
    for block in parent.regions[0].blocks:
        operations = [member.operation for member in block.operations]
        if op in operations:
            position = operations.index(op)
            return position + 2 == len(operations) and operations[-1].name == "omp.terminator"
    return False
