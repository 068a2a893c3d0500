"""CPU descriptions and the tile sizes chosen from them.

The choice is tested apart from the code it shapes: `ScheduleSizes.for_cpu`
per CPU, `contraction_tiles` per contraction shape and CPU. Code compiled
for an AVX2 CPU (`target="cpu:x86-64-v3"`) runs here too: its results are
checked against PyTorch, its machine code for 512-bit registers.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from mlir import ir
from torch import nn

import nnforge
from nnforge.errors import CompileError
from nnforge.linking import object_file
from nnforge.targets.cpu import host
from nnforge.targets.cpu.codegen.contractions import _panel_k_tile, contraction_tiles
from nnforge.targets.cpu.codegen.convolutions import direct_register_tile
from nnforge.targets.cpu.host import KNOWN_CPUS, ScheduleSizes

import models

ZEN4 = ScheduleSizes.for_cpu(KNOWN_CPUS["znver4"])
AVX2 = ScheduleSizes.for_cpu(KNOWN_CPUS["x86-64-v3"])


def test_zen4_gets_the_sizes_measured_best_there():
    assert ZEN4 == ScheduleSizes(
        lanes=16,
        register_tile={"batch": 1, "m": 8, "n": 32, "k": 1},
        cache_tile={"batch": 1, "m": 128, "n": 128, "k": 256},
        small_m_tile=64,
        whole_block_m_tile=512,
        fmas_in_flight=4,
        l1_block_bytes=0,
        panel_bytes=(32 << 10) * 2 // 3,
        panel_rows=12,
        copy_panels=False,
        elementwise_vector=64,
        row_lane_step=8,
        depthwise_vector=16,
        transpose_tile=16,
        row_tile_elements=1024,
        band_bytes=384 << 10,
        direct_filter_bytes=512 << 10,
        direct_filter_panel=32,
        direct_min_width=4,
        affine_tile=128,
    )


def test_avx2_sizes_follow_its_16_registers_of_8_lanes():
    assert AVX2.lanes == 8
    assert AVX2.register_tile == {"batch": 1, "m": 4, "n": 16, "k": 1}  # 8 accumulators of 16 registers
    assert AVX2.panel_rows == 6  # reading a copied panel: 12 accumulators (BLIS's 6 x 16)
    assert AVX2.direct_filter_panel == 0  # 14-pixel rows take 2 x 32 tiles, 7-pixel rows 7 x 8
    assert AVX2.direct_min_width == 8  # 8 x 16 register tiles: 16 accumulators for 8 FMAs in flight


@pytest.mark.parametrize("cpu,panels", [("sapphirerapids", True), ("znver5", True), ("x86-64-v3", True),
                                        ("znver4", False)])
def test_run_time_right_operands_are_copied_in_panels_where_fma_units_are_full_width(cpu, panels):
    """A Zen 4's FMA units take each 512-bit vector in two halves: there the
    panels cost more than they save, and the block is copied whole."""
    assert ScheduleSizes.for_cpu(KNOWN_CPUS[cpu]).copy_panels == panels


@pytest.mark.parametrize("cpu,rows", [("znver4", (2, 8)), ("x86-64-v3", (4, 4)), ("sapphirerapids", (4, 8))])
def test_register_rows_at_full_rate_give_the_fma_pipes_enough_accumulators(cpu, rows):
    """A Zen 4 keeps 4 FMAs in flight (two vectors of columns: 2 rows), AVX2
    and full-width AVX-512 pipes 8 (4 rows)."""
    assert ScheduleSizes.for_cpu(KNOWN_CPUS[cpu]).full_rate_register_rows() == rows


@pytest.mark.parametrize("cpu", sorted(KNOWN_CPUS))
def test_every_known_cpu_gets_consistent_sizes(cpu):
    sizes = ScheduleSizes.for_cpu(KNOWN_CPUS[cpu])
    register, cache = sizes.register_tile, sizes.cache_tile
    assert register["n"] == 2 * sizes.lanes
    assert register["m"] * register["n"] // sizes.lanes <= KNOWN_CPUS[cpu].vector_registers // 2
    assert cache["m"] % register["m"] == 0 and cache["n"] % register["n"] == 0
    assert (cache["m"] * cache["k"] + cache["k"] * cache["n"] + cache["m"] * cache["n"]) * 4 \
        <= KNOWN_CPUS[cpu].l2_bytes * 5 // 8


ROLES = {0: "m", 1: "n", 2: "k"}


@pytest.mark.parametrize(
    "shape,sizes,cache,register",
    [
        # Rows in two or more tiles of 512 on the Zen 4 (its right operand
        # blocks are copied whole: each copy serves 512 rows).
        ((1024, 1024, 1024), ZEN4, [512, 128, 256], [8, 32, 1]),
        ((1024, 1024, 1024), AVX2, [128, 128, 256], [4, 16, 1]),
        ((2048, 2048, 2048), ZEN4, [512, 128, 256], [8, 32, 1]),
        ((512, 512, 512), ZEN4, [128, 128, 256], [8, 32, 1]),
        ((2048, 2048, 2048), AVX2, [128, 128, 256], [4, 16, 1]),
        # 196 rows: whole in one tile of 28 x 7-row register tiles (8 rows
        # would leave a partial register tile); with AVX2, of 49 x 4 rows.
        ((196, 49, 64), ZEN4, [196, 49, 64], [7, 32, 1]),
        ((196, 49, 64), AVX2, [196, 49, 64], [4, 16, 1]),
        # Columns that the cache tile does not divide, in equal tiles: 3136
        # (a 56 x 56 image) in 14 of 224, 784 in 7 of 112.
        ((64, 3136, 288), ZEN4, [64, 224, 256], [8, 32, 1]),
        ((64, 784, 288), AVX2, [64, 112, 256], [4, 16, 1]),
        # 32 columns (ResNet's 7x7 layers computed transposed): k tiles of
        # 64, whose 8 KiB right operand block stays in L1; on the Zen 4
        # (FMA units that split each vector), the cache tile's k.
        ((49, 32, 4608), AVX2, [49, 32, 64], [4, 16, 1]),
        ((49, 32, 4608), ZEN4, [49, 32, 256], [7, 32, 1]),
        ((2048, 32, 2048), ZEN4, [512, 32, 256], [8, 32, 1]),
    ],
    ids=["1024-zen4", "1024-avx2", "2048-zen4", "512-zen4", "2048-avx2", "196x49-zen4", "196x49-avx2", "64x3136-zen4", "64x784-avx2", "49x32-avx2",
         "49x32-zen4", "2048x32-zen4"],
)
def test_contraction_tiles_per_shape_and_cpu(shape, sizes, cache, register):
    assert contraction_tiles(ROLES, list(shape), sizes) == (cache, register)


@pytest.mark.parametrize(
    "shape,cache,register",
    [
        # 7 rows of 7 pixels (ResNet's 7x7 layers computed transposed): all
        # rows in the output tile, each right operand block read by all.
        ((7, 7, 32, 4608), [7, 7, 32, 256], [1, 7, 32, 1]),
        # 14 rows of 14: 7 of them fill the 128-row m cache tile best.
        ((14, 14, 32, 1152), [7, 14, 32, 256], [1, 7, 32, 1]),
        # Rows longer than the m cache tile: one at a time.
        ((56, 3136, 32, 576), [1, 64, 32, 256], [1, 8, 32, 1]),
    ],
    ids=["7x7", "14x14", "long-rows"],
)
def test_outer_m_loops_fill_the_m_cache_tile_with_whole_rows(shape, cache, register):
    roles = {0: "batch", 1: "m", 2: "n", 3: "k"}
    assert contraction_tiles(roles, list(shape), ZEN4, outer_m=(0,)) == (cache, register)


def test_outer_m_loops_share_the_m_cache_tile():
    """A batch of 4 images of 7 x 7 pixels: two whole images (98 rows) at a
    time fill the 128-row m cache tile best."""
    roles = {0: "batch", 1: "batch", 2: "m", 3: "n", 4: "k"}
    cache, _ = contraction_tiles(roles, [4, 7, 7, 32, 4608], ZEN4, outer_m=(0, 1))
    assert cache == [2, 7, 7, 32, 256]


@pytest.mark.parametrize("cpu,k", [("sapphirerapids", 256), ("znver4", 128), ("x86-64-v3", 256)])
def test_copied_panels_of_the_right_operand_fit_two_thirds_of_l1(cpu, k):
    """k x 32 f32 (AVX-512) or k x 16 (AVX2): 32 of 48 KiB, 16 of 32 KiB."""
    sizes = ScheduleSizes.for_cpu(KNOWN_CPUS[cpu])
    columns = sizes.register_tile["n"]
    assert _panel_k_tile(512, 4096, columns, sizes) == k
    assert _panel_k_tile(64, 4096, columns, sizes) == 64  # never more than the cache tile
    assert _panel_k_tile(144, 144, columns, sizes) == 144  # k tiles that do not divide the loop: whole


@pytest.mark.parametrize(
    "sizes,row,channels,tile",
    [
        (ZEN4, 56, 64, (8, 32)),
        (ZEN4, 14, 256, (7, 32)),
        (AVX2, 56, 64, (4, 16)),
        # 7 x 8 would leave 7 accumulators for AVX2's 8 FMAs in flight.
        (AVX2, 14, 256, (2, 32)),
        (AVX2, 14, 48, (7, 8)),  # no channel tile of 32
        (AVX2, 7, 512, (7, 8)),  # 1 x 32 has fewer accumulators still
    ],
    ids=["56-zen4", "14-zen4", "56-avx2", "14-avx2", "14x48-avx2", "7-avx2"],
)
def test_direct_convolution_register_tiles(sizes, row, channels, tile):
    assert direct_register_tile(row, channels, sizes) == tile


@pytest.mark.parametrize("row,tile", [(14, (7, 32)), (56, (8, 32)), (12, (6, 32)), (5, (5, 32))])
def test_a_filter_in_panels_is_read_a_panel_at_a_time(row, tile):
    """A filter stored in panels of 32 output channels: register tiles of one
    panel, as many pixels dividing the row as fit."""
    assert direct_register_tile(row, 256, ZEN4, panel=32) == tile


def test_a_band_sets_the_cache_tile_of_a_contraction_reading_collapsed_rows():
    cache, register = contraction_tiles(ROLES, [32, 3136, 192], ZEN4, band_columns=448)
    assert cache == [32, 448, 192] and register == [8, 32, 1]


def test_host_description_takes_llvms_name_the_cpu_flags_and_the_caches(monkeypatch):
    """A Zen 4 whose AVX-512 a virtual machine hides is described with AVX2's registers."""
    monkeypatch.setattr(host, "_llvm_host_cpu_name", lambda: "znver4")
    monkeypatch.setattr(host, "_cpu_flags", lambda: {"avx2", "fma", "sse4_2"})
    monkeypatch.setattr(host, "_cache_sizes", lambda: (48 << 10, None))
    cpu = host.host_cpu.__wrapped__()
    assert (cpu.name, cpu.vector_bits, cpu.vector_registers) == ("znver4", 256, 16)
    assert (cpu.l1_bytes, cpu.l2_bytes) == (48 << 10, 1 << 20)  # L2 from the table
    assert cpu.llvm_features is None  # the JIT's own host features


def test_unknown_cpus_are_named_with_the_known_ones():
    with pytest.raises(CompileError, match="unknown CPU 'pentium4'.*znver4"):
        nnforge.compile(models.mlp()[0], models.mlp()[1], target="cpu:pentium4")


class Pool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.max_pool2d(torch.relu(x), 3, 2, 1)


class InvertedResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(16, 96, 1, bias=False), nn.BatchNorm2d(96), nn.ReLU6(),
            nn.Conv2d(96, 96, 3, padding=1, groups=96, bias=False), nn.BatchNorm2d(96), nn.ReLU6(),
            nn.Conv2d(96, 16, 1, bias=False), nn.BatchNorm2d(16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


AVX2_MODELS = {
    "mlp": models.mlp,
    "transformer": models.transformer_layer,
    "mobilenet-block": lambda: (InvertedResidual().eval(), (torch.randn(1, 16, 28, 28),)),
    "strided-pool": lambda: (Pool(), (torch.randn(1, 8, 29, 29),)),
}


@pytest.mark.parametrize("name", sorted(AVX2_MODELS))
def test_code_for_avx2_uses_256_bit_vectors_and_matches_pytorch(name, tmp_path: Path):
    torch.manual_seed(0)
    model, inputs = AVX2_MODELS[name]()
    compiled = nnforge.compile(model, inputs, target="cpu:x86-64-v3", threads=2, dump_ir=tmp_path / "ir")
    with torch.no_grad():
        expected = model(*inputs).numpy()
    np.testing.assert_allclose(compiled(*[x.numpy() for x in inputs]), expected, rtol=1e-4, atol=1e-4)
    if name == "mlp":
        vectorized = next((tmp_path / "ir").glob("*-vectorize.mlir")).read_text()
        assert "vector<4x16xf32>" in vectorized and "vector<8x32xf32>" not in vectorized  # register tiles
    library = compiled.save(tmp_path / "model.so")
    machine_code = subprocess.run(["objdump", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    assert "%ymm" in machine_code and "%zmm" not in machine_code
    np.testing.assert_allclose(nnforge.load(library)(*[x.numpy() for x in inputs]), expected, rtol=1e-4, atol=1e-4)


class ToBfloat16(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.bfloat16)


def nearest_bfloat16(value: float) -> float:
    """`value` rounded to the nearest bf16 (ties to even) in one step."""
    if not np.isfinite(value) or value == 0:
        return value
    exponent = max(np.frexp(value)[1], -125)  # bf16's subnormals: f32's exponent range
    quantum = 2.0 ** (exponent - 8)
    rounded = round(value / quantum) * quantum  # Python's round: ties to even, exact here
    return float(np.copysign(np.inf, value)) if abs(rounded) >= 2.0**128 else rounded


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conversions_to_bfloat16_without_avx512_bf16_round_to_nearest_even(dtype, tmp_path):
    """On a CPU without AVX-512 BF16 (x86-64-v3) LLVM calls __truncsfbf2 and
    __truncdfbf2 for them, which nnforge's runtime provides (libgcc before
    GCC 13 has neither). From f64 the rounding is one step: 1 + 2^-8 + 2^-30
    is above the tie of 1 and 1 + 2^-7, though its nearest f32 is the tie."""
    special = [0.0, -0.0, np.inf, -np.inf, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-30, -(1 + 2**-8 + 2**-30),
               3.4e38, 3.3961e38, 2.0**-130, 1.5 * 2**-133, 2.0**-150, 1e-45, 65504.0, -1.0e-3]
    values = np.concatenate([special, np.random.default_rng(0).normal(0, 1e3, 4000)])
    x = torch.tensor(values, dtype=dtype)
    compiled = nnforge.compile(ToBfloat16(), (x,), target="cpu:x86-64-v3")
    result = torch.from_numpy(np.asarray(compiled(x.numpy())).view(np.int16)).view(torch.bfloat16)
    expected = [nearest_bfloat16(float(v)) for v in x.tolist()]
    np.testing.assert_array_equal(result.float().numpy(), np.array(expected, np.float32))
    signs = np.signbit(result.float().numpy()) == np.signbit(x.numpy())
    assert signs.all()
    nan = compiled(np.array([np.nan, -np.nan] + [0.0] * (len(values) - 2), x.numpy().dtype))
    nan = torch.from_numpy(np.asarray(nan).view(np.int16)).view(torch.bfloat16).float().numpy()
    assert np.isnan(nan[:2]).all() and np.signbit(nan[:2]).tolist() == [False, True]


def test_code_for_a_named_cpu_copies_with_the_c_librarys_memcpy(tmp_path: Path):
    """Translated without a target triple, LLVM knew no C library and
    expanded every memcpy of cross-compiled code into a loop copying a byte
    at a time (a 1024^2 matmul for cpu:sapphirerapids ran at half speed)."""
    with ir.Context(), ir.Location.unknown():
        module = ir.Module.parse("""
          llvm.func @copy(%to: !llvm.ptr, %from: !llvm.ptr) {
            %bytes = llvm.mlir.constant(4096 : i64) : i64
            "llvm.intr.memcpy"(%to, %from, %bytes) <{isVolatile = false}> : (!llvm.ptr, !llvm.ptr, i64) -> ()
            llvm.return
          }""")
        objects = object_file(module, tmp_path, ("-mcpu=znver4",), optimize=True)
    undefined = subprocess.run(["nm", "--undefined-only", str(objects)], capture_output=True, text=True, check=True)
    assert "memcpy" in undefined.stdout.split()
