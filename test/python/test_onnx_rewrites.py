"""ONNX rewrites into forms torch-mlir converts (nnforge.importers.onnx_rewrites).

Each model is compiled with nnforge and checked against onnxruntime on the
same inputs; the rewritten op must be gone from the imported graph.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import nnforge
from nnforge.errors import UnsupportedOpError
from nnforge.importers import onnx_frontend


def model(nodes, inputs, outputs, constants=(), opset=22):
    graph = helper.make_graph(
        nodes, "rewritten",
        [helper.make_tensor_value_info(name, dtype, shape) for name, dtype, shape in inputs],
        [helper.make_tensor_value_info(name, dtype, shape) for name, dtype, shape in outputs],
        [numpy_helper.from_array(np.asarray(value), name) for name, value in constants],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def check_against_onnxruntime(proto, *arrays, rtol=1e-5):
    expected = onnxruntime.InferenceSession(proto.SerializeToString()).run(
        None, {value.name: array for value, array in zip(proto.graph.input, arrays)}
    )
    actual = nnforge.compile(proto)(*arrays)
    actual = actual if isinstance(actual, (list, tuple)) else [actual]
    for got, wanted in zip(actual, expected):
        np.testing.assert_allclose(np.asarray(got), wanted, rtol=rtol, atol=1e-6)


def rewritten_op_types(proto) -> set[str]:
    return {node.op_type for node in onnx_frontend.prepare(proto, "test").graph.node}


@pytest.mark.parametrize("axes", [[2, 3], [3, 2]])
def test_resize_with_axes(axes):
    proto = model(
        [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest", axes=axes, name="resize")],
        [("x", TensorProto.FLOAT, [1, 2, 3, 4])], [("y", TensorProto.FLOAT, [1, 2, 5, 7])],
        [("sizes", np.array([5, 7] if axes == [2, 3] else [7, 5], np.int64))], opset=19,
    )
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 4)).astype(np.float32)
    check_against_onnxruntime(proto, x)


@pytest.mark.parametrize(
    "policy,sizes,result", [("not_larger", [7, 8], 7), ("not_smaller", [7, 8], 8), ("not_larger", [1, 3], 1)]
)
def test_resize_keeping_the_aspect_ratio(policy, sizes, result):
    proto = model(
        [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest", axes=[2, 3],
                          keep_aspect_ratio_policy=policy, name="resize")],
        [("x", TensorProto.FLOAT, [1, 1, 2, 2])], [("y", TensorProto.FLOAT, [1, 1, result, result])],
        [("sizes", np.array(sizes, np.int64))], opset=19,
    )
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    check_against_onnxruntime(proto, x)


def test_resize_whose_policy_cannot_be_spelled_exactly_is_left_for_torch_mlir():
    # not_smaller on 2x4 -> sizes [1, 3]: scale 0.75 maps 2 rows to round(1.5) = 2,
    # which sizes would turn into a scale of 1: no exact full-rank form.
    proto = model(
        [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest", axes=[2, 3],
                          keep_aspect_ratio_policy="not_smaller", name="resize")],
        [("x", TensorProto.FLOAT, [1, 1, 2, 4])], [("y", TensorProto.FLOAT, [1, 1, 2, 3])],
        [("sizes", np.array([1, 3], np.int64))], opset=19,
    )
    with pytest.raises(UnsupportedOpError, match="Resize"):
        nnforge.compile(proto)


@pytest.mark.parametrize(
    "a_shape,b_shape,y_shape", [([4], [2, 4, 3], [2, 3]), ([2, 3, 5, 4], [4], [2, 3, 5])]
)
def test_matmul_of_a_vector_and_a_batch(a_shape, b_shape, y_shape):
    proto = model(
        [helper.make_node("MatMul", ["a", "b"], ["y"], name="matmul")],
        [("a", TensorProto.FLOAT, a_shape), ("b", TensorProto.FLOAT, b_shape)],
        [("y", TensorProto.FLOAT, y_shape)],
    )
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in (a_shape, b_shape))
    check_against_onnxruntime(proto, a, b)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_auto_pad_becomes_explicit(auto_pad):
    proto = model(
        [
            helper.make_node("ConvTranspose", ["x", "w"], ["t"], strides=[2, 2], auto_pad=auto_pad, name="deconv"),
            helper.make_node("LpPool", ["t"], ["y"], kernel_shape=[3, 2], strides=[2, 1], auto_pad=auto_pad, name="pool"),
        ],
        [("x", TensorProto.FLOAT, [1, 2, 5, 4])], [("y", TensorProto.FLOAT, [1, 3, 5, 8])],
        [("w", np.random.default_rng(2).standard_normal((2, 3, 3, 3)).astype(np.float32))],
    )
    assert "auto_pad" not in str(onnx_frontend.prepare(proto, "test").graph)
    x = np.random.default_rng(3).standard_normal((1, 2, 5, 4)).astype(np.float32)
    check_against_onnxruntime(proto, x, rtol=1e-4)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumprod_as_a_scan(axis, exclusive, reverse):
    proto = model(
        [helper.make_node("CumProd", ["x", "axis"], ["y"], exclusive=exclusive, reverse=reverse, name="cumprod")],
        [("x", TensorProto.FLOAT, [3, 4])], [("y", TensorProto.FLOAT, [3, 4])],
        [("axis", np.array(axis, np.int64))], opset=26,
    )
    assert "CumProd" not in rewritten_op_types(proto)
    x = np.random.default_rng(4).uniform(0.5, 1.5, (3, 4)).astype(np.float32)
    check_against_onnxruntime(proto, x)


@pytest.mark.parametrize("axis", [None, 1, -2])
def test_compress_with_a_constant_condition(axis):
    attributes = {} if axis is None else {"axis": axis}
    selected = 12 // 4 * 2 if axis is None else 2
    shape = [selected] if axis is None else ([3, 2] if axis == 1 else [2, 4])
    proto = model(
        [helper.make_node("Compress", ["x", "condition"], ["y"], name="compress", **attributes)],
        [("x", TensorProto.FLOAT, [3, 4])], [("y", TensorProto.FLOAT, shape)],
        [("condition", np.array([False, True, False, True] if axis != -2 else [True, False, True]))],
    )
    if axis is None:
        proto.graph.initializer[0].CopyFrom(numpy_helper.from_array(
            np.array([i % 2 == 1 for i in range(12)]), "condition"))
    assert "Compress" not in rewritten_op_types(proto)
    check_against_onnxruntime(proto, np.arange(12, dtype=np.float32).reshape(3, 4))


def test_lp_normalization_is_zero_where_the_norm_is():
    proto = model(
        [helper.make_node("LpNormalization", ["x"], ["y"], axis=0, p=2, name="normalize")],
        [("x", TensorProto.FLOAT, [2, 3])], [("y", TensorProto.FLOAT, [2, 3])],
    )
    x = np.array([[3, 0, 1], [4, 0, -2]], np.float32)
    check_against_onnxruntime(proto, x)


@pytest.mark.parametrize("direction", ["reverse", "bidirectional"])
@pytest.mark.parametrize("op_type", ["RNN", "GRU", "LSTM"])
def test_reverse_and_bidirectional_recurrences_run_forward(op_type, direction):
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[op_type]
    hidden, features, steps, batch = 5, 3, 4, 2
    directions = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(5)
    proto = model(
        [helper.make_node(op_type, ["x", "w", "r", "b"], ["y", "y_h"], hidden_size=hidden,
                          direction=direction, name="recurrence")],
        [("x", TensorProto.FLOAT, [steps, batch, features])],
        [("y", TensorProto.FLOAT, [steps, directions, batch, hidden]),
         ("y_h", TensorProto.FLOAT, [directions, batch, hidden])],
        [("w", rng.standard_normal((directions, gates * hidden, features)).astype(np.float32)),
         ("r", rng.standard_normal((directions, gates * hidden, hidden)).astype(np.float32)),
         ("b", rng.standard_normal((directions, 2 * gates * hidden)).astype(np.float32))],
    )
    assert {"forward"} == {
        helper.get_attribute_value(a).decode()
        for node in onnx_frontend.prepare(proto, "test").graph.node if node.op_type == op_type
        for a in node.attribute if a.name == "direction"
    }
    check_against_onnxruntime(proto, rng.standard_normal((steps, batch, features)).astype(np.float32), rtol=1e-4)


@pytest.mark.parametrize("dtype", [TensorProto.FLOAT, TensorProto.FLOAT16])
@pytest.mark.parametrize("inputs", [["a", "b"], ["a", "b", ""]])
def test_gemm_without_c_keeps_alpha(dtype, inputs):
    # torch-mlir dropped alpha when C was absent: A B, not 0.5 A B (found by test/fuzz).
    numpy_type = helper.tensor_dtype_to_np_dtype(dtype)
    proto = model([helper.make_node("Gemm", inputs, ["y"], alpha=0.5, transB=1, name="gemm")],
                  [("a", dtype, [3, 4])], [("y", dtype, [3, 5])],
                  [("b", np.random.default_rng(1).standard_normal((5, 4)).astype(numpy_type))])
    a = np.random.default_rng(0).standard_normal((3, 4)).astype(numpy_type)
    check_against_onnxruntime(proto, a, rtol=1e-5 if dtype == TensorProto.FLOAT else 2e-3)


def float16_ulps(actual, expected) -> np.ndarray:
    """Units in the last place between two float16 arrays of finite values."""
    def ordered(values):
        bits = np.asarray(values, np.float16).view(np.int16).astype(np.int32)
        return np.where(bits < 0, -(bits & 0x7FFF), bits)
    return np.abs(ordered(actual) - ordered(expected))


# The last axis: along others numpy (the reference) sums float16 in float16.
@pytest.mark.parametrize("opset,axis", [(13, -1), (17, 2), (22, -1)])
def test_float16_softmax_rounds_as_its_function_body(opset, axis):
    # onnx's reference rounds Exp, ReduceSum and Div to float16 (the function
    # body's types); one float32 softmax rounded once was up to 2 units in the
    # last place away (test_attention_4d_causal_fp16_expanded).
    from onnx.reference import ReferenceEvaluator

    proto = model([helper.make_node("Softmax", ["x"], ["y"], axis=axis, name="softmax")],
                  [("x", TensorProto.FLOAT16, [4, 6, 8])], [("y", TensorProto.FLOAT16, [4, 6, 8])], opset=opset)
    assert "Softmax" not in rewritten_op_types(proto)
    x = (np.random.default_rng(opset).standard_normal((4, 6, 8)) * 3).astype(np.float16)
    expected = ReferenceEvaluator(proto).run(None, {"x": x})[0]
    actual = nnforge.compile(proto)(x)
    ulps = float16_ulps(actual, expected)
    assert ulps.max() <= 1 and (ulps == 0).mean() > 0.95, np.bincount(ulps.ravel())
    # The softmax in float32, rounded once, differs in over half the values here.
    wide = x.astype(np.float32)
    wide = np.exp(wide - wide.max(axis, keepdims=True))
    assert (float16_ulps(wide / wide.sum(axis, keepdims=True), expected) == 0).mean() < 0.5


def test_float16_softmax_whose_sum_overflows_float16_divides_in_float32():
    # 70000 equal logits: the body's float16 sum is infinite (all zeros); the
    # float32 sum gives 1/70000 each.
    proto = model([helper.make_node("Softmax", ["x"], ["y"], name="softmax")],
                  [("x", TensorProto.FLOAT16, [2, 70000])], [("y", TensorProto.FLOAT16, [2, 70000])])
    x = np.zeros((2, 70000), np.float16)
    x[1, :10] = -np.inf
    y = nnforge.compile(proto)(x)
    np.testing.assert_array_equal(y[0], np.full(70000, 1 / 70000, np.float16))
    np.testing.assert_array_equal(y[1, :10], 0)
    np.testing.assert_array_equal(y[1, 10:], np.float16(1 / 69990))
