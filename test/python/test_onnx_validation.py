"""ONNX models checked before torch-mlir sees them: errors worded by cause, at the node.

Each of these reached torch-mlir before: it blamed the wrong ops ("unsupported
ops: onnx.MatMul, ..."), looped forever (Softmax axis=5), died of SIGFPE
(Conv group=0) or compiled a gather reading past its table.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nnforge
import nnforge.onnx_backend as backend
from nnforge.errors import ModelLoadError

FLOAT = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "checked", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _value(name: str, element_type: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, element_type, shape)


def _conv(**attributes) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    return _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attributes)],
                  [_value("x", FLOAT, [1, 3, 8, 8])], [_value("y", FLOAT, [1, 4, 6, 6])], [weight])


def _gather(op: str, indices: list, rank: int = 2, **attributes) -> onnx.ModelProto:
    table = numpy_helper.from_array(np.zeros((10, 4), np.float32), "table")
    index = numpy_helper.from_array(np.array(indices, np.int64), "index")
    return _model([helper.make_node(op, ["table", "index"], ["y"], name="lookup", **attributes)], [],
                  [_value("y", FLOAT, [f"d{i}" for i in range(rank)])], [table, index])


CASES = {
    "matmul-dimensions": (
        _model([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")],
               [_value("a", FLOAT, [4, 5]), _value("b", FLOAT, [6, 3])], [_value("y", FLOAT, [4, 3])]),
        "shape mismatch at node 'mm' (MatMul): inputs [4, 5] × [6, 3]: Incompatible dimensions"),
    "matmul-types": (
        _model([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")],
               [_value("a", TensorProto.INT32, [4, 5]), _value("b", FLOAT, [5, 3])], [_value("y", FLOAT, [4, 3])]),
        "type mismatch at node 'mm' (MatMul): input 'a' is int32 and input 'b' is float"),
    "disallowed-type": (
        _model([helper.make_node("Relu", ["a"], ["y"], name="relu")],
               [_value("a", TensorProto.BOOL, [4])], [_value("y", TensorProto.BOOL, [4])]),
        "type mismatch at node 'relu' (Relu): input 'a' is bool, which Relu does not take"),
    "broadcast": (
        _model([helper.make_node("Add", ["a", "b"], ["y"], name="add")],
               [_value("a", FLOAT, [4, 5]), _value("b", FLOAT, [3])], [_value("y", FLOAT, [4, 5])]),
        "shape mismatch at node 'add' (Add): inputs [4, 5], [3]"),
    "negative-dimension": (
        _model([helper.make_node("Relu", ["a"], ["y"], name="relu")],
               [_value("a", FLOAT, [4, -3])], [_value("y", FLOAT, [4, 3])]),
        "input 'a' declares dimension 1 as -3"),
    "softmax-axis": (  # torch-mlir's decomposition never returned
        _model([helper.make_node("Softmax", ["x"], ["y"], name="softmax", axis=5)],
               [_value("x", FLOAT, [2, 3])], [_value("y", FLOAT, [2, 3])]),
        "invalid attribute at node 'softmax' (Softmax): axis 5 is out of range for input 'x' of shape [2, 3]"),
    "concat-axis": (
        _model([helper.make_node("Concat", ["a", "b"], ["y"], name="concat", axis=-3)],
               [_value("a", FLOAT, [2, 3]), _value("b", FLOAT, [2, 3])], [_value("y", FLOAT, [4, 3])]),
        "invalid attribute at node 'concat' (Concat): axis -3 is out of range"),
    "conv-group-zero": (_conv(group=0), "invalid attribute at node 'conv' (Conv): group = 0: must be positive"),
    "conv-strides-zero": (_conv(strides=[0, 0]), "invalid attribute at node 'conv' (Conv): strides = [0, 0]"),
    "conv-dilations-negative": (_conv(dilations=[-1, 1]), "dilations = [-1, 1]: must be positive"),
    "conv-pads-negative": (_conv(pads=[-1, 0, 0, 0]), "pads = [-1, 0, 0, 0]: must be 0 or more"),
    "conv-group-channels": (_conv(group=2), "input [1, 3, 8, 8] has 3 channels, weight [4, 3, 3, 3] with group = 2"),
    "gather-index": (_gather("Gather", [1, 12], axis=0),  # computed from memory past the table
                     "index out of range at node 'lookup' (Gather): constant indices 'index' hold 12, "
                     "but axis 0 of 'table' [10, 4] has 10 entries"),
    "gather-negative-index": (_gather("Gather", [-11], axis=0), "hold -11"),
    "gather-elements-index": (_gather("GatherElements", [[0, 1, 2, 30]], axis=1), "hold 30"),
    "gather-nd-index": (_gather("GatherND", [[3, 1], [10, 0]], rank=1), "hold 10"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_model_is_refused_at_the_node(case: str) -> None:
    model, message = CASES[case]
    with pytest.raises(ModelLoadError, match="ONNX model checked is invalid: ") as error:
        nnforge.import_onnx(model)
    assert message in str(error.value)


def test_in_range_indices_and_axes_still_compile() -> None:
    model = _gather("Gather", [9, -10, 0], axis=0)
    table = np.zeros((10, 4), np.float32)
    np.testing.assert_array_equal(nnforge.compile(model, threads=1)(), table[[9, -10, 0]])


def test_function_ops_onnx_cannot_infer_strictly_still_import() -> None:
    # onnx's strict inference fails inside MeanVarianceNormalization's own body:
    # not the model's fault, so no error.
    model = _model([helper.make_node("MeanVarianceNormalization", ["x"], ["y"], name="mvn")],
                   [_value("x", FLOAT, [3, 3, 3, 1])], [_value("y", FLOAT, [3, 3, 3, 1])])
    x = np.random.default_rng(0).standard_normal((3, 3, 3, 1)).astype(np.float32)
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    expected = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True))
    np.testing.assert_allclose(nnforge.compile(model, threads=1)(x), expected, rtol=1e-4, atol=1e-5)


def test_run_node_with_inconsistent_inputs_is_a_load_error() -> None:
    # onnx's InferenceError escaped from the backend's run_node.
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    with pytest.raises(ModelLoadError, match="invalid for these inputs"):
        backend.run_node(node, [np.ones((4, 5), np.float32), np.ones((6, 3), np.float32)])


def _add_weights(tensor: onnx.TensorProto) -> onnx.ModelProto:
    return _model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [_value("x", FLOAT, [2])],
                  [_value("y", FLOAT, [2])], [tensor])


@pytest.mark.parametrize("raw", [True, False])
def test_initializer_holding_more_than_its_dims_is_refused(raw: bool) -> None:
    # onnxruntime refuses such a model; nnforge read part of the data (found by test/fuzz).
    tensor = numpy_helper.from_array(np.arange(5, dtype=np.float32), "w")
    if not raw:
        tensor = helper.make_tensor("w", FLOAT, [5], list(range(5)))
    del tensor.dims[:]
    tensor.dims.append(2)
    with pytest.raises(ModelLoadError, match=r"initializer 'w' declares dims \[2\] .* but holds"):
        nnforge.import_onnx(_add_weights(tensor))


def test_opset_newer_than_onnx_knows_is_refused() -> None:
    model = _add_weights(numpy_helper.from_array(np.ones(2, np.float32), "w"))
    model.opset_import[0].version = onnx.defs.onnx_opset_version() + 7
    with pytest.raises(ModelLoadError, match="defines them up to opset"):
        nnforge.import_onnx(model)
