"""Convolutions and poolings that are not contractions.

2-D convolutions (NCHW/FCHW, NHWC/HWCF, NHWC/FHWC) become im2col and a
contraction (`lowering` converts them, `contractions` schedules them); for
NCHW and NHWC/HWCF, nnforge's im2col (nnf-conv-to-im2col), whose window
copy is vectorized along its innermost dimension here (output rows for
NCHW, channels for NHWC). NHWC/HWCF convolutions with unit strides and
dilations, which nnf-conv-to-im2col leaves, are computed from the input
directly: register tiles of output pixels by output channels, accumulated
over the filter taps and input channels like a contraction's. Depthwise NCHW convolutions and NCHW
poolings (max, sum): segments of a register's lanes of output columns (16
on the Zen 4) per channel (the row's last one as wide as what is left), each accumulated in registers over the
window taps. Strided windows (these, and strided im2col window copies):
each segment's input read as one contiguous vector whose every s-th lane
is kept (nnf-deinterleave-strided-reads), which the vectorizer then takes.
"""

from __future__ import annotations

import itertools
import math

from mlir import ir

from nnforge.targets.cpu.codegen.common import (
    MIN_VECTOR,
    SEGMENT,
    TILE_ROWS,
    clamp,
    copy_operand,
    hoist_accumulators,
    iterator_types,
    sizes_text,
    static_loop_sizes,
    tile_outer,
)
from nnforge.targets.cpu.codegen.contractions import CONTRACTION_PATTERNS
from nnforge.targets.cpu.host import ScheduleSizes

# Output rows per vector tile of stride-1 depthwise convolutions: each input
# row loaded serves the filter rows of both (12 row loads for 2 x 16
# outputs of a 3x3 filter instead of 18), the filter taps broadcast once.
DEPTHWISE_ROWS = 2
# Values of the SEGMENT attribute: unique per row segment in a process.
_segment_ids = itertools.count()

# The poolings scheduled as row segments.
NCHW_POOLING = ("linalg.pooling_nchw_max", "linalg.pooling_nchw_sum")

# The convolutions upstream's im2col rewrites into contractions: those that
# nnforge's nnf-conv-to-im2col (in the dispatch-regions stage) left alone.
CONV_TO_IM2COL = ("linalg.conv_2d_nchw_fchw", "linalg.conv_2d_nhwc_hwcf", "linalg.conv_2d_nhwc_fhwc")


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
    size = static_loop_sizes(op)[segment]
    remainder = size % lanes if size is not None and size > lanes else 0
    text = f"""{tile_outer("op", "rows", outer, parallel)}
    %t, %tl:{count} = transform.structured.tile_using_for %rows tile_sizes {sizes_text(inner)}
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
    transform.annotate %{loop}_segment "{SEGMENT}" = %{loop}_id : !transform.any_op, !transform.param<i64>"""
    # Canonicalized first: a peeled segment's sizes become static.
    text += """
    transform.apply_patterns to %f {
      transform.apply_patterns.canonicalization
    } : !transform.any_op
    %fs = transform.apply_registered_pass "nnf-deinterleave-strided-reads" to %f : (!transform.any_op) -> !transform.any_op"""
    for loop, width in parts:
        text += f"""
    %{loop}_vector = transform.structured.match attributes{{{SEGMENT} = {segments[loop]} : i64}} in %fs
        : (!transform.any_op) -> !transform.any_op
    transform.structured.vectorize %{loop}_vector vector_sizes [{f"{rows}, " if rows > 1 else ""}{width}] : !transform.any_op"""
    return text + hoist_accumulators("fs")


def direct_register_tile(row: int, channels: int, sizing: ScheduleSizes, panel: int = 0) -> tuple[int, int]:
    """(pixels, channels) of a direct convolution's register tile for output
    rows of `row` pixels and `channels` output channels: the most
    accumulators, up to the contraction register tile's, whose pixels divide
    the row (a partial tile would mask them all), channels in the
    contraction's vectors or in one. Where that leaves fewer accumulators
    than FMAs in flight, channels in twice the contraction's vectors where
    they give more: 14 pixels with AVX2 take 2 x 32, not 7 x 8 (7 FMA
    chains for 8 in flight; 3x3, 256 channels, 14x14 on 2 threads of the
    AMD EPYC Zen 3: 2.37 ms against 3.41). A filter stored in panels of
    `panel` output channels is read a panel at a time: its channels are
    one panel."""
    rows, columns = sizing.register_tile["m"], sizing.register_tile["n"]

    def best(widths: tuple[int, ...]) -> tuple[int, int, int]:
        return max(
            (pixels * width // sizing.lanes, width, pixels)
            for width in widths
            for pixels in range(1, rows * columns // width + 1)
            if row % pixels == 0 and pixels * width <= rows * columns
        )

    if panel:
        return best((panel,))[2], panel
    accumulators, width, pixels = best((columns, sizing.lanes))
    if accumulators < sizing.fmas_in_flight and channels % (2 * columns) == 0:
        accumulators, width, pixels = max((accumulators, width, pixels), best((2 * columns,)))
    return pixels, width


def depthwise_schedule(op: ir.Operation, parallel: bool, sizing: ScheduleSizes) -> str | None:
    """A depthwise NCHW convolution (loops n, oh, ow, c, kh, kw) as vectorized
    multiply-adds: one segment of `sizing.depthwise_vector` output columns
    per channel and filter tap, DEPTHWISE_ROWS rows of them where the stride is
    1 and they divide the rows of every tile (TILE_ROWS, set where a
    dispatch region tiles the convolution into tiles of rows that divide its
    rows)."""
    sizes = static_loop_sizes(op)
    [lanes] = clamp([sizing.depthwise_vector], sizes[2:3])
    if lanes < MIN_VECTOR:
        return None
    strides = [int(stride) for stride in ir.DenseIntElementsAttr(op.attributes["strides"])]
    tile_rows = ir.IntegerAttr(op.attributes[TILE_ROWS]).value if TILE_ROWS in op.attributes else sizes[1]
    rows = DEPTHWISE_ROWS if strides == [1, 1] and tile_rows and tile_rows % DEPTHWISE_ROWS == 0 else 1
    # n, oh, c independent; then ow segments and the filter taps.
    return _row_segment_schedule(op, [1, rows, 0, 1, 0, 0], [0, 0, lanes, 0, 1, 1], lanes, parallel, rows)


def pooling_schedule(op: ir.Operation, parallel: bool, sizing: ScheduleSizes) -> str | None:
    """An NCHW pooling (loops n, c, oh, ow, kh, kw) as vectorized maxima or
    sums: one segment of `sizing.depthwise_vector` output columns per
    channel, row and window tap."""
    [lanes] = clamp([sizing.depthwise_vector], static_loop_sizes(op)[3:4])
    if lanes < MIN_VECTOR:
        return None
    # n, c, oh independent; then ow segments and the window taps.
    return _row_segment_schedule(op, [1, 1, 1, 0, 0, 0], [0, 0, 0, lanes, 1, 1], lanes, parallel)


def is_window_copy(op: ir.Operation) -> bool:
    """Whether `op` copies a convolution's input windows into an im2col buffer
    (as nnf-conv-to-im2col writes it): a generic over (n, c, kh, kw, oh, ow)
    for NCHW, (n, oh, ow, kh, kw, c) for NHWC, yielding its one input."""
    iterators = iterator_types(op)
    if op.name != "linalg.generic" or len(op.operands) != 2 or len(iterators) != 6:
        return False
    body = op.regions[0].blocks[0]
    return (
        not any("reduction" in i for i in iterators)
        and [o.operation.name for o in body.operations] == ["linalg.yield"]
        and body.operations[0].operands[0] == body.arguments[0]
    )


def window_copy_schedule(op: ir.Operation, parallel: bool, sizing: ScheduleSizes) -> str | None:
    """An im2col window copy as vectorized copies of segments of its
    innermost dimension: output rows, one per (n, c, kh, kw, oh), for NCHW;
    channels, one per (n, oh, ow, kh, kw), for NHWC."""
    [lanes] = clamp([sizing.depthwise_vector], static_loop_sizes(op)[5:6])
    if lanes < MIN_VECTOR:
        return None
    # n, c (NCHW) or n, oh (NHWC) independent; then the next three loops
    # and the segments of the innermost one.
    return _row_segment_schedule(op, [1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, lanes], lanes, parallel)


def _packed_convolution_maps(context: ir.Context) -> list[ir.AffineMap]:
    """The indexing maps of an NHWC/HWCF convolution with unit strides and
    dilations whose filter nnf-pack-weights stored as panels: loops (n, oh,
    ow, f, kh, kw, c, column), f counting panels; input [N, H, W, C],
    filter [F/panel, KH, KW, C, panel], output [N, OH, OW, F/panel, panel]."""
    d = [ir.AffineDimExpr.get(i, context) for i in range(8)]
    return [
        ir.AffineMap.get(8, 0, [d[0], d[1] + d[4], d[2] + d[5], d[6]], context),
        ir.AffineMap.get(8, 0, [d[3], d[4], d[5], d[6], d[7]], context),
        ir.AffineMap.get(8, 0, [d[0], d[1], d[2], d[3], d[7]], context),
    ]


def packed_filter_panel(op: ir.Operation) -> int:
    """Output channels per panel of the filter of `op` if it is a direct
    convolution whose filter is stored as panels (a generic, see
    `_packed_convolution_maps`), else 0."""
    if op.name != "linalg.generic" or len(op.operands) != 3:
        return 0
    maps = [ir.AffineMapAttr(attribute).value for attribute in ir.ArrayAttr(op.attributes["indexing_maps"])]
    body = [o.operation.name for o in op.regions[0].blocks[0].operations]
    if maps != _packed_convolution_maps(op.context) or body not in (
        ["arith.mulf", "arith.addf", "linalg.yield"],
        ["arith.muli", "arith.addi", "linalg.yield"],
    ):
        return 0
    return ir.RankedTensorType(op.operands[1].type).shape[-1]


def is_direct_convolution(op: ir.Operation) -> bool:
    """Whether `op` is a convolution computed from its input directly (what
    nnf-conv-to-im2col leaves for that): NHWC/HWCF, unit strides and
    dilations, static shapes and one element type; its filter may be stored
    as panels (`packed_filter_panel`)."""
    if op.name == "linalg.conv_2d_nhwc_hwcf":
        unit = all(
            int(value) == 1
            for name in ("strides", "dilations")
            for value in ir.DenseIntElementsAttr(op.attributes[name])
        )
    else:
        unit = packed_filter_panel(op) > 0
    types = [ir.RankedTensorType(value.type) for value in op.operands if isinstance(value.type, ir.RankedTensorType)]
    return (
        unit
        and len(types) == len(op.operands)
        and all(t.has_static_shape for t in types)
        and len({t.element_type for t in types}) == 1
    )


def direct_convolution_schedule(op: ir.Operation, parallel: bool, sizing: ScheduleSizes) -> str:
    """An NHWC/HWCF convolution (loops n, oh, ow, f, kh, kw, c) from its
    input: output rows independent (shared among threads), each in register
    tiles of pixels by channels (the contraction's register tile: 8 x 32 on
    the Zen 4; 7 or 6 pixels where those divide the row and 8 do not),
    channel tiles outside pixel tiles: a channel tile's filter taps stay in
    cache across the row (3x3, 512 channels, 7x7, one thread: 2.6 % less
    time than pixel tiles outside, 1-2 % at 64 and 256 channels). A
    tile's unit loops (n, oh, kh, kw) are folded away, which leaves a
    contraction of a row of input pixels [pixels, c] (contiguous channels)
    and a filter tap [c, f]; it is tiled by one input channel, vectorized
    to outer products, and its accumulator hoisted into registers.

    A filter of `sizing.direct_filter_bytes` or more (3x3, 256 channels:
    2.3 MiB) would be read from memory again for every output row: its
    channel tiles are then the outer loop (shared among threads), each
    read from L2 across all the rows. A filter stored as panels (loops n,
    oh, ow, f, kh, kw, c, column; `packed_filter_panel`) is read a panel
    at a time, contiguous; another one has each tile's filter taps copied
    together on every call (3x3, 256 channels, 14x14, 2 threads of the
    Intel Xeon: 1.10 ms instead of 1.82 without the copy)."""
    sizes = static_loop_sizes(op)
    panel = packed_filter_panel(op)
    if panel:
        pixels = clamp([direct_register_tile(sizes[2], sizes[3] * panel, sizing, panel)[0]], sizes[2:3])[0]
        # Loops the folding leaves: the pixels if more than 1, the input
        # channels (stepped through one at a time) and the panel's columns.
        vector = [pixels] * (pixels > 1) + [1] * (sizes[6] > 1) + [panel]
        channel = int(pixels > 1)
        outer, inner = [1, 0, 0, 1, 0, 0, 0, 0], f"[0, 1, {pixels}, 0, 1, 1, 0, 0]"
        tiles, copy = "rows", ""
    else:
        [pixels, channels] = clamp(list(direct_register_tile(sizes[2], sizes[3], sizing)), sizes[2:4])
        # Loops the folding leaves: those of the register tile wider than 1,
        # then the input channels (stepped through one at a time).
        vector = [size for size in (pixels, channels) if size > 1] + [1] * (sizes[6] > 1)
        channel = len(vector) - 1
        filter_type = ir.RankedTensorType(op.operands[1].type)
        if math.prod(filter_type.shape) * filter_type.element_type.width // 8 >= sizing.direct_filter_bytes:
            outer, inner = [1, 0, 0, channels, 0, 0, 0], f"[0, 1, {pixels}, 0, 1, 1, 0]"
            # The channel tile's filter taps lie a row of the filter apart (1 KiB
            # at 256 channels), which maps them to few cache sets: copied
            # together, they stay in cache across the rows.
            tiles = "tile_filter"
            copy = copy_operand("rows", tiles, op, 1)
        else:
            outer = [1, 1, 0, 0, 0, 0, 0]
            inner = f"[0, 0, {pixels}, {channels}, 1, 1, 0] interchange = [0, 1, 3, 2, 4, 5, 6]"
            tiles, copy = "rows", ""
    if sizes[6] > 1:
        step = f"""
    %step, %step_loop = transform.structured.tile_using_for %tap tile_sizes {sizes_text([0] * channel + [1])}
        : (!transform.any_op) -> (!transform.any_op, !transform.any_op)"""
    else:
        step = """
    %step = transform.cast %tap : !transform.any_op to !transform.any_op"""
    vectorize = f"""
    transform.structured.vectorize %step vector_sizes {sizes_text(vector)} : !transform.any_op""" if vector else ""
    loops = ", ".join(["!transform.any_op"] * 5)
    return f"""{tile_outer("op", "rows", outer, parallel)}{copy}
    %t, %tl:4 = transform.structured.tile_using_for %{tiles} tile_sizes {inner}
        : (!transform.any_op) -> ({loops})
    %g = transform.structured.generalize %t : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to %tl#3 {{
      transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices
    }} : !transform.any_op
    %tap = transform.structured.match ops{{["linalg.generic"]}} in %tl#3 : (!transform.any_op) -> !transform.any_op{step}{vectorize}
    %f = transform.get_parent_op %tl#0 {{op_name = "func.func"}} : (!transform.any_op) -> !transform.any_op""" + (
        hoist_accumulators("f", CONTRACTION_PATTERNS)
    )
