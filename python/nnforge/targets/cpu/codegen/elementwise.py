"""Elementwise ops, fills, transposes and copies.

Elementwise ops and fills: tiles of 1 along all loops but the innermost,
which is vectorized four registers wide (64 lanes on the Zen 4).
Transposes, and generics reading an operand transposed: square tiles of
a register's lanes (16 x 16), transposed in registers. Copies (a padded tensor's interior): a row at a time, each row an
inline memcpy.
"""

from __future__ import annotations

import math

from mlir import ir
from mlir.dialects import linalg

from nnforge.targets.cpu.codegen.common import (
    MIN_VECTOR,
    clamp,
    has_computed_indices,
    iterator_types,
    loop_count,
    row_copies,
    sizes_text,
    static_loop_sizes,
    tile_outer,
)
from nnforge.targets.cpu.host import ScheduleSizes


def row_lanes(size: int | None, sizing: ScheduleSizes) -> int:
    """Lanes of an innermost loop of `size`: the elementwise vector, or the
    widest multiple of the row lane step down to one register that divides
    a static row (with 16-lane registers, multiples of 8 down to 16: 1000 =
    25 x 40), so that no vector is partial: a partial one is masked, and a
    reduction's masked accumulator slice cannot stay in registers."""
    widest = sizing.elementwise_vector
    if size is None:
        return widest
    candidates = range(widest, sizing.lanes - 1, -sizing.row_lane_step)
    return next((lanes for lanes in candidates if size % lanes == 0), widest)


def elementwise_schedule(op: ir.Operation, parallel: bool, sizing: ScheduleSizes) -> str | None:
    """Tiles all loops but the innermost to 1 and vectorizes the innermost.

    Transposes, and generics reading an operand across its innermost
    dimension (`transposed_loop`), get square tiles instead (transposed in
    registers by shuffles, rather than read one element at a time).
    """
    rank = loop_count(op)
    if rank == 0:
        return None
    sizes = static_loop_sizes(op)
    if _fills_in_one_row(op, sizes, sizing):
        total = math.prod(sizes)
        lanes = row_lanes(total, sizing)
        return f"""
    %flat = transform.structured.flatten_elementwise %op : (!transform.any_op) -> !transform.any_op{tile_outer("flat", "t", [lanes], parallel)}
    transform.structured.vectorize %t vector_sizes [{lanes}] : !transform.any_op"""
    crossing = transposed_loop(op)
    if op.name == "linalg.transpose" and rank >= 2:
        tiles = clamp([1] * (rank - 2) + [sizing.transpose_tile] * 2, sizes)
    elif crossing is not None and (sizes[crossing] or 0) >= sizing.transpose_tile // 2:
        tiles = [1] * rank
        for loop in (crossing, rank - 1):
            tiles[loop] = _square_side(sizes[loop], sizing)
        tiles = clamp(tiles, sizes)
    else:
        tiles = clamp([1] * (rank - 1) + [row_lanes(sizes[-1], sizing)], sizes)
    if tiles[-1] < MIN_VECTOR:
        return None  # too narrow to gain from vectors: scalar loops
    if has_computed_indices(op):
        # Masked vectorization of reads through computed indices (im2col's
        # patch gather) picked wrong elements at partial tiles (measured: a
        # padded 9x10 convolution): these stay scalar.
        return None
    reductions = ["reduction" in i for i in iterator_types(op)]
    if sum(reductions) > 1:
        return None  # the vectorizer aborts on some multi-dim reductions
    if parallel and any(reductions):
        # Threads share the parallel loops only: a reduction loop in the
        # scf.forall has threads accumulate into the same outputs (a race).
        shared = [0 if reduction else tile for tile, reduction in zip(tiles, reductions)]
        serial = [tile if reduction else 0 for tile, reduction in zip(tiles, reductions)]
        tiling = tile_outer("op", "shared", shared, True) + tile_outer("shared", "t", serial, False)
    else:
        tiling = tile_outer("op", "t", tiles, parallel)
    return f"""{tiling}
    transform.structured.vectorize %t vector_sizes {sizes_text(tiles)} : !transform.any_op"""


def _fills_in_one_row(op: ir.Operation, sizes: list[int | None], sizing: ScheduleSizes) -> bool:
    """Whether `op` is a fill of a static tensor whose rows no vector divides
    but whose whole does (a max pooling's padded 64 x 114 x 114 input): filled
    as one row, no vector is masked (a masked store took 0.66 ms of that
    fill on the AMD EPYC Zen 3, the whole stem's max pooling 0.16). Not a
    fill of a slice (a padded tensor's border): its rows lie apart, and
    bufferization would fill a temporary buffer and copy it."""
    if op.name != "linalg.fill" or len(sizes) < 2 or None in sizes:
        return False
    if getattr(op.operands[len(op.operands) - 1].owner, "name", None) == "tensor.extract_slice":
        return False
    return sizes[-1] % row_lanes(sizes[-1], sizing) != 0 and math.prod(sizes) % sizing.lanes == 0


def transposed_loop(op: ir.Operation) -> int | None:
    """Where a parallel generic writes its output in loop order but reads
    an operand whose innermost dimension is another loop (a transposing
    copy, or an epilogue reading an NHWC result into NCHW): that loop."""
    if op.name != "linalg.generic" or any("parallel" not in i for i in iterator_types(op)):
        return None
    rank = loop_count(op)
    maps = [ir.AffineMapAttr(m).value for m in linalg.get_indexing_maps(op)]
    if rank < 2 or maps[-1] != ir.AffineMap.get_identity(rank, context=op.context):
        return None
    for read in maps[:-1]:
        if read.is_permutation and read.results[rank - 1].maybe_downcast().position != rank - 1:
            return read.results[rank - 1].maybe_downcast().position
    return None


def _square_side(size: int | None, sizing: ScheduleSizes) -> int:
    """A side of the square tiles of a transposing op along a loop of
    `size`: a register's lanes, or half of them where those divide the loop
    and the lanes do not (56 = 7 x 8), so that no tile is partial."""
    lanes = sizing.transpose_tile
    if size is not None and size % lanes and size % (lanes // 2) == 0:
        return lanes // 2
    return lanes


def copy_schedule(op: ir.Operation, parallel: bool, sizing: ScheduleSizes) -> str | None:
    """A copy (a padded tensor's interior) one row at a time, the row's unit
    dimensions folded away: each row copy then lowers to an inline memcpy
    rather than a call of the runtime's strided memrefCopy."""
    sizes = static_loop_sizes(op)
    if len(sizes) < 2 or sizes[-1] is None:
        return elementwise_schedule(op, parallel, sizing)
    # The caller left no empty loop.
    return row_copies("op", "row", len(sizes), parallel)
