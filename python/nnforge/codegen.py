"""Optimized CPU code generation with upstream MLIR's transform dialect.

`vectorize_linalg(module)` rewrites the linalg-on-tensors ops of a module
into tiled, vectorized loop nests, still on tensors; `linalg_to_llvm_optimized`
then bufferizes and lowers the result to the LLVM dialect. The schedule is
built per module in Python (op shapes and roles decide the tile sizes), as
the text of a `transform.named_sequence @__transform_main` that the
`transform-interpreter` pass applies; each op gets its own sequence, tagged
by an attribute, so that an op the vectorizer rejects stays a (correct)
scalar loop nest instead of failing the compilation.

Schedules, for AVX-512 (32 registers of 16 f32):
- contractions (matmul in any operand layout, batch_matmul, contraction
  generics): output tiles of 128 x 128 (64 rows where 128 do not divide m;
  columns in equal tiles where 128 do not divide n: 196 (two halves if it
  is the only output tile), 3136 = 14 x 224; shared among threads), k
  tiles of 256, then register tiles of 8 x 32 with k step 1, vectorized
  to a `vector.contract` lowered to outer products (`vector.fma` on
  vector<32xf32>); each accumulator is hoisted out of the k loop into
  registers. The columns of an output tile after
  its last full register tile get power-of-two widths (49 = 32 + 16 + 1),
  unmasked; masks remain only where n is dynamic.
- 2-D convolutions (NCHW/FCHW, NHWC/HWCF, NHWC/FHWC): im2col, then the
  contraction schedule; for NCHW, nnforge's im2col (nnf-conv-to-im2col),
  whose window copy is vectorized along output rows.
- depthwise NCHW convolutions and NCHW poolings (max, sum): segments of
  16 output columns per channel (the row's last one as wide as what is
  left), each accumulated in registers over the window taps.
- strided windows (these, and strided im2col window copies): each
  segment's input read as one contiguous vector whose every s-th lane is
  kept (nnf-deinterleave-strided-reads), which the vectorizer then takes.
- row reductions (one reduction loop, innermost): one row per iteration,
  reduced into a 64-lane vector of partial results, combined once per row.
- transposes: 16 x 16 tiles, transposed in registers.
- everything else (elementwise, fills): tiles of 1 along all loops but the
  innermost, which is vectorized 64 lanes wide. Padding (`tensor.pad`)
  becomes such a fill and copy.

Dispatch regions (`nnf.dispatch`, formed by `nnf-form-dispatch-regions`)
are scheduled as one loop nest: the op yielding the result (the anchor) is
tiled along its outer loops -- to the contraction's output tiles, or to
rows -- and every other op of the region is fused into that tile loop;
then each op gets its own schedule above inside the tile. A region where a
1x1 convolution reads a depthwise convolution's collapsed rows is tiled in
bands of whole rows (BAND_BYTES of the depthwise result), the contraction's
slices of the collapsed rows taken of the rows themselves
(nnf-slice-rows-before-collapse); each band of the depthwise stage is
computed a channel at a time, its rows in pairs (DEPTHWISE_ROWS).

The outermost tile loops of ops with enough iterations are `scf.forall`
loops, which `linalg_to_llvm_optimized` hands to OpenMP threads.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlir import ir, passmanager
from mlir.dialects import bufferization, linalg

from nnforge import pipelines
from nnforge.errors import CompileError
from nnforge.importers.handover import walk_ops

if TYPE_CHECKING:
    from nnforge import compiler

# Contraction tiles: (cache level, register level) sizes per dimension role.
# Where 128 rows of m do not divide the loop, 64 (SMALL_M_TILE) do: a partial
# m tile would mask each of its register tiles.
CACHE_TILE = {"batch": 1, "m": 128, "n": 128, "k": 256}
SMALL_M_TILE = 64
REGISTER_TILE = {"batch": 1, "m": 8, "n": 32, "k": 1}
# Lanes of the innermost loop for non-contraction ops.
ELEMENTWISE_VECTOR = 64
# Output columns per vector in depthwise convolutions (one AVX-512 register).
DEPTHWISE_VECTOR = 16
# Output rows per vector tile of stride-1 depthwise convolutions: each input
# row loaded serves the filter rows of both (12 row loads for 2 x 16
# outputs of a 3x3 filter instead of 18), the filter taps broadcast once.
DEPTHWISE_ROWS = 2
# Bytes of a band of rows of a depthwise convolution's result that a 1x1
# convolution reads in the region nnf-form-dispatch-regions merges them into:
# the band stays in L2 (1 MiB per core here) beside the input rows it is
# computed from and the output tile (192 KiB and 384 KiB bands were equal
# within noise on the MobileNetV2 block; larger ones cost fewer per-band
# overheads where channels are few).
BAND_BYTES = 384 << 10
# Bands at least, where threads share them: the threads' shares stay even
# (7 bands on two threads would leave one idle an eighth of the time).
PARALLEL_BANDS = 8
# Rows per tile of a dispatch region without contraction (e.g. a softmax):
# as many as make about this many elements (one row of 1024 or more), so
# that a tile's input, intermediates and output stay in a 32 KiB L1 (8192
# elements: softmax 512x1024 one thread 0.217 against 0.270 ms warm).
ROW_TILE_ELEMENTS = 1024
# Square tiles of transposes.
TRANSPOSE_TILE = 16
# Innermost loops narrower than this (statically) stay scalar.
MIN_VECTOR = 4
# Ops with fewer iterations than this run on one thread: starting the others
# costs more than they save.
PARALLEL_MIN_ITERATIONS = 1 << 16

# The attribute that tags each op with the sequence scheduling it.
_TAG = "nnforge_schedule_id"
# The attribute that numbers the ops of a dispatch region for its sequence.
_MEMBER = "nnforge_dispatch_member"
# The attribute that finds row segments again after a pass ran on their
# function (which invalidates handles), unique per segment in a process.
_SEGMENT = "nnforge_segment"
_segment_ids = itertools.count()
# The attribute that finds a region's tile loop again after a pass ran on
# the region.
_TILE_LOOP = "nnforge_tile_loop"
# The attribute giving a depthwise convolution in a region the rows its tiles
# are a multiple of.
_TILE_ROWS = "nnforge_tile_rows"
# The attribute giving a contraction that reads the collapsed rows of a
# producer in its region the columns of a band of those rows.
_BAND_COLUMNS = "nnforge_band_columns"

_NCHW_POOLING = ("linalg.pooling_nchw_max", "linalg.pooling_nchw_sum")

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
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_outerproduct
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_multi_reduction lowering_strategy = "innerreduction"
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_broadcast
    transform.apply_patterns.vector.lower_masks
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_transpose lowering_strategy = "shuffle_16x16"
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_shape_cast
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.canonicalization
  } : !transform.any_op
  transform.apply_cse to %funcs : !transform.any_op
"""

def linalg_to_llvm_optimized(threads: int) -> str:
    """Tensor-level vectorized IR -> LLVM dialect.

    2-D vector transfers are unrolled (else they go through stack
    temporaries); ops the schedule left alone become scalar loops;
    transcendental functions become polynomials; horizontal sums of vector
    lanes may be reassociated (a tree of adds instead of one lane after
    another: the partial results they combine are in no particular order
    anyway), horizontal minima and maxima are trees too (exactly: they are
    associative). With `threads` other than 1 the schedules' `scf.forall` loops
    run on OpenMP threads (0: all cores).
    """
    if threads == 1:
        forall, loops_to_llvm = "scf-forall-to-for", pipelines.LOOPS_TO_LLVM
    else:
        forall, loops_to_llvm = "scf-forall-to-parallel", pipelines.parallel_loops_to_llvm(threads)
    return (
        f"canonicalize,cse,{pipelines.BUFFERIZE},canonicalize,cse,"
        f"func.func({forall},convert-vector-to-scf{{full-unroll=true}}),convert-linalg-to-loops,"
        f"{pipelines.APPROXIMATE_MATH},{pipelines.WIDEN_BOOLS},nnf-pairwise-vector-reductions,"
        "convert-vector-to-llvm{reassociate-fp-reductions=true},"
        f"{loops_to_llvm}"
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


def _dispatches(module: ir.Module) -> list[ir.Operation]:
    """The nnf.dispatch ops of `module`, in program order."""
    return [op for op in walk_ops(module.operation) if op.name == "nnf.dispatch"]


def _sizes(values: list[int]) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _loop_count(op: ir.Operation) -> int:
    """Number of loops of a linalg op (its iteration domain's rank)."""
    maps = linalg.get_indexing_maps(op)
    return ir.AffineMapAttr(maps[0]).value.n_dims if maps else 0


def _loop_sizes(op: ir.Operation) -> list[int | None]:
    """Static size of each loop of a linalg op (None where dynamic or unknown)."""
    sizes: list[int | None] = [None] * _loop_count(op)
    for map_attr, operand in zip(linalg.get_indexing_maps(op), op.operands):
        if not isinstance(operand.type, ir.ShapedType):
            continue
        shape = ir.ShapedType(operand.type)
        for position, expr in enumerate(ir.AffineMapAttr(map_attr).value.results):
            expr = expr.maybe_downcast()
            if isinstance(expr, ir.AffineDimExpr) and not shape.is_dynamic_dim(position):
                sizes[expr.position] = shape.shape[position]
    return sizes


def _clamp(tiles: list[int], sizes: list[int | None]) -> list[int]:
    """Tile/vector sizes no larger than static loop sizes (fewer masked lanes)."""
    return [tile if size is None else min(tile, size) for tile, size in zip(tiles, sizes)]


def _worth_parallel(op: ir.Operation) -> bool:
    """Whether the op has enough iterations to share among threads, and
    makes no run-time checks."""
    return not _makes_runtime_checks(op) and _has_many_iterations(op)


def _makes_runtime_checks(op: ir.Operation) -> bool:
    """Whether the op checks its data at run time: a failed check returns to
    the caller from the calling thread only (see nnf-assert-to-runtime-error)."""
    return any(inner.name == "cf.assert" for inner in walk_ops(op))


def _has_many_iterations(op: ir.Operation) -> bool:
    """Whether the op has enough iterations to be worth several threads."""
    volume = 1
    for size in _loop_sizes(op):
        if size is None:
            return True
        volume *= size
    return volume >= PARALLEL_MIN_ITERATIONS


def _tile_outer(target: str, result: str, tiles: list[int], parallel: bool) -> str:
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
    %{result}, %{result}_forall = transform.structured.tile_using_forall %{target} tile_sizes {_sizes(tiles)}
        : (!transform.any_op) -> (!transform.any_op, !transform.any_op)"""
    loops = ", ".join(["!transform.any_op"] * count)
    return f"""
    %{result}, %{result}_loops:{count} = transform.structured.tile_using_for %{target} tile_sizes {_sizes(tiles)}
        : (!transform.any_op) -> (!transform.any_op, {loops})"""


def _is_multiply_accumulate(op: ir.Operation) -> bool:
    """Whether the op's body is `out + a * b` (or `a * b + out`) and nothing else."""
    body = op.regions[0].blocks[0]
    return [o.operation.name for o in body.operations] in (
        ["arith.mulf", "arith.addf", "linalg.yield"],
        ["arith.muli", "arith.addi", "linalg.yield"],
    )


def _contraction_roles(op: ir.Operation) -> dict[int, str] | None:
    """The role (batch, m, n, k) of each loop of a contraction, or None if
    `op` is no contraction the schedule handles.

    The last m and n dims get the register tile (outer products); other m/n
    dims (e.g. heads, or the batch of an im2col'd convolution, which the
    filter lacks) are looped over one by one, like batch dims.
    """
    if not (linalg.isa_contraction_op(op) or (op.name == "linalg.generic" and _is_multiply_accumulate(op))):
        return None
    dims = linalg.infer_contraction_dimensions(op)
    if dims is None or not dims.m or not dims.n or not dims.k:
        return None
    roles: dict[int, str] = {int(d): "batch" for d in dims.batch}
    for role in ("m", "n"):
        found = [int(d) for d in getattr(dims, role)]
        roles.update({d: "batch" for d in found[:-1]})
        roles[found[-1]] = role
    roles.update({int(d): "k" for d in dims.k})
    if sorted(roles) != list(range(_loop_count(op))):
        return None  # a loop that is none of batch/m/n/k: not a plain contraction
    return roles


def _contraction_schedule(op: ir.Operation, parallel: bool) -> str | None:
    """Cache + register tiling and vectorization of a contraction, or None."""
    roles = _contraction_roles(op)
    if roles is None:
        return None
    rank = len(roles)
    # Register loops nest batch, m, n, then k innermost (accumulator reuse).
    order = [d for role in ("batch", "m", "n", "k") for d in sorted(roles) if roles[d] == role]
    loop_sizes = _loop_sizes(op)
    cache = _contraction_cache_tiles(op, roles)
    # Output tiles (independent: one per thread at a time), then k tiles.
    outer = [0 if roles[d] == "k" else cache[d] for d in range(rank)]
    inner = [cache[d] if roles[d] == "k" else 0 for d in range(rank)]
    register_tiles = _register_tiles(roles, loop_sizes, cache)
    m_dim = _role_dim(roles, "m")
    register = _sizes(register_tiles)
    n_dim = _role_dim(roles, "n")
    # Loops of the register tile: batch..., m, n, k. Where register tiles of
    # n would be partial, every tile of the dimension would otherwise pay for
    # masks. Where the cache tiles of n are equal (n divides into them: 49,
    # 112 or 196 columns), each is split into its full register tiles and the
    # power-of-two widths of the rest (17 = 16 + 1), each part tiled and
    # vectorized unmasked, its accumulator in registers; else the register n
    # loop is peeled, its partial tile vectorized masked.
    n_size, n_cache, n_register = loop_sizes[n_dim], cache[n_dim], register_tiles[n_dim]
    if not _has_partial_tiles(n_size, n_cache, n_register):
        tiling = _register_tiling("ck", "main", register_tiles, order) + f"""
    transform.structured.vectorize %main vector_sizes {register} : !transform.any_op"""
    elif n_size is not None and n_size % n_cache == 0:
        remainder = n_cache % n_register
        widths = [n_cache - remainder] + _power_of_two_parts(remainder)
        tiling, rest = "", "ck"
        for index, width in enumerate(widths):
            part = rest
            if index < len(widths) - 1:
                part = f"part{index}"
                tiling += f"""
    %split{index} = transform.structured.split %{rest} after {width} {{dimension = {n_dim}}} : !transform.any_op
    %{part}, %rest{index} = transform.split_handle %split{index} : (!transform.any_op) -> (!transform.any_op, !transform.any_op)"""
                rest = f"rest{index}"
            tiles = _with(register_tiles, n_dim, min(width, n_register))
            name = "main" if index == 0 else f"tile{index}"
            tiling += _register_tiling(part, name, tiles, order) + f"""
    transform.structured.vectorize %{name} vector_sizes {_sizes(tiles)} : !transform.any_op"""
    else:
        tiling = _register_tiling("ck", "main", register_tiles, order) + f"""
    %n_for = transform.cast %main_loops#{order.index(n_dim)} : !transform.any_op to !transform.op<"scf.for">
    %full, %partial = transform.loop.peel %n_for : (!transform.op<"scf.for">) -> (!transform.any_op, !transform.any_op)
    %tiles = transform.structured.match interface{{LinalgOp}} in %main_loops#{order.index(m_dim)}
        : (!transform.any_op) -> !transform.any_op
    transform.structured.vectorize %tiles vector_sizes {register} : !transform.any_op"""
    return f"""{_tile_outer("op", "c", outer, parallel)}{_tile_outer("c", "ck", inner, False)}
{tiling}
    %f = transform.get_parent_op %main_loops#0 {{op_name = "func.func"}} : (!transform.any_op) -> !transform.any_op""" + (
        _hoist_accumulators("f", _CONTRACTION_PATTERNS)
    )


# Vector patterns that turn a vectorized contraction's multiply-reduce into
# a `vector.contract` on unpermuted transfers.
_CONTRACTION_PATTERNS = """
      transform.apply_patterns.vector.reduction_to_contract
      transform.apply_patterns.vector.transfer_permutation_patterns"""


def _hoist_accumulators(function: str, patterns: str = "") -> str:
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


def _register_tiles(roles: dict[int, str], sizes: list[int | None], cache: list[int]) -> list[int]:
    """The register tile of each loop of a contraction with `cache` tiles."""
    tiles = _clamp([REGISTER_TILE[roles[d]] for d in range(len(roles))], sizes)
    m = _role_dim(roles, "m")
    tiles[m] = min(_register_rows(cache[m]), tiles[m])
    return tiles


def _register_tiling(target: str, result: str, tiles: list[int], order: list[int]) -> str:
    """Transform ops tiling contraction `%target` by register `tiles`, loops
    nested in `order`, into `%result` and its loops `%{result}_loops`."""
    loops = ", ".join(["!transform.any_op"] * len(tiles))
    return f"""
    %{result}, %{result}_loops:{len(tiles)} = transform.structured.tile_using_for %{target} tile_sizes {_sizes(tiles)}
        interchange = {_sizes(order)} : (!transform.any_op) -> (!transform.any_op, {loops})"""


def _cache_tiles(roles: dict[int, str], sizes: list[int | None]) -> list[int]:
    """The cache tile of each loop of a contraction (see CACHE_TILE)."""
    tiles = []
    for loop, size in enumerate(sizes):
        tile = CACHE_TILE[roles[loop]]
        if size is not None and size > tile and size % tile:
            if roles[loop] == "m":
                # SMALL_M_TILE where it divides the loop; else the loop whole
                # up to twice the tile where its register tiles divide it
                # (196 = 28 x 7): partial tiles would be masked.
                whole = size % SMALL_M_TILE and size <= 2 * tile and size % _register_rows(size) == 0
                tile = size if whole else SMALL_M_TILE
            elif roles[loop] == "n":
                tile = _equal_n_tile(size, tile)
        tiles.append(tile)
    tiles = _clamp(tiles, sizes)
    # Columns taken whole in one output tile would leave the other threads
    # idle: two equal halves instead.
    n = _role_dim(roles, "n")
    if (sizes[n] is not None and sizes[n] > CACHE_TILE["n"] and tiles[n] == sizes[n] and sizes[n] % 2 == 0
            and _makes_one_output_tile(roles, sizes, tiles)):
        tiles[n] //= 2
    return tiles


def _register_rows(rows: int | None) -> int:
    """Rows of a register tile for an m cache tile of `rows`: REGISTER_TILE's
    8, or 7 or 6 where those divide it and 8 does not (49 = 7 x 7 rows of
    output pixels): a partial register tile would mask all of them."""
    if rows is None:
        return REGISTER_TILE["m"]
    return next((r for r in (REGISTER_TILE["m"], 7, 6) if rows % r == 0), REGISTER_TILE["m"])


def _makes_one_output_tile(roles: dict[int, str], sizes: list[int | None], tiles: list[int]) -> bool:
    """Whether a contraction's cache tiles cover its whole output at once."""
    return all(
        role == "k" or (sizes[loop] is not None and sizes[loop] <= tiles[loop]) for loop, role in roles.items()
    )


def _equal_n_tile(size: int, tile: int) -> int:
    """An n cache tile that divides `size` (so that every tile, its partial
    register tile included, has static sizes): the whole loop up to twice
    `tile`, else the largest multiple of 16 dividing it between half and
    twice `tile` (3136 = 14 x 224, 784 = 7 x 112), else `tile`."""
    if size <= 2 * tile:
        return size
    divisors = [t for t in range(2 * tile, tile // 2 - 1, -16) if size % t == 0]
    return divisors[0] if divisors else tile


def _has_partial_tiles(size: int | None, cache: int, register: int) -> bool:
    """Whether tiling a loop of `size` by `cache`, then by `register`, leaves
    register tiles smaller than `register` after at least one full one."""
    if size is None or size % cache:
        return True  # a dynamic or partial cache tile: dynamic register loop bounds
    return cache > register and cache % register != 0


def _power_of_two_parts(width: int) -> list[int]:
    """`width` as a sum of powers of two, largest first (17 -> [16, 1])."""
    return [1 << bit for bit in reversed(range(width.bit_length())) if width >> bit & 1]


def _with(values: list[int], index: int, value: int) -> list[int]:
    """`values` with the one at `index` replaced by `value`."""
    return values[:index] + [value] + values[index + 1 :]


def _role_dim(roles: dict[int, str], role: str) -> int:
    return next(d for d, r in roles.items() if r == role)


def _has_computed_indices(op: ir.Operation) -> bool:
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


def _row_lanes(size: int | None) -> int:
    """Lanes of an innermost loop of `size`: ELEMENTWISE_VECTOR, or the
    widest multiple of 8 down to 16 that divides a static row (1000 = 25 x
    40), so that no vector is partial: a partial one is masked, and a
    reduction's masked accumulator slice cannot stay in registers."""
    if size is None:
        return ELEMENTWISE_VECTOR
    return next((lanes for lanes in range(ELEMENTWISE_VECTOR, 15, -8) if size % lanes == 0), ELEMENTWISE_VECTOR)


def _elementwise_schedule(op: ir.Operation, parallel: bool) -> str | None:
    """Tiles all loops but the innermost to 1 and vectorizes the innermost.

    Transposes get square tiles instead (transposed in registers by
    shuffles, rather than read one element at a time).
    """
    rank = _loop_count(op)
    if rank == 0:
        return None
    sizes = _loop_sizes(op)
    if op.name == "linalg.transpose" and rank >= 2:
        inner = [TRANSPOSE_TILE, TRANSPOSE_TILE]
    else:
        inner = [_row_lanes(sizes[-1])]
    tiles = _clamp([1] * (rank - len(inner)) + inner, sizes)
    if tiles[-1] < MIN_VECTOR:
        return None  # too narrow to gain from vectors: scalar loops
    if _has_computed_indices(op):
        # Masked vectorization of reads through computed indices (im2col's
        # patch gather) picked wrong elements at partial tiles (measured: a
        # padded 9x10 convolution): these stay scalar.
        return None
    if sum("reduction" in i for i in _iterators(op)) > 1:
        return None  # the vectorizer aborts on some multi-dim reductions
    return f"""{_tile_outer("op", "t", tiles, parallel)}
    transform.structured.vectorize %t vector_sizes {_sizes(tiles)} : !transform.any_op"""


# Ops that combine a reduction's partial results, as `tile_reduction_using_for`
# recognizes them (the yielded value combines the accumulator and one other value).
_COMBINERS = {
    "arith.addf", "arith.mulf", "arith.maximumf", "arith.minimumf", "arith.maxnumf",
    "arith.minnumf", "arith.addi", "arith.muli", "arith.maxsi", "arith.minsi",
    "arith.maxui", "arith.minui", "arith.andi", "arith.ori", "arith.xori",
}


def _iterators(op: ir.Operation) -> list[str]:
    if "iterator_types" not in op.attributes:
        return []
    return [str(i) for i in ir.ArrayAttr(op.attributes["iterator_types"])]


def _is_row_reduction(op: ir.Operation) -> bool:
    """A one-result generic reducing its innermost loop only, with a plain combiner."""
    if op.name != "linalg.generic" or len(op.results) != 1 or _has_computed_indices(op):
        return False
    iterators = _iterators(op)
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


def _reduction_schedule(op: ir.Operation, parallel: bool) -> str | None:
    """Rows one at a time; each row reduced into a vector of partial results.

    `tile_reduction_using_for` turns the innermost reduction into a loop of
    elementwise (vector-wide) accumulations into a vector held in registers,
    and one horizontal combination per row at the end, instead of one
    horizontal reduction per vector of input.
    """
    if not _is_row_reduction(op):
        return None
    rank = _loop_count(op)
    size = _loop_sizes(op)[-1]
    [lanes] = _clamp([_row_lanes(size)], [size])
    if lanes < MIN_VECTOR:
        return None
    partial = _sizes([0] * (rank - 1) + [lanes])
    vector = _sizes([1] * (rank - 1) + [lanes])
    return f"""{_tile_outer("op", "row", [1] * (rank - 1) + [0], parallel)}
    %fill, %split, %combine, %loop = transform.structured.tile_reduction_using_for %row by tile_sizes = {partial}
        : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op)
    transform.structured.vectorize %fill vector_sizes {vector} : !transform.any_op
    transform.structured.vectorize %split vector_sizes {vector} : !transform.any_op
    transform.structured.vectorize %combine vector_sizes {vector} : !transform.any_op
    %f = transform.get_parent_op %loop {{op_name = "func.func"}} : (!transform.any_op) -> !transform.any_op""" + (
        _hoist_accumulators("f")
    )


def _row_segment_schedule(
    op: ir.Operation, outer: list[int], inner: list[int], lanes: int, parallel: bool, rows: int = 1
) -> str:
    """Tiles `op` down to one row segment of `lanes` output elements, every
    other loop of size 1 (`outer`: independent loops, shared among threads;
    `inner`: the rest, the segment loop among them), folds the unit
    dimensions of the tile away and vectorizes it: a shifted input window
    then reads a slice. A strided window (every s-th element), which the
    vectorizer refuses, is first read as one contiguous vector whose every
    s-th lane is kept (nnf-deinterleave-strided-reads); the segments are
    found again by an annotation after that pass.

    Where segments do not divide a static row (56 = 3 x 16 + 8), the segment
    loop is peeled: the last segment gets a vector of its own width instead
    of masks on every segment. Each segment's output then stays in registers
    across the loops inside it (a depthwise convolution's filter taps)."""
    count = sum(1 for tile in inner if tile)
    loops = ", ".join(["!transform.any_op"] * (count + 1))
    segment = inner.index(lanes)
    size = _loop_sizes(op)[segment]
    remainder = size % lanes if size is not None and size > lanes else 0
    text = f"""{_tile_outer("op", "rows", outer, parallel)}
    %t, %tl:{count} = transform.structured.tile_using_for %rows tile_sizes {_sizes(inner)}
        : (!transform.any_op) -> ({loops})
    %f = transform.get_parent_op %tl#0 {{op_name = "func.func"}} : (!transform.any_op) -> !transform.any_op
    %g = transform.structured.generalize %t : (!transform.any_op) -> !transform.any_op"""
    if remainder:
        position = sum(1 for tile in inner[:segment] if tile)
        text += f"""
    %segments = transform.cast %tl#{position} : !transform.any_op to !transform.op<"scf.for">
    %full, %last = transform.loop.peel %segments : (!transform.op<"scf.for">) -> (!transform.any_op, !transform.any_op)"""
        parts = [("full", lanes), ("last", remainder)]
    else:
        text += f"""
    %full = transform.cast %tl#{count - 1} : !transform.any_op to !transform.any_op"""
        parts = [("full", lanes)]
    segments = {loop: next(_segment_ids) for loop, _ in parts}
    for loop, _ in parts:
        text += f"""
    transform.apply_patterns to %{loop} {{
      transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices
    }} : !transform.any_op
    %{loop}_segment = transform.structured.match ops{{["linalg.generic"]}} in %{loop} : (!transform.any_op) -> !transform.any_op
    %{loop}_id = transform.param.constant {segments[loop]} : i64 -> !transform.param<i64>
    transform.annotate %{loop}_segment "{_SEGMENT}" = %{loop}_id : !transform.any_op, !transform.param<i64>"""
    # Canonicalized first: a peeled segment's sizes become static.
    text += """
    transform.apply_patterns to %f {
      transform.apply_patterns.canonicalization
    } : !transform.any_op
    %fs = transform.apply_registered_pass "nnf-deinterleave-strided-reads" to %f : (!transform.any_op) -> !transform.any_op"""
    for loop, width in parts:
        text += f"""
    %{loop}_vector = transform.structured.match attributes{{{_SEGMENT} = {segments[loop]} : i64}} in %fs
        : (!transform.any_op) -> !transform.any_op
    transform.structured.vectorize %{loop}_vector vector_sizes [{f"{rows}, " if rows > 1 else ""}{width}] : !transform.any_op"""
    return text + _hoist_accumulators("fs")


def _depthwise_schedule(op: ir.Operation, parallel: bool) -> str | None:
    """A depthwise NCHW convolution (loops n, oh, ow, c, kh, kw) as vectorized
    multiply-adds: one segment of DEPTHWISE_VECTOR output columns per
    channel and filter tap, DEPTHWISE_ROWS rows of them where the stride is
    1 and they divide the rows of every tile (_TILE_ROWS, set where a
    dispatch region tiles the convolution into tiles of rows that divide its
    rows: _dividing_rows)."""
    sizes = _loop_sizes(op)
    [lanes] = _clamp([DEPTHWISE_VECTOR], sizes[2:3])
    if lanes < MIN_VECTOR:
        return None
    strides = [int(stride) for stride in ir.DenseIntElementsAttr(op.attributes["strides"])]
    tile_rows = ir.IntegerAttr(op.attributes[_TILE_ROWS]).value if _TILE_ROWS in op.attributes else sizes[1]
    rows = DEPTHWISE_ROWS if strides == [1, 1] and tile_rows and tile_rows % DEPTHWISE_ROWS == 0 else 1
    # n, oh, c independent; then ow segments and the filter taps.
    return _row_segment_schedule(op, [1, rows, 0, 1, 0, 0], [0, 0, lanes, 0, 1, 1], lanes, parallel, rows)


def _pooling_schedule(op: ir.Operation, parallel: bool) -> str | None:
    """An NCHW pooling (loops n, c, oh, ow, kh, kw) as vectorized maxima or
    sums: one segment of DEPTHWISE_VECTOR output columns per channel, row
    and window tap."""
    [lanes] = _clamp([DEPTHWISE_VECTOR], _loop_sizes(op)[3:4])
    if lanes < MIN_VECTOR:
        return None
    # n, c, oh independent; then ow segments and the window taps.
    return _row_segment_schedule(op, [1, 1, 1, 0, 0, 0], [0, 0, 0, lanes, 1, 1], lanes, parallel)


def _copy_schedule(op: ir.Operation, parallel: bool) -> str | None:
    """A copy (a padded tensor's interior) one row at a time, the row's unit
    dimensions folded away: each row copy then lowers to an inline memcpy
    rather than a call of the runtime's strided memrefCopy."""
    sizes = _loop_sizes(op)
    if len(sizes) < 2 or sizes[-1] is None:
        return _elementwise_schedule(op, parallel)
    # _schedule_of left no empty loop.
    return _row_copies("op", "row", len(sizes), parallel)


def _row_copies(target: str, name: str, rank: int, parallel: bool) -> str:
    """Transform ops copying with `%target` (a copy of rank `rank`) one row
    at a time, every outer loop tiled by 1 and the row whole, the row's unit
    dimensions folded away and the row copy vectorized. Handles are named
    after `name`."""
    tiles = [1] * (rank - 1) + [0]
    loop = f"%{name}_forall" if parallel else f"%{name}_loops#{rank - 2}"
    # Generalized first: the unit-dimension folding takes generics only.
    return f"""{_tile_outer(target, name, tiles, parallel)}
    %{name}_generic = transform.structured.generalize %{name} : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to {loop} {{
      transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices
    }} : !transform.any_op
    %{name}_segment = transform.structured.match ops{{["linalg.generic"]}} in {loop} : (!transform.any_op) -> !transform.any_op
    transform.structured.vectorize %{name}_segment : !transform.any_op"""


def _is_window_copy(op: ir.Operation) -> bool:
    """Whether `op` copies a convolution's input windows into an im2col buffer
    (as nnf-conv-to-im2col writes it): a generic over (n, c, kh, kw, oh, ow)
    yielding its one input."""
    iterators = _iterators(op)
    if op.name != "linalg.generic" or len(op.operands) != 2 or len(iterators) != 6:
        return False
    body = op.regions[0].blocks[0]
    return (
        not any("reduction" in i for i in iterators)
        and [o.operation.name for o in body.operations] == ["linalg.yield"]
        and body.operations[0].operands[0] == body.arguments[0]
    )


def _window_copy_schedule(op: ir.Operation, parallel: bool) -> str | None:
    """An im2col window copy as vectorized copies of output row segments,
    one per (n, c, kh, kw, oh)."""
    [lanes] = _clamp([DEPTHWISE_VECTOR], _loop_sizes(op)[5:6])
    if lanes < MIN_VECTOR:
        return None
    # n, c independent; then kh, kw, oh and the ow segments.
    return _row_segment_schedule(op, [1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, lanes], lanes, parallel)


def _schedule_of(op: ir.Operation, parallel: bool) -> str | None:
    """The transform ops scheduling `op` (on handle %op), or None to leave it scalar.

    `parallel`: whether threads may share the outer loops; only ops large
    enough get them.
    """
    if 0 in _loop_sizes(op):
        return None  # no iterations (an empty dimension): tiling would assert
    parallel = parallel and _worth_parallel(op)
    if op.name == "linalg.depthwise_conv_2d_nchw_chw":
        return _depthwise_schedule(op, parallel)
    if op.name in _NCHW_POOLING:
        return _pooling_schedule(op, parallel)
    if op.name == "linalg.copy":
        return _copy_schedule(op, parallel)
    if _is_window_copy(op):
        return _window_copy_schedule(op, parallel)
    if linalg.isa_convolution_op(op):
        return None  # what im2col did not turn into a contraction stays scalar
    return (
        _contraction_schedule(op, parallel)
        or _reduction_schedule(op, parallel)
        or _elementwise_schedule(op, parallel)
    )


def _epilogue_tiles(contraction: ir.Operation, roles: dict[int, str], rank: int) -> list[int]:
    """Tile sizes of the anchor of a contraction's dispatch region: the
    contraction's output tile (cache tiles of its m, n and batch loops).

    nnf-form-dispatch-regions admits epilogues that read the contraction's
    result in loop order and tile all their loops, so anchor loop i is the
    contraction's output dimension i.
    """
    loops = _output_loops(contraction)
    if len(loops) != rank:
        raise CompileError(f"a dispatch region's epilogue has {rank} loops, its contraction's result {len(loops)} dims")
    cache = _contraction_cache_tiles(contraction, roles)
    return [cache[loop] for loop in loops]


def _output_loops(contraction: ir.Operation) -> list[int]:
    """The loop indexing each dimension of a contraction's result."""
    maps = linalg.get_indexing_maps(contraction)
    output_map = ir.AffineMapAttr(maps[len(maps) - 1]).value  # (an ArrayAttr takes no negative index)
    return [expr.maybe_downcast().position for expr in output_map.results]


def _contraction_cache_tiles(op: ir.Operation, roles: dict[int, str]) -> list[int]:
    """The cache tiles of a contraction (_cache_tiles), or where it reads the
    collapsed rows of a producer fused into its region (_BAND_COLUMNS), bands
    of those rows with every m: each band of the producer is computed once."""
    sizes = _loop_sizes(op)
    cache = _cache_tiles(roles, sizes)
    if _BAND_COLUMNS in op.attributes:
        m, n = _role_dim(roles, "m"), _role_dim(roles, "n")
        cache[m] = sizes[m]
        cache[n] = ir.IntegerAttr(op.attributes[_BAND_COLUMNS]).value
    return cache


def _band_rows(rows: ir.RankedTensorType, parallel: bool) -> int:
    """Rows of a band of the NCHW tensor `rows`: as many as BAND_BYTES hold
    (56 x 56 x 192 f32: 8 rows); where threads share the bands, few enough
    to make PARALLEL_BANDS of them (56 rows: 14 bands of 4), but no fewer
    than CACHE_TILE's n columns take (28 x 28: 7 bands of 4 rows rather than
    14 of 2, whose 56 columns cost more per band than they gain)."""
    channels, height, width = rows.shape[-3:]
    row_bytes = channels * width * rows.element_type.width // 8
    limit = max(1, BAND_BYTES // row_bytes)
    if parallel:
        limit = min(limit, max(-(-CACHE_TILE["n"] // width), height // PARALLEL_BANDS))
    return _dividing_rows(height, limit)


def _dividing_rows(height: int, limit: int) -> int:
    """The most rows, at most `limit`, in tiles that divide `height`; an even
    number where one is at least half as many (a depthwise convolution's row
    pairs: 28 rows in tiles of 4 rather than 7)."""
    rows = max(r for r in range(1, max(1, min(limit, height)) + 1) if height % r == 0)
    even = max((r for r in range(2, rows + 1, 2) if height % r == 0), default=0)
    return even if 2 * even >= rows else rows


def _set_i64(op: ir.Operation, name: str, value: int) -> None:
    """Sets attribute `name` of `op` to the i64 `value`."""
    with op.context:
        op.attributes[name] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), value)


def _note_depthwise_tile_rows(members: list[ir.Operation], rows: int) -> None:
    """Gives the depthwise convolutions among a region's `members`, tiled
    `rows` output rows at a time, the rows every tile is a multiple of, for
    _depthwise_schedule."""
    for member in members:
        if member.name == "linalg.depthwise_conv_2d_nchw_chw":
            height = _loop_sizes(member)[1]
            _set_i64(member, _TILE_ROWS, math.gcd(rows, height) if height is not None and rows else 1)


def _collapsed_rows(block: ir.Block, members: list[ir.Operation]) -> tuple[int, ir.RankedTensorType] | None:
    """Where a region's contraction reads a member's NCHW result through a
    collapse of its H and W (nnf-form-dispatch-regions merges a depthwise
    convolution's region into the 1x1 convolution reading it): how many
    members come before the collapse, and the type of the result."""
    position = 0
    for op in block.operations:
        op = op.operation
        if op.name == "tensor.collapse_shape" and getattr(op.operands[0].owner, "operation", None) in members:
            return position, ir.RankedTensorType(op.operands[0].type)
        if op in members:
            position += 1
    return None


def _dispatch_schedule(dispatch: ir.Operation, parallel: bool) -> tuple[str, list[ir.Operation]] | None:
    """Tiles the anchor of a dispatch region along its outer loops and fuses
    the other ops into the tile loop, consumers before their producers (the
    ops of the region are numbered by `_MEMBER` for this).

    With a contraction inside, the tiles are the contraction's output tiles
    (its m and n loops are the anchor's last two: the anchor is its
    epilogue); otherwise they are rows: the innermost loop whole, about
    ROW_TILE_ELEMENTS elements per tile (each tile's intermediates are
    allocated per tile, from the buffer cache's per-thread slots). The sizes of
    dynamic tiles, read from the producers' results, are then taken from
    their operands (else the producers outside would stay alive); after each
    fusion CSE merges the slices two users read of one producer, so that it
    is fused (computed) once. A depthwise convolution's input pad is fused
    too: each tile pads the rows it reads (_padded_tiles). Where a 1x1
    convolution reads a depthwise convolution's collapsed rows, the tiles are
    bands of whole rows (_band_rows), the contraction's slices are rewritten
    into slices of the rows (nnf-slice-rows-before-collapse), and the
    depthwise ops are fused into a loop over the band's channels. A
    contraction is computed with its fill and epilogue a register tile at a
    time where it can be (_register_fusion). Returns the transform ops and
    the members they vectorize, or None: nothing to tile.
    """
    block = dispatch.regions[0].blocks[0]
    members = [
        op.operation for op in block.operations
        if op.operation.name.startswith("linalg.") or op.operation.name == "tensor.pad"
    ]
    anchor = block.operations[len(block.operations) - 1].operands[0].owner.operation
    sizes = _loop_sizes(anchor)
    if 0 in sizes:
        return None  # no iterations (an empty dimension): tiling would assert
    for index, member in enumerate(members):
        _set_i64(member, _MEMBER, index)
    rank = _loop_count(anchor)
    contractions = [(member, roles) for member in members if (roles := _contraction_roles(member))]
    collapsed = _collapsed_rows(block, members)
    band_rows = collapsed and _band_rows(collapsed[1], parallel)
    if contractions:
        if band_rows:
            _set_i64(contractions[0][0], _BAND_COLUMNS, band_rows * collapsed[1].shape[-1])
        tiles = _epilogue_tiles(*contractions[0], rank)
    else:
        rows = max(1, ROW_TILE_ELEMENTS // sizes[-1]) if sizes[-1] else 1
        if sizes[-2] is not None and any(member.name == "linalg.depthwise_conv_2d_nchw_chw" for member in members):
            rows = _dividing_rows(sizes[-2], rows)
        tiles = [1] * (rank - 2) + [rows, 0]
    tiles = _clamp(tiles, sizes)
    _note_depthwise_tile_rows(members, band_rows or tiles[-2])
    first = members.index(anchor)
    # The ops are fused into the innermost tile loop.
    count = sum(1 for tile in tiles if tile)
    # Threads share the region's work, most of it a contraction's or a
    # reduction's: the anchor alone may be too small to be worth them.
    computing = [member for member in members if member.name != "tensor.pad"]
    parallel = (
        parallel
        and not any(_makes_runtime_checks(member) for member in computing)
        and any(_has_many_iterations(member) for member in computing)
    )
    parts = [f"""
    %m{first} = transform.structured.match attributes{{{_MEMBER} = {first} : i64}} in %op
        : (!transform.any_op) -> !transform.any_op{_tile_outer(f"m{first}", "anchor", tiles, parallel)}
    %loop0 = transform.cast {"%anchor_forall" if parallel else f"%anchor_loops#{count - 1}"}
        : !transform.any_op to !transform.any_op
    transform.apply_patterns to %op {{
      transform.apply_patterns.memref.resolve_ranked_shaped_type_result_dims
    }} : !transform.any_op"""]
    loop = 0
    scope = "op"
    # The member whose rows the contraction reads through the collapse.
    rows_producer = collapsed[0] - 1 if collapsed else None
    for index in reversed(range(len(members))):
        if index == first:
            continue
        if index == rows_producer:
            # The contraction reads slices of the collapsed rows: slices of
            # the rows themselves, for the producer to be fused.
            parts.append(f"""
    transform.annotate %loop{loop} "{_TILE_LOOP}" : !transform.any_op
    %rows_region = transform.apply_registered_pass "nnf-slice-rows-before-collapse" to %op
        : (!transform.any_op) -> !transform.any_op
    %loop{loop + 1} = transform.structured.match attributes{{{_TILE_LOOP}}} in %rows_region
        : (!transform.any_op) -> !transform.any_op""")
            loop += 1
            scope = "rows_region"
        parts.append(f"""
    %m{index} = transform.structured.match attributes{{{_MEMBER} = {index} : i64}} in %{scope}
        : (!transform.any_op) -> !transform.any_op
    %fused{index}, %loop{loop + 1} = transform.structured.fuse_into_containing_op %m{index} into %loop{loop}
        : (!transform.any_op, !transform.any_op) -> (!transform.any_op, !transform.any_op)
    transform.apply_cse to %{scope} : !transform.any_op
    transform.apply_dce to %{scope} : !transform.any_op""")
        loop += 1
        if index == rows_producer:
            # The producer's band is computed a channel at a time (its other
            # ops fused into that loop), so that only its result, the
            # contraction's operand, takes a band's worth of cache.
            parts.append(f"""
    %channel, %channel_loops:2 = transform.structured.tile_using_for %fused{index} tile_sizes [1, 1]
        : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op)
    %loop{loop + 1} = transform.cast %channel_loops#1 : !transform.any_op to !transform.any_op
    transform.apply_patterns to %{scope} {{
      transform.apply_patterns.tensor.merge_consecutive_insert_extract_slice
    }} : !transform.any_op
    transform.apply_dce to %{scope} : !transform.any_op""")
            loop += 1
    # The fused ops write their tiles into slices of whole-size tensor.empty
    # destinations: made tile-sized, each tile's intermediates stay in cache
    # (and the whole-size buffers are not allocated at all).
    parts.append(f"""
    transform.apply_patterns to %{scope} {{
      transform.apply_patterns.tensor.fold_tensor_empty
    }} : !transform.any_op""")
    if any(member.name == "tensor.pad" for member in members):
        parts.append(_padded_tiles(scope))
    fusion = contractions and _register_fusion(members, anchor, *contractions[0], scope)
    if fusion:
        parts.append(fusion[0])
    return "".join(parts), fusion[1] if fusion else []


def _register_fusion(
    members: list[ir.Operation], anchor: ir.Operation, contraction: ir.Operation, roles: dict[int, str], scope: str
) -> tuple[str, list[ir.Operation]] | None:
    """Transform ops computing a region's contraction, its zero fill and its
    epilogue (the anchor) one register tile at a time, once the region is
    tiled for the cache (handle `%scope`), and the ops they vectorize: the
    accumulator starts as a zero vector and the epilogue reads it in
    registers, so neither the zeros nor the contraction's result go to
    memory (scheduled apart, every cache tile was zeroed, accumulated into
    and rewritten by the epilogue: three passes over it). None where the
    contraction's k loop is tiled for the cache (its accumulator lives
    across k tiles), a register tile would be partial, or other ops sit
    between the three."""
    fill = contraction.operands[len(contraction.operands) - 1].owner
    if (
        anchor == contraction
        or getattr(fill, "name", None) != "linalg.fill"
        or fill.operation not in members
        or len(list(fill.results[0].uses)) != 1
        or [use.owner.operation for use in contraction.results[0].uses] != [anchor]
        or any("parallel" not in iterator for iterator in _iterators(anchor))
    ):
        return None
    sizes = _loop_sizes(contraction)
    if None in sizes:
        return None
    cache = _contraction_cache_tiles(contraction, roles)
    register = _register_tiles(roles, sizes, cache)
    for loop, role in roles.items():
        if role == "k" and sizes[loop] > cache[loop]:
            return None
        if role in ("m", "n") and (sizes[loop] % cache[loop] or cache[loop] % register[loop]):
            return None
    epilogue_tiles = [0 if roles[loop] == "batch" else register[loop] for loop in _output_loops(contraction)]
    k_tiles = [1 if roles[loop] == "k" else 0 for loop in range(len(roles))]
    loops = sum(1 for tile in epilogue_tiles if tile)
    ks = sum(k_tiles)
    number = {op: members.index(op) for op in (anchor, contraction, fill.operation)}

    def match(op: ir.Operation) -> str:
        return f"""transform.structured.match attributes{{{_MEMBER} = {number[op]} : i64}} in %{scope}
        : (!transform.any_op) -> !transform.any_op"""

    body = f"""
    %reg_anchor = {match(anchor)}
    %reg_epilogue, %reg_loops:{loops} = transform.structured.tile_using_for %reg_anchor tile_sizes {_sizes(epilogue_tiles)}
        : (!transform.any_op) -> (!transform.any_op{", !transform.any_op" * loops})
    %reg_function = transform.get_parent_op %reg_epilogue {{op_name = "func.func"}} : (!transform.any_op) -> !transform.any_op
    %reg_c = {match(contraction)}
    %reg_contraction, %reg_c_loop = transform.structured.fuse_into_containing_op %reg_c into %reg_loops#{loops - 1}
        : (!transform.any_op, !transform.any_op) -> (!transform.any_op, !transform.any_op)
    %reg_f = {match(fill.operation)}
    %reg_fill, %reg_f_loop = transform.structured.fuse_into_containing_op %reg_f into %reg_c_loop
        : (!transform.any_op, !transform.any_op) -> (!transform.any_op, !transform.any_op)
    %reg_k, %reg_k_loops:{ks} = transform.structured.tile_using_for %reg_contraction tile_sizes {_sizes(k_tiles)}
        : (!transform.any_op) -> (!transform.any_op{", !transform.any_op" * ks})
    transform.structured.vectorize %reg_fill : !transform.any_op
    transform.structured.vectorize %reg_k : !transform.any_op
    transform.structured.vectorize %reg_epilogue : !transform.any_op""" + _hoist_accumulators(
        "reg_function", _CONTRACTION_PATTERNS
    )
    # An operand of the epilogue per row of the tile (a batch norm's scale
    # per channel) is read as a vector of the 8 rows, broadcast along the 32
    # columns and transposed: the final lowering's 16x16 strategy takes such
    # a transpose apart element by element (256 inserts per operand and
    # tile); one flat shuffle instead becomes a broadcast per row in LLVM.
    body += """
    transform.apply_patterns to %reg_function {
      transform.apply_patterns.vector.lower_transpose lowering_strategy = "shuffle_1d"
    } : !transform.any_op"""
    return body, list(number)


def _padded_tiles(scope: str) -> str:
    """Transform ops for the depthwise convolutions' (NCHW) input pads in
    handle `%scope`, fused into their region's tile loop (upstream's tiling
    of tensor.pad guards each tile with an scf.if: a tile wholly in the
    padding, which the row tiles never make, is generated apart): each tile
    of the padded input is a fill and a copy of its interior, both
    vectorized one row at a time. The whole padded tensor is never written
    (MobileNetV2 block: 2.6 MB a call). Decomposed by pattern:
    rewrite_in_destination_passing_style asserts on a tile of static shape
    whose padding amounts are dynamic."""
    return f"""
    %pads = transform.structured.match ops{{["tensor.pad"]}} in %{scope} : (!transform.any_op) -> !transform.any_op
    %pad_tile = transform.get_parent_op %pads {{op_name = "scf.if"}} : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to %pad_tile {{
      transform.apply_patterns.linalg.decompose_pad
    }} : !transform.any_op
    %pad_insert = transform.structured.match ops{{["tensor.insert_slice"]}} in %pad_tile : (!transform.any_op) -> !transform.any_op
    %pad_copy = transform.structured.insert_slice_to_copy %pad_insert : (!transform.any_op) -> !transform.any_op
    %pad_fill = transform.structured.match ops{{["linalg.fill"]}} in %pad_tile : (!transform.any_op) -> !transform.any_op
    %pad_fill_row, %pad_fill_loops:3 = transform.structured.tile_using_for %pad_fill tile_sizes [1, 1, 1, 0]
        : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op)
    transform.structured.vectorize %pad_fill_row : !transform.any_op""" + _row_copies("pad_copy", "pad_row", 4, False)


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
            _set_i64(item.op, _TAG, index)
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
            for name in (_TAG, _MEMBER, _SEGMENT, _TILE_LOOP, _TILE_ROWS, _BAND_COLUMNS):
                if name in op.attributes:
                    del op.attributes[name]


def vectorize_linalg(module: ir.Module, parallel: bool = False) -> None:
    """Tiles and vectorizes the linalg-on-tensors ops of `module`, in place.

    `parallel`: the outer tile loops of large ops are `scf.forall` loops, to
    be run by several threads. Run it after linalg fusion and
    `pipelines.DISPATCH_REGIONS`, then `linalg_to_llvm_optimized`.
    """
    # The other layouts: upstream's. Mixed-precision convolutions (f16 in,
    # f32 accumulator) came out wrong through it: they stay direct (and scalar).
    convolutions = [
        op for op in _linalg_ops(module)
        if op.name in _CONV_TO_IM2COL and len({value.type.element_type for value in op.operands}) == 1
    ]
    if convolutions:
        im2col = [
            _Scheduled(op, """
    %i, %mm = transform.structured.convert_conv2d_to_img2col %op
        : (!transform.any_op) -> (!transform.any_op, !transform.any_op)""")
            for op in convolutions
        ]
        _apply(module, im2col, "", "im2col")
    _pads_as_fill_and_copy(module)
    _give_fills_private_destinations(module)
    # Dispatch regions first: their ops are scheduled once fused into the
    # region's tile loop, which threads share instead.
    scheduled = []
    vectorized: list[ir.Operation] = []
    for dispatch in _dispatches(module):
        schedule = _dispatch_schedule(dispatch, parallel)
        if schedule is not None:
            scheduled.append(_Scheduled(dispatch, schedule[0]))
            vectorized += schedule[1]
    for op in _linalg_ops(module):
        if op in vectorized:
            continue
        in_dispatch = _in_dispatch(op)
        body = _schedule_of(op, parallel and not in_dispatch)
        if body is not None:
            scheduled.append(_Scheduled(op, body))
    _apply(module, scheduled, _VECTOR_LOWERING + _VECTOR_LOWERING_LATE, "vectorization")
    passmanager.PassManager.parse("builtin.module(nnf-inline-dispatch-regions)", module.context).run(
        module.operation
    )


def _pads_as_fill_and_copy(module: ir.Module) -> None:
    """Rewrites each `tensor.pad` outside dispatch regions (those inside are
    tiled with their convolution) as a fill of the padded tensor and a
    `linalg.copy` of the input into it, to be vectorized like other linalg
    ops: bufferized as is, a pad copies row by row through a runtime call
    (memrefCopy), which took a fifth of a depthwise convolution's time."""
    pads = [
        _Scheduled(op, """
    %insert = transform.structured.rewrite_in_destination_passing_style %op : (!transform.any_op) -> !transform.any_op
    %copy = transform.structured.insert_slice_to_copy %insert : (!transform.any_op) -> !transform.any_op""")
        for op in walk_ops(module.operation)
        if op.name == "tensor.pad" and not _in_dispatch(op)
    ]
    if pads:
        _apply(module, pads, "", "padding")


def _give_fills_private_destinations(module: ir.Module) -> None:
    """Gives each fill of an empty tensor outside dispatch regions a buffer
    of its own (`bufferization.alloc_tensor`, which CSE leaves alone), and
    where several linalg ops write into a fill, each of them a fill and
    buffer of its own. CSE merges identical fills (ResNet-18's four
    64 x 58 x 58 pads, the zero accumulators of its three 7x7 convolutions),
    and bufferization then copied the shared filled buffer (for the pads, and
    the interior twice) for every op writing into it."""
    for fill in [op for op in walk_ops(module.operation) if op.name == "linalg.fill"]:
        uses = list(fill.results[0].uses)
        empty = fill.operands[len(fill.operands) - 1].owner  # an op, or a block
        if not uses or _in_dispatch(fill) or getattr(empty, "name", None) != "tensor.empty":
            continue
        writers = [fill]
        if len(uses) > 1 and all(_is_linalg_init(use) for use in uses):
            for use in uses[1:]:
                with ir.InsertionPoint(use.owner):
                    private = fill.clone()
                use.owner.operands[use.operand_number] = private.results[0]
                writers.append(private)
        for writer in writers:
            with ir.InsertionPoint(writer), fill.location:
                destination = bufferization.AllocTensorOp(fill.results[0].type, list(empty.operands))
            writer.operands[len(writer.operands) - 1] = destination.result


def _is_linalg_init(use: ir.OpOperand) -> bool:
    """Whether `use` is the destination operand of a linalg op (its results'
    operands come last)."""
    owner = use.owner
    return owner.name.startswith("linalg.") and use.operand_number >= len(owner.operands) - len(owner.results)


def _in_dispatch(op: ir.Operation) -> bool:
    """Whether `op` lies in an `nnf.dispatch` region."""
    parent = op.parent
    while parent is not None and parent.name != "builtin.module":
        if parent.name == "nnf.dispatch":
            return True
        parent = parent.parent
    return False


def lower_to_llvm(module: ir.Module, level: str, runner: "compiler.StageRunner", threads: int = 0) -> None:
    """Runs the stages from `level` to the LLVM dialect with the optimized code generation.

    `threads`: 1 for sequential code, else how many OpenMP threads run the
    parallel loops (0: all cores).

    The CPU replacement of `for name, pipeline in pipelines.stages(level):
    runner.run(...)`; the tiling/vectorization shows in `runner.times` (and
    the IR dumps) as stage "vectorize".
    """
    steps = pipelines.stages(level)
    for name, pipeline in steps[:-1]:
        runner.run(module, name, pipeline)
    runner.run(module, "dispatch-regions", pipelines.DISPATCH_REGIONS)
    start = time.perf_counter()
    vectorize_linalg(module, parallel=threads != 1)
    runner.times["vectorize"] = time.perf_counter() - start
    runner.dump(module, "vectorize")
    runner.run(module, steps[-1][0], linalg_to_llvm_optimized(threads))
