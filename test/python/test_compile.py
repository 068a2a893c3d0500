"""nnforge.compile on PyTorch and ONNX models: numerics against eager PyTorch
at each import level, dynamic batch, save/load, and every bad-input path.

Tolerance: f32 outputs within atol 1e-4, rtol 1e-4 of eager (different
summation orders over up to a few hundred terms).
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import models
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import nnforge
from nnforge.errors import CompileError, ExecutionError, InputError, ModelLoadError, UnsupportedOpError

LEVELS = ["tosa", "linalg", "nnf"]


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert isinstance(actual, torch.Tensor)
    np.testing.assert_allclose(actual.numpy(), expected.detach().numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("factory", ["mlp", "cnn", "transformer_layer"])
def test_torch_models_match_eager(factory: str, level: str) -> None:
    module, inputs = getattr(models, factory)()
    compiled = nnforge.compile(module, inputs, level=level)
    assert_close(compiled(*inputs), module(*inputs))


def test_dynamic_batch_accepts_any_batch() -> None:
    module, inputs, dynamic_shapes = models.dynamic_batch_mlp()
    compiled = nnforge.compile(module, inputs, dynamic_shapes=dynamic_shapes)
    assert compiled.signature.inputs[0].shape == (None, 32)
    for batch in (1, 7, 64):
        x = torch.randn(batch, 32)
        assert_close(compiled(x), module(x))


def test_numpy_in_numpy_out() -> None:
    module, (x,) = models.mlp()
    compiled = nnforge.compile(module, (x,))
    result = compiled(x.numpy())
    assert isinstance(result, np.ndarray)
    np.testing.assert_allclose(result, module(x).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_calls_reuse_their_argument_structures_not_their_results() -> None:
    """Each thread's calls fill in the same argument structures (runtime's
    _CallFrame): the results of earlier calls stay the caller's, and inputs
    that are not C-contiguous arrays of the right type are still converted
    or refused."""
    module, (x,) = models.mlp()
    compiled = nnforge.compile(module, (x,))
    inputs = [x.numpy(), (2 * x).numpy()]
    results = [compiled(array) for array in inputs]
    assert not np.shares_memory(*results) and all(result.flags.writeable for result in results)
    for array, result in zip(inputs, results):
        np.testing.assert_allclose(result, module(torch.from_numpy(array)).detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(compiled(np.asfortranarray(inputs[0])), results[0], rtol=1e-6)
    with pytest.raises(InputError, match="expected dtype float32"):
        compiled(inputs[0].astype(np.float64))


def test_save_and_load_without_the_compiler(tmp_path: Path) -> None:
    module, (x,) = models.cnn()
    path = nnforge.compile(module, (x,)).save(tmp_path / "cnn.so")
    np.save(tmp_path / "x.npy", x.numpy())
    # A fresh interpreter that loads the library must not import MLIR.
    script = (
        "import sys, numpy as np, nnforge\n"
        f"model = nnforge.load({str(path)!r})\n"
        f"y = model(np.load({str(tmp_path / 'x.npy')!r}))\n"
        "assert not [m for m in sys.modules if m == 'mlir' or m.startswith(('mlir.', 'torch'))]\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, y)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), module(x).detach().numpy(), rtol=1e-4, atol=1e-4)


class _ParallelWork(torch.nn.Module):
    """Ops large enough for the optimized code to share among threads."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(256, 512)
        self.norm = torch.nn.LayerNorm(512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.norm(torch.nn.functional.gelu(self.linear(x))), dim=-1)


def test_threads_run_in_parallel_and_save_with_the_openmp_entry_points(tmp_path: Path) -> None:
    """Multi-threaded code links nnforge's OpenMP entry points, not an OpenMP
    runtime (test_openmp.py: which one runs them); sequential code neither."""
    from nnforge import elf, openmp

    module, x = _ParallelWork().eval(), torch.randn(384, 256)
    parallel = nnforge.compile(module, (x,), dump_ir=tmp_path / "ir")
    sequential = nnforge.compile(module, (x,), threads=1)
    assert_close(parallel(x), module(x))
    assert_close(sequential(x), module(x))
    assert "omp.parallel" in next((tmp_path / "ir").glob("*-linalg-to-llvm.mlir")).read_text()

    path = parallel.save(tmp_path / "parallel.so")
    assert elf.needed(path) == elf.needed(sequential.save(tmp_path / "sequential.so"))
    assert hasattr(ctypes.CDLL(str(path)), openmp.BIND_SYMBOL)
    np.save(tmp_path / "x.npy", x.numpy())
    script = (
        "import numpy as np, nnforge\n"
        f"y = nnforge.load({str(path)!r})(np.load({str(tmp_path / 'x.npy')!r}))\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, y)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), module(x).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_steady_state_reuses_the_buffers_of_earlier_calls(tmp_path: Path) -> None:
    """Generated code allocates through nnforge's runtime, which hands the
    buffers one call freed to the next (no fresh pages per call), small ones
    per thread; results stay the caller's, released with libc's free."""
    import ctypes

    from nnforge._native import _native_file

    module, x = _ParallelWork().eval(), torch.randn(384, 256)
    compiled = nnforge.compile(module, (x,), dump_ir=tmp_path)
    lowered = next(tmp_path.glob("*-linalg-to-llvm.mlir")).read_text()
    assert "llvm.call @_mlir_memref_to_llvm_alloc" in lowered and "@malloc" not in lowered
    expected = module(x)
    for _ in range(3):
        assert_close(compiled(x), expected)
    # Callers on several threads share the cache (and the OpenMP runtime).
    with ThreadPoolExecutor(4) as pool:
        for result in pool.map(lambda _: compiled(x), range(16)):
            assert_close(result, expected)

    runtime = ctypes.CDLL(str(_native_file("libNNForgeRuntime.so")))
    alloc, free = runtime._mlir_memref_to_llvm_alloc, runtime._mlir_memref_to_llvm_free
    alloc.restype, alloc.argtypes, free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
    size = 5 << 20  # no buffer of the model above comes near
    first = alloc(size)
    free(first)
    assert alloc(size) == first  # reused
    free(first)
    assert alloc(size - 1000) == first  # a slightly smaller request fits it
    other = alloc(size)
    assert other != first  # the cached one is in use: a fresh buffer
    free(other)
    ctypes.CDLL(None).free(ctypes.c_void_p(first))  # libc's free takes it back

    # A tile's scratch (up to 64 KiB) goes back to a slot of the thread that
    # freed it: that thread gets it again, another thread does not. (Fresh
    # threads: this one's slots may hold the models' scratch.)
    small = 32 << 10

    def alloc_and_free() -> int:
        buffer = alloc(small)
        free(buffer)
        return buffer

    with ThreadPoolExecutor(1) as first_thread, ThreadPoolExecutor(1) as second_thread:
        mine = first_thread.submit(alloc_and_free).result()
        assert second_thread.submit(alloc_and_free).result() != mine
        assert first_thread.submit(alloc_and_free).result() == mine
    # Both threads have exited: their slots went back to libc.


class _MatmulChain(torch.nn.Module):
    """Three linear layers (each its own dispatch region and result buffer),
    each intermediate dead once the next one is computed."""

    def __init__(self) -> None:
        super().__init__()
        self.weights = torch.nn.ParameterList(torch.nn.Parameter(torch.randn(128, 128) / 12) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for weight in self.weights:
            x = torch.relu(x @ weight)
        return x


def test_intermediates_are_freed_after_their_last_use(tmp_path: Path) -> None:
    """The first intermediate goes back to the buffer cache before the last
    product allocates its result (upstream frees every buffer at the end of
    the function), and the reused memory gives the same results."""
    module, x = _MatmulChain().eval(), torch.randn(256, 128)
    compiled = nnforge.compile(module, (x,), dump_ir=tmp_path)
    lowered = next(tmp_path.glob("*-linalg-to-llvm.mlir")).read_text()
    main = lowered[lowered.index("llvm.func @main("):]
    first_free = main.index("llvm.call @_mlir_memref_to_llvm_free")
    assert first_free < main.rindex("llvm.call @_mlir_memref_to_llvm_alloc")
    expected = module(x)
    for _ in range(3):
        assert_close(compiled(x), expected)


@pytest.mark.parametrize("threads", [0, -2, 1.5])
def test_bad_thread_counts_are_rejected(threads) -> None:
    module, inputs = models.mlp()
    with pytest.raises(CompileError, match="threads"):
        nnforge.compile(module, inputs, threads=threads)


def _onnx_mlp(path: Path) -> Path:
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1, name="gemm"),
            helper.make_node("Relu", ["h"], ["y"], name="relu"),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [
            onnx.numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "w"),
            onnx.numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("level", LEVELS)
def test_onnx_model_matches_onnxruntime(tmp_path: Path, level: str) -> None:
    import onnxruntime

    path = _onnx_mlp(tmp_path / "mlp.onnx")
    compiled = nnforge.compile(path, level=level)
    assert [spec.name for spec in compiled.signature.inputs] == ["x"]
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    [expected] = onnxruntime.InferenceSession(str(path)).run(None, {"x": x})
    np.testing.assert_allclose(compiled(x), expected, rtol=1e-5, atol=1e-5)


def test_sort_scan_and_scatter_compile_through_torch_mlir_loops(caplog) -> None:
    """TopK, CumSum and ScatterElements become TMTensor ops in torch-mlir,
    which it lowers to loops on buffers before the hand-over; such a model
    has the naive lowering only, and the fallback says so (not a schedule's
    IndexError)."""
    import onnxruntime

    from nnforge.targets.cpu.target import NAIVE_LOWERING

    graph = helper.make_graph(
        [
            helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=1, name="topk"),
            helper.make_node("CumSum", ["values", "axis"], ["running"], name="cumsum"),
            helper.make_node("ScatterElements", ["x", "indices", "running"], ["y"], axis=1, name="scatter"),
        ],
        "sort_scan_scatter",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 6]),
         helper.make_tensor_value_info("indices", TensorProto.INT64, [3, 4])],
        [onnx.numpy_helper.from_array(np.array([4], np.int64), "k"),
         onnx.numpy_helper.from_array(np.array(1, np.int64), "axis")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    module = nnforge.import_onnx(model, level="linalg")
    assert "memref" in str(module) and "tm_tensor" not in str(module)
    with caplog.at_level("WARNING", logger="nnforge"):
        compiled = nnforge.compile(model)
    causes = [getattr(record, NAIVE_LOWERING) for record in caplog.records if hasattr(record, NAIVE_LOWERING)]
    assert len(causes) == 1 and "arrives on buffers" in causes[0], causes
    x = np.random.default_rng(2).permutation(18).reshape(3, 6).astype(np.float32)
    expected = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    for actual, wanted in zip(compiled(x), expected):
        np.testing.assert_array_equal(actual, wanted)
    with pytest.raises(CompileError, match="bufferized"):
        nnforge.compile(model, target="cuda")


class _Embedding(torch.nn.Module):
    def forward(self, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.embedding(index, table) * 2


def test_a_failed_runtime_check_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """torch-mlir checks embedding/gather indices at run time (cf.assert);
    out of range, the call raises ExecutionError and the process, and the
    model, go on."""
    table, index, bad_index = torch.randn(5, 3), torch.tensor([0, 4, 2]), torch.tensor([0, 7, 2])
    compiled = nnforge.compile(_Embedding(), (table, index))
    saved = nnforge.load(compiled.save(tmp_path / "embedding.so"))
    for model in (compiled, saved):
        with pytest.raises(ExecutionError, match="index must be smaller than dim size"):
            model(table, bad_index)
        assert_close(model(table, index), _Embedding()(table, index))


def test_wrong_inputs_name_what_is_wrong() -> None:
    module, (x,) = models.mlp()
    compiled = nnforge.compile(module, (x,))
    with pytest.raises(InputError, match="expected 1 inputs"):
        compiled(x, x)
    with pytest.raises(InputError, match="expected dtype float32"):
        compiled(x.double())
    with pytest.raises(InputError, match="expected rank 2"):
        compiled(x[0])
    with pytest.raises(InputError, match="dimension 1 must be 32"):
        compiled(torch.randn(4, 31))


def test_bad_models_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such file"):
        nnforge.compile(tmp_path / "missing.onnx")
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="garbage.onnx"):
        nnforge.compile(tmp_path / "garbage.onnx")
    with pytest.raises(ModelLoadError, match="example_inputs"):
        nnforge.compile(models.mlp()[0])
    with pytest.raises(ModelLoadError, match="not int"):
        nnforge.compile(3)
    with pytest.raises(CompileError, match="unknown target"):
        nnforge.compile(models.mlp()[0], models.mlp()[1], target="tpu")


def test_invalid_mlir_is_a_compile_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.mlir"
    path.write_text("func.func @main(%x: tensor<4xf32>) -> tensor<4xf32> { return %x : tensor<5xf32> }")
    with pytest.raises(CompileError, match="bad.mlir"):
        nnforge.compile(path)


INDEX_SWITCH = Path(__file__).parent / "index_switch.mlir"


@pytest.mark.parametrize("optimize", [True, "affine", False])
def test_index_switch_with_tensor_results_computes_each_case(optimize: bool | str) -> None:
    # index 0 -> x * 2, index 3 -> x + 1, any other -> x - 1; and x * 10.
    compiled = nnforge.compile(INDEX_SWITCH, optimize=optimize)
    x = np.array([1.0, -2.0, 3.5, 0.25], np.float32)
    expected = {0: x * 2, 3: x + 1, 1: x - 1, 7: x - 1}
    for which, branch in expected.items():
        switched, later = compiled(np.array(which, np.int64), x)
        np.testing.assert_array_equal(switched, branch)
        np.testing.assert_array_equal(later, x * 10)


def test_unsupported_op_is_named(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"], name="relu"),
         helper.make_node("NoSuchOp", ["h"], ["y"], name="mystery", domain="com.example")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    with pytest.raises(UnsupportedOpError, match="NoSuchOp") as error:
        nnforge.compile(model)
    assert "mystery" in str(error.value)


def test_dump_ir_writes_every_stage(tmp_path: Path) -> None:
    module, inputs = models.mlp()
    compiled = nnforge.compile(module, inputs, level="nnf", dump_ir=tmp_path)
    stages = sorted(path.name for path in tmp_path.glob("*.mlir"))
    assert stages[0] == "00-input-nnf.mlir" and "nnf.linear" in (tmp_path / stages[0]).read_text()
    expected = [name for name, _ in nnforge.pipelines.stages("nnf")]
    expected[-2:-2] = ["dispatch-regions", "vectorize"]  # the optimized code generation's steps
    assert [stage.split("-", 1)[1].removesuffix(".mlir") for stage in stages[1:]] == expected
    assert set(compiled.compile_times) >= {"import", "llvm"}
