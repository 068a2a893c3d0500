"""Weights outside the code: PyTorch weights beside the module through the
hand-over, large constants out of the LLVM module into a weights file that
compiled and loaded models map, checked at load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import nnforge
from nnforge import weights
from nnforge.errors import ModelLoadError, SaveError
from nnforge.importers import torch_frontend, weight_arguments
from nnforge.runtime import numpy_dtype


def _mlp(d: int = 64) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)).eval(), (torch.randn(8, d),)


def _expected(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    with torch.no_grad():
        return model(*inputs).numpy()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    model, inputs = _mlp()
    compiled = nnforge.compile(model, inputs)
    path = compiled.save(tmp_path_factory.mktemp("saved") / "model.so")
    return path, inputs[0].numpy(), _expected(model, inputs)


def test_torch_weights_never_reach_torch_mlir() -> None:
    model, inputs = _mlp(128)
    program, what = torch_frontend.export_decomposed(model, inputs)
    module, arrays = torch_frontend.import_to_torch_mlir(program, what, weights_as_arguments=True)
    # The 256 KiB matrices travel aside; the biases (2 KiB, 512 B) stay literals.
    assert sorted(array.shape for array in arrays) == [(128, 512), (512, 128)]
    assert len(str(module)) < sum(array.nbytes for array in arrays) / 10


def test_imported_weights_are_the_tensors_themselves() -> None:
    model, inputs = _mlp(128)
    module = nnforge.import_torch(model, inputs, level="linalg")
    text = str(module)
    assert f"dense_resource<{weight_arguments.RESOURCE_PREFIX}0>" in text
    # One input: the weights are no arguments any more.
    assert "func.func @main(%arg0: tensor<8x128xf32>)" in text


def test_compiled_code_takes_large_constants_from_a_weights_file(tmp_path: Path) -> None:
    model, inputs = _mlp(128)
    compiled = nnforge.compile(model, inputs, dump_ir=tmp_path)
    np.testing.assert_allclose(compiled(inputs[0].numpy()), _expected(model, inputs), rtol=1e-5, atol=1e-5)
    lowered = next(tmp_path.glob("*-linalg-to-llvm.mlir")).read_text()
    assert len(lowered) < 256 * 1024  # the 2 x 256 KiB of weights are not in it
    assert sum(spec.nbytes for spec in compiled._model_weights.manifest.tensors) >= 2 * 128 * 512 * 4


def test_saved_model_keeps_its_weights_beside_the_library(saved) -> None:
    path, x, expected = saved
    weights_path = weights.path_for(path)
    assert weights_path == path.with_suffix(".weights")
    assert weights_path.stat().st_size > 2 * 64 * 256 * 4  # both matrices
    assert path.stat().st_size < weights_path.stat().st_size
    np.testing.assert_allclose(nnforge.load(path)(x), expected, rtol=1e-5, atol=1e-5)


def test_loaded_weights_are_mapped_read_only(saved) -> None:
    path, _, _ = saved
    loaded = nnforge.load(path)
    assert loaded._weights and all(not array.flags.writeable for array in loaded._weights)


def test_missing_weights_file_is_named(saved, tmp_path: Path) -> None:
    path, _, _ = saved
    alone = tmp_path / "alone.so"
    alone.write_bytes(path.read_bytes())
    with pytest.raises(ModelLoadError, match=r"alone\.weights: no such file"):
        nnforge.load(alone)


def _copy_pair(path: Path, folder: Path) -> Path:
    copy = folder / "copy.so"
    copy.write_bytes(path.read_bytes())
    weights.path_for(copy).write_bytes(weights.path_for(path).read_bytes())
    return copy


def test_damaged_weights_are_refused(saved, tmp_path: Path) -> None:
    copy = _copy_pair(saved[0], tmp_path)
    data = bytearray(weights.path_for(copy).read_bytes())
    data[-100] ^= 0x40
    weights.path_for(copy).write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="damaged"):
        nnforge.load(copy)


@pytest.mark.parametrize("change", ["truncated", "other model"])
def test_foreign_or_truncated_weights_are_refused(saved, tmp_path: Path, change: str) -> None:
    copy = _copy_pair(saved[0], tmp_path)
    if change == "truncated":
        data = weights.path_for(copy).read_bytes()
        weights.path_for(copy).write_bytes(data[: len(data) - 4096])
    else:
        model, inputs = _mlp(32 + 64)
        other = nnforge.compile(model, inputs).save(tmp_path / "other.so")
        weights.path_for(copy).write_bytes(weights.path_for(other).read_bytes())
    with pytest.raises(ModelLoadError, match="does not hold the weights its library expects"):
        nnforge.load(copy)


def test_library_named_like_its_weights_is_a_save_error(tmp_path: Path) -> None:
    model, inputs = _mlp()
    with pytest.raises(SaveError, match="suffix .weights"):
        nnforge.compile(model, inputs).save(tmp_path / "model.weights")


def test_weights_file_round_trip(tmp_path: Path) -> None:
    arrays = [np.arange(5000, dtype=np.float32).reshape(50, 100), np.arange(7, dtype=np.int64)]
    manifest = weights.write(
        tmp_path / "w.weights",
        [(f"w{i}", dtype, a.shape, memoryview(a).cast("B")) for i, (a, dtype) in enumerate(zip(arrays, ["f32", "i64"]))],
    )
    assert weights.Manifest.from_json(manifest.to_json()) == manifest
    assert all(spec.offset % weights.ALIGNMENT == 0 for spec in manifest.tensors)
    mapped = weights.MappedWeights(tmp_path / "w.weights", manifest, numpy_dtype)
    for got, want in zip(mapped.arrays, arrays):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="not a weights manifest"):
        weights.Manifest.from_json(json.dumps({"tensors": [{"name": "x"}]}))


def test_models_without_large_constants_have_no_weights_file(tmp_path: Path) -> None:
    model = nn.Linear(4, 4).eval()
    path = nnforge.compile(model, (torch.randn(2, 4),)).save(tmp_path / "small.so")
    assert not weights.path_for(path).exists()
    assert nnforge.load(path)._weights == []


def _onnx_mlp(folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """An ONNX MLP saved with its weights as external data; (path, input, expected output)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((64, 256)).astype(np.float32)
    w2 = rng.standard_normal((256, 64)).astype(np.float32)
    bias = rng.standard_normal(64).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["m"]), helper.make_node("Add", ["m", "bias"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 64])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "mlp.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="mlp.bin", size_threshold=1024)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    return path, x, np.maximum(x @ w1, 0) @ w2 + bias


def test_onnx_external_data_is_mapped_not_read(tmp_path: Path) -> None:
    from nnforge.importers import onnx_frontend

    path, _, _ = _onnx_mlp(tmp_path)
    proto, what = onnx_frontend.load_model(path)
    arrays = onnx_frontend.weights_aside(proto, tmp_path, what)
    assert [array.shape for array in arrays] == [(64, 256), (256, 64)]
    assert all(isinstance(array, np.memmap) for array in arrays)
    assert [value.name for value in proto.graph.input] == ["x", "w1", "w2"]
    assert [tensor.name for tensor in proto.graph.initializer] == ["bias"]  # 256 bytes: stays


def test_onnx_model_with_external_data_compiles_and_saves(tmp_path: Path) -> None:
    path, x, expected = _onnx_mlp(tmp_path)
    compiled = nnforge.compile(path)
    np.testing.assert_allclose(compiled(x), expected, rtol=1e-4, atol=1e-4)
    saved = compiled.save(tmp_path / "out" / "mlp.so")
    assert weights.path_for(saved).exists()
    np.testing.assert_allclose(nnforge.load(saved)(x), expected, rtol=1e-4, atol=1e-4)


def test_returned_weight_is_copied_not_freed() -> None:
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Parameter(torch.arange(64 * 128, dtype=torch.float32).reshape(64, 128))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x + 1, self.table

    model = Constant().eval()
    compiled = nnforge.compile(model, (torch.zeros(4),))
    for _ in range(3):
        _, table = compiled(np.zeros(4, np.float32))
        np.testing.assert_array_equal(table, model.table.detach().numpy())


def test_digest_written_is_the_digest_read(tmp_path: Path) -> None:
    # Chunks of the streamed digest cut across weights and their padding.
    arrays = [np.full(3 * 1024 * 1024 + 5, i, np.uint8) for i in range(22)]
    manifest = weights.write(tmp_path / "w.weights", [(f"w{i}", "ui8", a.shape, memoryview(a)) for i, a in enumerate(arrays)])
    mapped = weights.MappedWeights(tmp_path / "w.weights", manifest, numpy_dtype)  # verifies the digest
    assert mapped.arrays[-1][0] == 21 and manifest.data_size > 64 << 20


def _small_chunks_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> weights.Manifest:
    """A weights file of many digest chunks (4 KiB here), weights and padding cutting across them."""
    monkeypatch.setattr(weights, "_CHUNK", 4096)
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, 5 * 4096 + 77, np.uint8), np.zeros(3 * 4096 + 1, np.uint8)]
    return weights.write(path, [(f"w{i}", "ui8", a.shape, memoryview(a)) for i, a in enumerate(arrays)])


def test_digest_changes_with_any_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = _small_chunks_file(tmp_path / "w.weights", monkeypatch)
    data = bytearray((tmp_path / "w.weights").read_bytes()[-manifest.data_size:])
    assert weights._digest([memoryview(data)]) == manifest.digest
    for position in range(len(data)):  # every byte, weights and padding alike
        data[position] ^= 1 << position % 8
        assert weights._digest([memoryview(data)]) != manifest.digest, position
        data[position] ^= 1 << position % 8


def test_mapped_file_with_a_flipped_bit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.weights"
    manifest = _small_chunks_file(path, monkeypatch)
    original = path.read_bytes()
    start = len(original) - manifest.data_size
    weights.MappedWeights(path, manifest, numpy_dtype)  # intact: loads
    for position in [0, 4095, 4096, 5 * 4096 + 76, 5 * 4096 + 100, manifest.data_size - 1]:
        damaged = bytearray(original)
        damaged[start + position] ^= 0x80
        path.write_bytes(damaged)
        with pytest.raises(ModelLoadError, match="damaged"):
            weights.MappedWeights(path, manifest, numpy_dtype)
    for position in [0, 20, start - 100, start - 1]:  # the header, its padding
        damaged = bytearray(original)
        damaged[position] ^= 0x01
        path.write_bytes(damaged)
        with pytest.raises(ModelLoadError, match="does not hold the weights its library expects"):
            weights.MappedWeights(path, manifest, numpy_dtype)


def test_manifest_with_an_older_digest_is_refused(tmp_path: Path) -> None:
    array = np.arange(100, dtype=np.uint8)
    manifest = weights.write(tmp_path / "w.weights", [("w", "ui8", array.shape, memoryview(array))])
    older = weights.Manifest(manifest.tensors, manifest.data_size, "0" * 64)  # a bare SHA-256
    with pytest.raises(ModelLoadError, match="older nnforge"):
        weights.MappedWeights(tmp_path / "w.weights", older, numpy_dtype)


def test_embedding_tied_to_the_output_projection_is_stored_once() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(4096, 128)  # 2 MiB: packed for the projection
            self.head = nn.Linear(128, 4096, bias=False)
            self.head.weight = self.embedding.weight

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(torch.tanh(self.embedding(ids)))

    torch.manual_seed(0)
    model, ids = Tied().eval(), torch.tensor([[0, 5, 4095, 31, 32, 1000]])
    compiled = nnforge.compile(model, (ids,))
    np.testing.assert_allclose(compiled(ids.numpy()), _expected(model, (ids,)), rtol=1e-5, atol=1e-5)
    table = 4096 * 128 * 4
    assert table <= compiled._model_weights.manifest.data_size < 2 * table


# In a child: the MLP d -> 4d -> d compiled, the growth of its resident
# memory (peak over start) through the stage packing the weights.
_PACKING_GROWTH = """
import contextlib, json, sys
import numpy as np, torch
from torch import nn
import nnforge
from nnforge import stages

def status(key):
    with open("/proc/self/status") as stream:
        return next(int(line.split()[1]) * 1024 for line in stream if line.startswith(key))

grown = {}
original = stages.StageRunner.stage

@contextlib.contextmanager
def stage(self, name):
    if name == "dispatch-regions":
        with open("/proc/self/clear_refs", "w") as stream:
            stream.write("5")  # the peak (VmHWM) restarts from here
        start = status("VmRSS")
    with original(self, name):
        yield
    if name == "dispatch-regions":
        grown["bytes"] = status("VmHWM") - start

stages.StageRunner.stage = stage
d = int(sys.argv[1])
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)).eval()
x = torch.randn(8, d)
with torch.no_grad():
    expected = model(x).numpy()
got = nnforge.compile(model, (x,))(x.numpy())
print(json.dumps({"grown": grown["bytes"],
                  "error": float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux: resets the peak resident memory")
def test_transposed_weights_are_freed_before_their_panels_are_written() -> None:
    # Each weight 64 MiB, transposed (linalg-fusion), then packed
    # (dispatch-regions) from the model's own tensor once its transposed copy
    # is freed: packing adds no memory (it added a weight's 64 MiB while the
    # transposed copies were all alive).
    d = 2048
    child = subprocess.run([sys.executable, "-c", _PACKING_GROWTH, str(d)], capture_output=True, text=True)
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["error"] < 1e-5
    assert report["grown"] < (d * 4 * d * 4) // 4, report
