"""nnforge.export / `nnforge export`: PyTorch and ONNX models -> ONNX through TOSA, run by onnxruntime."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
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


def test_scatter_shift_and_run_time_bias(tmp_path: Path) -> None:
    module = ir.Module.parse("""
      func.func @main(%values: tensor<2x5x3xf32>, %indices: tensor<2x2xi32>, %updates: tensor<2x2x3xf32>,
                      %x: tensor<4xi32>, %y: tensor<4xi32>, %image: tensor<1x4x4x2xf32>, %bias: tensor<2xf32>)
          -> (tensor<2x5x3xf32>, tensor<4xi32>, tensor<4xi32>, tensor<1x4x4x2xf32>) {
        %0 = tosa.scatter %values, %indices, %updates
            : (tensor<2x5x3xf32>, tensor<2x2xi32>, tensor<2x2x3xf32>) -> tensor<2x5x3xf32>
        %1 = tosa.arithmetic_right_shift %x, %y {round = false} : (tensor<4xi32>, tensor<4xi32>) -> tensor<4xi32>
        %2 = tosa.arithmetic_right_shift %x, %y {round = true} : (tensor<4xi32>, tensor<4xi32>) -> tensor<4xi32>
        %w = "tosa.const"() <{values = dense<[[[[2.0], [3.0]]]]> : tensor<1x1x2x1xf32>}> : () -> tensor<1x1x2x1xf32>
        %zp = "tosa.const"() <{values = dense<0.0> : tensor<1xf32>}> : () -> tensor<1xf32>
        %3 = tosa.depthwise_conv2d %image, %w, %bias, %zp, %zp {acc_type = f32, dilation = array<i64: 1, 1>,
            pad = array<i64: 0, 0, 0, 0>, stride = array<i64: 1, 1>}
            : (tensor<1x4x4x2xf32>, tensor<1x1x2x1xf32>, tensor<2xf32>, tensor<1xf32>, tensor<1xf32>) -> tensor<1x4x4x2xf32>
        return %0, %1, %2, %3 : tensor<2x5x3xf32>, tensor<4xi32>, tensor<4xi32>, tensor<1x4x4x2xf32>
      }""", nnforge.context())
    path = nnforge.export(module, tmp_path / "ops.onnx")
    rng = np.random.default_rng(3)
    values, updates = rng.standard_normal((2, 5, 3), np.float32), rng.standard_normal((2, 2, 3), np.float32)
    indices = np.array([[4, 0], [1, 3]], np.int32)
    x, y = np.array([-7, 7, -2**31, 2**31 - 1], np.int32), np.array([1, 2, 3, 31], np.int32)
    image, bias = rng.standard_normal((1, 4, 4, 2), np.float32), np.array([0.5, -1.0], np.float32)
    scattered, shifted, rounded, convolved = run_onnx(path, values, indices, updates, x, y, image, bias)
    expected = values.copy()
    for n in range(2):
        expected[n, indices[n]] = updates[n]
    np.testing.assert_array_equal(scattered, expected)
    np.testing.assert_array_equal(shifted, x >> y)
    np.testing.assert_array_equal(rounded, (x.astype(np.int64) + (1 << (y - 1))) >> y)
    np.testing.assert_allclose(convolved, image * np.array([2.0, 3.0], np.float32) + bias, rtol=1e-6)


def test_unsigned_inputs_and_outputs_keep_their_type(tmp_path: Path) -> None:
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("BitwiseXor", ["a", "b"], ["c"])], "xor",
        [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.UINT32, [4]) for name in ("a", "b")],
        [onnx.helper.make_tensor_value_info("c", onnx.TensorProto.UINT32, [4])])
    source = tmp_path / "xor.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]), str(source))
    path = nnforge.export(source, tmp_path / "out.onnx")
    written = onnx.load(str(path)).graph
    assert {v.type.tensor_type.elem_type for v in [*written.input, *written.output]} == {onnx.TensorProto.UINT32}
    a, b = np.array([0, 1, 2**31, 2**32 - 1], np.uint32), np.array([3, 2**31 + 5, 7, 1], np.uint32)
    np.testing.assert_array_equal(run_onnx(path, a, b)[0], a ^ b)


def test_lrn_is_decomposed_for_the_tosa_level(tmp_path: Path) -> None:
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("LRN", ["x"], ["y"], size=3, alpha=0.02, beta=0.75, bias=2.0)], "lrn",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 5, 3, 3])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 5, 3, 3])])
    source = tmp_path / "lrn.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(source))
    path = nnforge.export(source, tmp_path / "out.onnx")
    assert "LRN" not in {node.op_type for node in onnx.load(str(path)).graph.node}
    x = np.random.default_rng(4).standard_normal((1, 5, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(path, x)[0], run_onnx(source, x)[0], rtol=1e-5, atol=1e-6)


def test_bfloat16_arithmetic_runs_in_onnxruntime(tmp_path: Path) -> None:
    module = ir.Module.parse("""
      func.func @main(%x: tensor<4xf32>) -> tensor<4xf32> {
        %0 = tosa.cast %x : (tensor<4xf32>) -> tensor<4xbf16>
        %1 = tosa.exp %0 : (tensor<4xbf16>) -> tensor<4xbf16>
        %2 = tosa.add %1, %0 : (tensor<4xbf16>, tensor<4xbf16>) -> tensor<4xbf16>
        %3 = tosa.cast %2 : (tensor<4xbf16>) -> tensor<4xf32>
        return %3 : tensor<4xf32>
      }""", nnforge.context())
    path = nnforge.export(module, tmp_path / "bf16.onnx")
    x = np.array([-1.0, 0.0, 0.5, 2.0], np.float32)
    (got,) = run_onnx(path, x)  # onnxruntime's CPU kernels have no bfloat16 Exp or Add
    rounded = x.astype(ml_dtypes.bfloat16).astype(np.float32)
    np.testing.assert_allclose(got, np.exp(rounded) + rounded, rtol=1e-2)


def test_constants_of_narrow_floats_are_read_element_by_element(tmp_path: Path) -> None:
    # The bindings give no buffer of bf16 or float8 elements: they are read from the printed attribute.
    module = ir.Module.parse("""
      func.func @main(%x: tensor<4xf32>) -> tensor<4xf32> {
        %c = "tosa.const"() <{values = dense<[1.0, -2.5, 0x7FC0, 3.0e+10]> : tensor<4xbf16>}> : () -> tensor<4xbf16>
        %0 = tosa.cast %c : (tensor<4xbf16>) -> tensor<4xf32>
        %1 = tosa.add %x, %0 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
        return %1 : tensor<4xf32>
      }""", nnforge.context())
    path = nnforge.export(module, tmp_path / "bf16_constant.onnx")
    x = np.ones(4, np.float32)
    (got,) = run_onnx(path, x)
    constant = np.array([1.0, -2.5, np.nan, 3.0e10], np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)
    np.testing.assert_array_equal(got, x + constant)


def test_masks_of_constants_are_folded(tmp_path: Path) -> None:
    module = ir.Module.parse("""
      func.func @main(%x: tensor<4x3xf32>) -> tensor<4x3xf32> {
        %rows = "tosa.const"() <{values = dense<[0, 1, 2, 3]> : tensor<4xi32>}> : () -> tensor<4xi32>
        %columns = "tosa.const"() <{values = dense<[[0, 1, 2]]> : tensor<1x3xi32>}> : () -> tensor<1x3xi32>
        %shape = tosa.const_shape {values = dense<[4, 1]> : tensor<2xindex>} : () -> !tosa.shape<2>
        %r = tosa.reshape %rows, %shape : (tensor<4xi32>, !tosa.shape<2>) -> tensor<4x1xi32>
        %below = tosa.greater_equal %r, %columns : (tensor<4x1xi32>, tensor<1x3xi32>) -> tensor<4x3xi1>
        %zero = "tosa.const"() <{values = dense<0.0> : tensor<1x1xf32>}> : () -> tensor<1x1xf32>
        %0 = tosa.select %below, %x, %zero : (tensor<4x3xi1>, tensor<4x3xf32>, tensor<1x1xf32>) -> tensor<4x3xf32>
        return %0 : tensor<4x3xf32>
      }""", nnforge.context())
    path = nnforge.export(module, tmp_path / "mask.onnx")
    assert [node.op_type for node in onnx.load(str(path)).graph.node] == ["Where"]
    x = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    (got,) = run_onnx(path, x)
    np.testing.assert_array_equal(got, np.tril(x))


def _onnx_model(path: Path, nodes: list, inputs: list, outputs: list, constants: dict | None = None) -> Path:
    graph = onnx.helper.make_graph(
        nodes, "model", [onnx.helper.make_tensor_value_info(*value) for value in inputs],
        [onnx.helper.make_tensor_value_info(*value) for value in outputs],
        [onnx.numpy_helper.from_array(array, name) for name, array in (constants or {}).items()])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)]), str(path))
    return path


@pytest.mark.parametrize("saturate", [1, 0])
def test_float8_casts_saturate_as_the_source_says(saturate: int, tmp_path: Path) -> None:
    """A cast to float8 saturates by default (out of range: the largest finite value), or, with
    saturate=0, gives NaN (float8e4m3fn has no infinity). (torch-mlir converts CastLike to float8,
    not Cast.)"""
    source = _onnx_model(tmp_path / "cast.onnx", [
        onnx.helper.make_node("CastLike", ["x", "like"], ["narrow"], saturate=saturate),
        onnx.helper.make_node("Cast", ["narrow"], ["y"], to=onnx.TensorProto.FLOAT),
    ], [("x", onnx.TensorProto.FLOAT, [5])], [("y", onnx.TensorProto.FLOAT, [5])],
        {"like": np.zeros(0, ml_dtypes.float8_e4m3fn)})
    path = nnforge.export(source, tmp_path / "out.onnx")
    x = np.array([np.inf, -np.inf, 1000.0, -1000.0, 1.0], np.float32)
    (got,) = run_onnx(path, x)
    big = 448.0 if saturate else np.nan
    np.testing.assert_array_equal(got, np.array([big, -big, big, -big, 1.0], np.float32))


def test_python_modulo_of_infinite_divisors(tmp_path: Path) -> None:
    """Mod with fmod=0 takes the divisor's sign, as Python's %: -3 % inf is inf, 3 % inf is 3."""
    source = _onnx_model(tmp_path / "mod.onnx", [onnx.helper.make_node("Mod", ["x", "y"], ["z"], fmod=0)],
                                [("x", onnx.TensorProto.FLOAT, [8]), ("y", onnx.TensorProto.FLOAT, [8])],
                                [("z", onnx.TensorProto.FLOAT, [8])])
    path = nnforge.export(source, tmp_path / "out.onnx")
    x = np.array([-3.0, 3.0, -1.0, 1.0, 0.0, 5.5, -5.5, np.inf], np.float32)
    y = np.array([np.inf, np.inf, -np.inf, -np.inf, np.inf, 2.0, 2.0, np.inf], np.float32)
    (got,) = run_onnx(path, x, y)
    np.testing.assert_array_equal(got, np.array([np.inf, 3.0, -1.0, -np.inf, 0.0, 1.5, 0.5, np.nan], np.float32))


@pytest.mark.parametrize("op_type,dtype", [("Max", np.int16), ("Min", np.int8)])
def test_extrema_of_narrow_integers_run_in_onnxruntime(op_type: str, dtype: type, tmp_path: Path) -> None:
    """onnxruntime's CPU Max and Min lack 8- and 16-bit integers: computed in int32, cast back."""
    kind = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    source = _onnx_model(tmp_path / "extremum.onnx", [onnx.helper.make_node(op_type, ["x", "y"], ["z"])],
                         [("x", kind, [4]), ("y", kind, [4])], [("z", kind, [4])])
    path = nnforge.export(source, tmp_path / "out.onnx")
    info = np.iinfo(dtype)
    x = np.array([info.min, 3, info.max, 0], dtype)
    y = np.array([info.max, 2, info.min, 0], dtype)
    (got,) = run_onnx(path, x, y)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, np.maximum(x, y) if op_type == "Max" else np.minimum(x, y))


@pytest.mark.parametrize("element,dtype", [("i8", np.int8), ("i32", np.int32)])
def test_left_shifts_of_signed_integers_past_the_width_are_zero(element: str, dtype: type, tmp_path: Path) -> None:
    module = ir.Module.parse(f"""
      func.func @main(%x: tensor<5x{element}>, %y: tensor<5x{element}>) -> tensor<5x{element}> {{
        %0 = tosa.logical_left_shift %x, %y : (tensor<5x{element}>, tensor<5x{element}>) -> tensor<5x{element}>
        return %0 : tensor<5x{element}>
      }}""", nnforge.context())
    path = nnforge.export(module, tmp_path / "shift.onnx")
    width = 8 * np.dtype(dtype).itemsize
    x = np.array([-8, 3, -1, 5, 1], dtype)
    y = np.array([1, 2, width - 1, width, width + 3], dtype)
    (got,) = run_onnx(path, x, y)
    expected = [np.array(-16, dtype), np.array(12, dtype), np.array(np.iinfo(dtype).min, dtype), 0, 0]
    np.testing.assert_array_equal(got, np.array(expected, dtype))


@pytest.mark.parametrize("element, result, dtype", [("i8", "i32", np.int8), ("i32", "i64", np.int32),
                                                   ("f16", "f32", np.float16)])
def test_widening_matmuls_are_exact(element: str, result: str, dtype: type, tmp_path: Path) -> None:
    zero = "0.0" if element == "f16" else "0"
    module = ir.Module.parse(f"""
      func.func @main(%a: tensor<1x2x3x{element}>, %b: tensor<1x3x2x{element}>) -> tensor<1x2x2x{result}> {{
        %zero = "tosa.const"() <{{values = dense<{zero}> : tensor<1x{element}>}}> : () -> tensor<1x{element}>
        %0 = tosa.matmul %a, %b, %zero, %zero : (tensor<1x2x3x{element}>, tensor<1x3x2x{element}>, tensor<1x{element}>,
                                                tensor<1x{element}>) -> tensor<1x2x2x{result}>
        return %0 : tensor<1x2x2x{result}>
      }}""", nnforge.context())
    path = nnforge.export(module, tmp_path / "matmul.onnx")
    a = np.array([[[100, -100, 7], [1, 2, 3]]], dtype)
    b = np.array([[[100, 1], [-100, 2], [5, 3]]], dtype)
    (got,) = run_onnx(path, a, b)
    np.testing.assert_array_equal(got, a.astype(np.float64 if element == "f16" else np.int64)
                                  @ b.astype(np.float64 if element == "f16" else np.int64))


@pytest.mark.parametrize("element, dtype, x, y", [
    ("i32", np.int32, [-8, 4, -1, 64, -(2 ** 30) - 5, 2 ** 30 + 7], [-1, -32, 1, 3, 29, 40]),
    ("i64", np.int64, [-8, 4, -1, 64, -(2 ** 62) - 5, 2 ** 62 + 7], [-1, -64, 1, 3, 61, 70]),
])
def test_arithmetic_right_shifts_fill_with_the_sign(element: str, dtype: type, x: list, y: list,
                                                    tmp_path: Path) -> None:
    # A shift that is negative or not below the width fills with the sign, as one of width - 1 does.
    module = ir.Module.parse(f"""
      func.func @main(%x: tensor<6x{element}>, %y: tensor<6x{element}>) -> tensor<6x{element}> {{
        %0 = tosa.arithmetic_right_shift %x, %y {{round = false}} : (tensor<6x{element}>, tensor<6x{element}>)
             -> tensor<6x{element}>
        return %0 : tensor<6x{element}>
      }}""", nnforge.context())
    path = nnforge.export(module, tmp_path / "shift.onnx")
    x, y = np.array(x, dtype), np.array(y, dtype)
    (got,) = run_onnx(path, x, y)
    width = 8 * np.dtype(dtype).itemsize
    np.testing.assert_array_equal(got, np.right_shift(x, np.where((y < 0) | (y >= width), width - 1, y)))
