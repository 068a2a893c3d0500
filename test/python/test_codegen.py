"""Optimized CPU code generation (nnforge.targets.cpu.codegen): results match PyTorch.

Each model is compiled with `nnforge.compile` (the optimized lowering, the default) and compared with PyTorch's f32 result (rtol/atol 1e-4).
The IR reaching LLVM is also checked for leftover `memref.copy` beyond
the one per padding (a runtime-library call per tile would be 100x slower).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from mlir import ir

import nnforge
from nnforge.importers.handover import walk_ops
from nnforge.targets.cpu import host
from nnforge.targets.cpu.codegen import lowering
from nnforge.targets.cpu.codegen.contractions import _panel_k_tile
from nnforge.targets.cpu.host import KNOWN_CPUS, ScheduleSizes

import models

TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def zen4_schedule_sizes(monkeypatch):
    """The IR checks below name a Zen 4 core's tiles (8 x 32 register tiles,
    16-lane segments, its caches): the schedules are sized for one on any
    machine, and LLVM still compiles for this machine's own features.
    `test_schedules_sized_for_each_vector_width_compute_the_same` runs
    other CPUs' sizes."""
    monkeypatch.setattr(host, "host_cpu", lambda: replace(KNOWN_CPUS["znver4"], llvm_features=None))


def dumped_ir(tmp_path: Path, stage: str) -> str:
    """The IR `compile(..., dump_ir=tmp_path)` wrote after `stage`."""
    return next(tmp_path.glob(f"*-{stage}.mlir")).read_text()


def loop_carried_types(ir_text: str) -> list[str]:
    """The types each `scf.for` of `ir_text` carries, one string per loop."""
    return re.findall(r"scf\.for .* -> \(([^)]*)\) \{", ir_text)


def compile_optimized(model, inputs=None, tmp_path: Path | None = None, **options):
    compiled = nnforge.compile(model, inputs, dump_ir=tmp_path, **options)
    if tmp_path is not None:
        vectorized = dumped_ir(tmp_path, "vectorize")
        assert "vector." in vectorized, "nothing was vectorized"
        lowered = dumped_ir(tmp_path, "linalg-to-llvm")
        # One copy per tensor.pad (into the padded buffer) at most; any other
        # would be a tile copy in a loop.
        assert lowered.count("llvm.call @memrefCopy") <= vectorized.count("tensor.pad")
    return compiled


def check(actual, expected: torch.Tensor) -> None:
    np.testing.assert_allclose(
        np.asarray(actual), expected.detach().numpy(), rtol=TOLERANCE, atol=TOLERANCE
    )


class MatMul(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


@pytest.mark.parametrize("m,k,n", [(37, 53, 29), (1, 7, 3), (64, 256, 128), (130, 70, 66)])
def test_matmul_odd_sizes(m, k, n, tmp_path):
    a, b = torch.randn(m, k), torch.randn(k, n)
    check(compile_optimized(MatMul(), (a, b), tmp_path)(a.numpy(), b.numpy()), a @ b)


@pytest.mark.parametrize("n,widths", [(49, [16, 1]), (183, [16, 4, 2, 1]), (784, [16]), (196, [2])])
def test_partial_column_tiles_keep_their_accumulators_in_registers(n, widths, tmp_path):
    """Columns after the last full 32-wide register tile (49 = 32 + 17; 784
    in cache tiles of 112 = 3 x 32 + 16; 196, the only output tile, in two
    halves of 3 x 32 + 2 for two threads) are cut into power-of-two widths,
    each with an unmasked accumulator that its k loop carries in registers."""
    a, b = torch.randn(16, 24), torch.randn(24, n)
    compiled = compile_optimized(MatMul(), (a, b), tmp_path)
    vectorized = dumped_ir(tmp_path, "vectorize")
    carried = loop_carried_types(vectorized)
    for width in [32] + widths:
        assert f"vector<8x{width}xf32>" in carried
    check(compiled(a.numpy(), b.numpy()), a @ b)


@pytest.mark.parametrize("model", [torch.nn.Softmax(dim=-1), torch.nn.LayerNorm(1000)], ids=["softmax", "layer_norm"])
def test_row_reductions_accumulate_in_registers_and_combine_as_a_tree(model, tmp_path):
    """Each row is reduced into a vector of partial results that its loop
    carries in registers (not a buffer stored every step), and the partials
    are combined pairwise (reassociated), not one lane after another."""
    x = torch.randn(33, 1000)
    compiled = compile_optimized(model, (x,), tmp_path)
    vectorized = dumped_ir(tmp_path, "vectorize")
    carried = loop_carried_types(vectorized)
    assert "vector<1x40xf32>" in carried  # 40 lanes: 1000 = 25 x 40
    assert "tensor<1x40xf32>" not in carried  # the partial results never go to memory
    lowered = dumped_ir(tmp_path, "linalg-to-llvm")
    sums = re.findall(r"llvm\.intr\.vector\.reduce\.fadd.*", lowered)
    assert sums and all("reassoc" in line for line in sums)
    # Maxima (softmax) are halved elementwise first, down to an odd width or
    # two lanes (here 40 -> 5): LLVM would take 40 one lane after another.
    maxima = re.findall(r"llvm\.intr\.vector\.reduce\.fmax\(.*\(vector<(\d+)xf32>\)", lowered)
    assert all(int(lanes) <= 5 for lanes in maxima)
    assert maxima or isinstance(model, torch.nn.LayerNorm)
    check(compiled(x.numpy()), model(x))


class Exp(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


def test_exp_is_within_two_ulp_over_the_normal_range():
    """nnforge's exp polynomial: at most 2 ulp from exp wherever the result
    is a normal f32 (PyTorch's is about as close); +inf past ln(FLT_MAX),
    NaN kept, 0 for -inf and below the normal range."""
    rng = np.random.default_rng(0)
    finite = np.concatenate([
        rng.uniform(-86.9, 88.72, 1 << 16), rng.uniform(-3, 3, 1 << 16), np.linspace(-86.9, 88.72, 1 << 14),
    ]).astype(np.float32)
    edges = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 88.7228, 88.7229, 89.0, 1e4, -87.4, -100.0, -1e4], np.float32)
    x = np.concatenate([finite, edges])
    compiled = nnforge.compile(Exp(), (torch.from_numpy(x),))
    result = compiled(x)
    exact = np.exp(finite.astype(np.float64))
    ulps = np.abs(result[: finite.size] - exact) / np.spacing(exact.astype(np.float32))
    assert ulps.max() <= 2.0
    expected = [np.inf, 0.0, np.nan, 1.0, 1.0, np.exp(np.float32(88.7228)), np.inf, np.inf, np.inf, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(result[finite.size:], np.array(expected, np.float32), rtol=2e-7, equal_nan=True)


class MatMulOfDoubled(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ (2 * b)


@pytest.mark.parametrize("cpu,argument_padded", [("sapphirerapids", False), ("znver4", True)])
def test_right_operands_with_page_long_rows_get_a_padded_stride(cpu, argument_padded, monkeypatch, tmp_path):
    """Rows of 1024 f32 (4 KiB) would map a tile's rows to one L1 set: a
    right operand computed by the model is written into a buffer one cache
    line wider per row; an argument too where the contraction's schedule
    copies no panels (else it keeps its layout: no copy on every call)."""
    monkeypatch.setattr(host, "host_cpu", lambda: replace(KNOWN_CPUS[cpu], llvm_features=None))
    b = torch.randn(512, 1024)
    a = torch.randn(256, 512)
    for model, padded in ((MatMulOfDoubled(), True), (MatMul(), argument_padded)):
        folder = tmp_path / type(model).__name__
        compiled = compile_optimized(model, (a, b), folder)
        assert ("tensor<512x1040xf32>" in dispatch_regions(folder)) == padded
        check(compiled(a.numpy(), b.numpy()), model(a, b))


@pytest.mark.parametrize("threads", [1, 2])
def test_runtime_right_operands_read_by_many_rows_are_packed_per_call(threads, tmp_path):
    """A right operand computed at run time (an argument of 1 MiB) whose
    elements 2048 rows each read is copied into 32-column panels on every
    call; one that 1024 rows read keeps its layout."""
    b = torch.randn(512, 512)
    for rows, packed in ((2048, True), (1024, False)):
        a = torch.randn(rows, 512)
        folder = tmp_path / str(rows)
        compiled = compile_optimized(MatMul(), (a, b), folder, threads=threads)
        assert ("tensor<16x512x32xf32>" in dispatch_regions(folder)) == packed
        check(compiled(a.numpy(), b.numpy()), a @ b)


@pytest.mark.parametrize("cpu", ["sapphirerapids", "znver4"])
@pytest.mark.parametrize("threads", [1, 2])
def test_runtime_right_operands_are_copied_a_panel_at_a_time(cpu, threads, monkeypatch, tmp_path):
    """The block of a right operand computed at run time (an argument) that an
    output tile reads over one k tile is copied a register tile of columns
    at a time into a contiguous panel (k x 32 with AVX-512, k as large as
    fits two thirds of L1) before the register tiles of rows read it, where
    64 rows read it; not where one register tile of 8 rows does. With a Zen
    4's sizes, the k x n block is copied whole instead."""
    monkeypatch.setattr(host, "host_cpu", lambda: replace(KNOWN_CPUS[cpu], llvm_features=None))
    sizes = ScheduleSizes.for_cpu(host.host_cpu())
    columns = sizes.register_tile["n"]
    if sizes.copy_panels:
        panel = f"alloc_tensor() : tensor<{_panel_k_tile(sizes.cache_tile['k'], 1024, columns, sizes)}x{columns}xf32>"
    else:
        panel = f"alloc_tensor() : tensor<{sizes.cache_tile['k']}x{sizes.cache_tile['n']}xf32>"
    b = torch.randn(1024, 2048)
    for rows, copied in ((64, True), (8, False)):
        a = torch.randn(rows, 1024)
        folder = tmp_path / str(rows)
        compiled = compile_optimized(MatMul(), (a, b), folder, threads=threads)
        assert (panel in dumped_ir(folder, "vectorize")) == copied
        check(compiled(a.numpy(), b.numpy()), a @ b)


class ColumnSum(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(0)


def test_threads_share_a_column_reductions_columns_not_its_rows(tmp_path):
    """A sum over the rows (a bias gradient) on 2 threads: the scf.forall
    splits the columns; the rows stay in one thread's loop. With the rows in
    the forall, both threads accumulated into the same outputs (results 0.6
    off, a different value each call)."""
    x = torch.randn(256, 512)
    compiled = compile_optimized(ColumnSum(), (x,), tmp_path, threads=2)
    foralls = re.findall(r"scf\.forall \(([^)]*)\) in \(([^)]*)\)", dumped_ir(tmp_path, "bufferize"))
    assert foralls == [(foralls[0][0], "8")], foralls
    for _ in range(4):
        check(compiled(x.numpy()), x.sum(0))


@pytest.mark.parametrize("threads", [1, 2])
def test_large_weights_are_packed_into_column_panels(threads, tmp_path):
    """A weight of 1 MiB or more (Linear(512, 1024): [512, 1024] f32 once
    transposed) is stored as 32 panels of [512, 32] when compiling; the
    layer's bias and GELU still run in the contraction's dispatch region, on
    its output split likewise."""
    model = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.GELU())
    x = torch.randn(16, 512)
    compiled = compile_optimized(model, (x,), tmp_path, threads=threads)
    regions = dispatch_regions(tmp_path)
    assert "tensor<32x512x32xf32>" in regions
    assert re.search(r"nnf\.dispatch .*-> tensor<16x32x32xf32>", regions)
    first_region = regions.split("nnf.dispatch", 1)[1].split("nnf.yield", 1)[0]
    assert "math.erf" in first_region
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


@pytest.mark.parametrize("threads", [1, 2])
def test_narrow_convolution_outputs_are_computed_with_channel_vectors(threads, tmp_path):
    """A 7x7 output (49 pixels: 32 + 16 + 1 would end every register tile's
    rows with scalar multiply-adds) is computed transposed, channels as the
    vector dimension: register tiles of an output row's 7 pixels x 32
    channels, accumulated in registers; the result is transposed back into
    NCHW."""
    model = torch.nn.Sequential(torch.nn.Conv2d(16, 64, 3, padding=1), torch.nn.ReLU()).eval()
    x = torch.randn(1, 16, 7, 7)
    compiled = compile_optimized(model, (x,), tmp_path, threads=threads)
    carried = loop_carried_types(dumped_ir(tmp_path, "vectorize"))
    assert any(re.fullmatch(r"vector<(1x)*7x32xf32>", types) for types in carried), carried
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


@pytest.mark.parametrize("cpu,windows", [("znver4", "tensor<1x7x16x3x3x7xf32>"),
                                         ("znver3", "tensor<1x16x3x3x7x7xf32>")])
def test_narrow_convolutions_copy_windows_a_row_at_a_time_where_register_tiles_divide_the_rows(
        cpu, windows, monkeypatch, tmp_path):
    """Output rows of 7 pixels (a strided convolution, an im2col product):
    a Zen 4's register tiles of 2 to 8 rows divide them, and the windows are
    copied [N, OH, C, KH, KW, OW] (a register tile's pixels side by side at
    every k); AVX2's tiles of 4 rows do not, and they are copied [N, C, KH,
    KW, OH, OW]."""
    monkeypatch.setattr(host, "host_cpu", lambda: replace(KNOWN_CPUS[cpu], llvm_features=None))
    model = torch.nn.Sequential(torch.nn.Conv2d(16, 64, 3, stride=2, padding=1), torch.nn.ReLU()).eval()
    x = torch.randn(1, 16, 14, 14)
    compiled = compile_optimized(model, (x,), tmp_path, threads=2)
    assert windows in dispatch_regions(tmp_path)
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


@pytest.mark.parametrize("cpu,size,direct", [("znver4", 4, True), ("znver4", 3, False), ("znver3", 7, False)])
def test_rows_computed_directly_from_the_register_tiles_that_keep_the_fma_pipes_busy(
        cpu, size, direct, monkeypatch, tmp_path):
    """A convolution with unit strides is computed from its input directly
    from output rows whose register tiles (pixels x 32 channels) hold twice
    the FMAs in flight as accumulators: 4 pixels on the Zen 4 (4 FMAs in
    flight), 8 elsewhere; narrower rows are im2col products."""
    monkeypatch.setattr(host, "host_cpu", lambda: replace(KNOWN_CPUS[cpu], llvm_features=None))
    model = torch.nn.Sequential(torch.nn.Conv2d(16, 64, 3, padding=1), torch.nn.ReLU()).eval()
    x = torch.randn(1, 16, size, size)
    compiled = compile_optimized(model, (x,), tmp_path, threads=2)
    assert ("linalg.conv_2d_nhwc_hwcf" in dispatch_regions(tmp_path)) == direct
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


@pytest.mark.parametrize("cpu,channels,size,threads,filter", [
    ("znver4", 16, 12, 1, "tensor<3x3x16x16xf32>"),
    ("znver4", 256, 8, 2, "tensor<8x3x3x256x32xf32>"),
    ("haswell", 256, 8, 2, "tensor<3x3x256x256xf32>"),
], ids=["small-zen4", "panels-zen4", "copies-avx2"])
def test_unit_stride_convolutions_are_computed_directly_in_nhwc(
        cpu, channels, size, threads, filter, monkeypatch, tmp_path):
    """A 3x3 NCHW convolution with unit strides and output rows of 8 pixels
    or more is computed from its input directly, as an NHWC one between
    transposing copies (no window copy), the copy back fused into its batch
    norm and ReLU, which reads the NHWC result in square tiles of a
    vector's lanes of channels by a row's pixels (transposed in registers).
    A filter of half of L2 or more (256 channels: 2.3 MiB) is tiled by
    output channels outermost: stored as panels of 32 channels when
    compiling where the CPU has 32 vector registers (the Zen 4), else each
    tile's taps copied together on every call (16 channels with AVX2).
    Either way the numbers match."""
    monkeypatch.setattr(host, "host_cpu", lambda: replace(KNOWN_CPUS[cpu], llvm_features=None))
    lanes = ScheduleSizes.for_cpu(KNOWN_CPUS[cpu]).lanes
    torch.manual_seed(0)
    norm = torch.nn.BatchNorm2d(channels)
    norm.running_mean.normal_(0, 0.1)
    norm.running_var.uniform_(0.5, 1.5)
    model = torch.nn.Sequential(torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False), norm,
                                torch.nn.ReLU()).eval()
    x = torch.randn(1, channels, size, size)
    compiled = compile_optimized(model, (x,), tmp_path, threads=threads)
    regions = dispatch_regions(tmp_path)
    assert filter in regions and f"tensor<1x{channels}x3x3x" not in regions
    assert ("linalg.conv_2d_nhwc_hwcf" in regions) == ("x32xf32>" not in filter)
    assert regions.count(f"}} -> tensor<1x{channels}x{size}x{size}xf32>") == 1  # the epilogue only
    vectorized = dumped_ir(tmp_path, "vectorize")
    assert f"vector<{lanes}x1x{size}xf32>" in vectorized
    assert ("alloc_tensor() : tensor<3x3x256x16xf32>" in vectorized) == (cpu == "haswell")
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


def test_identical_pads_and_accumulators_are_not_shared(tmp_path):
    """Two identical padded convolutions (as in a ResNet block) and two
    identical zero-filled accumulators: CSE would merge their fills, and
    bufferization would then copy the shared buffer for each user (whole
    padded inputs through memrefCopy). Each gets a buffer of its own."""
    conv = lambda: torch.nn.Conv2d(16, 16, 3, padding=1, bias=False)  # noqa: E731
    model = torch.nn.Sequential(conv(), torch.nn.ReLU(), conv(), torch.nn.ReLU()).eval()
    x = torch.randn(1, 16, 20, 20)
    compiled = compile_optimized(model, (x,), tmp_path)
    assert "llvm.call @memrefCopy" not in dumped_ir(tmp_path, "linalg-to-llvm")
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


def test_a_padded_input_is_computed_into_its_padded_buffer(tmp_path):
    """A convolution's padded input computed by an op outside dispatch
    regions (here the ReLU, fused with the copy into NHWC): that op writes
    into the interior of the padded buffer and only the border is filled, so
    the unpadded result is never allocated nor copied."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3, padding=1, bias=False)).eval()
    x = torch.randn(1, 16, 20, 20)
    compiled = compile_optimized(model, (x,), tmp_path)
    buffers = dumped_ir(tmp_path, "bufferize")
    assert buffers.count("memref.alloc() {alignment = 64 : i64} : memref<1x22x22x16xf32>") == 1
    assert "memref<1x20x20x16xf32>" not in buffers and "memref.copy" not in buffers
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


def test_equal_ops_are_scheduled_once(monkeypatch, tmp_path):
    """Two identical blocks (convolution, batch norm, ReLU), weights of their
    own: each op of the second equals one of the first, shares its function
    and its schedule (fewer schedules than ops), and is inlined back."""
    def block() -> torch.nn.Module:
        norm = torch.nn.BatchNorm2d(16)
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        return torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, padding=1), norm, torch.nn.ReLU())

    model = torch.nn.Sequential(block(), block()).eval()
    x = torch.randn(1, 16, 20, 20)
    schedules = []
    apply_schedules = lowering.apply_schedules

    def counted(module, scheduled, tail, what):
        if what == "vectorization":
            schedules.append(len(scheduled))
        apply_schedules(module, scheduled, tail, what)

    monkeypatch.setattr(lowering, "apply_schedules", counted)
    compiled = compile_optimized(model, (x,), tmp_path)
    monkeypatch.setattr(lowering, "outline_equal_ops", lambda module: None)
    nnforge.compile(model, (x,))
    shared, one_each = schedules
    assert shared < one_each
    assert "call @" not in dumped_ir(tmp_path, "vectorize")
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


def test_fills_of_rows_no_vector_divides_are_filled_as_one_row(tmp_path):
    """A strided convolution's padded input (16 x 30 x 30 after a stride-2
    convolution): no vector divides its 30-wide rows, so each would end in a
    masked store; filled as one row of 14400, none is."""
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 7, 2, 3), torch.nn.ReLU(), torch.nn.Conv2d(16, 8, 3, 2, 1)
    ).eval()
    x = torch.randn(1, 3, 56, 56)
    compiled = compile_optimized(model, (x,), tmp_path)
    assert "tensor<14400xf32>" in dumped_ir(tmp_path, "vectorize")
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


@pytest.mark.parametrize("pool", [
    torch.nn.MaxPool2d(3, 2, 1),
    torch.nn.AvgPool2d(3, 2, 1, count_include_pad=True),
    torch.nn.MaxPool2d(3, 1, 1),
    torch.nn.MaxPool2d(2, 2, 1),
], ids=["max_3x3_stride2", "avg_3x3_stride2", "max_3x3_stride1", "max_2x2_pad1"])
def test_poolings_read_their_input_not_a_padded_copy(pool, tmp_path):
    """A pooling after a convolution's dispatch region (whose result no
    producer pads in place, as ResNet's stem pool): its input is pooled
    where it is, only the border rows and columns from padded slices
    (nnf-peel-pooling-pads), so no padded copy of the whole input is made."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 7, 2, 3), torch.nn.ReLU(), pool).eval()
    x = torch.randn(1, 3, 80, 72)
    compiled = compile_optimized(model, (x,), tmp_path)
    vectorized = dumped_ir(tmp_path, "vectorize")
    padded = "x".join(str(size + 2 * pool.padding) for size in (40, 36))
    assert f"tensor<1x16x{padded}xf32>" not in vectorized
    assert "tensor<1x16x40x36xf32>" in vectorized
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


def test_batch_matmul(tmp_path):
    a, b = torch.randn(3, 19, 33), torch.randn(3, 33, 41)
    check(compile_optimized(MatMul(), (a, b), tmp_path)(a.numpy(), b.numpy()), a @ b)


def test_mlp(tmp_path):
    module, inputs = models.mlp(batch=5)
    check(compile_optimized(module, inputs, tmp_path)(inputs[0].numpy()), module(*inputs))


def test_dynamic_batch_mlp(tmp_path):
    module, inputs, dynamic = models.dynamic_batch_mlp()
    compiled = compile_optimized(module, inputs, tmp_path, dynamic_shapes=dynamic)
    for batch in (1, 3, 17):
        x = torch.randn(batch, 32)
        check(compiled(x.numpy()), module(x))


def test_cnn(tmp_path):
    module, inputs = models.cnn(batch=2)
    check(compile_optimized(module, inputs, tmp_path)(inputs[0].numpy()), module(*inputs))


def test_transformer_layer(tmp_path):
    module, inputs = models.transformer_layer()
    check(compile_optimized(module, inputs, tmp_path)(inputs[0].numpy()), module(*inputs))


def compile_nnf(signature: str, body: str, tmp_path: Path):
    text = f"func.func @main{signature} {{\n{body}\n}}"
    return compile_optimized(ir.Module.parse(text, nnforge.context()), tmp_path=tmp_path)


def test_nnf_linear_transposed_weight(tmp_path):
    x, w, b = torch.randn(37, 53), torch.randn(29, 53), torch.randn(29)
    types = "tensor<37x53xf32>, tensor<29x53xf32>, tensor<29xf32>"
    model = compile_nnf(
        "(%x: tensor<37x53xf32>, %w: tensor<29x53xf32>, %b: tensor<29xf32>) -> tensor<37x29xf32>",
        f"%y = nnf.linear %x, %w, %b activation relu : ({types}) -> tensor<37x29xf32>\n"
        "return %y : tensor<37x29xf32>",
        tmp_path,
    )
    check(model(x.numpy(), w.numpy(), b.numpy()), torch.relu(x @ w.T + b))


def test_nnf_softmax(tmp_path):
    t = "tensor<?x1000xf32>"
    model = compile_nnf(f"(%x: {t}) -> {t}", f"%y = nnf.softmax %x axis 1 : {t}\nreturn %y : {t}", tmp_path)
    x = torch.randn(7, 1000)
    check(model(x.numpy()), torch.softmax(x, 1))


def test_softmax_rows_with_nan_and_infinities_match_pytorch(tmp_path):
    """torch.softmax as torch-mlir expands it is lowered nnforge's way (its row
    maximum ignores NaN): a NaN still makes its row NaN, an infinity too."""
    x = torch.randn(6, 100)
    x[1, 7] = float("nan")
    x[2, 3] = float("inf")
    x[3, :] = float("-inf")
    x[4, 5] = float("-inf")
    x[5, :] = float("nan")
    compiled = compile_optimized(Softmax(), (x,), tmp_path)
    assert "arith.maxnumf" in dumped_ir(tmp_path, "linalg-fusion")
    np.testing.assert_allclose(
        compiled(x.numpy()), torch.softmax(x, -1).numpy(), rtol=TOLERANCE, atol=TOLERANCE, equal_nan=True
    )


def test_nnf_layer_norm(tmp_path):
    t, p = "tensor<9x77xf32>", "tensor<77xf32>"
    model = compile_nnf(
        f"(%x: {t}, %s: {p}, %b: {p}) -> {t}",
        f"%y = nnf.layer_norm %x scale %s bias %b axis 1 epsilon 1.0e-05 : ({t}, {p}, {p}) -> {t}\n"
        f"return %y : {t}",
        tmp_path,
    )
    x, s, b = torch.randn(9, 77), torch.randn(77), torch.randn(77)
    check(model(x.numpy(), s.numpy(), b.numpy()), torch.nn.functional.layer_norm(x, (77,), s, b))


def test_boolean_results_stay_one_byte_per_element():
    # Vectors of i1 are bit-packed in memory by LLVM: ops on booleans must not
    # be vectorized, or a comparison's result comes back scrambled.
    text = """
    #map = affine_map<(d0, d1) -> (d0, d1)>
    func.func @main(%x: tensor<3x5xf32>, %y: tensor<3x5xf32>) -> tensor<3x5xi1> {
      %e = tensor.empty() : tensor<3x5xi1>
      %r = linalg.generic {indexing_maps = [#map, #map, #map], iterator_types = ["parallel", "parallel"]}
          ins(%x, %y : tensor<3x5xf32>, tensor<3x5xf32>) outs(%e : tensor<3x5xi1>) {
      ^bb0(%a: f32, %b: f32, %o: i1):
        %c = arith.cmpf ogt, %a, %b : f32
        linalg.yield %c : i1
      } -> tensor<3x5xi1>
      return %r : tensor<3x5xi1>
    }"""
    x, y = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    compiled = nnforge.compile(ir.Module.parse(text, nnforge.context()))
    np.testing.assert_array_equal(compiled(x, y), x > y)


def test_empty_dimensions_compile_and_reduce_to_the_identity():
    # Tiling a loop of static size 0 trips an assertion in upstream's tiling
    # (an abort of the whole process): such ops must be left untiled.
    text = """
    #in = affine_map<(d0, d1) -> (d0, d1)>
    #out = affine_map<(d0, d1) -> (d0)>
    func.func @main(%x: tensor<3x0xf32>) -> tensor<3xf32> {
      %zero = arith.constant 0.0 : f32
      %e = tensor.empty() : tensor<3xf32>
      %init = linalg.fill ins(%zero : f32) outs(%e : tensor<3xf32>) -> tensor<3xf32>
      %r = linalg.generic {indexing_maps = [#in, #out], iterator_types = ["parallel", "reduction"]}
          ins(%x : tensor<3x0xf32>) outs(%init : tensor<3xf32>) {
      ^bb0(%a: f32, %acc: f32):
        %s = arith.addf %a, %acc : f32
        linalg.yield %s : f32
      } -> tensor<3xf32>
      return %r : tensor<3xf32>
    }"""
    compiled = nnforge.compile(ir.Module.parse(text, nnforge.context()))
    np.testing.assert_array_equal(compiled(np.zeros((3, 0), np.float32)), np.zeros(3, np.float32))


@pytest.mark.parametrize("channels,height,width,kernel,padding", [(8, 9, 10, 3, 1), (5, 7, 33, 5, 2)])
def test_depthwise_convolution_is_vectorized(channels, height, width, kernel, padding, tmp_path):
    conv = torch.nn.Conv2d(channels, channels, kernel, padding=padding, groups=channels).eval()
    x = torch.randn(2, channels, height, width)
    compiled = compile_optimized(conv, (x,), tmp_path=tmp_path)
    vectorized = dumped_ir(tmp_path, "vectorize")
    assert "depthwise_conv" not in vectorized
    assert "tensor.pad" not in vectorized  # a vectorized fill and copy instead
    # Each output segment stays in registers across the filter taps, the
    # last one of a row too (33 = 2 x 16 + 1 columns).
    carried = re.findall(r"scf\.for .* -> \(vector<(\d+)xf32>\) \{", vectorized)
    segments = {min(width, 16)} | ({width % 16} if width > 16 and width % 16 else set())
    assert {int(lanes) for lanes in carried} == segments, carried
    check(compiled(x.numpy()), conv(x))


@pytest.mark.parametrize("kernel,stride,shape", [
    (3, 1, (1, 3, 100, 21)),  # row tiles of 20 rows: padded above, in between, below
    (5, 2, (2, 4, 121, 40)),  # two rows of padding, strided windows
])
@pytest.mark.parametrize("threads", [1, 2])
def test_depthwise_padding_is_fused_into_row_tiles(kernel, stride, shape, threads, tmp_path):
    """A depthwise convolution pads each tile of its input where it reads it:
    the padded tensor is never written whole."""
    channels, height, width = shape[1:]
    model = torch.nn.Sequential(
        torch.nn.Conv2d(channels, channels, kernel, stride, padding=kernel // 2, groups=channels),
        torch.nn.ReLU6(),
    ).eval()
    x = torch.randn(*shape)
    compiled = compile_optimized(model, (x,), tmp_path, threads=threads)
    regions = dispatch_regions(tmp_path)
    assert re.search(r"nnf\.dispatch[^\n]*\n(.*\n)*?\s*%\w+ = tensor\.pad", regions), regions
    padded = f"tensor<{shape[0]}x{channels}x{height + kernel - 1}x{width + kernel - 1}xf32>"
    assert padded in regions
    assert padded not in dumped_ir(tmp_path, "vectorize")
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


def inverted_residual(channels: int, hidden: int, kernel: int = 3, stride: int = 1) -> torch.nn.Module:
    """A MobileNetV2 block's layers: 1x1 expand, depthwise, 1x1 project."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, hidden, 1, bias=False), torch.nn.BatchNorm2d(hidden), torch.nn.ReLU6(),
        torch.nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
        torch.nn.BatchNorm2d(hidden), torch.nn.ReLU6(),
        torch.nn.Conv2d(hidden, channels, 1, bias=False), torch.nn.BatchNorm2d(channels),
    ).eval()


@pytest.mark.parametrize("size,kernel,stride,bands", [
    (56, 3, 1, (8, 4)),  # bands of 8 rows in row pairs (14 bands of 4 for threads)
    (45, 3, 1, (9, 5)),  # odd rows: no pairs
    (56, 5, 2, (14, 4)),  # strided windows
    (57, 3, 1, (3, 3)),  # 19 bands of 3 rows
])
@pytest.mark.parametrize("threads", [1, 2])
def test_depthwise_stage_is_fused_into_the_pointwise_convolution(size, kernel, stride, bands, threads, tmp_path):
    """The depthwise stage of a MobileNetV2 block joins the 1x1 convolution
    reading it in one region, computed a band of rows at a time (as many as
    the band's bytes hold: with the caches of a Zen 4 core, 192 channels of 56
    columns take 8 rows; at least PARALLEL_BANDS bands for threads), a channel
    after another: its result is never written whole."""
    band = bands[threads - 1]
    channels, hidden = 8, 192
    model = inverted_residual(channels, hidden, kernel, stride)
    x = torch.randn(1, channels, size, size)
    compiled = compile_optimized(model, (x,), tmp_path, threads=threads)
    regions = dispatch_regions(tmp_path)
    merged = [region for region in regions.split("nnf.dispatch")[1:] if "linalg.depthwise_conv_2d_nchw_chw" in region]
    assert len(merged) == 1 and "tensor.collapse_shape" in merged[0] and '"reduction"]' in merged[0], regions
    rows = (size + 2 * (kernel // 2) - kernel) // stride + 1
    vectorized = dumped_ir(tmp_path, "vectorize")
    assert f"tensor.empty() : tensor<1x1x{band}x{rows}xf32>" in vectorized
    assert f"alloc_tensor() : tensor<1x{hidden}x{rows}x{rows}xf32>" not in vectorized
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


@pytest.mark.parametrize("threads,band", [(1, 16), (2, 4)])
def test_im2col_windows_are_copied_a_band_of_rows_at_a_time(threads, band, tmp_path):
    """A strided 7x7 convolution's im2col window copy (a ResNet stem's) joins
    its contraction's region and is computed a band of output rows at a time
    (as many as the band's bytes hold: 16 rows of 3 x 7 x 7 x 32 windows on
    a Zen 4 core; bands of 4 rows for threads), right where the contraction
    reads it: the whole window tensor is never written."""
    torch.manual_seed(0)
    norm = torch.nn.BatchNorm2d(32)
    norm.running_mean.normal_(0, 0.1)
    norm.running_var.uniform_(0.5, 1.5)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 7, 2, 3, bias=False), norm, torch.nn.ReLU()).eval()
    x = torch.randn(1, 3, 64, 64)
    compiled = compile_optimized(model, (x,), tmp_path, threads=threads)
    regions = dispatch_regions(tmp_path)
    [region] = regions.split("nnf.dispatch")[1:]
    assert "tensor.empty() : tensor<1x3x7x7x32x32xf32>" in region and "tensor.collapse_shape" in region
    vectorized = dumped_ir(tmp_path, "vectorize")
    assert f"tensor<1x3x7x7x{band}x32xf32>" in vectorized and "tensor<1x3x7x7x32x32xf32>" not in vectorized
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


@pytest.mark.parametrize("model,shape", [
    (lambda: LinearGelu(256, 256), (128, 256)),  # matmul, bias and GELU
    (lambda: inverted_residual(8, 32), (1, 8, 56, 56)),  # 1x1 convolutions with batch norm (and the depthwise stage)
], ids=["linear_gelu", "inverted_residual"])
@pytest.mark.parametrize("threads", [1, 2])
def test_accumulators_start_as_zero_vectors_and_epilogues_read_registers(model, shape, threads, tmp_path):
    """A contraction whose k loop is not tiled for the cache is computed with
    its zero fill and its epilogue a register tile at a time: its k loop
    starts from a zero vector (no zeroed tile in memory) and no 8 x 32 tile
    of its result is read back from memory."""
    model, x = model(), torch.randn(*shape)
    compiled = compile_optimized(model, (x,), tmp_path, threads=threads)
    vectorized = dumped_ir(tmp_path, "vectorize")
    zeros = set(re.findall(r"(%\w+) = arith\.constant dense<0\.000000e\+00> : vector<(?:1x)?8x32xf32>", vectorized))
    starts = re.findall(r"scf\.for .* iter_args\(%\w+ = (%\w+)\) -> \(vector<(?:1x)?8x32xf32>\)", vectorized)
    assert starts and set(starts) <= zeros
    assert not re.search(r"vector\.transfer_read .* vector<(?:1x)?8x32xf32>", vectorized)
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


def test_onnx_convolutions_get_dispatch_regions(tmp_path):
    """torch-mlir's ONNX importer gives convolutions a splat constant
    accumulator: taken as a fill, the block forms the same regions as from
    PyTorch (none formed before, and every call copied the 2.4 MB constant)."""
    model = inverted_residual(8, 48)
    x = torch.randn(1, 8, 28, 28)
    path = tmp_path / "block.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], dynamo=False)
    dumps = tmp_path / "ir"
    compiled = compile_optimized(str(path), tmp_path=dumps)
    regions = dispatch_regions(dumps)
    assert regions.count("nnf.dispatch") == 2 and "arith.constant dense<0.000000e+00> : tensor<1x" not in regions
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


def test_depthwise_rows_are_vectorized_in_pairs(tmp_path):
    """A stride-1 depthwise convolution computes two output rows per vector
    tile: each input row loaded serves both."""
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1, groups=4), torch.nn.ReLU()).eval()
    x = torch.randn(1, 4, 30, 40)
    compiled = compile_optimized(model, (x,), tmp_path)
    assert "vector<2x16xf32>" in dumped_ir(tmp_path, "vectorize")
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


def test_depthwise_input_from_an_unreshaped_producer(tmp_path):
    """A depthwise convolution whose padded input comes straight from a
    linalg op (a 1x1 convolution on a small image keeps its 4-D result):
    the producer stays out of the depthwise region (it crashed the region
    forming once)."""
    model = inverted_residual(8, 32)
    x = torch.randn(1, 8, 14, 14)
    compiled = compile_optimized(model, (x,), tmp_path)
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


def test_attention_projections_are_plain_contractions(tmp_path):
    """Reshapes that fusion propagates into a multi-head attention's
    projections split their loops (7 loops for the input projection);
    merged back, every contraction has one loop per role (batch, m, n, k)."""
    model = torch.nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True).eval()
    x = torch.randn(1, 24, 64)
    compiled = compile_optimized(model, (x,), tmp_path)
    contractions = [
        line for line in dispatch_regions(tmp_path).splitlines()
        if "linalg.generic" in line and '"reduction"' in line and "arith.mulf" not in line and ", %" in line.split("ins(")[1].split(":")[0]
    ]
    assert contractions
    for line in contractions:
        assert line.split("iterator_types = [")[1].split("]")[0].count('"') <= 8, line
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


class TanhGelu(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x, approximate="tanh")


@pytest.mark.parametrize("model,shape", [
    (torch.nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6), (1, 6, 20, 37)),  # depthwise
    (torch.nn.MaxPool2d(3, stride=2, padding=1), (2, 4, 24, 40)),
    (torch.nn.AvgPool2d(2, stride=2), (1, 3, 16, 48)),
    (torch.nn.MaxPool2d(3, stride=1, padding=1), (1, 3, 9, 21)),
    (torch.nn.Conv2d(3, 8, 7, stride=2, padding=3), (1, 3, 32, 36)),  # im2col window copy
], ids=["depthwise_stride2", "max_pool_stride2", "avg_pool_stride2", "max_pool_stride1", "conv_stride2"])
def test_windows_are_vectorized_strided_or_not(model, shape, tmp_path):
    """Poolings and depthwise convolutions are vectorized along output rows;
    strided windows (every second input column) are read as contiguous
    vectors whose even lanes are kept (nnf-deinterleave-strided-reads), so no
    windowed op or strided read is left as a scalar loop."""
    model = model.eval()
    x = torch.randn(*shape)
    compiled = compile_optimized(model, (x,), tmp_path=tmp_path)
    vectorized = ir.Module.parse(dumped_ir(tmp_path, "vectorize"), nnforge.context())
    for op in walk_ops(vectorized.operation):
        assert not op.name.startswith(("linalg.pooling", "linalg.depthwise")), op.name
        if op.name == "linalg.generic":
            maps = [ir.AffineMapAttr(m).value for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
            assert not any("*" in str(e) for m in maps for e in m.results), op
    if model.stride not in (1, (1, 1)):
        assert "vector.shuffle" in dumped_ir(tmp_path, "vectorize")
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


def test_integer_powers_are_vectorized(tmp_path, caplog):
    """GELU's tanh form cubes its input (math.fpowi), which LLVM's powi
    cannot take as a vector: expanded into multiplications, it compiles
    without falling back to the naive lowering."""
    x = torch.randn(4, 64)
    compiled = compile_optimized(TanhGelu(), (x,), tmp_path)
    assert "optimized code generation failed" not in caplog.text
    check(compiled(x.numpy()), TanhGelu()(x))


class Shifts(torch.nn.Module):
    def forward(self, x: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.bitwise_left_shift(x, n), torch.bitwise_right_shift(x, n)


def test_shifts_past_the_bit_width_match_pytorch():
    """Amounts of the bit width or more (or negative) shift every bit out,
    as in PyTorch, rather than being masked by the hardware."""
    x = torch.tensor([5, -8, 7, -1, 3, 9], dtype=torch.int32)
    n = torch.tensor([0, 31, 32, 40, -1, 2], dtype=torch.int32)
    compiled = nnforge.compile(Shifts(), (x, n))
    for actual, expected in zip(compiled(x, n), Shifts()(x, n)):
        np.testing.assert_array_equal(np.asarray(actual), expected.numpy())


class LinearGelu(torch.nn.Module):
    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.linear = torch.nn.Linear(inputs, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(self.linear(x))


class MatMulByConstant(torch.nn.Module):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


class ConvBatchNormRelu(torch.nn.Module):
    def __init__(self, kernel: int, bias: bool):
        super().__init__()
        self.conv = torch.nn.Conv2d(5, 12, kernel, padding=kernel // 2, bias=bias)
        self.norm = torch.nn.BatchNorm2d(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x))) + 1.0


class DepthwiseBatchNormRelu6(torch.nn.Sequential):
    def __init__(self):
        super().__init__(
            torch.nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False), torch.nn.BatchNorm2d(6), torch.nn.ReLU6()
        )


class Softmax(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=-1)


def dispatch_regions(tmp_path: Path) -> str:
    return dumped_ir(tmp_path, "dispatch-regions")


@pytest.mark.parametrize(
    "model,shape",
    [
        (LinearGelu(70, 130), (37, 70)),  # partial tiles of the matmul and the epilogue
        (LinearGelu(256, 256), (128, 256)),  # whole tiles, several per thread
        (ConvBatchNormRelu(1, False).eval(), (1, 5, 9, 11)),  # im2col's expanded result, collapsed
        (ConvBatchNormRelu(3, True).eval(), (2, 5, 9, 11)),  # and the broadcast bias it accumulates into
        (DepthwiseBatchNormRelu6().eval(), (2, 6, 9, 21)),  # rows of a channel: 16 + 5 columns
        (Softmax(), (3, 40, 1000)),  # rows: tiles of several rows, a partial one
        (torch.nn.LayerNorm(300), (2, 67, 300)),
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_dispatch_regions_fuse_and_match_pytorch(model, shape, threads, tmp_path):
    x = torch.randn(*shape)
    compiled = compile_optimized(model, (x,), tmp_path, threads=threads)
    assert "nnf.dispatch" in dispatch_regions(tmp_path)
    # Each tile's intermediates are tile-sized, not slices of whole-size buffers.
    vectorized = dumped_ir(tmp_path, "vectorize")
    empties = set(re.findall(r"(%\w+) = tensor\.empty\(", vectorized))
    sliced = set(re.findall(r"tensor\.extract_slice (%\w+)\[", vectorized))
    assert not empties & sliced
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


def test_a_failed_schedule_falls_back_to_the_naive_lowering_with_a_counted_warning(monkeypatch, caplog):
    """Where the optimized code generation raises, the model still compiles
    (naive lowering, same results) and the warning's record carries the
    cause under NAIVE_LOWERING, which the benchmark counts."""
    from nnforge.targets.cpu import target as cpu_target

    def failing(*args, **kwargs):
        raise IndexError("index out of range")

    monkeypatch.setattr(cpu_target, "lower_to_llvm", failing)
    model, inputs = models.mlp()
    with caplog.at_level("WARNING", logger="nnforge"):
        compiled = nnforge.compile(model, inputs)
    causes = [getattr(r, cpu_target.NAIVE_LOWERING) for r in caplog.records if hasattr(r, cpu_target.NAIVE_LOWERING)]
    assert causes == ["IndexError: index out of range"]
    assert "using the naive lowering" in caplog.text
    with torch.no_grad():
        check(compiled(*[x.numpy() for x in inputs]), model(*inputs))


@pytest.mark.parametrize("threads", [1, 2])
def test_rows_after_the_last_full_register_tile_are_tiled_apart(threads, monkeypatch, tmp_path):
    """A 3x3 512-channel convolution of a 7x7 image (49 rows of im2col) with
    AVX2's 4-row register tiles: one row in a 1-row tile, the other 48 in
    4-row tiles, each accumulated in registers (with every register tile
    masked, its accumulator in memory, the convolution took 12x the time on
    a Zen 3)."""
    monkeypatch.setattr(host, "host_cpu", lambda: replace(KNOWN_CPUS["znver3"], llvm_features=None))
    model = torch.nn.Sequential(torch.nn.Conv2d(512, 512, 3, padding=1, bias=False), torch.nn.ReLU()).eval()
    x = torch.randn(1, 512, 7, 7)
    compiled = compile_optimized(model, (x,), tmp_path, threads=threads)
    carried = loop_carried_types(dumped_ir(tmp_path, "vectorize"))
    assert "vector<1x4x1x16xf32>" in carried and "vector<1x1x1x16xf32>" in carried, carried
    with torch.no_grad():
        check(compiled(x.numpy()), model(x))


@pytest.mark.parametrize("cpu", ["znver3", "haswell"])
@pytest.mark.parametrize("model,shapes", [
    (lambda: MatMulByConstant(torch.randn(70, 66)), [(130, 70)]),  # partial register and cache tiles
    (MatMul, [(64, 1024), (1024, 512)]),  # a run-time right operand, copied a block at a time
    (lambda: LinearGelu(1024, 512), [(64, 1024)]),  # a packed weight, k cache tiles
    (lambda: torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU()), [(1, 16, 12, 12)]),
    (lambda: torch.nn.Conv2d(256, 256, 3, padding=1, bias=False), [(1, 256, 8, 8)]),  # direct, filter copies
    (lambda: torch.nn.Conv2d(16, 64, 3, padding=1), [(1, 16, 7, 7)]),  # channel vectors
    (lambda: torch.nn.Conv2d(3, 16, 7, 2, 3), [(1, 3, 40, 40)]),  # strided im2col
    (lambda: torch.nn.Conv2d(256, 256, 3, padding=1), [(1, 256, 14, 14)]),  # 2 x 32 register tiles
    (lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 16, 7, 2, 3), torch.nn.MaxPool2d(3, 2, 1)),
     [(1, 3, 40, 40)]),  # a pooling's 22-wide padded rows, filled as one row
    (lambda: inverted_residual(8, 48), [(1, 8, 28, 28)]),  # depthwise bands
    (Softmax, [(33, 1000)]),
], ids=["matmul", "matmul_of_arguments", "linear_gelu", "conv3x3", "conv3x3_256", "conv_7x7_output", "conv7x7_stride2",
        "conv3x3_256_14x14", "conv_max_pool", "inverted_residual", "softmax"])
@pytest.mark.parametrize("threads", [1, 2])
def test_schedules_sized_for_each_vector_width_compute_the_same(cpu, model, shapes, threads, monkeypatch, caplog):
    """The schedules sized for AVX2 CPUs (16 registers of 8 lanes: 4 x 16
    register tiles; L2 of 512 or 256 KiB) apply without falling back to the
    naive lowering, and their code matches PyTorch."""
    from nnforge.targets.cpu import target as cpu_target

    monkeypatch.setattr(host, "host_cpu", lambda: replace(KNOWN_CPUS[cpu], llvm_features=None))
    torch.manual_seed(0)
    model, inputs = model().eval(), [torch.randn(*shape) for shape in shapes]
    with caplog.at_level("WARNING", logger="nnforge"):
        compiled = nnforge.compile(model, tuple(inputs), threads=threads)
    assert not [r for r in caplog.records if hasattr(r, cpu_target.NAIVE_LOWERING)]
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(compiled(*inputs)), model(*inputs).numpy(), rtol=1e-4, atol=2e-4)
