"""ONNX forms torch-mlir converts but computes wrongly: rewritten exactly, or refused.

Each model here compiled and returned wrong numbers before (onnx's backend
tests listed them as "wrong values"); the oracle is onnx's reference
evaluator.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import nnforge
from nnforge.errors import UnsupportedOpError

FLOAT = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=(), opset: int = 22) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "form", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _value(name: str, element_type: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, element_type, shape)


def _check_against_reference(model: onnx.ModelProto, inputs: dict[str, np.ndarray], rtol=1e-5, atol=1e-6) -> None:
    expected = ReferenceEvaluator(model).run(None, inputs)
    compiled = nnforge.compile(model, threads=1)
    results = compiled(*[inputs[spec.name] for spec in compiled.signature.inputs])
    results = results if isinstance(results, list) else [results]
    for result, reference in zip(results, expected):
        np.testing.assert_allclose(result.astype(np.float64), np.asarray(reference).astype(np.float64),
                                   rtol=rtol, atol=atol)


RNG = np.random.default_rng(0)


def test_gelu_tanh_is_its_formula() -> None:
    # torch-mlir computed the erf form: 2e-3 off around x = -3.
    model = _model([helper.make_node("Gelu", ["x"], ["y"], approximate="tanh")],
                   [_value("x", FLOAT, [64])], [_value("y", FLOAT, [64])])
    _check_against_reference(model, {"x": np.linspace(-3, 3, 64, dtype=np.float32)}, rtol=1e-5, atol=1e-6)


def test_space_to_depth_crd() -> None:
    model = _model([helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2, mode="CRD")],
                   [_value("x", FLOAT, [1, 2, 4, 6])], [_value("y", FLOAT, [1, 8, 2, 3])],
                   opset=onnx.defs.onnx_opset_version())
    _check_against_reference(model, {"x": RNG.standard_normal((1, 2, 4, 6)).astype(np.float32)}, 0, 0)


def test_dequantize_per_axis() -> None:
    scale = numpy_helper.from_array(np.array([1.0, 0.5, 2.0], np.float32), "scale")
    zero = numpy_helper.from_array(np.array([3, 0, 250], np.uint8), "zero")
    model = _model([helper.make_node("DequantizeLinear", ["x", "scale", "zero"], ["y"], axis=1)],
                   [_value("x", TensorProto.UINT8, [2, 3, 4])], [_value("y", FLOAT, [2, 3, 4])], [scale, zero])
    x = RNG.integers(0, 256, (2, 3, 4)).astype(np.uint8)
    expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_array_equal(nnforge.compile(model, threads=1)(x), expected)


@pytest.mark.parametrize("element_type", [TensorProto.INT8, TensorProto.UINT8])
def test_qlinear_matmul_of_batches(element_type: int) -> None:
    dtype = helper.tensor_dtype_to_np_dtype(element_type)
    limits = np.iinfo(dtype)
    scalars = [numpy_helper.from_array(np.array([value], np.float32 if kind == "s" else dtype), name)
               for name, kind, value in (("a_scale", "s", 0.05), ("a_zero", "z", 3), ("b_scale", "s", 0.02),
                                         ("b_zero", "z", 5), ("y_scale", "s", 0.01), ("y_zero", "z", 7))]
    model = _model([helper.make_node("QLinearMatMul", ["a", "a_scale", "a_zero", "b", "b_scale", "b_zero",
                                                       "y_scale", "y_zero"], ["y"])],
                   [_value("a", element_type, [2, 3, 4]), _value("b", element_type, [2, 4, 5])],
                   [_value("y", element_type, [2, 3, 5])], scalars, opset=21)
    a = RNG.integers(limits.min, limits.max, (2, 3, 4)).astype(dtype)
    b = RNG.integers(limits.min, limits.max, (2, 4, 5)).astype(dtype)
    expected = ReferenceEvaluator(model).run(None, {"a": a, "b": b})[0]
    result = nnforge.compile(model, threads=1)(a, b)  # uint8 in and out: the model's own types
    assert result.dtype == dtype
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("source_type", [TensorProto.FLOAT16, FLOAT, TensorProto.DOUBLE])
def test_casts_from_floats_to_uint8_keep_the_top_half(source_type: int) -> None:
    # torch-mlir converts through int8's fptosi: 200.0 gave 127.
    values = np.array([0.0, 1.9, 100.0, 128.0, 200.0, 255.0], helper.tensor_dtype_to_np_dtype(source_type))
    model = _model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.UINT8)],
                   [_value("x", source_type, [6])], [_value("y", TensorProto.UINT8, [6])])
    expected = ReferenceEvaluator(model).run(None, {"x": values})[0]
    result = nnforge.compile(model, threads=1)(values)
    np.testing.assert_array_equal(result.view(expected.dtype), expected)


def test_pad_wrap_finishes_and_wraps() -> None:
    # torch-mlir's lowering never returned (killed at the time limit).
    pads = numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64), "pads")
    model = _model([helper.make_node("Pad", ["x", "pads"], ["y"], mode="wrap")],
                   [_value("x", TensorProto.INT32, [1, 3, 4, 5])], [_value("y", TensorProto.INT32, [1, 3, 7, 8])],
                   [pads])
    x = np.arange(60, dtype=np.int32).reshape(1, 3, 4, 5)
    np.testing.assert_array_equal(nnforge.compile(model, threads=1)(x),
                                  np.pad(x, [(0, 0), (0, 0), (1, 2), (2, 1)], mode="wrap"))


def test_weighted_softmax_cross_entropy_is_expanded() -> None:
    # torch-mlir's conversion returned inf.
    model = _model([helper.make_node("SoftmaxCrossEntropyLoss", ["x", "y", "w"], ["z"], reduction="mean")],
                   [_value("x", FLOAT, [3, 5]), _value("y", TensorProto.INT64, [3]), _value("w", FLOAT, [5])],
                   [_value("z", FLOAT, [])], opset=13)
    inputs = {"x": RNG.standard_normal((3, 5)).astype(np.float32), "y": np.array([0, 4, 2], np.int64),
              "w": RNG.random(5).astype(np.float32)}
    _check_against_reference(model, inputs)


def test_float16_products_accumulate_in_float32() -> None:
    model = _model([helper.make_node("MatMul", ["a", "b"], ["m"]), helper.make_node("Softmax", ["m"], ["y"])],
                   [_value("a", TensorProto.FLOAT16, [4, 64]), _value("b", TensorProto.FLOAT16, [64, 8])],
                   [_value("y", TensorProto.FLOAT16, [4, 8])])
    a = RNG.standard_normal((4, 64)).astype(np.float16)
    b = RNG.standard_normal((64, 8)).astype(np.float16)
    logits = a.astype(np.float32) @ b.astype(np.float32)
    exp = np.exp(logits.astype(np.float16).astype(np.float32) - logits.astype(np.float16).max(1, keepdims=True))
    expected = (exp / exp.sum(1, keepdims=True)).astype(np.float16)
    np.testing.assert_allclose(nnforge.compile(model, threads=1)(a, b).astype(np.float32),
                               expected.astype(np.float32), rtol=1e-3, atol=1e-4)


REFUSED = {
    "gridsample-nearest": (
        _model([helper.make_node("GridSample", ["x", "grid"], ["y"], mode="nearest", padding_mode="border")],
               [_value("x", FLOAT, [1, 1, 3, 2]), _value("grid", FLOAT, [1, 2, 4, 2])],
               [_value("y", FLOAT, [1, 1, 2, 4])]),
        "onnx.GridSample (mode=nearest, padding_mode=border)", "other neighbours"),
    "gridsample-zeros": (
        _model([helper.make_node("GridSample", ["x", "grid"], ["y"])],
               [_value("x", FLOAT, [1, 1, 3, 2]), _value("grid", FLOAT, [1, 2, 4, 2])],
               [_value("y", FLOAT, [1, 1, 2, 4])]),
        "onnx.GridSample", "uninitialized memory for grid points outside the input"),
    "lstm-peepholes": (
        _model([helper.make_node("LSTM", ["x", "w", "r", "", "", "", "", "p"], ["", "h"], hidden_size=3)],
               [_value("x", FLOAT, [1, 2, 4]), _value("w", FLOAT, [1, 12, 4]), _value("r", FLOAT, [1, 12, 3]),
                _value("p", FLOAT, [1, 9])], [_value("h", FLOAT, [1, 2, 3])]),
        "onnx.LSTM (hidden_size=3)", "ignores the peephole weights P"),
    "gru-sequence-lengths": (
        _model([helper.make_node("GRU", ["x", "w", "r", "", "lengths"], ["", "h"], hidden_size=3)],
               [_value("x", FLOAT, [2, 2, 4]), _value("w", FLOAT, [1, 9, 4]), _value("r", FLOAT, [1, 9, 3]),
                _value("lengths", TensorProto.INT32, [2])], [_value("h", FLOAT, [1, 2, 3])]),
        "onnx.GRU", "ignores sequence_lens"),
    "resize-align-corners": (
        _model([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear",
                                 coordinate_transformation_mode="align_corners")],
               [_value("x", FLOAT, [1, 1, 4, 4])], [_value("y", FLOAT, [1, 1, 2, 2])],
               [numpy_helper.from_array(np.array([1, 1, 0.6, 0.6], np.float32), "scales")], opset=19),
        "onnx.Resize (coordinate_transformation_mode=align_corners, mode=linear)", "not whole"),
    "split-to-sequence": (
        _model([helper.make_node("SplitToSequence", ["x", "split"], ["s"]),
                helper.make_node("SequenceLength", ["s"], ["n"])],
               [_value("x", FLOAT, [6]), _value("split", TensorProto.INT64, [3])],
               [_value("n", TensorProto.INT64, [])], opset=12),
        "onnx.SplitToSequence", "a split computed at run time"),
    "cast-uint4": (
        _model([helper.make_node("Cast", ["x"], ["y"], to=FLOAT)],
               [_value("x", TensorProto.UINT4, [4])], [_value("y", FLOAT, [4])]),
        "onnx.Cast (to=1)", "reads as signed"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_wrongly_computed_forms_are_refused_with_a_reason(case: str) -> None:
    model, kind, reason = REFUSED[case]
    with pytest.raises(UnsupportedOpError, match="forms torch-mlir would compute wrongly") as error:
        nnforge.import_onnx(model)
    assert kind in str(error.value) and reason in str(error.value)


def test_bernoulli_draws_ones_with_the_given_probability() -> None:
    # Its backend tests cannot pass (random draws); the distribution is checked instead.
    model = _model([helper.make_node("Bernoulli", ["p"], ["y"])], [_value("p", TensorProto.DOUBLE, [20000])],
                   [_value("y", TensorProto.DOUBLE, [20000])])
    compiled = nnforge.compile(model, threads=1)
    for probability in (0.0, 0.3, 1.0):
        draws = compiled(np.full(20000, probability))
        assert set(np.unique(draws)) <= {0.0, 1.0}
        assert abs(draws.mean() - probability) < 0.02


UINT8_TO_FLOAT = _model([helper.make_node("Cast", ["x"], ["y"], to=FLOAT)],
                        [_value("x", TensorProto.UINT8, [4])], [_value("y", FLOAT, [4])])


def test_unsigned_values_cast_at_the_tosa_level_are_refused() -> None:
    """TOSA has no unsigned integers: a uint8 200 would be cast to float as -56."""
    with pytest.raises(UnsupportedOpError, match="no unsigned integers") as error:
        nnforge.import_onnx(UINT8_TO_FLOAT, level="tosa")
    assert "onnx.Cast (to=1)" in str(error.value)
    x = np.array([1, 127, 128, 255], np.uint8)  # at linalg, computed as unsigned
    np.testing.assert_array_equal(nnforge.compile(UINT8_TO_FLOAT, threads=1)(x), x.astype(np.float32))
