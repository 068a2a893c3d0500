"""The affine generator (`nnforge.compile(..., optimize="affine")`,
nnforge.targets.cpu.affine): results match eager PyTorch on the test models
and the fuzz suite's MLIR seeds, the code is vectorized and parallel, and an
affine pipeline that fails on an op costs that op its affine lowering only.

Tolerance: f32 outputs within atol/rtol 1e-4 of eager, as for the other paths.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import models
import nnforge
from nnforge import pipelines
from nnforge.errors import ArgumentError
from nnforge.targets.cpu.host import ScheduleSizes, host_cpu
from test.fuzz import mlir_seeds

def assert_close(actual, expected: torch.Tensor, tolerance: float = 1e-4) -> None:
    np.testing.assert_allclose(np.asarray(actual), expected.detach().numpy(), rtol=tolerance, atol=tolerance)


class MatMul(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


@pytest.mark.parametrize("threads", [1, None])
@pytest.mark.parametrize("factory", ["mlp", "cnn", "transformer_layer"])
def test_models_match_eager(factory: str, threads: int | None) -> None:
    # (The super-vectorizer aborts on the row reductions of softmax and layer
    # norm: those ops keep plain loops, with a warning.)
    module, inputs = getattr(models, factory)()
    compiled = nnforge.compile(module, inputs, optimize="affine", threads=threads)
    with torch.no_grad():
        assert_close(compiled(*inputs), module(*inputs))


def test_gpt2_with_a_tied_head_matches_eager() -> None:
    """Token and position embeddings, causal attention, layer norms and an
    output projection tied to the embedding (the benchmark's tiny GPT-2,
    smaller): buffers that bufferization reuses and views."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "workloads.py"
    spec = importlib.util.spec_from_file_location("benchmark_workloads", path)
    workloads = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = workloads  # (its dataclasses look their module up)
    spec.loader.exec_module(workloads)
    TinyGPT2 = workloads.TinyGPT2

    torch.manual_seed(0)
    module = TinyGPT2(512, 32, 64, 2, 4).eval()
    tokens = torch.randint(0, 512, (1, 32))
    compiled = nnforge.compile(module, (tokens,), optimize="affine", threads=1)
    with torch.no_grad():
        assert_close(compiled(tokens), module(tokens), tolerance=1e-3)


def test_dynamic_batch_matches_eager() -> None:
    module, inputs, dynamic_shapes = models.dynamic_batch_mlp()
    compiled = nnforge.compile(module, inputs, dynamic_shapes=dynamic_shapes, optimize="affine")
    for batch in (1, 7, 33):
        x = torch.randn(batch, 32)
        with torch.no_grad():
            assert_close(compiled(x), module(x))


@pytest.mark.parametrize("m,k,n", [(37, 53, 29), (64, 128, 96)])
def test_matmul_is_vectorized(m: int, k: int, n: int, tmp_path: Path) -> None:
    a, b = torch.randn(m, k), torch.randn(k, n)
    compiled = nnforge.compile(MatMul(), (a, b), optimize="affine", dump_ir=tmp_path)
    assert_close(compiled(a.numpy(), b.numpy()), a @ b)
    lowered = next(tmp_path.glob("*-affine.mlir")).read_text()
    lanes = ScheduleSizes.for_cpu(host_cpu()).lanes
    assert f"vector<{lanes}xf32>" in lowered


@pytest.mark.parametrize("threads", [None, 2])
def test_matmul_and_conv_run_on_openmp_threads(threads: int | None, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    # The loops over row tiles of a matmul and over output channels of a
    # convolution are affine.parallel loops, run by OpenMP as the
    # schedules' parallel loops are; threads=1 makes sequential code.
    conv = torch.nn.Conv2d(8, 16, 3)
    cases = [(MatMul(), (torch.randn(96, 64), torch.randn(64, 80))), (conv, (torch.randn(1, 8, 20, 20),))]
    for index, (module, inputs) in enumerate(cases):
        compiled = nnforge.compile(module, inputs, optimize="affine", threads=threads, dump_ir=tmp_path / str(index))
        with torch.no_grad():
            assert_close(compiled(*inputs), module(*inputs))
        lowered = next((tmp_path / str(index)).glob("*-affine.mlir")).read_text()
        assert "omp.parallel" in lowered and "omp.wsloop" in lowered
    sequential = nnforge.compile(MatMul(), cases[0][1], optimize="affine", threads=1, dump_ir=tmp_path / "one")
    assert "omp." not in next((tmp_path / "one").glob("*-affine.mlir")).read_text()
    assert_close(sequential(*cases[0][1]), cases[0][1][0] @ cases[0][1][1])
    assert not [record for record in caplog.records if "affine code generation failed" in record.getMessage()]


_LOOP_ORDER_CASES = """
#a = affine_map<(d0, d1, d2) -> (d0, d2)>
#b = affine_map<(d0, d1, d2) -> (d2, d1)>
#bt = affine_map<(d0, d1, d2) -> (d1, d2)>
#c = affine_map<(d0, d1, d2) -> (d0, d1)>
#rows = affine_map<(d0, d1) -> (d0, d1)>
#sums = affine_map<(d0, d1) -> (d0)>
func.func @f(%a: memref<8x4xf32>, %b: memref<4x6xf32>, %bt: memref<6x4xf32>, %c: memref<8x6xf32>,
             %x: memref<1x3x10x10xf32>, %w: memref<5x3x3x3xf32>, %y: memref<1x5x8x8xf32>, %s: memref<8xf32>,
             %z: memref<1x5x4x4xf32>) {
  linalg.matmul ins(%a, %b : memref<8x4xf32>, memref<4x6xf32>) outs(%c : memref<8x6xf32>)
  linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
    ins(%x, %w : memref<1x3x10x10xf32>, memref<5x3x3x3xf32>) outs(%y : memref<1x5x8x8xf32>)
  linalg.generic {indexing_maps = [#a, #bt, #c], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%a, %bt : memref<8x4xf32>, memref<6x4xf32>) outs(%c : memref<8x6xf32>) {
  ^bb0(%p: f32, %q: f32, %o: f32):
    %m = arith.mulf %p, %q : f32
    %r = arith.addf %o, %m : f32
    linalg.yield %r : f32
  }
  linalg.generic {indexing_maps = [#rows, #sums], iterator_types = ["parallel", "reduction"]}
      ins(%c : memref<8x6xf32>) outs(%s : memref<8xf32>) {
  ^bb0(%p: f32, %o: f32):
    %r = arith.addf %o, %p : f32
    linalg.yield %r : f32
  }
  linalg.copy ins(%c : memref<8x6xf32>) outs(%c : memref<8x6xf32>)
  linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<2> : tensor<2xi64>}
    ins(%x, %w : memref<1x3x10x10xf32>, memref<5x3x3x3xf32>) outs(%z : memref<1x5x4x4xf32>)
  return
}
"""


def test_the_loop_walking_the_output_rows_goes_innermost() -> None:
    from mlir import ir

    from nnforge.targets.cpu.affine import contiguous_output_innermost
    from nnforge.targets.cpu.codegen.common import linalg_ops

    module = ir.Module.parse(_LOOP_ORDER_CASES, nnforge.context())
    orders = [contiguous_output_innermost(op) for op in linalg_ops(module)]
    # matmul (i, j, k) -> (i, k, j); convolution (n, f, oh, ow, c, kh, kw) -> ow last; a matmul with B
    # transposed (j strides B), a row sum, a copy (no reduction) and a strided convolution (ow strides
    # the input) keep linalg's order.
    assert orders == [[0, 2, 1], [0, 1, 2, 4, 5, 6, 3], None, None, None, None]


@pytest.mark.parametrize("seed", mlir_seeds.SEEDS, ids=lambda seed: seed.name)
def test_fuzz_seeds_match_numpy_in_every_element_type(seed: mlir_seeds.Seed) -> None:
    from mlir import ir

    for element in seed.types:
        arrays = mlir_seeds.inputs(seed, element, np.random.default_rng(0))
        compiled = nnforge.compile(ir.Module.parse(seed.text(element), nnforge.context()), optimize="affine")
        expected = seed.reference(*arrays)
        tolerance = 1e-2 if element == "f16" else 1e-5
        np.testing.assert_allclose(np.asarray(compiled(*arrays)), expected, rtol=tolerance, atol=tolerance,
                                   err_msg=f"{seed.name} in {element}")


@pytest.mark.parametrize("optimize", ["polyhedral", "AFFINE", 1, None])
def test_other_optimize_values_are_argument_errors(optimize) -> None:
    module, inputs = models.mlp()
    with pytest.raises(ArgumentError, match="optimize takes True, False or 'affine'"):
        nnforge.compile(module, inputs, optimize=optimize)


def test_the_cuda_target_refuses_the_affine_generator() -> None:
    module, inputs = models.mlp()
    with pytest.raises(ArgumentError, match="CPU code generator"):
        nnforge.compile(module, inputs, target="cuda", optimize="affine")


def test_the_pipeline_names_its_passes_in_order() -> None:
    text = pipelines.affine_loops(16, 512, parallel=True)
    order = ["convert-linalg-to-affine-loops", "affine-loop-unroll-jam", "affine-loop-fusion", "affine-scalrep",
             "affine-loop-tile{tile-size=128}", "affine-loop-normalize", "affine-parallelize",
             "affine-super-vectorize{virtual-vector-size=16}", "affine-loop-invariant-code-motion"]
    order.remove("affine-loop-fusion")
    assert "affine-loop-fusion" not in pipelines.affine_loops(16, 128, parallel=True)
    text = pipelines.affine_loops(16, 128, parallel=True, fuse=True)
    positions = [text.index(name) for name in order]
    assert positions == sorted(positions)
    assert "affine-parallelize" not in pipelines.affine_loops(16, 512, parallel=False)
