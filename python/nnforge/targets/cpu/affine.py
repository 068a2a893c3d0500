"""The polyhedral CPU code generator (`nnforge.compile(..., optimize="affine")`).

The model goes to linalg on buffers as for the naive lowering (fusion on
tensors, bufferization, weights moved out), then through
`pipelines.affine_buffers_to_llvm`: linalg to affine loops, upstream's
affine passes (fusion, tiling, super-vectorization, ...) and the lowering
to LLVM. That pipeline runs in a child process (`nnforge-opt`): upstream's
affine passes assert on some loop nests, and an assertion in this process
would end the caller's.

Loop fusion is left out of the compiled pipeline: upstream's fusion gave
wrong results on the test models (docs/affine.md). Where the child fails,
the ops it fails on are found by bisection (the others lowered to plain
loops first, which the affine passes leave alone), named in one warning
each, and lowered to plain loops in the module that is compiled; if it
still fails, the whole module takes the naive lowering. The model always
compiles, and never with the result of a failed pass.
"""

from __future__ import annotations

import io
import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlir import ir, passmanager
from mlir.dialects import linalg

from nnforge import _process, pipelines
from nnforge._native import tool_path
from nnforge.errors import CompileError
from nnforge.importers.handover import walk_ops
from nnforge.stages import StageRunner, verify
from nnforge.targets.cpu.codegen.common import Scheduled, apply_schedules, linalg_ops, makes_runtime_checks
from nnforge.targets.cpu.host import ScheduleSizes

log = logging.getLogger("nnforge.compiler")

# The environment variable limiting each child's seconds (else NNFORGE_CHILD_TIMEOUT).
TIMEOUT_VARIABLE = "NNFORGE_AFFINE_TIMEOUT"
# The attribute numbering the linalg ops, to find them again in copies.
_OP_ID = "nnforge_affine_op"
# How a warning about a failure begins.
_FAILED = "affine code generation failed"
# An op lowered to plain (scf) loops before the affine stage: the affine passes leave it alone.
_PLAIN_LOOPS = """
    %loops = transform.structured.convert_to_loops %op : (!transform.any_op) -> !transform.any_op"""


def lower_to_llvm(
    module: ir.Module,
    level: str,
    runner: StageRunner,
    sizing: ScheduleSizes,
    threads: int = 0,
    instrument: Callable[[ir.Module, StageRunner], None] | None = None,
    on_buffers: Callable[[ir.Module, StageRunner], None] | None = None,
) -> ir.Module:
    """Lowers `module` from `level` to the LLVM dialect with the affine
    generator; returns the lowered module (a new one).

    `threads`: 1 for sequential code, else how many OpenMP threads run the
    parallel loops (0: all cores). `instrument` runs on linalg before
    bufferization (a profiled build's timers), `on_buffers` on the
    bufferized module (moving the weights out)."""
    if level == pipelines.BUFFERS_LEVEL:
        steps = [("bufferize", pipelines.BUFFERIZE)]
    else:
        steps = [step for step in pipelines.stages(level) if step[0] != "linalg-to-llvm"]
    for name, pipeline in steps:
        if name == "bufferize" and instrument is not None:
            instrument(module, runner)
        runner.run(module, name, pipeline)
    if on_buffers is not None:
        on_buffers(module, runner)
    with runner.stage("affine"):
        lowered = AffineGenerator(module, sizing, threads, runner.timing).lower()
    runner.dump(lowered, "affine")
    return lowered


def _split_operands(op: ir.Operation) -> tuple[list[ir.Value], list[ir.Value]]:
    """(inputs, outputs) of a linalg op."""
    count = list(ir.DenseI32ArrayAttr(op.attributes["operandSegmentSizes"]))[0]
    operands = list(op.operands)
    return operands[:count], operands[count:]


def has_strided_access(op: ir.Operation) -> bool:
    """Whether an indexing map of `op` multiplies, divides or takes the
    remainder of a loop index (a strided window, a reshape): the
    super-vectorizer of MLIR 22 read `2 * ow + kw` as contiguous (a max
    pooling came out wrong), so such ops keep plain loops."""
    return any(_is_strided(expr) for indexing in _indexing_maps(op) for expr in indexing.results)


def _indexing_maps(op: ir.Operation) -> list[ir.AffineMap]:
    """The indexing maps of a linalg op (operands in order), named or generic."""
    if "indexing_maps" in op.attributes:
        return [ir.AffineMapAttr(attribute).value for attribute in ir.ArrayAttr(op.attributes["indexing_maps"])]
    if not op.name.startswith("linalg."):
        return []
    return [ir.AffineMapAttr(attribute).value for attribute in linalg.get_indexing_maps(op)]


def contiguous_output_innermost(op: ir.Operation) -> list[int] | None:
    """The loop order (`transform.structured.interchange`'s
    iterator_interchange: new loop i is old loop order[i]) that puts
    innermost the loop walking the contiguous (last) dimension of `op`'s
    output, or None where it is innermost already or would not be
    contiguous everywhere.

    For a contraction or convolution (a matmul's (i, j, k) becomes
    (i, k, j), a convolution's (n, f, oh, ow, c, kh, kw) becomes
    (n, f, oh, c, kh, kw, ow)) the super-vectorizer then vectorizes along
    that loop with the reductions outside: each step updates independent
    vectors of the output instead of adding into one accumulator after
    another. Only where the loop is a parallel one (a plain index of the
    single output, whose map is a projected permutation: the loops it
    leaves out are the reductions) and every operand it indexes has it in
    its last dimension, unstrided, and nowhere else (contiguous there: a
    row sum `(d0, d1) -> (d0)` and a convolution of stride 2 are left
    alone)."""
    if "operandSegmentSizes" not in op.attributes or len(_split_operands(op)[1]) != 1:
        return None
    maps = _indexing_maps(op)
    if not maps or not maps[-1].is_projected_permutation or not maps[-1].results:
        return None
    loops = maps[-1].n_dims
    innermost = ir.AffineDimExpr(maps[-1].results[-1]).position
    if innermost == loops - 1 or len(maps[-1].results) == loops:  # (no reduction: loop order is linalg's)
        return None
    for indexing in maps:
        *others, last = list(indexing.results)
        if any(_uses(expr, innermost) for expr in others) or (_uses(last, innermost) and _is_strided(last)):
            return None
    return [loop for loop in range(loops) if loop != innermost] + [innermost]


def _uses(expr: ir.AffineExpr, position: int) -> bool:
    """Whether `expr` involves loop `position`."""
    expr = expr.maybe_downcast() if hasattr(expr, "maybe_downcast") else expr
    if isinstance(expr, ir.AffineDimExpr):
        return expr.position == position
    if isinstance(expr, ir.AffineBinaryExpr):
        return _uses(expr.lhs, position) or _uses(expr.rhs, position)
    return False


def interchange_for_contiguous_output(module: ir.Module) -> None:
    """Reorders the loops of the linalg ops of `module` as
    `contiguous_output_innermost` says (ops made generic first)."""
    scheduled = []
    for op in linalg_ops(module):
        order = contiguous_output_innermost(op)
        if order is not None:
            scheduled.append(Scheduled(op, f"""
    %generic = transform.structured.generalize %op : (!transform.any_op) -> !transform.any_op
    %reordered = transform.structured.interchange %generic iterator_interchange = {order}
        : (!transform.any_op) -> !transform.any_op"""))
    if scheduled:
        apply_schedules(module, scheduled, "", "affine loop interchange")


def _is_strided(expr: ir.AffineExpr) -> bool:
    expr = expr.maybe_downcast() if hasattr(expr, "maybe_downcast") else expr
    if isinstance(expr, (ir.AffineMulExpr, ir.AffineFloorDivExpr, ir.AffineCeilDivExpr, ir.AffineModExpr)):
        return True
    if isinstance(expr, ir.AffineAddExpr):
        return _is_strided(expr.lhs) or _is_strided(expr.rhs)
    return False


@dataclass(frozen=True)
class _Failure:
    """Why a try of the affine pipeline failed."""

    reason: str
    timed_out: bool = False


class AffineGenerator:
    """Runs the affine pipeline on one bufferized module, with the fallbacks
    described above."""

    def __init__(self, module: ir.Module, sizing: ScheduleSizes, threads: int, timing: bool = False):
        self.module = module
        # Without fusion (what compiles) and with it (for experiments):
        # `affine-loop-fusion` of MLIR 22 gives wrong results on the test
        # transformer layer and CNN.
        self.pipelines = {fuse: pipelines.affine_buffers_to_llvm(sizing.lanes, sizing.affine_tile, threads, fuse)
                          for fuse in (True, False)}
        self.timing = timing
        interchange_for_contiguous_output(module)
        self.ops = linalg_ops(module)
        with module.context:
            for index, op in enumerate(self.ops):
                op.attributes[_OP_ID] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), index)
        buffer = io.BytesIO()
        module.operation.write_bytecode(buffer)
        self._bytecode = buffer.getvalue()

    def lower(self) -> ir.Module:
        """The module in the LLVM dialect."""
        # Ops that check their data at run time keep plain loops (a failed
        # check inside a loop the affine passes made parallel would return
        # from one thread only), and so do ops with strided accesses.
        affine = [index for index, op in enumerate(self.ops)
                  if not makes_runtime_checks(op) and not has_strided_access(op)]
        unfused = self._try(affine)
        if isinstance(unfused, ir.Module):
            return unfused
        if unfused.timed_out:  # another try could take as long
            log.warning(f"{_FAILED} (%s); the model keeps the naive lowering", unfused.reason)
            return self._naive()
        if not isinstance(self._try([]), ir.Module):
            return self._naive()  # not the affine passes: the plain lowering fails too, and says why
        failing = self._failing(affine, unfused)
        for index, reason in failing.items():
            op = self.ops[index]
            log.warning(f"{_FAILED} on %s at %s (%s); it keeps the plain lowering (scalar loops)",
                        op.name, op.location, reason)
        kept = [index for index in affine if index not in failing]
        result = unfused
        if kept and failing:
            result = self._try(kept)
            if isinstance(result, ir.Module):
                return result
        if kept or not failing:
            log.warning(f"{_FAILED} (%s); the model keeps the naive lowering", result.reason)
        return self._naive()

    def _failing(self, indices: list[int], failure: _Failure) -> dict[int, str]:
        """The ops among `indices` (whose affine lowering without fusion
        failed with `failure`) on which it fails without the others, found
        by bisection: {op number: why}."""
        if len(indices) == 1:
            return {indices[0]: failure.reason}
        found: dict[int, str] = {}
        middle = len(indices) // 2
        for half in (indices[:middle], indices[middle:]):
            result = self._try(half, fuse=False)
            if isinstance(result, ir.Module):
                continue
            if result.timed_out:
                found.update({index: result.reason for index in half})
            else:
                found.update(self._failing(half, result))
        return found

    def _try(self, affine: list[int], fuse: bool = False) -> ir.Module | _Failure:
        """The module lowered with the ops numbered `affine` through the
        affine passes (with fusion or not) and the others as plain loops, or
        why not."""
        with self.module.context:
            copy = ir.Module.parse(self._bytecode)
        others = set(range(len(self.ops))) - set(affine)
        if others:
            plain = [op for op in walk_ops(copy.operation)
                     if _OP_ID in op.attributes and ir.IntegerAttr(op.attributes[_OP_ID]).value in others]
            apply_schedules(copy, [Scheduled(op, _PLAIN_LOOPS) for op in plain], "", "plain loops")
        return self._run_child(copy, self.pipelines[fuse])

    def _run_child(self, module: ir.Module, pipeline: str) -> ir.Module | _Failure:
        """`module` through `pipeline` in nnforge-opt."""
        with tempfile.TemporaryDirectory(prefix="nnforge-affine-") as folder:
            source, lowered = Path(folder) / "buffers.mlirbc", Path(folder) / "llvm.mlirbc"
            with open(source, "wb") as file:
                module.operation.write_bytecode(file)
            command = [str(tool_path("nnforge-opt")), str(source), f"--pass-pipeline={pipelines.wrap(pipeline)}",
                       "--emit-bytecode", "-o", str(lowered)]
            if self.timing:
                command.append("--mlir-timing")
            try:
                result = _process.run(command, "the affine pipeline", (TIMEOUT_VARIABLE,))
            except _process.ChildTimeout as error:
                return _Failure(str(error), timed_out=True)
            except CompileError as error:  # the child crashed (an assertion in a pass)
                return _Failure(str(error))
            if self.timing:
                sys.stderr.write(result.stderr)
            if result.returncode != 0:
                return _Failure(_process.failure_cause(result.stderr) or f"nnforge-opt exited with {result.returncode}")
            try:
                parsed = ir.Module.parse(lowered.read_bytes(), self.module.context)
                verify(parsed, "the affine pipeline's result")
            except (ir.MLIRError, CompileError) as error:
                return _Failure(str(error).splitlines()[0])
            return parsed

    def _naive(self) -> ir.Module:
        """The module lowered the naive way, in this process (scalar loops)."""
        with self.module.context:
            module = ir.Module.parse(self._bytecode)
            try:
                passmanager.PassManager.parse(pipelines.wrap(pipelines.BUFFERS_TO_LLVM_NAIVE)).run(module.operation)
            except ir.MLIRError as error:
                raise CompileError(f"stage affine failed: {error}") from None
        return module
