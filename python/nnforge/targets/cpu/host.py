"""The CPU code is generated for, and the tile and vector sizes that follow from it.

A `CpuDescription` says what the schedules size their tiles by: the vector
registers (width, count), the FMA pipes and the caches of one core. For
`target="cpu"` it describes this machine: LLVM's name for the host CPU
(`llc --version`), its vector extensions (the CPU flags Linux reports,
where a virtual machine may hide some) and its caches (sysfs), over the
entry of `KNOWN_CPUS` for that name. For `target="cpu:<name>"` it is that
entry, and the code is generated for that CPU (cross-compiling).

`ScheduleSizes.for_cpu` turns a description into the sizes the schedules
use: the single place where those numbers are chosen. On the AMD Zen 4 the
rules give the sizes tuned there by measurement.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

from nnforge import _process
from nnforge._native import tool_path
from nnforge.errors import CompileError

KIB = 1 << 10
MIB = 1 << 20
# Bytes of an f32, the element type the sizes are chosen for.
F32_BYTES = 4
# Cycles before an FMA's result can feed the next FMA (4 on the CPUs below).
FMA_LATENCY = 4


@dataclass(frozen=True)
class CpuDescription:
    """What code generation knows about a CPU (per core)."""

    # LLVM's name of the CPU (`llc -mcpu=...`), e.g. "znver4".
    name: str
    # Width of the widest vector registers used: 512 with AVX-512, 256 with AVX2.
    vector_bits: int
    # How many vector registers there are: 32 with AVX-512, 16 with AVX2.
    vector_registers: int
    # FMA pipes per core, and the width of each (Zen 4: two of 256 bits; an
    # AVX-512 FMA takes one of them for two cycles).
    fma_units: int
    fma_bits: int
    # L1 data cache and L2 cache per core.
    l1_bytes: int
    l2_bytes: int
    # LLVM target features the code is compiled with, given with `name`
    # (none of this machine's are added); None: this machine's own, as LLVM
    # detects them.
    llvm_features: str | None = None


_AVX512 = "+avx512f,+avx512bw,+avx512dq,+avx512vl"
_AVX2 = "+avx2,+fma"

# The CPUs `target="cpu:<name>"` may name. The x86-64 levels stand for
# their CPUs with typical caches (v3: Zen 2 and 3, v4: Skylake-SP).
KNOWN_CPUS = {
    cpu.name: cpu
    for cpu in (
        CpuDescription("znver4", 512, 32, 2, 256, 32 * KIB, 1 * MIB, _AVX512),
        CpuDescription("znver5", 512, 32, 2, 512, 48 * KIB, 1 * MIB, _AVX512),
        CpuDescription("znver3", 256, 16, 2, 256, 32 * KIB, 512 * KIB, _AVX2),
        CpuDescription("znver2", 256, 16, 2, 256, 32 * KIB, 512 * KIB, _AVX2),
        CpuDescription("skylake-avx512", 512, 32, 2, 512, 32 * KIB, 1 * MIB, _AVX512),
        CpuDescription("cascadelake", 512, 32, 2, 512, 32 * KIB, 1 * MIB, _AVX512),
        CpuDescription("icelake-server", 512, 32, 2, 512, 48 * KIB, 1280 * KIB, _AVX512),
        CpuDescription("sapphirerapids", 512, 32, 2, 512, 48 * KIB, 2 * MIB, _AVX512),
        CpuDescription("haswell", 256, 16, 2, 256, 32 * KIB, 256 * KIB, _AVX2),
        CpuDescription("skylake", 256, 16, 2, 256, 32 * KIB, 256 * KIB, _AVX2),
        CpuDescription("alderlake", 256, 16, 2, 256, 48 * KIB, 1280 * KIB, _AVX2),
        CpuDescription("x86-64-v4", 512, 32, 2, 512, 32 * KIB, 1 * MIB, _AVX512),
        CpuDescription("x86-64-v3", 256, 16, 2, 256, 32 * KIB, 512 * KIB, _AVX2),
    )
}


def named_cpu(name: str) -> CpuDescription:
    """The description `target="cpu:<name>"` compiles for."""
    if name not in KNOWN_CPUS:
        raise CompileError(f"unknown CPU {name!r} in target 'cpu:{name}': expected one of {', '.join(KNOWN_CPUS)}")
    return KNOWN_CPUS[name]


@functools.cache
def host_cpu() -> CpuDescription:
    """This machine's CPU, compiled for with the host's own features."""
    name = _llvm_host_cpu_name()
    flags = _cpu_flags()
    if "avx512f" in flags:
        vector_bits, registers = 512, 32
    elif "avx2" in flags:
        vector_bits, registers = 256, 16
    else:
        vector_bits, registers = 128, 16
    known = KNOWN_CPUS.get(name)
    fma_units = known.fma_units if known else (2 if "fma" in flags else 0)
    fma_bits = min(known.fma_bits, vector_bits) if known else vector_bits
    l1, l2 = _cache_sizes()
    return CpuDescription(
        name,
        vector_bits,
        registers,
        fma_units,
        fma_bits,
        l1 or (known.l1_bytes if known else 32 * KIB),
        l2 or (known.l2_bytes if known else 512 * KIB),
    )


def _llvm_host_cpu_name() -> str:
    """LLVM's name of this machine's CPU, as `llc --version` reports it."""
    result = _process.run([str(tool_path("llc")), "--version"], "asking llc for the host CPU")
    found = re.search(r"Host CPU: (\S+)", result.stdout)
    return found.group(1) if result.returncode == 0 and found else "generic"


def _cpu_flags() -> set[str]:
    """The CPU flags Linux reports for this machine (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    found = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    return set(found.group(1).split()) if found else set()


def _cache_sizes() -> tuple[int | None, int | None]:
    """(L1 data, L2) bytes of the first core's caches, from sysfs (None where unknown)."""
    sizes: dict[str, int] = {}
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        found = re.fullmatch(r"(\d+)([KMG]?)", size)
        if found and kind in ("Data", "Unified"):
            sizes[level] = int(found.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[found.group(2)]
    return sizes.get("1"), sizes.get("2")


@dataclass(frozen=True)
class ScheduleSizes:
    """The tile and vector sizes of the CPU schedules (f32 elements unless said)."""

    # f32 lanes of a vector register.
    lanes: int
    # A contraction's register tile and cache tile, per loop role; the m
    # cache tile where `cache_tile`'s rows do not divide the loop.
    register_tile: dict[str, int]
    cache_tile: dict[str, int]
    small_m_tile: int
    # Rows of a contraction's output tile where the right operand's block is
    # copied whole and the rows split into two or more such tiles: the rows
    # each copy serves.
    whole_block_m_tile: int
    # Independent FMAs that keep the FMA pipes busy (latency x pipes).
    fmas_in_flight: int
    # Bytes of a contraction's right operand block that stays in L1 while
    # every register tile of rows reads it (0: none is kept there).
    l1_block_bytes: int
    # Bytes of a right operand panel (k x a register tile of columns) copied
    # to stay in L1 while every register tile of rows reads it, and the rows
    # of those register tiles.
    panel_bytes: int
    panel_rows: int
    # Whether a right operand computed at run time is copied in such panels;
    # if not, its whole block is copied, and function arguments whose rows
    # are a multiple of 4 KiB apart into padded rows on entry.
    copy_panels: bool
    # Lanes of the innermost loop of elementwise ops, and the steps in which
    # a row's lanes may shrink (down to one register) to divide the row.
    elementwise_vector: int
    row_lane_step: int
    # Output columns per vector of depthwise convolutions and poolings.
    depthwise_vector: int
    # Square tiles of transposes, transposed in registers.
    transpose_tile: int
    # Elements per tile of a dispatch region without contraction.
    row_tile_elements: int
    # Bytes of a band of a depthwise result that a 1x1 convolution reads.
    band_bytes: int
    # Bytes of a direct convolution's filter from which its output channel
    # tiles, not its output rows, are the outer loop.
    direct_filter_bytes: int
    # Output channels per panel of a direct convolution's constant filter of
    # `direct_filter_bytes` or more, stored so when compiling (0: filters
    # stay as they are).
    direct_filter_panel: int
    # Pixels per output row from which an NCHW convolution with unit strides
    # is computed from its input directly (in NHWC), not as an im2col product.
    direct_min_width: int
    # Iterations per loop of the affine generator's tiles (`affine-loop-tile`).
    affine_tile: int

    def full_rate_register_rows(self) -> tuple[int, int]:
        """The fewest and the most rows of a contraction's register tile
        that keep the FMA pipes busy: from as many as give `fmas_in_flight`
        accumulators to the register tile's (Zen 4: 2 to 8, AVX2: 4)."""
        vectors = self.register_tile["n"] // self.lanes
        return min(-(-self.fmas_in_flight // vectors), self.register_tile["m"]), self.register_tile["m"]

    @classmethod
    def for_cpu(cls, cpu: CpuDescription) -> ScheduleSizes:
        """The sizes for `cpu`. Each rule says what it keeps where:

        - register tile: two vectors of columns (each broadcast element of
          the left operand feeds two FMAs) and as many rows as fill half the
          vector registers with accumulators (the rest hold operands), but
          at least enough independent FMAs to keep the FMA pipes busy;
        - cache tile: a 128 x 128 output tile (m x n: each copied block of
          the right operand serves 128 rows), halved while it, the left
          operand's m x k block and the right operand's k x n block at
          k = 2m do not fit in 5/8 of L2 (a 256 KiB L2: 64 x 64); k the
          largest power of two whose blocks fit in half of L2, at least 2m;
        - a right operand block kept in L1 (its k tile shortened to fit): a
          quarter of it (the rows' operand and the output stream through the
          rest), where the FMA units are as wide as the vectors; where they
          split each vector, none: a k step's FMAs take twice the cycles, the
          block's vectors stream from L2 in that time, and each shorter k
          tile would load and store the accumulators once more (on 2 threads
          of the AMD EPYC Zen 4, k = 256 against 64 for 32-column panels:
          matmul 2048^2 102 -> 86 ms, MLP 64x1024x4096 8 %, transformer
          layer 6 %, tiny GPT-2 3 % faster, ResNet-18 unchanged); a copied panel
          of it: two thirds (a register tile's rows of the left operand
          and its accumulators' rows take the rest); the register tiles
          reading such a panel: as many rows as fill three quarters of the
          vector registers with accumulators (the panel's vectors, loaded
          once per k step, and the broadcast elements take the rest);
        - where the block is copied whole, each copy serves four output
          tiles of rows (512) where the rows split into two or more such
          tiles (on 2 threads of the AMD EPYC Zen 4: 2048^2 160 -> 174
          GFLOP/s, 1024^2 203 -> 210); where panels are copied, an output
          tile's rows;
        - panels copied where the FMA units are as wide as the vectors
          (on 2 threads of the Intel Xeon, 1024^2 283 -> 336 GFLOP/s); where
          they split each vector (a Zen 4 runs AVX-512 in 256-bit halves)
          the block is copied whole and function arguments into padded rows
          (on 2 threads of the AMD EPYC Zen 4: 1024^2 195 GFLOP/s against
          181 with panels, 512^2 197 against 186, 2048^2 164 against 153);
        - elementwise ops: four vectors per step; depthwise convolutions
          and transposes: one register per row;
        - dispatch regions without contraction: a tile's input,
          intermediates and output (about 8 buffers) in L1;
        - bands of a depthwise result: 3/8 of L2, beside the input rows
          they are computed from and the output tile;
        - a direct convolution's filter: read once per output row while it
          is less than half of L2; a larger constant one stored as panels of
          the register tile's columns, each read across all rows, where 32
          vector registers let every row width take tiles of those columns
          (with AVX2's 16, 7- and 14-pixel rows take other channel tiles;
          not packed there);
        - convolutions with unit strides computed from the input directly,
          not as im2col products, from output rows whose register tiles
          hold twice the FMAs in flight as accumulators: 8 pixels where 8
          FMAs are in flight, 4 on the Zen 4 (there, 3x3 convolutions of
          256-512 channels on 7x7, 5x5 and 4x4 outputs took 0.84x, 0.79x
          and 0.57x the im2col product's time, 64 channels on 7x7 0.63x,
          on 4x4 1.04x);
        - affine tiles: three square f32 blocks (a contraction's operand
          and output tiles) in half of L2, a power of two and at least one
          vector.
        """
        lanes = cpu.vector_bits // (8 * F32_BYTES)
        columns = 2 * lanes
        fmas_in_flight = FMA_LATENCY * cpu.fma_units * cpu.fma_bits // cpu.vector_bits
        rows = max(cpu.vector_registers // 2 // 2, math.ceil(fmas_in_flight / 2))
        output = 128
        while output > columns and _block_bytes(output, 2 * output) > cpu.l2_bytes * 5 // 8:
            output //= 2
        half = cpu.l2_bytes // 2 // F32_BYTES
        k = max(2 * output, _power_of_two_at_most((half - output * output) // (2 * output)))
        return cls(
            lanes=lanes,
            register_tile={"batch": 1, "m": rows, "n": columns, "k": 1},
            cache_tile={"batch": 1, "m": output, "n": output, "k": k},
            small_m_tile=output // 2,
            whole_block_m_tile=output if cpu.fma_bits >= cpu.vector_bits else 4 * output,
            fmas_in_flight=fmas_in_flight,
            l1_block_bytes=cpu.l1_bytes // 4 if cpu.fma_bits >= cpu.vector_bits else 0,
            panel_bytes=cpu.l1_bytes * 2 // 3,
            panel_rows=max(rows, cpu.vector_registers * 3 // 4 // (columns // lanes)),
            copy_panels=cpu.fma_bits >= cpu.vector_bits,
            elementwise_vector=4 * lanes,
            row_lane_step=lanes // 2,
            depthwise_vector=lanes,
            transpose_tile=lanes,
            row_tile_elements=cpu.l1_bytes // (8 * F32_BYTES),
            band_bytes=cpu.l2_bytes * 3 // 8,
            direct_filter_bytes=cpu.l2_bytes // 2,
            direct_filter_panel=columns if cpu.vector_registers >= 32 else 0,
            direct_min_width=2 * fmas_in_flight * lanes // columns,
            affine_tile=max(lanes, _power_of_two_at_most(math.isqrt(cpu.l2_bytes // 2 // (3 * F32_BYTES)))),
        )


def _block_bytes(output: int, k: int) -> int:
    """Bytes of a contraction's square output tile and of its operands' blocks over `k`."""
    return (output * output + 2 * output * k) * F32_BYTES


def _power_of_two_at_most(value: int) -> int:
    return 1 << max(0, value.bit_length() - 1)
