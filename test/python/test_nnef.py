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



class _TokensAndPositions(torch.nn.Module):
    """Token embeddings plus position embeddings: an int64 constant (the positions) beside int64 inputs."""

    def __init__(self):
        super().__init__()
        self.tokens, self.positions = torch.nn.Embedding(50, 8), torch.nn.Embedding(16, 8)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tokens(tokens) + self.positions(torch.arange(tokens.shape[1]))


def test_integer_constants_and_inputs_through_nnef(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module, tokens = _TokensAndPositions().eval(), torch.randint(0, 50, (2, 16))
    path = nnforge.export(module, tmp_path / "tokens.nnef", (tokens,))
    compiled = nnforge.compile(path)  # NNEF's "integer" is read as i32
    with torch.no_grad():
        np.testing.assert_allclose(compiled(tokens.numpy().astype(np.int32)), module(tokens).numpy(), rtol=1e-6)

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


def test_ceil_mode_max_pool_padding_of_nchw_through_nnef(tmp_path: Path) -> None:
    # torch-mlir's ONNX import pads the NCHW tensor, then transposes it to NHWC for the pool (alexnet).
    module = ir.Module.parse("""
      func.func @main(%x: tensor<1x2x5x5xf32>) -> tensor<1x3x3x2xf32> {
        %padding = tosa.const_shape {values = dense<[0, 0, 0, 0, 0, 1, 0, 1]> : tensor<8xindex>} : () -> !tosa.shape<8>
        %fill = "tosa.const"() <{values = dense<0xFF800000> : tensor<1xf32>}> : () -> tensor<1xf32>
        %0 = tosa.pad %x, %padding, %fill : (tensor<1x2x5x5xf32>, !tosa.shape<8>, tensor<1xf32>) -> tensor<1x2x6x6xf32>
        %1 = tosa.transpose %0 {perms = array<i32: 0, 2, 3, 1>} : (tensor<1x2x6x6xf32>) -> tensor<1x6x6x2xf32>
        %2 = tosa.max_pool2d %1 {kernel = array<i64: 2, 2>, pad = array<i64: 0, 0, 0, 0>, stride = array<i64: 2, 2>}
            : (tensor<1x6x6x2xf32>) -> tensor<1x3x3x2xf32>
        return %2 : tensor<1x3x3x2xf32>
      }""", nnforge.context())
    path = nnforge.export(module, tmp_path / "pool.nnef")
    assert "pad" not in {op.name for op in nnef.load_graph(str(path)).operations}
    x = np.random.default_rng(8).standard_normal((1, 2, 5, 5)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=-np.inf).transpose(0, 2, 3, 1)
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


def test_local_response_normalization_as_box(tmp_path: Path) -> None:
    # The nnef package lowers LRN to box (nnef-tools' NNEF of ONNX's LRN): a window sum over channels.
    folder = write_nnef(tmp_path / "lrn.nnef", """
        graph G( input ) -> ( output )
        {
            input = external<scalar>(shape = [1, 6, 3, 2]);
            output = local_response_normalization(input, size = [1, 5, 1, 1], alpha = 0.0001, beta = 0.75, bias = 2.0);
        }
        """, {})
    x = np.random.default_rng(10).standard_normal((1, 6, 3, 2)).astype(np.float32) * 10
    expected = torch.nn.functional.local_response_norm(torch.from_numpy(x), 5, alpha=1e-4, beta=0.75, k=2.0)
    np.testing.assert_allclose(nnforge.compile(folder)(x), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_box_borders_and_dilation(tmp_path: Path) -> None:
    # border 'ignore' normalizes by the count of input elements in each window; 'constant' by the window's size.
    folder = write_nnef(tmp_path / "box.nnef", """
        graph G( input ) -> ( ignored, constant, summed )
        {
            input = external<scalar>(shape = [2, 5, 4]);
            ignored = box(input, size = [1, 3, 2], border = 'ignore', padding = [(0, 0), (1, 1), (1, 0)],
                          normalize = true);
            constant = box(input, size = [1, 3, 2], padding = [(0, 0), (1, 1), (1, 0)], normalize = true);
            summed = box(input, size = [2, 2, 1], dilation = [1, 2, 1], padding = [(0, 1), (0, 0), (0, 0)]);
        }
        """, {})
    x = np.random.default_rng(11).standard_normal((2, 5, 4)).astype(np.float32)
    padded = np.pad(x, [(0, 0), (1, 1), (1, 0)])
    window_sum = sum(padded[:, i:i + 5, j:j + 4] for i in range(3) for j in range(2))
    ones = np.pad(np.ones_like(x), [(0, 0), (1, 1), (1, 0)])
    count = sum(ones[:, i:i + 5, j:j + 4] for i in range(3) for j in range(2))
    dilated = np.pad(x, [(0, 1), (0, 0), (0, 0)])
    summed = sum(dilated[i:i + 2, 2 * j:2 * j + 3] for i in range(2) for j in range(2))
    ignored, constant, got_sum = nnforge.compile(folder)(x)
    np.testing.assert_allclose(ignored, window_sum / count, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(constant, window_sum / 6, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_sum, summed, rtol=1e-5, atol=1e-6)


def test_strided_box_is_refused(tmp_path: Path) -> None:
    folder = write_nnef(tmp_path / "box.nnef", """
        graph G( input ) -> ( output )
        {
            input = external<scalar>(shape = [1, 4, 4]);
            output = box(input, size = [1, 2, 2], stride = [1, 2, 2]);
        }
        """, {})
    with pytest.raises(UnsupportedOpError, match=r"box x1.*a strided box"):
        nnforge.import_nnef(folder)


def test_casts_round_gather_and_logical_reductions(tmp_path: Path) -> None:
    folder = write_nnef(tmp_path / "casts.nnef", """
        graph G( input, index ) -> ( truncated, rounded, flags, taken, every, some )
        {
            input = external<scalar>(shape = [2, 6]);
            index = external<integer>(shape = [3]);
            truncated = cast<integer>(input);
            rounded = round(input);
            flags = cast<scalar>(gt(input, 0.0));
            taken = gather(input, index, axis = 1);
            every = all_reduce(gt(input, -2.0), axes = [1]);
            some = any_reduce(gt(input, 2.0), axes = [0, 1]);
        }
        """, {})
    x = np.array([[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5], [0.49999997, -0.7, 3.2, -3.7, 8388609.0, 7.0]], np.float32)
    index = np.array([5, -6, 2], np.int32)
    truncated, rounded, flags, taken, every, some = nnforge.compile(folder)(x, index)
    np.testing.assert_array_equal(truncated, np.trunc(x).astype(np.int32))
    np.testing.assert_array_equal(rounded, np.round(x))  # ties to even, as onnx's Round
    np.testing.assert_array_equal(flags, (x > 0).astype(np.float32))
    np.testing.assert_array_equal(taken, np.take(x, index, axis=1))
    np.testing.assert_array_equal(every, np.all(x > -2, axis=1, keepdims=True))
    np.testing.assert_array_equal(some, np.any(x > 2, axis=(0, 1), keepdims=True))


def test_logical_reduction_gather_and_casts_to_nnef(tmp_path: Path) -> None:
    module = ir.Module.parse("""
      func.func @main(%x: tensor<2x3xf32>, %table: tensor<2x4x3xf32>, %i: tensor<2x5xi32>)
          -> (tensor<2x1xi1>, tensor<2x3xi32>, tensor<2x3xf32>, tensor<2x5x3xf32>) {
        %zero = "tosa.const"() <{values = dense<0.0> : tensor<1x1xf32>}> : () -> tensor<1x1xf32>
        %positive = tosa.greater %x, %zero : (tensor<2x3xf32>, tensor<1x1xf32>) -> tensor<2x3xi1>
        %all = tosa.reduce_all %positive {axis = 1 : i32} : (tensor<2x3xi1>) -> tensor<2x1xi1>
        %int = tosa.cast %x : (tensor<2x3xf32>) -> tensor<2x3xi32>
        %float = tosa.cast %positive : (tensor<2x3xi1>) -> tensor<2x3xf32>
        %rows = tosa.gather %table, %i : (tensor<2x4x3xf32>, tensor<2x5xi32>) -> tensor<2x5x3xf32>
        return %all, %int, %float, %rows : tensor<2x1xi1>, tensor<2x3xi32>, tensor<2x3xf32>, tensor<2x5x3xf32>
      }""", nnforge.context())
    path = nnforge.export(module, tmp_path / "m.nnef")
    kinds = {op.name for op in nnef.load_graph(str(path)).operations}
    assert {"all_reduce", "cast", "round", "gather"} <= kinds
    rng = np.random.default_rng(12)
    x = np.array([[0.5, 1.5, 2.5], [-0.5, -2.5, 3.7]], np.float32)
    table = rng.standard_normal((2, 4, 3)).astype(np.float32)
    i = rng.integers(0, 4, (2, 5)).astype(np.int32)
    every, integers, flags, rows = nnforge.compile(path)(x, table, i)
    np.testing.assert_array_equal(every, np.all(x > 0, axis=1, keepdims=True))
    np.testing.assert_array_equal(integers, np.round(x).astype(np.int32))  # TOSA's cast rounds to nearest even
    np.testing.assert_array_equal(flags, (x > 0).astype(np.float32))
    np.testing.assert_array_equal(rows, np.take_along_axis(table, i[:, :, None], axis=1))


def test_transformer_layer_through_nnef(tmp_path: Path) -> None:
    # Attention's mask handling: tosa.reduce_all over an equality with -inf (an infinite constant as a variable).
    module, inputs = models.transformer_layer()
    path = nnforge.export(module, tmp_path / "layer.nnef", inputs)
    assert "all_reduce" in {op.name for op in nnef.load_graph(str(path)).operations}
    with torch.no_grad():
        expected = module(*inputs).numpy()
    np.testing.assert_allclose(nnforge.compile(path)(*[i.numpy() for i in inputs]), expected, rtol=1e-4, atol=1e-5)


def test_grouped_conv_floor_mode_and_flat_batch_norm_parameters(tmp_path: Path) -> None:
    # As nnef-tools writes ONNX models: a 2-group convolution whose padding no window fully uses (224 + 3 + 3
    # with a 7x7 kernel at stride 2 leaves a row: TOSA takes none), a max pool likewise, and batch-norm
    # parameters shaped [1, 1, 1, 1, C] (NNEF's broadcasting alone would not align them with the channels).
    rng = np.random.default_rng(13)
    weights = rng.standard_normal((6, 2, 7, 7)).astype(np.float32)
    bias = rng.standard_normal((1, 6)).astype(np.float32)
    mean, variance = rng.standard_normal((1, 1, 1, 1, 6)).astype(np.float32), rng.uniform(0.5, 2, (1, 1, 1, 1, 6))
    folder = write_nnef(tmp_path / "groups.nnef", """
        graph G( input ) -> ( output )
        {
            input = external<scalar>(shape = [1, 4, 12, 11]);
            filter = variable<scalar>(shape = [6, 2, 7, 7], label = 'w');
            bias = variable<scalar>(shape = [1, 6], label = 'b');
            mean = variable<scalar>(shape = [1, 1, 1, 1, 6], label = 'mean');
            variance = variable<scalar>(shape = [1, 1, 1, 1, 6], label = 'variance');
            conv1 = conv(input, filter, bias, padding = [(3, 3), (3, 3)], stride = [2, 2], groups = 2);
            pooled = max_pool(conv1, size = [1, 1, 2, 2], stride = [1, 1, 2, 2], padding = [(0, 0), (0, 0), (0, 1), (0, 1)],
                              border = 'ignore');
            output = batch_normalization(pooled, mean, variance, 0.5, 2.0, epsilon = 0.001);
        }
        """, {"w": weights, "b": bias, "mean": mean, "variance": variance.astype(np.float32)})
    x = rng.standard_normal((1, 4, 12, 11)).astype(np.float32)
    conv = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weights), torch.from_numpy(bias[0]),
                                      stride=2, padding=3, groups=2)
    pooled = torch.nn.functional.max_pool2d(torch.nn.functional.pad(conv, (0, 1, 0, 1), value=-np.inf), 2)
    channels = (1, 6, 1, 1)
    expected = 0.5 + 2.0 * (pooled.numpy() - mean.reshape(channels)) / np.sqrt(variance.reshape(channels) + 0.001)
    np.testing.assert_allclose(nnforge.compile(folder)(x), expected, rtol=1e-4, atol=1e-5)
