"""`nnforge simplify` / nnforge.exporters.simplify: fewer nodes, same values, same names, dynamic dims kept."""

from __future__ import annotations

from pathlib import Path

import models
import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import nnforge
import nnforge.cli
from nnforge.exporters.onnx_writer import lowest_opset
from nnforge.exporters.simplify import simplify

RESNET50 = Path(onnx.__file__).parent / "backend/test/data/light/light_resnet50.onnx"


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_batch_norms_fold_into_convolutions(tmp_path: Path) -> None:
    module, inputs = models.cnn()
    source = nnforge.export(module, tmp_path / "cnn.onnx", inputs)
    before, after = simplify(source, tmp_path / "small.onnx")
    written = onnx.load(str(tmp_path / "small.onnx"))
    assert before == len(onnx.load(str(source)).graph.node) and after == len(written.graph.node) < before
    kinds = [node.op_type for node in written.graph.node]
    assert not {"Sub", "Reciprocal", "Sqrt"} & set(kinds) and kinds.count("Mul") == 1  # the mean of the pooling
    assert sum(node.op_type == "Transpose" for node in written.graph.node) <= 2
    np.testing.assert_allclose(run_onnx(tmp_path / "small.onnx", inputs[0].numpy()),
                               module(*inputs).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_names_and_dynamic_batch_kept(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    scale = numpy_helper.from_array(np.full((1, 4, 1, 1), 2.0, np.float32), "s")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Mul", ["c", "s"], ["m"]), helper.make_node("Relu", ["m"], ["features"])], "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4, 8, 8])], [weights, scale])
    source = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    assert simplify(source, tmp_path / "small.onnx") == (3, 2)  # the scale folded into the filter
    written = onnx.load(str(tmp_path / "small.onnx"))
    assert [v.name for v in written.graph.input] == ["image"] and [v.name for v in written.graph.output] == ["features"]
    assert written.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    x = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(tmp_path / "small.onnx", x), run_onnx(source, x), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not RESNET50.exists(), reason="the onnx wheel ships light_resnet50")
def test_cli_simplify(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "resnet50.onnx"
    assert nnforge.cli.main(["simplify", str(RESNET50), "-o", str(output)]) == 0
    message = capsys.readouterr().err
    before, after = \
        [int(word) for word in message.split() if word.isdigit()][:2]
    assert before == len(onnx.load(str(RESNET50)).graph.node) and after < before / 2
    onnx.checker.check_model(str(output), full_check=True)


def test_affine_chain_becomes_one_mul_and_add(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    constants = [numpy_helper.from_array(rng.standard_normal((1, 4, 1, 1)).astype(np.float32), f"c{i}")
                 for i in range(4)]
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sub", ["r", "c0"], ["a"]),
         helper.make_node("Mul", ["a", "c1"], ["b"]), helper.make_node("Mul", ["c2", "b"], ["c"]),
         helper.make_node("Add", ["c", "c3"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 3, 3])], constants)
    source = tmp_path / "bn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    assert simplify(source, tmp_path / "small.onnx") == (5, 3)
    assert [n.op_type for n in onnx.load(str(tmp_path / "small.onnx")).graph.node] == ["Relu", "Mul", "Add"]
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(tmp_path / "small.onnx", x), run_onnx(source, x), rtol=1e-5, atol=1e-5)


def test_dynamic_batch_through_a_reshape(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    weights = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([0, -1], np.int64), "shape")
    matrix = numpy_helper.from_array(rng.standard_normal((64, 2)).astype(np.float32), "m")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Reshape", ["c", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "m"], ["logits"])],
        "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])], [weights, shape, matrix])
    source = tmp_path / "flatten.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    simplify(source, tmp_path / "small.onnx")
    written = onnx.load(str(tmp_path / "small.onnx"))
    assert written.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    x = rng.standard_normal((3, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(tmp_path / "small.onnx", x), run_onnx(source, x), rtol=1e-5, atol=1e-5)


def _alexnet_like(rng: np.random.Generator) -> onnx.ModelProto:
    """Conv (stride 2, a row its windows never reach), LRN, ceil-mode MaxPool, grouped Conv,
    Reshape + Gemm and Softmax: the ops the TOSA level spells as chains."""
    def constant(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("LRN", ["r1"], ["n1"], size=5, alpha=1e-2, beta=0.75, bias=2.0),
        helper.make_node("MaxPool", ["n1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=2),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Reshape", ["r2", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    initializers = [constant("w1", (8, 3, 3, 3)), constant("b1", (8,)), constant("w2", (8, 4, 3, 3)),
                    constant("b2", (8,)), numpy_helper.from_array(np.array([1, 200], np.int64), "shape"),
                    constant("w3", (200, 10)), constant("b3", (10,))]
    graph = helper.make_graph(nodes, "alexnet_like",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 20, 20])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 10])],
                              initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_grouped_convolution_lrn_gemm_and_softmax_come_back_whole(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    source = tmp_path / "alexnet_like.onnx"
    onnx.save(_alexnet_like(rng), str(source))
    assert simplify(source, tmp_path / "small.onnx") == (9, 9)
    written = onnx.load(str(tmp_path / "small.onnx"))
    assert [node.op_type for node in written.graph.node] == \
        ["Conv", "Relu", "LRN", "MaxPool", "Conv", "Relu", "Reshape", "Gemm", "Softmax"]
    grouped = written.graph.node[4]
    assert {a.name: helper.get_attribute_value(a) for a in grouped.attribute}["group"] == 2
    lrn = {a.name: helper.get_attribute_value(a) for a in written.graph.node[2].attribute}
    assert lrn["size"] == 5 and lrn["alpha"] == pytest.approx(1e-2) and lrn["bias"] == pytest.approx(2.0)
    x = rng.standard_normal((1, 3, 20, 20)).astype(np.float32)
    expected = run_onnx(source, x)
    assert expected.max() > 2 * expected.min()  # not a uniform softmax: the check below tells values apart
    np.testing.assert_allclose(run_onnx(tmp_path / "small.onnx", x), expected, rtol=1e-5, atol=1e-6)


def test_a_band_that_is_no_lrn_window_stays_a_convolution() -> None:
    from nnforge.exporters.fusions import _band

    out, into = np.arange(6)[:, None], np.arange(6)[None, :]
    band = ((into >= out - 1) & (into <= out + 1)).astype(np.float32)
    assert _band(band * 0.25) == (3, 0.25)
    assert _band(((into >= out - 1) & (into <= out + 2)) * np.float32(0.25)) == (4, 0.25)  # ONNX's even window
    assert _band(((into >= out - 2) & (into <= out + 1)) * np.float32(0.25)) is None  # the other way round
    uneven = band * 0.25
    uneven[0, 0] = 0.5
    assert _band(uneven) is None


def _simplified_kinds(tmp_path: Path, nodes: list, shape: list, constants: dict[str, np.ndarray],
                      opset: int = 17) -> list[str]:
    """Simplifies the graph of `nodes` (input "x" of `shape`, output "y"); checks that onnxruntime gives
    the source's values and that the input and output names stay; returns the written op types."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(array, name) for name, array in constants.items()])
    source = tmp_path / "source.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(onnx.shape_inference.infer_shapes(model), str(source))  # the output's shape
    simplify(source, tmp_path / "small.onnx")
    written = onnx.load(str(tmp_path / "small.onnx"))
    assert [v.name for v in written.graph.input] == ["x"] and [v.name for v in written.graph.output] == ["y"]
    x = np.random.default_rng(11).standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(run_onnx(tmp_path / "small.onnx", x), run_onnx(source, x), rtol=1e-5, atol=1e-5)
    return [node.op_type for node in written.graph.node]


def _filters(rng: np.random.Generator, count: int, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {f"w{i}": rng.standard_normal(shape).astype(np.float32) for i in range(count)}


def test_identical_nodes_are_computed_once(tmp_path: Path) -> None:
    nodes = [helper.make_node("Sigmoid", ["x"], ["a"]), helper.make_node("Sigmoid", ["x"], ["b"]),
             helper.make_node("Mul", ["a", "b"], ["y"])]
    assert _simplified_kinds(tmp_path, nodes, [2, 8], {}) == ["Sigmoid", "Mul"]


def test_batch_norms_of_one_convolution_fold_into_copies_of_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    constants = {**_filters(rng, 1, (4, 3, 1, 1)),
                 **{f"s{i}": rng.standard_normal((1, 4, 1, 1)).astype(np.float32) for i in range(4)}}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c"]),
             helper.make_node("Mul", ["c", "s0"], ["m0"]), helper.make_node("Add", ["m0", "s1"], ["a0"]),
             helper.make_node("Mul", ["c", "s2"], ["m1"]), helper.make_node("Add", ["m1", "s3"], ["a1"]),
             helper.make_node("Sub", ["a0", "a1"], ["y"])]
    assert sorted(_simplified_kinds(tmp_path, nodes, [1, 3, 5, 5], constants)) == ["Conv", "Conv", "Sub"]


def test_softmax_of_an_old_opset_on_unit_axes_stays_one_node(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["p"]),
             helper.make_node("Softmax", ["p"], ["y"], axis=1)]  # opset 11: over [N, C * 1 * 1]
    kinds = _simplified_kinds(tmp_path, nodes, [1, 3, 6, 6], _filters(rng, 1, (10, 3, 3, 3)), opset=11)
    assert kinds == ["Conv", "GlobalAveragePool", "Softmax"]


def test_global_pool_and_flatten_become_one_reduction(tmp_path: Path) -> None:
    rng = np.random.default_rng(14)
    constants = {**_filters(rng, 1, (8, 3, 3, 3)), "m": rng.standard_normal((8, 5)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "m"], ["y"])]
    assert _simplified_kinds(tmp_path, nodes, [1, 3, 7, 7], constants) == ["Conv", "ReduceMean", "Gemm"]


def test_channel_shuffle_becomes_a_gather(tmp_path: Path) -> None:
    rng = np.random.default_rng(15)
    constants = {**_filters(rng, 2, (6, 6, 1, 1)), "split": np.array([1, 2, 3, 4, 4], np.int64),
                 "whole": np.array([1, 6, 4, 4], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c"]), helper.make_node("Reshape", ["c", "split"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t", "whole"], ["s"]), helper.make_node("Conv", ["s", "w1"], ["y"])]
    assert _simplified_kinds(tmp_path, nodes, [1, 6, 4, 4], constants) == ["Conv", "Gather", "Conv"]


def test_parallel_convolutions_of_one_input_become_one_and_a_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(16)
    constants = {**_filters(rng, 3, (4, 3, 1, 1)), **{f"v{i}": rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
                                                     for i in range(2)}}
    nodes = [helper.make_node("Conv", ["x", f"w{i}"], [f"c{i}"]) for i in range(3)] + \
        [helper.make_node("Relu", [f"c{i}"], [f"r{i}"]) for i in range(3)] + \
        [helper.make_node("Conv", ["r1", "v0"], ["d1"], pads=[1, 1, 1, 1]),
         helper.make_node("Conv", ["r2", "v1"], ["d2"], pads=[1, 1, 1, 1]),
         helper.make_node("Concat", ["r0", "d1", "d2"], ["y"], axis=1)]
    kinds = _simplified_kinds(tmp_path, nodes, [1, 3, 6, 6], constants)
    assert kinds.count("Split") == 1 and kinds.count("Relu") == 1 and kinds.count("Conv") == 3


def test_one_activation_after_a_concat_of_activations(tmp_path: Path) -> None:
    nodes = [helper.make_node("MaxPool", ["x"], ["a"], kernel_shape=[2, 2]), helper.make_node("Relu", ["a"], ["ra"]),
             helper.make_node("AveragePool", ["x"], ["b"], kernel_shape=[2, 2]),
             helper.make_node("Relu", ["b"], ["rb"]), helper.make_node("Concat", ["ra", "rb"], ["y"], axis=1)]
    kinds = _simplified_kinds(tmp_path, nodes, [1, 3, 6, 6], {})
    assert sorted(kinds[:2]) == ["AveragePool", "MaxPool"] and kinds[2:] == ["Concat", "Relu"]


def test_activations_of_convolutions_stay_before_their_concat(tmp_path: Path) -> None:
    """onnxruntime fuses each Conv with its activation: moved after the Concat, it is one more pass."""
    rng = np.random.default_rng(17)
    constants = {"w0": rng.standard_normal((4, 3, 1, 1)).astype(np.float32),
                 "w1": rng.standard_normal((5, 3, 3, 3)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"]), helper.make_node("Relu", ["a"], ["ra"]),
             helper.make_node("Conv", ["x", "w1"], ["b"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["b"], ["rb"]),
             helper.make_node("Concat", ["ra", "rb"], ["y"], axis=1)]
    kinds = _simplified_kinds(tmp_path, nodes, [1, 3, 6, 6], constants)
    assert kinds.count("Relu") == 2 and kinds[-1] == "Concat"


def test_tanh_gelu_comes_back_whole(tmp_path: Path) -> None:
    nodes = [helper.make_node("Gelu", ["x"], ["y"], approximate="tanh")]
    assert _simplified_kinds(tmp_path, nodes, [2, 8, 16], {}, opset=20) == ["Gelu"]


def test_batched_matmul_of_rank_4_stays_one_node(tmp_path: Path) -> None:
    constants = {"w": np.random.default_rng(3).standard_normal((1, 4, 16, 8)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "x"], ["m"]), helper.make_node("Relu", ["m"], ["r"]),
             helper.make_node("MatMul", ["r", "w"], ["y"])]
    assert _simplified_kinds(tmp_path, nodes, [1, 4, 16, 16], constants) == ["MatMul", "Relu", "MatMul"]



def test_scalar_factors_of_a_matmul_operands_are_one_on_its_result(tmp_path: Path) -> None:
    """An attention's 1/sqrt(d) split between queries and keys, a Transpose between: onnxruntime folds one
    Mul beside the MatMul into it (FusedMatMul), not one behind a Transpose."""
    constants = {"s": np.full((1, 1, 1), 0.5, np.float32), "t": np.full((1, 1, 1), 0.25, np.float32)}
    nodes = [helper.make_node("Mul", ["x", "s"], ["q"]), helper.make_node("Mul", ["x", "t"], ["k"]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]), helper.make_node("MatMul", ["q", "kt"], ["y"])]
    kinds = _simplified_kinds(tmp_path, nodes, [2, 8, 16], constants)
    assert sorted(kinds) == ["MatMul", "Mul", "Transpose"] and kinds[-1] == "Mul"

def test_slices_covering_a_value_once_are_one_split(tmp_path: Path) -> None:
    nodes = [helper.make_node("Split", ["x", "sizes"], ["a", "b", "c"], axis=2),
             helper.make_node("Mul", ["a", "b"], ["m"]), helper.make_node("Add", ["m", "c"], ["y"])]
    sizes = {"sizes": np.array([4, 4, 4], np.int64)}
    assert _simplified_kinds(tmp_path, nodes, [1, 3, 12], sizes) == ["Split", "Mul", "Add"]


def test_gather_of_rows_stays_one_node(tmp_path: Path) -> None:
    """torch-mlir's TOSA gather of rows (flattened indices, negative ones wrapped) comes back as one Gather."""
    table = numpy_helper.from_array(np.random.default_rng(5).standard_normal((50, 8)).astype(np.float32), "t")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["t", "ids"], ["rows"], axis=0), helper.make_node("Relu", ["rows"], ["y"])],
        "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6, 8])], [table])
    source = tmp_path / "gather.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    simplify(source, tmp_path / "small.onnx")
    assert [node.op_type for node in onnx.load(str(tmp_path / "small.onnx")).graph.node] == ["Gather", "Relu"]
    ids = np.array([[0, 3, 49, -1, -50, 7], [1, 2, 3, 4, 5, -6]], np.int64)
    runs = [onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"ids": ids})[0]
            for path in (source, tmp_path / "small.onnx")]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_bias_of_a_matmul_is_a_vector(tmp_path: Path) -> None:
    """onnxruntime fuses MatMul and the Add of a vector (not of [1, 1, N]) into a Gemm."""
    rng = np.random.default_rng(9)
    constants = {"w": rng.standard_normal((16, 8)).astype(np.float32),
                 "b": rng.standard_normal((1, 1, 8)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    assert _simplified_kinds(tmp_path, nodes, [1, 4, 16], constants) == ["MatMul", "Add"]
    written = onnx.load(str(tmp_path / "small.onnx"))
    added = {tensor.name: tuple(tensor.dims) for tensor in written.graph.initializer}
    assert added[written.graph.node[1].input[1]] == (8,)


def test_average_pools_are_written_under_the_oldest_opset_that_means_the_same(tmp_path: Path) -> None:
    """onnxruntime runs AveragePool-19 and later through a generic kernel, several times slower."""
    nodes = [helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["y"])]
    assert _simplified_kinds(tmp_path, nodes, [1, 3, 8, 8], {}, opset=21) == ["AveragePool", "Relu"]
    assert onnx.load(str(tmp_path / "small.onnx")).opset_import[0].version == 17
    dilated = helper.make_model(helper.make_graph(
        [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 21)])
    assert lowest_opset(dilated) == 19 and dilated.opset_import[0].version == 19  # its dilations came in 19


def test_layer_normalization_comes_back_whole(tmp_path: Path) -> None:
    rng = np.random.default_rng(18)
    constants = {"scale": rng.standard_normal(8).astype(np.float32), "bias": rng.standard_normal(8).astype(np.float32)}
    nodes = [helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y"], axis=-1, epsilon=1e-5)]
    kinds = _simplified_kinds(tmp_path, nodes, [2, 5, 8], constants)
    assert kinds == ["LayerNormalization"]  # the scale and bias its own


def test_small_tiles_of_constants_fold_and_large_ones_stay() -> None:
    from nnforge.exporters.simplify import _MAX_GROWN_ELEMENTS, fold_constants

    constants = [numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), "c"),
                 numpy_helper.from_array(np.array([3, 1], np.int64), "small"),
                 numpy_helper.from_array(np.array([_MAX_GROWN_ELEMENTS, 1], np.int64), "large")]
    graph = helper.make_graph(
        [helper.make_node("Tile", ["c", "small"], ["t"]), helper.make_node("Tile", ["c", "large"], ["big"]),
         helper.make_node("Add", ["x", "t"], ["y"]), helper.make_node("ReduceSum", ["big"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 1])], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert fold_constants(model) == 1
    assert [node.op_type for node in model.graph.node] == ["Tile", "Add", "ReduceSum"]


@pytest.mark.parametrize(("picked", "kind"), [([2, 4, 6, 8], "Slice"), ([5, 1, 7, 7], "Gather")])
def test_gather_nd_by_constant_indices_of_one_axis(tmp_path: Path, picked: list[int], kind: str) -> None:
    from nnforge.exporters.fusions import fuse

    indices = np.tile(np.array(picked, np.int64).reshape(1, 4, 1), (2, 1, 1))
    graph = helper.make_graph(
        [helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 12, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 3])], [numpy_helper.from_array(indices, "i")])
    source = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    onnx.save(source, str(tmp_path / "source.onnx"))
    assert fuse(source) == 0 and [node.op_type for node in source.graph.node] == [kind]
    onnx.save(source, str(tmp_path / "small.onnx"))
    x = np.random.default_rng(19).standard_normal((2, 12, 3)).astype(np.float32)
    np.testing.assert_array_equal(run_onnx(tmp_path / "small.onnx", x), run_onnx(tmp_path / "source.onnx", x))


def test_random_nodes_are_not_merged() -> None:
    from nnforge.exporters.simplify import merge_duplicates

    graph = helper.make_graph(
        [helper.make_node("RandomNormalLike", ["x"], ["a"]), helper.make_node("RandomNormalLike", ["x"], ["b"]),
         helper.make_node("Sub", ["a", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert merge_duplicates(model) == 0 and len(model.graph.node) == 3


def test_matmul_weights_of_unit_batch_become_a_matrix(tmp_path: Path) -> None:
    rng = np.random.default_rng(20)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    kinds = _simplified_kinds(tmp_path, nodes, [1, 6, 8], {"w": rng.standard_normal((8, 5)).astype(np.float32)})
    written = onnx.load(str(tmp_path / "small.onnx"))
    assert kinds == ["MatMul", "Relu"] and all(len(tensor.dims) == 2 for tensor in written.graph.initializer)
