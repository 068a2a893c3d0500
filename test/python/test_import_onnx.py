"""nnforge.import_onnx on real models: the onnx wheel's data sets and node tests."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from import_checks import check_imported, input_types
from onnx import TensorProto, helper, numpy_helper

import nnforge
from nnforge.errors import ModelLoadError, UnsupportedOpError

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
LEVELS = ["torch", "tosa", "linalg", "nnf"]

# A sample of the wheel's models (opsets 6-9), each data set represented.
SAMPLE = [
    "light/light_squeezenet.onnx",
    "light/light_shufflenet.onnx",
    "pytorch-converted/test_Conv2d/model.onnx",
    "pytorch-converted/test_BatchNorm2d_eval/model.onnx",
    "pytorch-converted/test_Linear/model.onnx",
    "pytorch-converted/test_Softmax/model.onnx",
    "pytorch-operator/test_operator_add_broadcast/model.onnx",
    "pytorch-operator/test_operator_maxpool/model.onnx",
    "simple/test_single_relu_model/model.onnx",
    "simple/test_shrink/model.onnx",
    "simple/test_sign_model/model.onnx",
]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("model", SAMPLE)
def test_wheel_models(model: str, level: str) -> None:
    check_imported(nnforge.import_onnx(DATA / model, level=level), level)


@pytest.mark.skipif(
    not os.environ.get("NNFORGE_SLOW_TESTS"), reason="the exhaustive sweep: set NNFORGE_SLOW_TESTS=1"
)
@pytest.mark.parametrize(
    "model",
    sorted(str(p.relative_to(DATA)) for p in DATA.glob("light/*.onnx")),
)
def test_light_models_linalg(model: str) -> None:
    check_imported(nnforge.import_onnx(DATA / model, level="linalg"), "linalg")


@pytest.mark.skipif(
    not os.environ.get("NNFORGE_SLOW_TESTS"), reason="the exhaustive sweep: set NNFORGE_SLOW_TESTS=1"
)
@pytest.mark.parametrize("name", sorted(
    p.parent.name for p in DATA.glob("pytorch-operator/*/model.onnx")
))
def test_pytorch_operator_models_linalg(name: str) -> None:
    path = DATA / "pytorch-operator" / name / "model.onnx"
    check_imported(nnforge.import_onnx(path, level="linalg"), "linalg")


def test_nnf_level_records_raised_ops() -> None:
    module = nnforge.import_onnx(DATA / "light/light_squeezenet.onnx", level="nnf")
    check_imported(module, "nnf")
    assert nnforge.importers.raised_op_count(module) > 0


def test_old_opset_is_upgraded() -> None:
    path = DATA / "light/light_resnet50.onnx"
    assert onnx.load(path).opset_import[0].version == 9
    assert "torch.onnx_meta.opset_version = 17 " in nnforge.import_onnx(path, level="torch")
    check_imported(nnforge.import_onnx(path, level="linalg"), "linalg")


@functools.cache
def _node_cases() -> dict:
    from onnx.backend.test.case import node

    with np.errstate(all="ignore"):  # the expected outputs' infinities, computed on collection
        return {case.name: case for case in node.collect_testcases(None)}


NODE_TESTS = [
    "test_relu",
    "test_sigmoid",
    "test_tanh",
    "test_add_bcast",
    "test_matmul_2d",
    "test_gemm_default_matrix_bias",
    "test_conv_with_strides_padding",
    "test_maxpool_2d_default",
    "test_averagepool_2d_default",
    "test_batchnorm_example",
    "test_softmax_axis_1",
    "test_transpose_default",
    "test_concat_2d_axis_0",
    "test_reshape_reordered_all_dims",
    "test_reduce_mean_default_axes_keepdims_example",
    "test_layer_normalization_2d_axis0",
    "test_gelu_default_1",
]


@pytest.mark.parametrize("name", NODE_TESTS)
def test_node(name: str) -> None:
    check_imported(nnforge.import_onnx(_node_cases()[name].model, level="linalg"), "linalg")


def _mlp_model(batch: str | int = "N", opset: int = 17) -> onnx.ModelProto:
    """x[batch, 8] -> MatMul -> Add -> Relu, batch a dim_param when a string."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
            helper.make_node("Add", ["h", "b"], ["z"], name="add"),
            helper.make_node("Relu", ["z"], ["y"], name="relu"),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])],
        [weight, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("level", LEVELS)
def test_dim_param_batch_stays_dynamic(level: str) -> None:
    result = nnforge.import_onnx(_mlp_model("N"), level=level)
    check_imported(result, level)
    [argument] = input_types(result)
    assert argument in ("tensor<?x8xf32>", "!torch.vtensor<[?,8],f32>")


def test_model_proto_and_path_agree(tmp_path: Path) -> None:
    model = _mlp_model(2)
    onnx.save(model, tmp_path / "mlp.onnx")
    from_proto = nnforge.import_onnx(model, level="linalg")
    from_path = nnforge.import_onnx(tmp_path / "mlp.onnx", level="linalg")
    assert str(from_proto) == str(from_path)


def test_external_data(tmp_path: Path) -> None:
    model = _mlp_model(2)
    onnx.save(
        model,
        tmp_path / "mlp.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (tmp_path / "weights.bin").stat().st_size == (8 * 4 + 4) * 4
    module = nnforge.import_onnx(tmp_path / "mlp.onnx", level="linalg")
    check_imported(module, "linalg")
    # (saving set `model`'s weights external: compare with a fresh copy)
    assert str(module) == str(nnforge.import_onnx(_mlp_model(2), level="linalg"))


def test_missing_external_data(tmp_path: Path) -> None:
    onnx.save(_mlp_model(2), tmp_path / "mlp.onnx", save_as_external_data=True,
              location="weights.bin", size_threshold=0)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelLoadError, match="mlp.onnx"):
        nnforge.import_onnx(tmp_path / "mlp.onnx")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such file"):
        nnforge.import_onnx(tmp_path / "absent.onnx")


def test_malformed_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x08\x07 this is not a protobuf \xff\xfe" * 10)
    with pytest.raises(ModelLoadError, match="garbage.onnx"):
        nnforge.import_onnx(path)


def test_invalid_model() -> None:
    model = _mlp_model(2)
    model.graph.node[1].input[0] = "undefined_value"
    with pytest.raises(ModelLoadError, match="undefined_value"):
        nnforge.import_onnx(model)


def test_not_a_model() -> None:
    with pytest.raises(ModelLoadError, match="path or an onnx.ModelProto"):
        nnforge.import_onnx(42)


def test_unknown_level() -> None:
    with pytest.raises(ValueError, match="unknown level 'llvm'"):
        nnforge.import_onnx(_mlp_model(2), level="llvm")


def _with_unsupported_ops() -> onnx.ModelProto:
    """Relu, then two kinds torch-mlir's ONNX conversion lacks (one twice)."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("SplitToSequence", ["r"], ["s"], name="split_a", axis=0),
            helper.make_node("SplitToSequence", ["r"], ["t"], name="split_b", axis=1),
            helper.make_node("Mystery", ["r"], ["y"], name="mystery", domain="example.custom"),
        ],
        "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)],
    )


def test_unsupported_onnx_ops_are_listed() -> None:
    with pytest.raises(UnsupportedOpError) as caught:
        nnforge.import_onnx(_with_unsupported_ops(), level="linalg")
    kinds = {op.kind: op for op in caught.value.ops}
    assert set(kinds) == {"onnx.SplitToSequence", "onnx.Mystery"}
    assert kinds["onnx.SplitToSequence"].count == 2
    assert kinds["onnx.SplitToSequence"].locations == (
        "node 'split_a' (SplitToSequence)",
        "node 'split_b' (SplitToSequence)",
    )
    message = str(caught.value)
    assert "onnx.Mystery x1 at node 'mystery' (Mystery)" in message
    assert "Relu" not in message


def test_unsupported_in_backend_lowering_names_the_node() -> None:
    # torch-mlir converts 3-D average pooling to torch, but not to TOSA.
    path = DATA / "pytorch-converted/test_AvgPool3d/model.onnx"
    check_imported(nnforge.import_onnx(path, level="linalg"), "linalg")
    with pytest.raises(UnsupportedOpError, match=r"torch.aten.avg_pool3d x1 at node '\w+' \(AveragePool\)"):
        nnforge.import_onnx(path, level="tosa")


def test_report_marks_unsupported_op_types() -> None:
    from nnforge.importers.coverage import onnx_coverage

    report = onnx_coverage(_with_unsupported_ops())
    rows = {row.kind: row for row in report.rows}
    assert rows["onnx.Relu"].supported and rows["onnx.Relu"].count == 1
    assert rows["onnx.SplitToSequence"].supported is False
    assert rows["onnx.SplitToSequence"].count == 2
    assert rows["onnx.Mystery"].supported is False
    assert not report.supported
    assert "onnx.SplitToSequence" in report.table()


def test_torch_mlir_crash_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch-mlir's passes can abort on assertions: the child process takes the blow.
    import sys

    from nnforge import _process
    from nnforge.errors import CompileError

    real_run = _process.run

    def run_aborting_child(command, what, timeout_variables=()):
        return real_run([sys.executable, "-c", "import os; os.abort()"], what, timeout_variables)

    monkeypatch.setattr(_process, "run", run_aborting_child)
    with pytest.raises(CompileError, match="torch-mlir's lowering of ONNX model mlp to linalg failed: "
                                           r"python\S* was killed by signal SIGABRT"):
        nnforge.import_onnx(_mlp_model(2), level="linalg")


def test_external_data_past_the_end_of_its_file_is_a_load_error(tmp_path) -> None:
    # onnx's ValueError escaped (a traceback from the command line).
    from nnforge.errors import ModelLoadError

    model = _mlp_model(2)
    path = tmp_path / "mlp.onnx"
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)
    saved = onnx.load(str(path), load_external_data=False)
    entries = {entry.key: entry for entry in saved.graph.initializer[0].external_data}
    entries["offset"].value = str(10**6)
    onnx.save(saved, path)
    with pytest.raises(ModelLoadError, match="cannot read its external data"):
        nnforge.import_onnx(path)


def test_unsigned_inputs_and_outputs_keep_their_type(tmp_path: Path) -> None:
    """torch-mlir hands uint8 over signless; the compiled model still takes and returns uint8 arrays
    (200 stays 200, not -56), also once saved and loaded."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT), helper.make_node("Add", ["f", "f"], ["d"]),
         helper.make_node("Cast", ["d"], ["y"], to=TensorProto.UINT8)], "doubled",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [4])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    compiled = nnforge.compile(model, threads=1)
    assert [spec.dtype for spec in (*compiled.signature.inputs, *compiled.signature.outputs)] == ["ui8", "ui8"]
    x = np.array([1, 100, 120, 127], np.uint8)
    for model_ in (compiled, nnforge.load(compiled.save(tmp_path / "doubled.so"))):
        result = model_(x)
        assert result.dtype == np.uint8
        np.testing.assert_array_equal(result, [2, 200, 240, 254])
