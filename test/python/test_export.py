"""nnforge.export / `nnforge export`: PyTorch and ONNX models -> ONNX through TOSA, run by onnxruntime."""

from __future__ import annotations

from pathlib import Path

import models
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from mlir import ir

import nnforge
import nnforge.cli
from nnforge.errors import ArgumentError, UnsupportedOpError

SQUEEZENET = Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx"


def run_onnx(path: Path, *inputs: np.ndarray) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {spec.name: array for spec, array in zip(session.get_inputs(), inputs)})


def test_torch_cnn_matches_eager(tmp_path: Path) -> None:
    module, inputs = models.cnn()
    path = nnforge.export(module, tmp_path / "cnn.onnx", inputs)
    written = onnx.load(str(path))
    onnx.checker.check_model(written, full_check=True)
    assert written.opset_import[0].version >= 17
    assert [v.name for v in written.graph.input] == ["x"] and [v.name for v in written.graph.output] == ["output"]
    # The filters are initializers; the NCHW->NHWC->NCHW transposes around the convolutions cancel.
    assert {i.name for i in written.graph.initializer} >= {n.input[1] for n in written.graph.node if n.op_type == "Conv"}
    assert sum(n.op_type == "Transpose" for n in written.graph.node) < 2 * sum(n.op_type == "Conv" for n in written.graph.node)
    (got,) = run_onnx(path, inputs[0].numpy())
    np.testing.assert_allclose(got, module(*inputs).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_dynamic_batch_stays_dynamic(tmp_path: Path) -> None:
    module, inputs, dynamic_shapes = models.dynamic_batch_mlp()
    path = nnforge.export(module, tmp_path / "mlp.onnx", inputs, dynamic_shapes=dynamic_shapes)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value") and dims[1].dim_value == 32
    batch = torch.randn(7, 32)
    (got,) = run_onnx(path, batch.numpy())
    np.testing.assert_allclose(got, module(batch).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_large_weights_go_to_external_data(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(600, 600), torch.nn.ReLU()).eval()
    x = torch.randn(2, 600)
    path = nnforge.export(module, tmp_path / "big.onnx", (x,))
    assert (tmp_path / "big.onnx.data").stat().st_size >= 600 * 600 * 4
    assert path.stat().st_size < 100_000
    (got,) = run_onnx(path, x.numpy())
    np.testing.assert_allclose(got, module(x).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_onnx_model_keeps_names_and_values(tmp_path: Path) -> None:
    path = nnforge.export(SQUEEZENET, tmp_path / "squeezenet.onnx")
    source, written = onnx.load(str(SQUEEZENET)), onnx.load(str(path))
    initializers = {i.name for i in source.graph.initializer}
    assert [v.name for v in written.graph.input] == [v.name for v in source.graph.input if v.name not in initializers]
    assert [v.name for v in written.graph.output] == [v.name for v in source.graph.output]
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(path, x)[0], run_onnx(SQUEEZENET, x)[0], rtol=1e-4, atol=1e-6)


def test_unmapped_op_is_named_with_its_count(tmp_path: Path) -> None:
    module = ir.Module.parse("""
      func.func @main(%x: tensor<4xi32>) -> tensor<4xi32> {
        %0 = tosa.clz %x : (tensor<4xi32>) -> tensor<4xi32>
        %1 = tosa.clz %0 : (tensor<4xi32>) -> tensor<4xi32>
        %2 = tosa.add %0, %1 : (tensor<4xi32>, tensor<4xi32>) -> tensor<4xi32>
        return %2 : tensor<4xi32>
      }""", nnforge.context())
    with pytest.raises(UnsupportedOpError, match=r"tosa\.clz x2") as raised:
        nnforge.export(module, tmp_path / "clz.onnx")
    assert [op.kind for op in raised.value.ops] == ["tosa.clz"]
    assert not (tmp_path / "clz.onnx").exists()


def test_tosa_module_with_a_returned_input(tmp_path: Path) -> None:
    module = ir.Module.parse("""
      func.func @main(%x: tensor<2x3xf32>) -> (tensor<2x3xf32>, tensor<2x3xf32>) {
        %0 = tosa.exp %x : (tensor<2x3xf32>) -> tensor<2x3xf32>
        return %0, %x : tensor<2x3xf32>, tensor<2x3xf32>
      }""", nnforge.context())
    path = nnforge.export(module, tmp_path / "exp.onnx")
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 6
    exp, same = run_onnx(path, x)
    np.testing.assert_allclose(exp, np.exp(x), rtol=1e-6)
    np.testing.assert_array_equal(same, x)


def test_unknown_format(tmp_path: Path) -> None:
    module, inputs = models.mlp()
    with pytest.raises(ArgumentError, match="export format"):
        nnforge.export(module, tmp_path / "mlp.pb", inputs)


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "out.onnx"
    assert nnforge.cli.main(["export", str(SQUEEZENET), "-o", str(output)]) == 0
    assert "nnforge export: wrote" in capsys.readouterr().err
    onnx.checker.check_model(str(output), full_check=True)
    assert nnforge.cli.main(["export", str(SQUEEZENET), "-o", str(tmp_path / "out.txt")]) == 1
    assert "export format" in capsys.readouterr().err
