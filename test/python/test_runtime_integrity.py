"""Saved and JIT-compiled models against damaged files, shared result buffers and odd inputs.

Cases that used to kill the process run in a child process, so that a
regression fails the test instead of ending the test run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import nnforge
from nnforge import artifact, elf
from nnforge.errors import InputError, ModelLoadError, SaveError
from nnforge.runtime import Signature


def run_child(code: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs Python `code` in a child process; its result (the process may crash)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


class Twice(torch.nn.Module):
    """Returns one tensor twice: both results share one buffer."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.relu(x) * 2
        return y, y


@pytest.fixture(scope="module")
def linear_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = torch.nn.Linear(8, 4)
    compiled = nnforge.compile(model, (torch.randn(2, 8),), threads=1)
    return compiled.save(tmp_path_factory.mktemp("so") / "linear.so")


def test_outputs_sharing_a_buffer_are_freed_once() -> None:
    # Both results are the same tensor; freeing the buffer twice aborted the process.
    child = run_child("""
        import gc, sys, tempfile, numpy as np, torch, nnforge
        sys.path.insert(0, %r)
        from test_runtime_integrity import Twice
        compiled = nnforge.compile(Twice(), (torch.randn(4, 8),), threads=1)
        x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
        for executable in (compiled, nnforge.load(compiled.save(tempfile.mkdtemp() + "/twice.so"))):
            for _ in range(3):
                a, b = executable(x)
                np.testing.assert_allclose(a, np.maximum(x, 0) * 2)
                np.testing.assert_array_equal(a, b)
                del a
                gc.collect()
                np.testing.assert_allclose(b, np.maximum(x, 0) * 2)  # still valid
                del b
                gc.collect()
        print("done")
    """ % str(Path(__file__).parent))
    assert child.returncode == 0 and "done" in child.stdout, child.stderr[-2000:]


class SharedAliasedWeighted(torch.nn.Module):
    """Results sharing a buffer, one that is an input, weights in a weights file (64 KiB)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(64, 256)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z = self.linear(x)
        return z, z, y, torch.relu(y)


def test_static_calls_match_calls_and_keep_result_buffers() -> None:
    """runtime.StaticCall (descriptors laid out once, data addresses per
    call) returns what a checked call returns, as DLPack capsules; a result
    buffer the code allocated is the tensor's memory (shared where the model
    returns one tensor twice), an input returned is a copy; freeing them is
    safe, in any order."""
    child = run_child("""
        import gc, sys, numpy as np, torch, nnforge
        from nnforge.errors import InputError
        from nnforge.runtime import StaticCall
        sys.path.insert(0, %r)
        from test_runtime_integrity import SharedAliasedWeighted
        torch.manual_seed(0)
        x, y = torch.randn(4, 64), torch.randn(3)
        compiled = nnforge.compile(SharedAliasedWeighted().eval(), (x, y))
        assert compiled._weights, "the weights are meant to come from a weights file"
        call = StaticCall(compiled, [x, y])
        for _ in range(3):
            x, y = torch.randn(4, 64), torch.randn(3)
            results = [torch.from_dlpack(capsule) for capsule in call([x.data_ptr(), y.data_ptr()])]
            expected = compiled(x, y)
            assert len(results) == len(expected) == 4
            for result, reference in zip(results, expected):
                assert result.dtype == reference.dtype and result.shape == reference.shape
                torch.testing.assert_close(result, reference, rtol=0, atol=0)
            assert results[0].data_ptr() == results[1].data_ptr()
            assert results[2].data_ptr() != y.data_ptr()
            del results[0]
            gc.collect()
            torch.testing.assert_close(results[0], expected[1], rtol=0, atol=0)  # still valid
            del results, expected
            gc.collect()
        try:
            StaticCall(compiled, [x.double(), y])
        except InputError as error:
            print("refused:", error)
        import models
        module, inputs, dynamic_shapes = models.dynamic_batch_mlp()
        dynamic = nnforge.compile(module, inputs, dynamic_shapes=dynamic_shapes)
        try:
            StaticCall(dynamic, inputs)
        except InputError as error:
            print("refused:", error)
        print("done")
    """ % str(Path(__file__).parent))
    assert child.returncode == 0 and "done" in child.stdout, child.stderr[-2000:]
    assert "refused: input 0" in child.stdout
    assert "refused: a static call needs static shapes" in child.stdout and "?x32xf32" in child.stdout


def test_onnx_outputs_of_identical_nodes_share_one_buffer() -> None:
    # Three outputs computed by identical nodes (merged by CSE): aborted inside the call.
    child = run_child("""
        import gc, numpy as np, nnforge
        from onnx import TensorProto, helper
        nodes = [helper.make_node("Relu", ["x"], [f"y{i}"]) for i in range(3)]
        graph = helper.make_graph(nodes, "three", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                                  [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [4, 8]) for i in range(3)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
        for threads in (1, None):
            results = nnforge.compile(model, threads=threads)(x)
            for result in results:
                np.testing.assert_array_equal(result, np.maximum(x, 0))
            del results
            gc.collect()
        print("done")
    """)
    assert child.returncode == 0 and "done" in child.stdout, child.stderr[-2000:]


def test_saved_library_carries_a_digest(linear_library: Path) -> None:
    data = linear_library.read_bytes()
    assert data[-artifact.TRAILER_SIZE:].startswith(artifact.MAGIC)
    assert artifact.check(linear_library)[:] == data  # mapped, not read into memory


@pytest.mark.parametrize("damage", ["flip", "truncate", "append", "trailer", "strip_digest", "empty"])
def test_damaged_library_is_refused_before_loading(linear_library: Path, tmp_path: Path, damage: str) -> None:
    data = bytearray(linear_library.read_bytes())
    if damage == "flip":  # 16 bytes in the code: dlopen itself segfaulted on such files
        data[5000:5016] = bytes(b ^ 0xFF for b in data[5000:5016])
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "append":
        data += b"\0" * 64
    elif damage == "trailer":
        data[-1] ^= 1
    elif damage == "strip_digest":
        data = data[: -artifact.TRAILER_SIZE]
    else:
        data = bytearray()
    damaged = tmp_path / "damaged.so"
    damaged.write_bytes(bytes(data))
    message = "not a model saved by nnforge" if damage in ("truncate", "strip_digest", "empty", "append") \
        else "is damaged"
    with pytest.raises(ModelLoadError, match=message):
        nnforge.load(damaged)


def _loaded_library(soname: str) -> Path:
    """The file of a system library this process has loaded (numpy loads libm)."""
    with open("/proc/self/maps") as maps:
        return next(Path(line.split()[-1]) for line in maps if line.rstrip().endswith("/" + soname))


def test_foreign_library_is_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "libm.so"
    foreign.write_bytes(_loaded_library("libm.so.6").read_bytes())
    with pytest.raises(ModelLoadError, match="not a model saved by nnforge"):
        nnforge.load(foreign)


@pytest.mark.parametrize("size", [0, 3, 0x20, 0x40, 200])
def test_truncated_elf_is_an_elf_error(linear_library: Path, tmp_path: Path, size: int) -> None:
    # struct.error and IndexError escaped from elf.py for such files.
    truncated = tmp_path / "truncated.so"
    truncated.write_bytes(linear_library.read_bytes()[:size])
    with pytest.raises(elf.ElfError):
        elf.needed(truncated)


def test_damaged_embedded_signature_is_a_model_load_error() -> None:
    for text in ("{", "[]", '{"entry": "main"}', '{"entry": "f", "inputs": [{"name": 1}], "outputs": []}'):
        with pytest.raises(ValueError, match="not a signature"):
            Signature.from_json(text)


@pytest.mark.parametrize("path", [None, 3, b"model.so"])
def test_load_takes_paths_only(path: object) -> None:
    with pytest.raises(ModelLoadError, match="takes the path of a saved model"):
        nnforge.load(path)


def test_load_names_what_is_wrong_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a file"):
        nnforge.load(tmp_path)
    with pytest.raises(ModelLoadError, match="no such file"):
        nnforge.load(tmp_path / "missing.so")
    with pytest.raises(ModelLoadError, match="cannot be read"):
        nnforge.load("model\0.so")


def test_save_refuses_folders_and_unwritable_places(tmp_path: Path) -> None:
    compiled = nnforge.compile(torch.nn.Linear(4, 2), (torch.randn(1, 4),), threads=1)
    with pytest.raises(SaveError, match="it is a folder"):
        compiled.save(tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written into it
    with pytest.raises(SaveError, match="cannot save the model as /proc/nnforge.so"):
        compiled.save("/proc/nnforge.so")
    with pytest.raises(SaveError, match="not NoneType"):
        compiled.save(None)
    with pytest.raises(SaveError, match="cannot hold a NUL"):
        compiled.save(str(tmp_path / "a\0.so"))


def test_inputs_without_data_are_input_errors() -> None:
    compiled = nnforge.compile(torch.nn.Linear(4, 2), (torch.randn(1, 4),), threads=1)
    with pytest.raises(InputError, match="input 0 .*cannot be read as an array"):
        compiled(torch.randn(1, 4, device="meta"))
    with pytest.raises(InputError, match="cannot be read as an array"):
        compiled([[1.0, 2.0], [3.0]])


def test_module_with_meta_parameters_is_a_model_load_error() -> None:
    # Was an UnsupportedOpError blaming ops ("FX importer: Cannot copy out of meta tensor").
    with pytest.raises(ModelLoadError, match="its weight is on the meta device"):
        nnforge.compile(torch.nn.Linear(3, 4).to("meta"), (torch.randn(2, 3, device="meta"),), threads=1)


def test_unknown_level_is_an_argument_error() -> None:
    module = torch.nn.Linear(4, 2)
    for call in (lambda: nnforge.compile(module, (torch.randn(1, 4),), level="bogus"),
                 lambda: nnforge.compile(module, (torch.randn(1, 4),), level="torch"),
                 lambda: nnforge.import_torch(module, (torch.randn(1, 4),), level="bogus")):
        with pytest.raises(nnforge.ArgumentError, match="unknown level"):
            call()


def test_dump_ir_into_a_file_is_a_save_error(tmp_path: Path) -> None:
    existing = tmp_path / "ir.txt"
    existing.write_text("")
    with pytest.raises(SaveError, match="it is a file, not a folder"):
        nnforge.compile(torch.nn.Linear(4, 2), (torch.randn(1, 4),), dump_ir=existing)
    for wrong in (3, str(tmp_path / "a\0b")):
        with pytest.raises(nnforge.ArgumentError, match="dump_ir takes the path of a folder"):
            nnforge.compile(torch.nn.Linear(4, 2), (torch.randn(1, 4),), dump_ir=wrong)


def test_threads_compile_pytorch_modules_at_once() -> None:
    # torch.export is not thread-safe: both compilations failed with
    # "ProxyTorchDispatchMode slot already set".
    import threading

    results: dict[int, object] = {}

    def compile_one(index: int) -> None:
        try:
            module = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())
            x = torch.randn(2, 8)
            compiled = nnforge.compile(module, (x,), threads=1)
            results[index] = bool(torch.allclose(compiled(x), module(x), atol=1e-5))
        except Exception as error:  # reported below
            results[index] = error

    threads = [threading.Thread(target=compile_one, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {0: True, 1: True, 2: True}


def test_i3_matmul_compiles_and_computes_modulo_8() -> None:
    # linalg.matmul over i3 aborted the process in finalize-memref-to-llvm.
    from mlir import ir

    source = """
    #map = affine_map<(d0, d1) -> (d0, d1)>
    func.func @main(%a: tensor<4x8xi8>, %b: tensor<8x5xi8>) -> tensor<4x5xi8> {
      %ea = tensor.empty() : tensor<4x8xi3>
      %eb = tensor.empty() : tensor<8x5xi3>
      %a3 = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]}
          ins(%a : tensor<4x8xi8>) outs(%ea : tensor<4x8xi3>) {
        ^bb0(%x: i8, %o: i3):
          %t = arith.trunci %x : i8 to i3
          linalg.yield %t : i3
      } -> tensor<4x8xi3>
      %b3 = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]}
          ins(%b : tensor<8x5xi8>) outs(%eb : tensor<8x5xi3>) {
        ^bb0(%x: i8, %o: i3):
          %t = arith.trunci %x : i8 to i3
          linalg.yield %t : i3
      } -> tensor<8x5xi3>
      %zero = arith.constant 0 : i3
      %e = tensor.empty() : tensor<4x5xi3>
      %f = linalg.fill ins(%zero : i3) outs(%e : tensor<4x5xi3>) -> tensor<4x5xi3>
      %p = linalg.matmul ins(%a3, %b3 : tensor<4x8xi3>, tensor<8x5xi3>) outs(%f : tensor<4x5xi3>) -> tensor<4x5xi3>
      %er = tensor.empty() : tensor<4x5xi8>
      %r = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]}
          ins(%p : tensor<4x5xi3>) outs(%er : tensor<4x5xi8>) {
        ^bb0(%x: i3, %o: i8):
          %t = arith.extui %x : i3 to i8
          linalg.yield %t : i8
      } -> tensor<4x5xi8>
      return %r : tensor<4x5xi8>
    }
    """
    rng = np.random.default_rng(0)
    a = rng.integers(-100, 100, (4, 8)).astype(np.int8)
    b = rng.integers(-100, 100, (8, 5)).astype(np.int8)
    expected = ((a.astype(np.int64) % 8) @ (b.astype(np.int64) % 8)) % 8
    for optimize in (False, True):
        compiled = nnforge.compile(ir.Module.parse(source, nnforge.context()), optimize=optimize, threads=1)
        np.testing.assert_array_equal(compiled(a, b), expected.astype(np.int8))


def test_mlir_text_that_crashes_the_parser_is_a_compile_error(tmp_path: Path) -> None:
    # linalg.broadcast's parser aborts on `dimensions = [nan]` (found by test/fuzz): parsed in a child first.
    path = tmp_path / "broadcast.mlir"
    path.write_text(
        "func.func @main(%b: tensor<3xf32>) -> tensor<2x3xf32> {\n"
        "  %e = tensor.empty() : tensor<2x3xf32>\n"
        "  %r = linalg.broadcast ins(%b : tensor<3xf32>) outs(%e : tensor<2x3xf32>) dimensions = [nan]\n"
        "  return %r : tensor<2x3xf32>\n}\n")
    child = run_child(f"""
        import nnforge
        try:
            nnforge.compile({str(path)!r})
        except nnforge.CompileError as error:
            print("refused:", error)
    """)
    assert child.returncode == 0, child.stderr
    assert "does not parse" in child.stdout and "SIGABRT" in child.stdout


@pytest.mark.parametrize("index", [2, -7])
def test_dim_of_a_dimension_past_the_rank_is_a_compile_error(tmp_path: Path, index: int) -> None:
    # Valid IR on which upstream's folders assert, in-process (found by test/fuzz).
    path = tmp_path / "dim.mlir"
    path.write_text(
        "func.func @main(%x: tensor<?x5xf32>) -> index {\n"
        f"  %c = arith.constant {index} : index\n"
        "  %n = tensor.dim %x, %c : tensor<?x5xf32>\n"
        "  return %n : index\n}\n")
    child = run_child(f"""
        import nnforge
        try:
            nnforge.compile({str(path)!r})
        except nnforge.CompileError as error:
            print("refused:", error)
    """)
    assert child.returncode == 0, child.stderr
    assert f"takes dimension {index} of a rank-2 value" in child.stdout


def test_unverified_module_that_crashes_the_verifier_is_a_compile_error(tmp_path: Path) -> None:
    # A module edited through the Python bindings is never verified; upstream's
    # linalg verifier aborts on a dilation of 2**63 - 1 (found by test/fuzz).
    child = run_child("""
        import numpy as np
        import nnforge
        from mlir import ir

        source = '''
        func.func @main(%x: tensor<1x2x6x6xf32>, %w: tensor<3x2x3x3xf32>) -> tensor<1x3x4x4xf32> {
          %zero = arith.constant 0.0 : f32
          %e = tensor.empty() : tensor<1x3x4x4xf32>
          %f = linalg.fill ins(%zero : f32) outs(%e : tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32>
          %c = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
              ins(%x, %w : tensor<1x2x6x6xf32>, tensor<3x2x3x3xf32>) outs(%f : tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32>
          return %c : tensor<1x3x4x4xf32>
        }'''
        with nnforge.context(), ir.Location.unknown():
            module = ir.Module.parse(source)
            function = module.body.operations[0]
            conv = [op for op in function.regions[0].blocks[0].operations if op.name.startswith("linalg.conv")][0]
            conv.attributes["dilations"] = ir.DenseElementsAttr.get(np.array([2**63 - 1] * 2, dtype=np.int64))
        try:
            nnforge.compile(module, threads=1)
        except nnforge.CompileError as error:
            print("refused:", error)
    """)
    assert child.returncode == 0, child.stderr
    assert "the MLIR module does not parse" in child.stdout and "SIGABRT" in child.stdout
