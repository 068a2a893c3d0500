"""nnforge.onnx_backend: the ONNX backend API, in-process and child-process compilation."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import nnforge.onnx_backend as backend
from nnforge.errors import CompileError, InputError


def _two_output_model() -> onnx.ModelProto:
    """z = x + y, w = x > y: a float and a boolean output."""
    spec = [3, 4]
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "y"], ["z"]), helper.make_node("Greater", ["x", "y"], ["w"])],
        "add_greater",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, spec) for n in ("x", "y")],
        [
            helper.make_tensor_value_info("z", TensorProto.FLOAT, spec),
            helper.make_tensor_value_info("w", TensorProto.BOOL, spec),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("in_process", [False, True], ids=["child", "in-process"])
def test_prepare_runs_with_onnx_output_types(in_process: bool) -> None:
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((3, 4)).astype(np.float32) for _ in range(2))
    rep = backend.prepare(_two_output_model(), "CPU", compile_in_process=in_process)
    outputs = rep.run([x, y])
    assert len(outputs) == 2
    np.testing.assert_allclose(outputs[0], x + y, rtol=1e-6)
    assert outputs.w.dtype == np.bool_ and outputs["w"].dtype == np.bool_
    np.testing.assert_array_equal(outputs[1], x > y)
    by_name = rep.run({"y": y, "x": x})
    np.testing.assert_array_equal(by_name[0], outputs[0])


def test_inputs_are_checked_strictly() -> None:
    rep = backend.prepare(_two_output_model())
    x = np.ones((3, 4), np.float32)
    with pytest.raises(InputError, match="dtype"):
        rep.run([x, x.astype(np.float64)])
    with pytest.raises(InputError, match="expected 2 inputs"):
        rep.run([x])


def test_run_node_infers_output_types() -> None:
    node = helper.make_node("Less", ["a", "b"], ["c"])
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    (c,) = backend.run_node(node, [a, np.full((2, 3), 2, np.int64)])
    np.testing.assert_array_equal(c, a < 2)
    assert c.dtype == np.bool_


def test_run_model_and_devices() -> None:
    x = np.ones((3, 4), np.float32)
    z, w = backend.run_model(_two_output_model(), [x, x])
    np.testing.assert_array_equal(z, 2 * x)
    assert backend.supports_device("CPU") and not backend.supports_device("CUDA")
    with pytest.raises(CompileError, match="CPU only"):
        backend.prepare(_two_output_model(), "CUDA")


def test_child_crash_becomes_compile_error(tmp_path) -> None:
    worker = backend.CompileWorker([sys.executable, "-c", "import os; os.abort()"])
    try:
        with pytest.raises(CompileError, match="killed by signal SIGABRT"):
            worker.compile(_two_output_model(), tmp_path / "model.so", "linalg", timeout=60)
        with pytest.raises(CompileError, match="SIGABRT"):  # restarted, crashes again
            worker.compile(_two_output_model(), tmp_path / "model.so", "linalg", timeout=60)
    finally:
        worker.stop()


def test_child_timeout_becomes_compile_error(tmp_path) -> None:
    worker = backend.CompileWorker([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(CompileError, match="ran past 0.5 s"):
            worker.compile(_two_output_model(), tmp_path / "model.so", "linalg", timeout=0.5)
    finally:
        worker.stop()


def test_compile_errors_cross_the_process_boundary() -> None:
    node = helper.make_node("Unique", ["x"], ["y"])
    graph = helper.make_graph(
        [node], "unique",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(Exception) as child_error:
        backend.prepare(model)
    with pytest.raises(Exception) as in_process_error:
        backend.prepare(model, compile_in_process=True)
    assert type(child_error.value) is type(in_process_error.value)
    assert str(child_error.value) == str(in_process_error.value)
