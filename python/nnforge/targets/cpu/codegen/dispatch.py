"""Dispatch regions (`nnf.dispatch`, formed by `nnf-form-dispatch-regions`),
scheduled as one loop nest.

The op yielding the result (the anchor) is tiled along its outer loops --
to the contraction's output tiles, or to rows -- and every other op of the
region is fused into that tile loop; then each op gets the schedule of its
kind inside the tile. A region where a 1x1 convolution reads a depthwise
convolution's collapsed rows, or a contraction the collapsed windows of its
im2col copy, is tiled in bands of whole rows (the band bytes of
`ScheduleSizes` of the producer's result), the contraction's slices of the
collapsed rows taken of the rows themselves (nnf-slice-rows-before-collapse);
each band of the producer is computed a channel at a time (a depthwise
stage's rows in pairs, DEPTHWISE_ROWS).
"""

from __future__ import annotations

import math

from mlir import ir

from nnforge.errors import CompileError
from nnforge.targets.cpu.codegen.common import (
    BAND_COLUMNS,
    MEMBER,
    TILE_LOOP,
    TILE_ROWS,
    clamp,
    has_many_iterations,
    hoist_accumulators,
    iterator_types,
    loop_count,
    makes_runtime_checks,
    row_copies,
    set_i64,
    sizes_text,
    static_loop_sizes,
    tile_outer,
)
from nnforge.targets.cpu.codegen.contractions import (
    CONTRACTION_PATTERNS,
    contraction_roles,
    contraction_tiles_of,
    output_loops,
)
from nnforge.targets.cpu.host import ScheduleSizes

# Bands at least, where threads share them: the threads' shares stay even
# (7 bands on two threads would leave one idle an eighth of the time).
PARALLEL_BANDS = 8


def _epilogue_tiles(
    contraction: ir.Operation, roles: dict[int, str], rank: int, sizing: ScheduleSizes
) -> list[int]:
    """Tile sizes of the anchor of a contraction's dispatch region: the
    contraction's output tile (cache tiles of its m, n and batch loops).

    nnf-form-dispatch-regions admits epilogues that read the contraction's
    result in loop order and tile all their loops, so anchor loop i is the
    contraction's output dimension i.
    """
    loops = output_loops(contraction)
    if len(loops) != rank:
        raise CompileError(f"a dispatch region's epilogue has {rank} loops, its contraction's result {len(loops)} dims")
    cache, _ = contraction_tiles_of(contraction, roles, sizing)
    return [cache[loop] for loop in loops]


def _band_rows(rows: ir.RankedTensorType, parallel: bool, sizing: ScheduleSizes) -> int:
    """Rows of a band of `rows`, the tensor whose last two dims (H and W) a
    contraction reads collapsed (a depthwise result [N, C, H, W], im2col
    windows [N, C, KH, KW, OH, OW]): as many as the band bytes hold (384 KiB
    on the Zen 4: 8 rows of 56 x 56 x 192 f32); where threads share the
    bands, few enough to make PARALLEL_BANDS of them (56 rows: 14 bands of
    4), but no fewer than the cache tile's n columns take (28 x 28: 7 bands
    of 4 rows rather than 14 of 2, whose 56 columns cost more per band than
    they gain)."""
    height, width = rows.shape[-2:]
    row_bytes = math.prod(rows.shape[1:]) // height * rows.element_type.width // 8
    limit = max(1, sizing.band_bytes // row_bytes)
    if parallel:
        limit = min(limit, max(-(-sizing.cache_tile["n"] // width), height // PARALLEL_BANDS))
    return _dividing_rows(height, limit)


def _dividing_rows(height: int, limit: int) -> int:
    """The most rows, at most `limit`, in tiles that divide `height`; an even
    number where one is at least half as many (a depthwise convolution's row
    pairs: 28 rows in tiles of 4 rather than 7)."""
    rows = max(r for r in range(1, max(1, min(limit, height)) + 1) if height % r == 0)
    even = max((r for r in range(2, rows + 1, 2) if height % r == 0), default=0)
    return even if 2 * even >= rows else rows


def _note_depthwise_tile_rows(members: list[ir.Operation], rows: int) -> None:
    """Gives the depthwise convolutions among a region's `members`, tiled
    `rows` output rows at a time, the rows every tile is a multiple of, for
    depthwise_schedule."""
    for member in members:
        if member.name == "linalg.depthwise_conv_2d_nchw_chw":
            height = static_loop_sizes(member)[1]
            set_i64(member, TILE_ROWS, math.gcd(rows, height) if height is not None and rows else 1)


def _collapsed_rows(block: ir.Block, members: list[ir.Operation]) -> tuple[int, ir.RankedTensorType] | None:
    """Where a region's contraction reads a member's result through a
    collapse of its last two dims (nnf-form-dispatch-regions merges a
    depthwise convolution's region into the 1x1 convolution reading it, an
    im2col window copy into its contraction's region): how many members come
    before the collapse, and the type of the result."""
    position = 0
    for op in block.operations:
        op = op.operation
        if op.name == "tensor.collapse_shape" and getattr(op.operands[0].owner, "operation", None) in members:
            return position, ir.RankedTensorType(op.operands[0].type)
        if op in members:
            position += 1
    return None


def dispatch_schedule(
    dispatch: ir.Operation, parallel: bool, sizing: ScheduleSizes
) -> tuple[str, list[ir.Operation]] | None:
    """Tiles the anchor of a dispatch region along its outer loops and fuses
    the other ops into the tile loop, consumers before their producers (the
    ops of the region are numbered by `MEMBER` for this).

    With a contraction inside, the tiles are the contraction's output tiles
    (its m and n loops are the anchor's last two: the anchor is its
    epilogue); otherwise they are rows: the innermost loop whole, about
    `sizing.row_tile_elements` elements per tile (each tile's intermediates are
    allocated per tile, from the buffer cache's per-thread slots). The sizes of
    dynamic tiles, read from the producers' results, are then taken from
    their operands (else the producers outside would stay alive); after each
    fusion CSE merges the slices two users read of one producer, so that it
    is fused (computed) once. A depthwise convolution's input pad is fused
    too: each tile pads the rows it reads (_padded_tiles). Where a 1x1
    convolution reads a depthwise convolution's collapsed rows (or a
    contraction its im2col windows), the tiles are bands of whole rows
    (_band_rows), the contraction's slices are rewritten into slices of the
    rows (nnf-slice-rows-before-collapse), and the depthwise ops (the window
    copy) are fused into a loop over the band's channels. A
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
    sizes = static_loop_sizes(anchor)
    if 0 in sizes:
        return None  # no iterations (an empty dimension): tiling would assert
    for index, member in enumerate(members):
        set_i64(member, MEMBER, index)
    rank = loop_count(anchor)
    contractions = [(member, roles) for member in members if (roles := contraction_roles(member))]
    collapsed = _collapsed_rows(block, members)
    band_rows = collapsed and _band_rows(collapsed[1], parallel, sizing)
    if contractions:
        if band_rows:
            set_i64(contractions[0][0], BAND_COLUMNS, band_rows * collapsed[1].shape[-1])
        tiles = _epilogue_tiles(*contractions[0], rank, sizing)
    else:
        rows = max(1, sizing.row_tile_elements // sizes[-1]) if sizes[-1] else 1
        if sizes[-2] is not None and any(member.name == "linalg.depthwise_conv_2d_nchw_chw" for member in members):
            rows = _dividing_rows(sizes[-2], rows)
        tiles = [1] * (rank - 2) + [rows, 0]
    tiles = clamp(tiles, sizes)
    _note_depthwise_tile_rows(members, band_rows or tiles[-2])
    first = members.index(anchor)
    # The ops are fused into the innermost tile loop.
    count = sum(1 for tile in tiles if tile)
    # Threads share the region's work, most of it a contraction's or a
    # reduction's: the anchor alone may be too small to be worth them.
    computing = [member for member in members if member.name != "tensor.pad"]
    parallel = (
        parallel
        and not any(makes_runtime_checks(member) for member in computing)
        and any(has_many_iterations(member) for member in computing)
    )
    parts = [f"""
    %m{first} = transform.structured.match attributes{{{MEMBER} = {first} : i64}} in %op
        : (!transform.any_op) -> !transform.any_op{tile_outer(f"m{first}", "anchor", tiles, parallel)}
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
    transform.annotate %loop{loop} "{TILE_LOOP}" : !transform.any_op
    %rows_region = transform.apply_registered_pass "nnf-slice-rows-before-collapse" to %op
        : (!transform.any_op) -> !transform.any_op
    %loop{loop + 1} = transform.structured.match attributes{{{TILE_LOOP}}} in %rows_region
        : (!transform.any_op) -> !transform.any_op""")
            loop += 1
            scope = "rows_region"
        parts.append(f"""
    %m{index} = transform.structured.match attributes{{{MEMBER} = {index} : i64}} in %{scope}
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
    fusion = contractions and _register_fusion(members, anchor, *contractions[0], scope, sizing)
    if fusion:
        parts.append(fusion[0])
    return "".join(parts), fusion[1] if fusion else []


def _register_fusion(
    members: list[ir.Operation],
    anchor: ir.Operation,
    contraction: ir.Operation,
    roles: dict[int, str],
    scope: str,
    sizing: ScheduleSizes,
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
        or any("parallel" not in iterator for iterator in iterator_types(anchor))
    ):
        return None
    sizes = static_loop_sizes(contraction)
    if None in sizes:
        return None
    cache, register = contraction_tiles_of(contraction, roles, sizing)
    for loop, role in roles.items():
        if role == "k" and sizes[loop] > cache[loop]:
            return None
        if role in ("m", "n") and (sizes[loop] % cache[loop] or cache[loop] % register[loop]):
            return None
    epilogue_tiles = [0 if roles[loop] == "batch" else register[loop] for loop in output_loops(contraction)]
    k_tiles = [1 if roles[loop] == "k" else 0 for loop in range(len(roles))]
    loops = sum(1 for tile in epilogue_tiles if tile)
    ks = sum(k_tiles)
    number = {op: members.index(op) for op in (anchor, contraction, fill.operation)}

    def match(op: ir.Operation) -> str:
        return f"""transform.structured.match attributes{{{MEMBER} = {number[op]} : i64}} in %{scope}
        : (!transform.any_op) -> !transform.any_op"""

    body = f"""
    %reg_anchor = {match(anchor)}
    %reg_epilogue, %reg_loops:{loops} = transform.structured.tile_using_for %reg_anchor tile_sizes {sizes_text(epilogue_tiles)}
        : (!transform.any_op) -> (!transform.any_op{", !transform.any_op" * loops})
    %reg_function = transform.get_parent_op %reg_epilogue {{op_name = "func.func"}} : (!transform.any_op) -> !transform.any_op
    %reg_c = {match(contraction)}
    %reg_contraction, %reg_c_loop = transform.structured.fuse_into_containing_op %reg_c into %reg_loops#{loops - 1}
        : (!transform.any_op, !transform.any_op) -> (!transform.any_op, !transform.any_op)
    %reg_f = {match(fill.operation)}
    %reg_fill, %reg_f_loop = transform.structured.fuse_into_containing_op %reg_f into %reg_c_loop
        : (!transform.any_op, !transform.any_op) -> (!transform.any_op, !transform.any_op)
    %reg_k, %reg_k_loops:{ks} = transform.structured.tile_using_for %reg_contraction tile_sizes {sizes_text(k_tiles)}
        : (!transform.any_op) -> (!transform.any_op{", !transform.any_op" * ks})
    transform.structured.vectorize %reg_fill : !transform.any_op
    transform.structured.vectorize %reg_k : !transform.any_op
    transform.structured.vectorize %reg_epilogue : !transform.any_op""" + hoist_accumulators(
        "reg_function", CONTRACTION_PATTERNS
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
    transform.structured.vectorize %pad_fill_row : !transform.any_op""" + row_copies("pad_copy", "pad_row", 4, False)
