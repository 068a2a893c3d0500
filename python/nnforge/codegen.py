"""Optimized CPU code generation with upstream MLIR's transform dialect.

`vectorize_linalg(module)` rewrites the linalg-on-tensors ops of a module
into tiled, vectorized loop nests, still on tensors; `LINALG_TO_LLVM_OPTIMIZED`
then bufferizes and lowers the result to the LLVM dialect. The schedule is
built per module in Python (op shapes and roles decide the tile sizes), as
the text of a `transform.named_sequence @__transform_main` that the
`transform-interpreter` pass applies; each op gets its own sequence, tagged
by an attribute, so that an op the vectorizer rejects stays a (correct)
scalar loop nest instead of failing the compilation.

Schedules, for AVX-512 (32 registers of 16 f32):
- contractions (matmul in any operand layout, batch_matmul, contraction
  generics): cache tiles [64 x 128 x 256], then register tiles of 8 x 32
  with k step 1, vectorized (masked at the edges) to a `vector.contract`
  lowered to outer products (`vector.fma` on vector<32xf32>); the 8 x 32
  accumulator is hoisted out of the k loop into registers.
- 2-D convolutions (NCHW/FCHW, NHWC/HWCF, NHWC/FHWC): im2col, then the
  contraction schedule.
- everything else (elementwise, reductions, transposes, fills): tiles of 1
  along all loops but the innermost, which is vectorized 64 lanes wide.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlir import ir, passmanager
from mlir.dialects import linalg

from nnforge import pipelines
from nnforge.errors import CompileError

# Contraction tiles: (cache level, register level) sizes per dimension role.
CACHE_TILE = {"batch": 1, "m": 64, "n": 128, "k": 256}
REGISTER_TILE = {"batch": 1, "m": 8, "n": 32, "k": 1}
# Lanes of the innermost loop for non-contraction ops.
ELEMENTWISE_VECTOR = 64

# The attribute that tags each op with the sequence scheduling it.
_TAG = "nnforge_schedule_id"

_CONV_TO_IM2COL = ("linalg.conv_2d_nchw_fchw", "linalg.conv_2d_nhwc_hwcf", "linalg.conv_2d_nhwc_fhwc")

# Vector lowering applied to every function once all ops are vectorized:
# contractions become outer products (FMAs), masks and transposes lower to
# what LLVM's x86 backend handles well, leading unit dims (batch, k=1) go.
_VECTOR_LOWERING = """
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_masked_transfers
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.reduction_to_contract
    transform.apply_patterns.vector.transfer_permutation_patterns
    transform.apply_patterns.vector.cast_away_vector_leading_one_dim
    transform.apply_patterns.canonicalization
  } : !transform.any_op
  transform.apply_cse to %funcs : !transform.any_op
"""
_VECTOR_LOWERING_LATE = """
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_contraction lowering_strategy = "outerproduct"
    transform.apply_patterns.vector.lower_outerproduct
    transform.apply_patterns.vector.lower_multi_reduction lowering_strategy = "innerreduction"
    transform.apply_patterns.vector.lower_broadcast
    transform.apply_patterns.vector.lower_masks
    transform.apply_patterns.canonicalization
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_transpose lowering_strategy = "shuffle_16x16"
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_shape_cast
  } : !transform.any_op
  transform.apply_cse to %funcs : !transform.any_op
"""

# Tensor-level vectorized IR -> LLVM dialect. 2-D vector transfers are
# unrolled (else they go through stack temporaries); ops the schedule left
# alone become scalar loops.
LINALG_TO_LLVM_OPTIMIZED = (
    f"canonicalize,cse,{pipelines.BUFFERIZE},canonicalize,cse,"
    "func.func(convert-vector-to-scf{full-unroll=true}),convert-linalg-to-loops,"
    f"convert-vector-to-llvm,{pipelines.LOOPS_TO_LLVM}"
)


@dataclass(frozen=True)
class _Scheduled:
    """One op and the transform ops (text) that schedule it, on handle %op."""

    op: ir.Operation
    body: str


def _linalg_ops(module: ir.Module) -> list[ir.Operation]:
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


def _sizes(values: list[int]) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _loop_count(op: ir.Operation) -> int:
    """Number of loops of a linalg op (its iteration domain's rank)."""
    maps = linalg.get_indexing_maps(op)
    return ir.AffineMapAttr(maps[0]).value.n_dims if maps else 0


def _contraction_schedule(op: ir.Operation) -> str | None:
    """Cache + register tiling and vectorization of a contraction, or None."""
    if not linalg.isa_contraction_op(op):
        return None
    dims = linalg.infer_contraction_dimensions(op)
    if dims is None or len(dims.m) != 1 or len(dims.n) != 1 or not dims.k:
        return None
    roles: dict[int, str] = {}
    for role in ("batch", "m", "n", "k"):
        for dim in getattr(dims, role):
            roles[int(dim)] = role
    rank = len(roles)
    # Loops nest batch, m, n, then k innermost (accumulator reuse).
    order = [d for role in ("batch", "m", "n", "k") for d in getattr(dims, role)]
    interchange = _sizes([int(d) for d in order])
    cache = _sizes([CACHE_TILE[roles[d]] for d in range(rank)])
    register = _sizes([REGISTER_TILE[roles[d]] for d in range(rank)])
    loops = ", ".join(["!transform.any_op"] * rank)
    names = ", ".join(f"%r{i}" for i in range(rank))
    hoists = "\n".join(
        f"    transform.loop.hoist_loop_invariant_subsets %r{i} : !transform.any_op"
        for i in reversed(range(rank))
    )
    return f"""
    %c, %cl:{rank} = transform.structured.tile_using_for %op tile_sizes {cache} interchange = {interchange}
        : (!transform.any_op) -> (!transform.any_op, {loops})
    %t, {names} = transform.structured.tile_using_for %c tile_sizes {register} interchange = {interchange}
        : (!transform.any_op) -> (!transform.any_op, {loops})
    transform.structured.vectorize %t vector_sizes {register} : !transform.any_op
    %f = transform.get_parent_op %r0 {{op_name = "func.func"}} : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to %f {{
      transform.apply_patterns.vector.lower_masked_transfers
    }} : !transform.any_op
    transform.apply_patterns to %f {{
      transform.apply_patterns.vector.reduction_to_contract
      transform.apply_patterns.vector.transfer_permutation_patterns
      transform.apply_patterns.canonicalization
    }} : !transform.any_op
    transform.apply_cse to %f : !transform.any_op
{hoists}"""


def _elementwise_schedule(op: ir.Operation) -> str | None:
    """Tiles all loops but the innermost to 1 and vectorizes the innermost."""
    rank = _loop_count(op)
    if rank == 0:
        return None
    tiles = [1] * (rank - 1) + [ELEMENTWISE_VECTOR]
    loops = ", ".join(["!transform.any_op"] * rank)
    return f"""
    %t, %l:{rank} = transform.structured.tile_using_for %op tile_sizes {_sizes(tiles)}
        : (!transform.any_op) -> (!transform.any_op, {loops})
    transform.structured.vectorize %t vector_sizes {_sizes(tiles)} : !transform.any_op"""


def _schedule_of(op: ir.Operation) -> str | None:
    if linalg.isa_convolution_op(op):
        return None  # what im2col did not turn into a contraction stays scalar
    return _contraction_schedule(op) or _elementwise_schedule(op)


def _sequence(scheduled: list[_Scheduled], tail: str) -> str:
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


def _apply(module: ir.Module, scheduled: list[_Scheduled], tail: str, what: str) -> None:
    """Tags the ops, runs the script through `transform-interpreter`, cleans up."""
    with module.context:
        for index, item in enumerate(scheduled):
            item.op.attributes[_TAG] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), index)
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
        for op in _linalg_ops(module):
            if _TAG in op.attributes:
                del op.attributes[_TAG]


def vectorize_linalg(module: ir.Module) -> None:
    """Tiles and vectorizes the linalg-on-tensors ops of `module`, in place.

    Run it after linalg fusion, then `LINALG_TO_LLVM_OPTIMIZED`.
    """
    convolutions = [op for op in _linalg_ops(module) if op.name in _CONV_TO_IM2COL]
    if convolutions:
        im2col = [
            _Scheduled(op, """
    %i, %mm = transform.structured.convert_conv2d_to_img2col %op
        : (!transform.any_op) -> (!transform.any_op, !transform.any_op)""")
            for op in convolutions
        ]
        _apply(module, im2col, "", "im2col")
    scheduled = []
    for op in _linalg_ops(module):
        body = _schedule_of(op)
        if body is not None:
            scheduled.append(_Scheduled(op, body))
    _apply(module, scheduled, _VECTOR_LOWERING + _VECTOR_LOWERING_LATE, "vectorization")


def lower_to_llvm_optimized(module: ir.Module, level: str, runner, signature) -> None:
    """`compiler.lower_to_llvm` with the optimized code generation instead of the naive one.

    Same arguments (`runner` a `compiler.StageRunner`, `signature` the
    entry's `runtime.Signature`); the tiling/vectorization shows in
    `runner.times` as stage "vectorize".
    """
    import time

    from nnforge import compiler

    compiler.verify(module, "the module to compile")
    runner.dump(module, f"input-{level}")
    with module.context:
        compiler.entry_function(module).attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
    steps = pipelines.stages(level)
    for name, pipeline in steps[:-1]:
        runner.run(module, name, pipeline)
    start = time.perf_counter()
    vectorize_linalg(module)
    runner.times["vectorize"] = time.perf_counter() - start
    runner.dump(module, "vectorize")
    runner.run(module, steps[-1][0], LINALG_TO_LLVM_OPTIMIZED)
    compiler._check_only_llvm(module)
    compiler._embed_signature(module, signature)
