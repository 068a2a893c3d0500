"""Contractions: matmul in any operand layout, batch_matmul, contraction
generics, and the im2col'd convolutions.

Output tiles of the cache tile's size (on the Zen 4: 128 x 128; 64 rows
where 128 do not divide m; columns in equal tiles where 128 do not divide
n: 196 (two halves if it is the only output tile), 3136 = 14 x 224; shared
among threads), k tiles (256); a run-time right operand that several
register tiles of rows read copied a k tile by 32 columns at a time into
a contiguous panel; then register tiles (8 x 32, or 12 x 32 reading a
panel) with k step 1,
vectorized to a `vector.contract` lowered to outer products (`vector.fma`
on vector<32xf32>); each accumulator is hoisted out of the k loop into
registers. The columns of an output tile after its last full register tile
get power-of-two widths (49 = 32 + 16 + 1), and rows that leave its
register tiles partial a tile of their own (49 = 1 + 12 x 4), unmasked;
masks remain only where n is dynamic. `contraction_tiles` chooses the
tiles, from the op's loop sizes and the CPU's `ScheduleSizes`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlir import ir
from mlir.dialects import linalg

from nnforge.targets.cpu.codegen.common import (
    BAND_COLUMNS,
    clamp,
    copy_operand,
    hoist_accumulators,
    loop_count,
    sizes_text,
    static_loop_sizes,
    tile_outer,
)
from nnforge.targets.cpu.host import F32_BYTES, ScheduleSizes

# The smallest k cache tile taken to keep a right operand block in L1: each k
# tile loads and stores the register tiles' accumulators once.
MIN_L1_K = 64


def _is_multiply_accumulate(op: ir.Operation) -> bool:
    """Whether the op's body is `out + a * b` (or `a * b + out`) and nothing else."""
    body = op.regions[0].blocks[0]
    return [o.operation.name for o in body.operations] in (
        ["arith.mulf", "arith.addf", "linalg.yield"],
        ["arith.muli", "arith.addi", "linalg.yield"],
    )


def contraction_roles(op: ir.Operation) -> dict[int, str] | None:
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
    if sorted(roles) != list(range(loop_count(op))):
        return None  # a loop that is none of batch/m/n/k: not a plain contraction
    return roles


def contraction_schedule(op: ir.Operation, parallel: bool, sizing: ScheduleSizes) -> str | None:
    """Cache + register tiling and vectorization of a contraction, or None."""
    roles = contraction_roles(op)
    if roles is None:
        return None
    rank = len(roles)
    # Register loops nest batch, m, n, then k innermost (accumulator reuse).
    order = [d for role in ("batch", "m", "n", "k") for d in sorted(roles) if roles[d] == role]
    loop_sizes = static_loop_sizes(op)
    cache, register_tiles = contraction_tiles_of(op, roles, sizing)
    packing = _packing_of_right_operand(op, roles, loop_sizes, cache, register_tiles, sizing)
    if packing and packing.panels:
        m = _role_dim(roles, "m")
        # Rows the panel rows leave (128 = 8 + 10 x 12) get a register tile of their own.
        register_tiles = _with(register_tiles, m, min(cache[m], sizing.panel_rows))
        columns = register_tiles[_role_dim(roles, "n")]
        cache = [_panel_k_tile(tile, loop_sizes[d], columns, sizing) if roles[d] == "k" else tile
                 for d, tile in enumerate(cache)]
    # Output tiles (independent: one per thread at a time), then k tiles.
    outer = [0 if roles[d] == "k" else cache[d] for d in range(rank)]
    inner = [cache[d] if roles[d] == "k" else 0 for d in range(rank)]
    copies, packed = _packing_ops(packing, op, roles, register_tiles)
    tiling = _register_tiling_vectorized(packed, register_tiles, order, roles, loop_sizes, cache)
    return f"""{tile_outer("op", "c", outer, parallel)}{tile_outer("c", "ck", inner, False)}{copies}
{tiling}
    %f = transform.get_parent_op %main_loops#0 {{op_name = "func.func"}} : (!transform.any_op) -> !transform.any_op""" + (
        hoist_accumulators("f", CONTRACTION_PATTERNS)
    )


def _register_tiling_vectorized(
    target: str, register_tiles: list[int], order: list[int], roles: dict[int, str],
    sizes: list[int | None], cache: list[int],
) -> str:
    """Transform ops tiling the contraction `%target` (a cache tile) by
    `register_tiles` (loops batch..., m, n, k: `%main_loops`) and
    vectorizing the tiles.

    Where register tiles of n would be partial, every tile of the dimension
    would otherwise pay for masks. Where the cache tiles of n are equal (n
    divides into them: 49, 112 or 196 columns), each is split into its full
    register tiles and the power-of-two widths of the rest (17 = 16 + 1),
    each part tiled and vectorized unmasked, its accumulator in registers;
    else the register n loop is peeled, its partial tile vectorized masked.
    Rows that leave a static cache tile's register tiles partial (49 =
    1 + 12 x 4 with 4-row register tiles) are a part of their own, first
    (the larger part's result is then updated in place), tiled by their
    count, unmasked."""
    m_dim, n_dim = _role_dim(roles, "m"), _role_dim(roles, "n")
    n_size, n_cache, n_register = sizes[n_dim], cache[n_dim], register_tiles[n_dim]
    if not _has_partial_tiles(n_size, n_cache, n_register):
        first = _rows_beyond_register_tiles(sizes[m_dim], cache[m_dim], register_tiles[m_dim])
        if not first:
            return _vectorized_tiles(target, "main", register_tiles, order)
        return f"""
    %rows = transform.structured.split %{target} after {first} {{dimension = {m_dim}}} : !transform.any_op
    %first_rows, %full_rows = transform.split_handle %rows : (!transform.any_op) -> (!transform.any_op, !transform.any_op)""" + (
            _vectorized_tiles("full_rows", "main", register_tiles, order)
            + _vectorized_tiles("first_rows", "first", _with(register_tiles, m_dim, first), order)
        )
    if n_size is not None and n_size % n_cache == 0:
        remainder = n_cache % n_register
        widths = [n_cache - remainder] + _power_of_two_parts(remainder)
        tiling, rest = "", target
        for index, width in enumerate(widths):
            part = rest
            if index < len(widths) - 1:
                part = f"part{index}"
                tiling += f"""
    %split{index} = transform.structured.split %{rest} after {width} {{dimension = {n_dim}}} : !transform.any_op
    %{part}, %rest{index} = transform.split_handle %split{index} : (!transform.any_op) -> (!transform.any_op, !transform.any_op)"""
                rest = f"rest{index}"
            tiles = _with(register_tiles, n_dim, min(width, n_register))
            tiling += _vectorized_tiles(part, "main" if index == 0 else f"tile{index}", tiles, order)
        return tiling
    return _register_tiling(target, "main", register_tiles, order) + f"""
    %n_for = transform.cast %main_loops#{order.index(n_dim)} : !transform.any_op to !transform.op<"scf.for">
    %full, %partial = transform.loop.peel %n_for : (!transform.op<"scf.for">) -> (!transform.any_op, !transform.any_op)
    %tiles = transform.structured.match interface{{LinalgOp}} in %main_loops#{order.index(m_dim)}
        : (!transform.any_op) -> !transform.any_op
    transform.structured.vectorize %tiles vector_sizes {sizes_text(register_tiles)} : !transform.any_op"""


def _vectorized_tiles(target: str, result: str, tiles: list[int], order: list[int]) -> str:
    """`_register_tiling` of `%target` into `%result`, then `%result` vectorized by `tiles`."""
    return _register_tiling(target, result, tiles, order) + f"""
    transform.structured.vectorize %{result} vector_sizes {sizes_text(tiles)} : !transform.any_op"""


def _rows_beyond_register_tiles(size: int | None, cache: int, register: int) -> int:
    """Rows of each (static, equal) m cache tile beyond its full register tiles: 1 of 49 with 4-row tiles."""
    if size is None or size % cache or cache <= register:
        return 0
    return cache % register


@dataclass(frozen=True)
class _Packing:
    """How a contraction's right operand is copied for its register tiles:
    operand `operand`, a register tile of columns at a time (`panels`) or
    the cache tile's whole block."""

    operand: int
    panels: bool


def _packing_of_right_operand(
    op: ir.Operation,
    roles: dict[int, str],
    sizes: list[int | None],
    cache: list[int],
    register: list[int],
    sizing: ScheduleSizes,
) -> _Packing | None:
    """How the block of the right operand that a cache tile reads is copied
    into a buffer of its own, contiguous, before its register tiles read it;
    None where the copy would not pay.

    The rows of a right operand's block lie a whole row of the operand apart
    (16 KiB for 4096 columns), so that a register tile of columns read down
    them maps to few cache sets. Copied a register tile of columns at a time
    into a panel (`panel_tiles`: 32 KiB at k = 256), it stays in L1 while
    every register tile of rows reads it, as BLAS libraries' packed panels
    do (on 2 threads of the Intel Xeon: 512^2 296 -> 325 GFLOP/s, 2048^2
    262 -> 285); where those do not divide the cache tile, or the CPU's
    sizes copy no panels (`ScheduleSizes.copy_panels`), the whole block is
    copied. The copy pays where several register tiles of rows read the
    block, its sizes are static and it is not contiguous already (panels
    packed when compiling).
    """
    m, n = _role_dim(roles, "m"), _role_dim(roles, "n")
    if cache[m] <= register[m] or any(size is None or size % tile for size, tile in zip(sizes, cache)):
        return None
    maps = [ir.AffineMapAttr(attribute).value for attribute in linalg.get_indexing_maps(op)]
    inputs = len(op.operands) - len(op.results)
    right = [index for index in range(inputs) if n in _dims_of(maps[index]) and m not in _dims_of(maps[index])]
    if len(right) != 1:
        return None
    dims = _dims_of(maps[right[0]])
    if None in dims or not all(_is_f32_tensor(operand.type) for operand in op.operands):
        return None
    if _is_contiguous(ir.RankedTensorType(op.operands[right[0]].type).shape, [cache[d] for d in dims]):
        return None
    return _Packing(right[0], panels=sizing.copy_panels and cache[n] % register[n] == 0)


def _packing_ops(
    packing: _Packing | None, op: ir.Operation, roles: dict[int, str], register: list[int]
) -> tuple[str, str]:
    """Transform ops copying the right operand of the cache tile's
    contraction `%ck` as `packing` says, and the handle of the contraction
    the register tiles are then cut from."""
    if packing is None:
        return "", "ck"
    if not packing.panels:
        return copy_operand("ck", "packed", op, packing.operand), "packed"
    n_only = [tile if roles[loop] == "n" else 0 for loop, tile in enumerate(register)]
    return tile_outer("ck", "panel", n_only, False) + copy_operand("panel", "packed", op, packing.operand), "packed"


def _dims_of(affine_map: ir.AffineMap) -> list[int | None]:
    """The loop each result of `affine_map` reads (None: not a loop index)."""
    return [
        expr.position if isinstance(expr, ir.AffineDimExpr) else None
        for expr in (result.maybe_downcast() for result in affine_map.results)
    ]


def _is_f32_tensor(value_type: ir.Type) -> bool:
    return isinstance(value_type, ir.RankedTensorType) and isinstance(value_type.element_type, ir.F32Type)


def _is_contiguous(shape: list[int], block: list[int]) -> bool:
    """Whether a block of `shape` (a tensor's, row-major) is contiguous: whole
    in its inner dimensions, one element in those outside its first partial one."""
    partial = next((d for d in reversed(range(len(shape))) if block[d] < shape[d]), None)
    return partial is None or all(size == 1 for size in block[:partial])


# Vector patterns that turn a vectorized contraction's multiply-reduce into
# a `vector.contract` on unpermuted transfers.
CONTRACTION_PATTERNS = """
      transform.apply_patterns.vector.reduction_to_contract
      transform.apply_patterns.vector.transfer_permutation_patterns"""


def contraction_tiles(
    roles: dict[int, str],
    sizes: list[int | None],
    sizing: ScheduleSizes,
    band_columns: int | None = None,
    outer_m: tuple[int, ...] = (),
) -> tuple[list[int], list[int]]:
    """The cache and the register tile of each loop of a contraction whose
    loops have `roles` and static `sizes`: what its schedule applies.

    `band_columns`: where the contraction reads the collapsed rows of a
    producer fused into its region, the columns of a band of those rows;
    the cache tiles are then such bands with every m, so that each band of
    the producer is computed once.

    `outer_m`: the m loops outside the last (role "batch"), e.g. the output
    rows of a convolution whose m is the pixels of a row. Where that m is
    whole in its cache tile, the next outer one takes as many of its rows
    as fill the m cache tile (7 rows of 7 pixels), and so on while each is
    whole, so that each block of the right operand serves them all.
    """
    cache = _cache_tiles(roles, sizes, sizing)
    m = _role_dim(roles, "m")
    rows = sizes[m] if cache[m] == sizes[m] else None
    for loop in reversed(outer_m):  # innermost first, while whole
        if rows is None or sizes[loop] is None:
            break
        cache[loop] = _largest_divisor_at_most(sizes[loop], sizing.cache_tile["m"] // rows)
        rows = rows * cache[loop] if cache[loop] == sizes[loop] else None
    if band_columns is not None:
        n = _role_dim(roles, "n")
        cache[m] = sizes[m]
        cache[n] = band_columns
    k_dims = [d for d, role in roles.items() if role == "k"]
    if len(k_dims) == 1:
        cache[k_dims[0]] = _k_tile_in_l1(cache[k_dims[0]], cache[_role_dim(roles, "n")], sizing)
    register = clamp([sizing.register_tile[roles[d]] for d in range(len(roles))], sizes)
    register[m] = min(_register_rows(cache[m], sizing.register_tile["m"]), register[m])
    return cache, register


def contraction_tiles_of(
    op: ir.Operation, roles: dict[int, str], sizing: ScheduleSizes
) -> tuple[list[int], list[int]]:
    """`contraction_tiles` of a contraction op (its band columns: BAND_COLUMNS)."""
    band_columns = ir.IntegerAttr(op.attributes[BAND_COLUMNS]).value if BAND_COLUMNS in op.attributes else None
    outer_m = tuple(int(d) for d in linalg.infer_contraction_dimensions(op).m)[:-1]
    return contraction_tiles(roles, static_loop_sizes(op), sizing, band_columns, outer_m)


def _register_tiling(target: str, result: str, tiles: list[int], order: list[int]) -> str:
    """Transform ops tiling contraction `%target` by register `tiles`, loops
    nested in `order`, into `%result` and its loops `%{result}_loops`."""
    loops = ", ".join(["!transform.any_op"] * len(tiles))
    return f"""
    %{result}, %{result}_loops:{len(tiles)} = transform.structured.tile_using_for %{target} tile_sizes {sizes_text(tiles)}
        interchange = {sizes_text(order)} : (!transform.any_op) -> (!transform.any_op, {loops})"""


def _cache_tiles(roles: dict[int, str], sizes: list[int | None], sizing: ScheduleSizes) -> list[int]:
    """The cache tile of each loop of a contraction (`sizing.cache_tile`,
    fitted to the loop sizes)."""
    tiles = []
    for loop, size in enumerate(sizes):
        tile = sizing.cache_tile[roles[loop]]
        rows = sizing.whole_block_m_tile
        if roles[loop] == "m" and size is not None and size % rows == 0 and size >= 2 * rows:
            tile = rows  # each copied block of the right operand serves more rows
        if size is not None and size > tile and size % tile:
            if roles[loop] == "m":
                # The small m tile where it divides the loop (a partial m
                # tile would mask each of its register tiles); else the loop
                # whole up to twice the tile where its register tiles divide
                # it (196 = 28 x 7).
                small = sizing.small_m_tile
                whole = size % small and size <= 2 * tile and size % _register_rows(size, sizing.register_tile["m"]) == 0
                tile = size if whole else small
            elif roles[loop] == "n":
                tile = _equal_n_tile(size, tile, sizing.lanes)
        tiles.append(tile)
    tiles = clamp(tiles, sizes)
    # Columns taken whole in one output tile would leave the other threads
    # idle: two equal halves instead.
    n = _role_dim(roles, "n")
    if (sizes[n] is not None and sizes[n] > sizing.cache_tile["n"] and tiles[n] == sizes[n] and sizes[n] % 2 == 0
            and _makes_one_output_tile(roles, sizes, tiles)):
        tiles[n] //= 2
    return tiles


def _k_tile_in_l1(k: int, columns: int, sizing: ScheduleSizes) -> int:
    """The k cache tile for an n cache tile of `columns`: `k`, or the
    largest power of two of at least MIN_L1_K below it whose right operand
    block (k x columns) fits `sizing.l1_block_bytes`. Every register tile of
    rows reads that block again: in L1 where the columns are few (32, the
    channel panels of ResNet's 7x7 layers computed transposed: 3x3, 512
    channels on 2 threads of the AMD EPYC Zen 3, 2.66 ms at k = 64 instead
    of 3.33 at 256), from L2 where they are many (a 128-column block needs k
    of 16). `k` where the CPU's sizes keep no block in L1."""
    if not sizing.l1_block_bytes:
        return k
    fitting = 1 << (max(1, sizing.l1_block_bytes // (columns * F32_BYTES)).bit_length() - 1)
    return fitting if MIN_L1_K <= fitting < k else k


def _panel_k_tile(k: int, size: int, columns: int, sizing: ScheduleSizes) -> int:
    """The k cache tile of a contraction whose right operand is copied in
    panels of `columns`, for a k loop of `size` and a cache tile of `k`:
    the largest power of two below `k` whose panel fits `sizing.panel_bytes`
    (256 on the Intel Xeon's 48 KiB L1, 128 on the Zen 4's 32 KiB), where it
    is at least MIN_L1_K and divides `size` (a partial k tile would have
    dynamic sizes); else `k`."""
    fitting = 1 << (max(1, sizing.panel_bytes // (columns * F32_BYTES)).bit_length() - 1)
    return fitting if MIN_L1_K <= fitting < k and size % fitting == 0 else k


def _register_rows(rows: int | None, full: int) -> int:
    """Rows of a register tile for an m cache tile of `rows`: `full` (the
    register tile's: 8 on the Zen 4), or one or two fewer where those divide
    it and `full` does not (49 = 7 x 7 rows of output pixels): a partial
    register tile would mask all of them."""
    if rows is None:
        return full
    return next((r for r in (full, full - 1, full - 2) if rows % r == 0), full)


def _makes_one_output_tile(roles: dict[int, str], sizes: list[int | None], tiles: list[int]) -> bool:
    """Whether a contraction's cache tiles cover its whole output at once."""
    return all(
        role == "k" or (sizes[loop] is not None and sizes[loop] <= tiles[loop]) for loop, role in roles.items()
    )


def _equal_n_tile(size: int, tile: int, lanes: int) -> int:
    """An n cache tile that divides `size` (so that every tile, its partial
    register tile included, has static sizes): the whole loop up to twice
    `tile`, else the largest multiple of a vector's `lanes` dividing it
    between half and twice `tile` (3136 = 14 x 224, 784 = 7 x 112 with 16
    lanes), else `tile`."""
    if size <= 2 * tile:
        return size
    divisors = [t for t in range(2 * tile, tile // 2 - 1, -lanes) if size % t == 0]
    return divisors[0] if divisors else tile


def _has_partial_tiles(size: int | None, cache: int, register: int) -> bool:
    """Whether tiling a loop of `size` by `cache`, then by `register`, leaves
    register tiles smaller than `register` after at least one full one."""
    if size is None or size % cache:
        return True  # a dynamic or partial cache tile: dynamic register loop bounds
    return cache > register and cache % register != 0


def _largest_divisor_at_most(size: int, limit: int) -> int:
    """The largest divisor of `size` that is at most `limit` (at least 1)."""
    return max(d for d in range(1, max(1, min(size, limit)) + 1) if size % d == 0)


def _power_of_two_parts(width: int) -> list[int]:
    """`width` as a sum of powers of two, largest first (17 -> [16, 1])."""
    return [1 << bit for bit in reversed(range(width.bit_length())) if width >> bit & 1]


def _with(values: list[int], index: int, value: int) -> list[int]:
    """`values` with the one at `index` replaced by `value`."""
    return values[:index] + [value] + values[index + 1 :]


def _role_dim(roles: dict[int, str], role: str) -> int:
    return next(d for d, r in roles.items() if r == role)


def output_loops(contraction: ir.Operation) -> list[int]:
    """The loop indexing each dimension of a contraction's result."""
    maps = linalg.get_indexing_maps(contraction)
    output_map = ir.AffineMapAttr(maps[len(maps) - 1]).value  # (an ArrayAttr takes no negative index)
    return [expr.maybe_downcast().position for expr in output_map.results]
