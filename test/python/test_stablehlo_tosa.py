"""StableHLO at the tosa level (`stablehlo_tosa`): jax functions exported to
ONNX and NNEF by `nnforge.export`, run by onnxruntime and compiled back by
nnforge, against jax (XLA).

The op cases are those of `stablehlo_op_cases.py`, compiled together as one
jax function (as in test_stablehlo_ops.py); those without a TOSA form must be
named in one UnsupportedOpError.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

jax = pytest.importorskip("jax", reason="jax is not installed (pip install 'nnforge[jax]')")
import jax.numpy as jnp  # noqa: E402
import jax_models  # noqa: E402
from stablehlo_op_cases import CASES  # noqa: E402
from test_stablehlo_ops import check  # noqa: E402

import nnforge  # noqa: E402
import nnforge.cli  # noqa: E402
from nnforge.errors import UnsupportedOpError  # noqa: E402

# The op cases without a TOSA rewrite, with the kinds UnsupportedOpError names.
UNSUPPORTED = {
    "cbrt": ("stablehlo.cbrt",),
    "count_leading_zeros": ("stablehlo.count_leading_zeros",),
    "popcnt": ("stablehlo.popcnt",),
    "round_nearest_afz": ("stablehlo.round_nearest_afz",),
    "round_nearest_even": ("stablehlo.round_nearest_even",),
    "bitcast_convert": ("stablehlo.bitcast_convert",),
    "reduce_precision": ("stablehlo.reduce_precision",),
    "atan2": ("stablehlo.atan2",),
    "remainder (float)": ("stablehlo.remainder (f32)",),
    "shift_left": ("stablehlo.shift_left",),
    "shift_right_arithmetic": ("stablehlo.shift_right_arithmetic",),
    "shift_right_logical": ("stablehlo.shift_right_logical",),
    "dynamic_slice": ("stablehlo.dynamic_slice",),
    "dynamic_update_slice": ("stablehlo.dynamic_update_slice",),
    "pad": ("stablehlo.pad (interior padding)",),
    "scatter": ("stablehlo.scatter",),
    "scatter (set)": ("stablehlo.scatter",),
    "sort": ("stablehlo.sort",),
    "sort (argsort)": ("stablehlo.sort",),
    "sort (top_k, chlo)": ("stablehlo.sort",),
    "reduce_window (cumsum)": ("stablehlo.reduce_window (not over two axes of a 4-d tensor)",),
    "select_and_scatter (max pool gradient)": ("stablehlo.select_and_scatter",),
    "while": ("stablehlo.while",),
    "case": ("stablehlo.case",),
    "custom_call (ApproxTopK)": ("stablehlo.custom_call @ApproxTopK",),
    "rng_bit_generator": ("stablehlo.reshape (ui32 elements)", "stablehlo.bitcast_convert",
                          "stablehlo.rng_bit_generator"),
    "rng (uniform)": ("stablehlo.rng",),
    "fft": ("stablehlo.convert (complex<f32> elements)", "stablehlo.fft", "stablehlo.real"),
    "custom_call (LAPACK)": ("stablehlo.custom_call @lapack_spotrf_ffi",),
    "custom_call (LAPACK triangular solve)": ("stablehlo.custom_call @lapack_strsm_ffi",),
}
STATIC = [case for case in CASES if not case.symbolic]
SUPPORTED = [case for case in STATIC if case.label not in UNSUPPORTED]


def run_onnx(path: Path, arguments) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(arguments)]
    return session.run(None, {spec.name: leaf for spec, leaf in zip(session.get_inputs(), leaves)})


def grouped(cases):
    """One jax function computing every case, and its arguments."""
    function = jax.jit(lambda *groups: [case.function(*args) for case, args in zip(cases, groups)])
    return function, [case.args for case in cases]


def test_ops_exported_to_onnx_match_jax(tmp_path: Path) -> None:
    function, groups = grouped(SUPPORTED)
    path = nnforge.export(function, tmp_path / "ops.onnx", groups)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    outputs = iter(run_onnx(path, groups))
    for case, expected in zip(SUPPORTED, function(*groups)):
        leaves = jax.tree_util.tree_leaves(expected)
        check(case, [next(outputs) for _ in leaves], leaves, " (onnxruntime)")


def test_ops_compiled_from_the_tosa_level_match_jax() -> None:
    function, groups = grouped(SUPPORTED)
    compiled = nnforge.compile(function, groups, level="tosa")
    for case, actual, expected in zip(SUPPORTED, compiled(*groups), function(*groups)):
        check(case, actual, expected, " (tosa level)")


def test_ops_without_a_tosa_form_are_named(tmp_path: Path) -> None:
    cases = [case for case in STATIC if case.label in UNSUPPORTED]
    function, groups = grouped(cases)
    with pytest.raises(UnsupportedOpError) as raised:
        nnforge.export(function, tmp_path / "refused.onnx", groups)
    assert {op.kind for op in raised.value.ops} == {kind for kinds in UNSUPPORTED.values() for kind in kinds}
    assert not (tmp_path / "refused.onnx").exists()


def test_symbolic_shapes_are_refused(tmp_path: Path) -> None:
    case = next(case for case in CASES if case.symbolic)
    with pytest.raises(UnsupportedOpError, match="dynamic"):
        nnforge.export(jax.jit(case.function), tmp_path / "symbolic.onnx",
                       case.example_args(jax.export.SymbolicScope()))


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
def test_models_round_trip_through_onnx_and_nnef(name: str, tmp_path: Path) -> None:
    function, arguments = getattr(jax_models, name)()
    expected = np.asarray(function(*arguments))
    path = nnforge.export(function, tmp_path / f"{name}.onnx", arguments)
    written = onnx.load(str(path))
    leaves = jax.tree_util.tree_leaves_with_path(arguments)
    assert [value.name for value in written.graph.input][0] == f"params{jax.tree_util.keystr(leaves[0][0][1:])}"
    assert [value.name for value in written.graph.output] == ["result"]
    (got,) = run_onnx(path, arguments)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    folder = nnforge.export(function, tmp_path / f"{name}.nnef", arguments)
    compiled = nnforge.compile(str(folder))
    flat = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(arguments)]
    np.testing.assert_allclose(compiled(*flat), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_strided_slices_negative_padding_and_grouped_convolutions(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((7, 5)).astype(np.float32)
    image = rng.standard_normal((2, 9, 9, 4)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 2, 6)).astype(np.float32)
    signal = rng.standard_normal((2, 11, 3)).astype(np.float32)
    taps = rng.standard_normal((3, 3, 5)).astype(np.float32)

    def forms(matrix, image, kernel, signal, taps):
        return (matrix[1::3, ::2], matrix[5:0:-2],
                jax.lax.pad(matrix, 0.5, ((-2, 1, 0), (1, -3, 0))),
                jax.lax.conv_general_dilated(image, kernel, (2, 1), ((1, 1), (0, 2)), feature_group_count=2,
                                             dimension_numbers=("NHWC", "HWIO", "NHWC")),
                jax.lax.conv_general_dilated(signal, taps, (2,), "SAME", dimension_numbers=("NWC", "WIO", "NWC")))

    function = jax.jit(forms)
    arguments = (matrix, image, kernel, signal, taps)
    path = nnforge.export(function, tmp_path / "forms.onnx", arguments)
    for got, expected in zip(run_onnx(path, arguments), function(*arguments)):
        np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_argmax_and_argmin_take_the_first_nan_and_the_first_tie(tmp_path: Path) -> None:
    x = np.random.default_rng(1).standard_normal((5, 7)).astype(np.float32)
    x[1, 3], x[2, :], x[3, 2], x[3, 5] = np.nan, 1.0, 9.0, 9.0
    # (the maxima of the rows without NaN: onnxruntime's ReduceMax passes NaNs over)
    function = jax.jit(lambda x: (jnp.argmax(x, axis=1), jnp.argmin(x, axis=0), jnp.max(x[2:], axis=1)))
    expected = [np.asarray(value) for value in function(x)]
    path = nnforge.export(function, tmp_path / "arg.onnx", (x,))
    for got, want in zip(run_onnx(path, (x,)), expected):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(nnforge.compile(function, (x,), level="tosa")(x), expected):
        np.testing.assert_array_equal(got, want)


def test_row_lookups_clamp_their_indices_as_jax_does(tmp_path: Path) -> None:
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    indices = np.array([[3, -1], [12, 0]], np.int32)

    def lookups(table, indices):
        return (jnp.take(table, indices, axis=0, mode="clip"), table[:, indices[0].clip(0, 3)],
                jnp.take(table, indices, axis=0, mode="fill", fill_value=-7.0))

    function = jax.jit(lookups)
    path = nnforge.export(function, tmp_path / "lookups.onnx", (table, indices))
    for got, expected in zip(run_onnx(path, (table, indices)), function(table, indices)):
        np.testing.assert_array_equal(got, np.asarray(expected))


def test_simplify_leaves_matmuls_of_run_time_weights_unreshaped(tmp_path: Path) -> None:
    from nnforge.exporters.simplify import simplify

    function, arguments = jax_models.mlp()
    path = nnforge.export(function, tmp_path / "mlp.onnx", arguments)
    simplified = tmp_path / "mlp_simple.onnx"
    assert simplify(path, simplified) == (20, 11)
    kinds = Counter(node.op_type for node in onnx.load(str(simplified)).graph.node)
    assert kinds == {"MatMul": 3, "Add": 3, "Max": 2, "Reshape": 3}  # the Reshapes: the biases to rows
    (got,) = run_onnx(simplified, arguments)
    np.testing.assert_allclose(got, np.asarray(function(*arguments)), rtol=1e-5, atol=1e-6)


def test_cli_exports_stablehlo_files(tmp_path: Path) -> None:
    function, arguments = jax_models.mlp()
    exported = jax.export.export(function)(*arguments)
    text, artifact = tmp_path / "mlp.mlir", tmp_path / "mlp.mlirbc"
    text.write_text(exported.mlir_module())
    artifact.write_bytes(exported.mlir_module_serialized)
    expected = np.asarray(function(*arguments))
    for source in (text, artifact):
        output = tmp_path / f"{source.suffix[1:]}.onnx"
        assert nnforge.cli.main(["export", str(source), "-o", str(output)]) == 0
        (got,) = run_onnx(output, arguments)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
