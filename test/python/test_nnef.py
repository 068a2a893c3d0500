"""NNEF out (nnforge.export to .nnef) and in (import_nnef, nnforge.compile, `nnforge compile`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import models
import nnef
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from mlir import ir

import nnforge
import nnforge.cli
from nnforge.errors import ModelLoadError, UnsupportedOpError

SQUEEZENET = Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx"


def write_nnef(folder: Path, text: str, tensors: dict[str, np.ndarray]) -> Path:
    folder.mkdir()
    (folder / "graph.nnef").write_text("version 1.0;\n" + textwrap.dedent(text))
    for label, array in tensors.items():
        with open(folder / f"{label}.dat", "wb") as stream:
            nnef.write_tensor(stream, array)
    return folder


def test_torch_cnn_through_nnef(tmp_path: Path) -> None:
    module, inputs = models.cnn()
    path = nnforge.export(module, tmp_path / "cnn.nnef", inputs)
    graph = nnef.load_graph(str(path))  # written and read back by the nnef package
    assert graph.inputs == ["x"] and graph.outputs == ["output"]
    assert {op.name for op in graph.operations} >= {"conv", "max_pool", "matmul", "variable"}
    compiled = nnforge.compile(path)
    np.testing.assert_allclose(compiled(inputs[0].numpy()), module(*inputs).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_onnx_to_nnef_and_back_to_onnx(tmp_path: Path) -> None:
    nnef_path = nnforge.export(SQUEEZENET, tmp_path / "squeezenet.nnef")
    onnx_path = nnforge.export(nnef_path, tmp_path / "squeezenet.onnx")
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    source = onnxruntime.InferenceSession(str(SQUEEZENET))
    back = onnxruntime.InferenceSession(str(onnx_path))
    name = source.get_inputs()[0].name
    assert [i.name for i in back.get_inputs()] == [name]
    np.testing.assert_allclose(back.run(None, {name: x})[0], source.run(None, {name: x})[0], rtol=1e-4, atol=1e-6)


def test_handwritten_nnef_compound_ops(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    weights = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    folder = write_nnef(tmp_path / "model.nnef", """
        graph G( input ) -> ( output )
        {
            input = external<scalar>(shape = [1, 3, 8, 8]);
            filter = variable<scalar>(shape = [4, 3, 3, 3], label = 'w');
            conv1 = conv(input, filter, 0.5, stride = [2, 2]);
            r = relu(conv1);
            p = avg_pool(r, size = [1, 1, 3, 3], padding = [(0, 0), (0, 0), (1, 1), (1, 1)], border = 'ignore');
            s = softmax(p, axes = [1]);
            output = reshape(s, shape = [1, -1]);
        }
        """, {"w": weights})
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    got = nnforge.compile(folder)(x)
    # The same in PyTorch: 'same' padding of a stride-2 convolution is (0, 1) per axis for size 8, kernel 3.
    conv = torch.nn.functional.conv2d(torch.nn.functional.pad(torch.from_numpy(x), (0, 1, 0, 1)),
                                      torch.from_numpy(weights), stride=2) + 0.5
    pooled = torch.nn.functional.avg_pool2d(torch.relu(conv), 3, stride=1, padding=1, count_include_pad=False)
    expected = torch.softmax(pooled, dim=1).reshape(1, -1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    module = nnforge.import_nnef(folder, level="tosa")
    assert "tosa.conv2d" in str(module)


def test_unlowered_nnef_op_is_named(tmp_path: Path) -> None:
    folder = write_nnef(tmp_path / "bad.nnef", """
        graph G( input ) -> ( output )
        {
            input = external<scalar>(shape = [1, 4]);
            a = sign(input);
            output = sign(a);
        }
        """, {})
    with pytest.raises(UnsupportedOpError, match=r"sign x2"):
        nnforge.import_nnef(folder)


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such"):
        nnforge.import_nnef(tmp_path / "nothing.nnef")


def test_exact_gelu_through_nnef(tmp_path: Path) -> None:
    module, inputs = models.mlp()  # exact GELU: TOSA's erf, which NNEF writes as a formula
    path = nnforge.export(module, tmp_path / "mlp.nnef", inputs)
    assert {"exp", "div", "select"} <= {op.name for op in nnef.load_graph(str(path)).operations}
    np.testing.assert_allclose(nnforge.compile(path)(inputs[0].numpy()), module(*inputs).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_unmapped_op_is_refused_before_writing(tmp_path: Path) -> None:
    module = ir.Module.parse("""
      func.func @main(%x: tensor<4xi32>) -> tensor<4xi32> {
        %0 = tosa.clz %x : (tensor<4xi32>) -> tensor<4xi32>
        %1 = tosa.clz %0 : (tensor<4xi32>) -> tensor<4xi32>
        return %1 : tensor<4xi32>
      }""", nnforge.context())
    with pytest.raises(UnsupportedOpError, match=r"tosa\.clz x2.*no NNEF op"):
        nnforge.export(module, tmp_path / "clz.nnef")
    assert not (tmp_path / "clz.nnef").exists()


def test_cli_export_and_compile_nnef(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "squeezenet.nnef"
    assert nnforge.cli.main(["export", str(SQUEEZENET), "-o", str(folder)]) == 0
    assert "tensor files" in capsys.readouterr().err
    assert nnforge.cli.main(["compile", str(folder), "-o", str(tmp_path / "squeezenet.so")]) == 0
    loaded = nnforge.load(tmp_path / "squeezenet.so")
    assert [spec.name for spec in loaded.signature.inputs] == nnef.load_graph(str(folder), load_variables=False).inputs


def small_onnx_cnn(path: Path) -> Path:
    """Conv, batch norm, ReLU, max pool, flatten, Gemm, softmax on a [1, 3, 8, 8] input."""
    rng = np.random.default_rng(6)
    weights = {"w": rng.standard_normal((4, 3, 3, 3)), "b": rng.standard_normal(4),
               "scale": rng.uniform(0.5, 1.5, 4), "shift": rng.standard_normal(4), "mean": rng.standard_normal(4),
               "var": rng.uniform(0.5, 1.5, 4), "fc": rng.standard_normal((3, 64)), "fc_b": rng.standard_normal(3)}
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["n"]),
         helper.make_node("Relu", ["n"], ["r"]),
         helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "fc", "fc_b"], ["g"], transB=1),
         helper.make_node("Softmax", ["g"], ["y"])], "cnn",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
        [onnx.numpy_helper.from_array(array.astype(np.float32), name) for name, array in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_nnef_tools_both_ways(tmp_path: Path) -> None:
    pytest.importorskip("nnef_tools")
    source = small_onnx_cnn(tmp_path / "cnn.onnx")
    x = np.random.default_rng(7).standard_normal((1, 3, 8, 8)).astype(np.float32)
    (expected,) = onnxruntime.InferenceSession(str(source)).run(None, {"x": x})

    def convert(source_format: str, target_format: str, model: Path, target: Path) -> Path:
        subprocess.run([sys.executable, "-m", "nnef_tools.convert", "--input-format", source_format,
                        "--output-format", target_format, "--input-model", str(model), "--output-model", str(target)],
                       check=True, capture_output=True)
        return target

    theirs = convert("onnx", "nnef", source, tmp_path / "theirs.nnef")  # NNEF's own converter, read by nnforge
    np.testing.assert_allclose(nnforge.compile(theirs)(x), expected, rtol=1e-5, atol=1e-6)
    ours = nnforge.export(source, tmp_path / "ours.nnef")  # nnforge's NNEF, read by nnef-tools
    back = onnxruntime.InferenceSession(str(convert("nnef", "onnx", ours, tmp_path / "back.onnx")))
    np.testing.assert_allclose(back.run(None, {back.get_inputs()[0].name: x})[0], expected, rtol=1e-5, atol=1e-6)


def test_ceil_mode_max_pool_padding_through_nnef(tmp_path: Path) -> None:
    module = ir.Module.parse("""
      func.func @main(%x: tensor<1x5x5x2xf32>) -> tensor<1x3x3x2xf32> {
        %padding = tosa.const_shape {values = dense<[0, 0, 0, 1, 0, 1, 0, 0]> : tensor<8xindex>} : () -> !tosa.shape<8>
        %fill = "tosa.const"() <{values = dense<0xFF800000> : tensor<1xf32>}> : () -> tensor<1xf32>
        %0 = tosa.pad %x, %padding, %fill : (tensor<1x5x5x2xf32>, !tosa.shape<8>, tensor<1xf32>) -> tensor<1x6x6x2xf32>
        %1 = tosa.max_pool2d %0 {kernel = array<i64: 2, 2>, pad = array<i64: 0, 0, 0, 0>, stride = array<i64: 2, 2>}
            : (tensor<1x6x6x2xf32>) -> tensor<1x3x3x2xf32>
        return %1 : tensor<1x3x3x2xf32>
      }""", nnforge.context())
    path = nnforge.export(module, tmp_path / "pool.nnef")  # NNEF has no -inf: the pad is the pool's padding
    assert "pad" not in {op.name for op in nnef.load_graph(str(path)).operations}
    x = np.random.default_rng(8).standard_normal((1, 5, 5, 2)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=-np.inf)
    expected = padded.reshape(1, 3, 2, 3, 2, 2).max(axis=(2, 4))
    np.testing.assert_array_equal(nnforge.compile(path)(x), expected)


def test_conv_bias_computed_in_the_graph(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    weights, bias = rng.standard_normal((4, 3, 1, 1)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    folder = write_nnef(tmp_path / "bias.nnef", """
        graph G( input ) -> ( output )
        {
            input = external<scalar>(shape = [1, 3, 2, 2]);
            filter = variable<scalar>(shape = [4, 3, 1, 1], label = 'w');
            b = variable<scalar>(shape = [4], label = 'b');
            bias = unsqueeze(b, axes = [0]);
            output = conv(input, filter, bias);
        }
        """, {"w": weights, "b": bias})  # nnef-tools hands biases over this way
    x = rng.standard_normal((1, 3, 2, 2)).astype(np.float32)
    expected = np.einsum("oi,nihw->nohw", weights[:, :, 0, 0], x) + bias.reshape(1, 4, 1, 1)
    np.testing.assert_allclose(nnforge.compile(folder)(x), expected, rtol=1e-5, atol=1e-6)
