"""jax models compiled by nnforge against jax's own results (XLA on the CPU).

Tolerance: every output within 1e-5 of the largest magnitude of jax's
output (relative, f32); integer outputs exactly.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="jax is not installed (pip install 'nnforge[jax]')")
import jax.numpy as jnp  # noqa: E402
import jax_models  # noqa: E402

import nnforge  # noqa: E402
import nnforge.cli  # noqa: E402
from nnforge.errors import ExecutionError, InputError, ModelLoadError, UnsupportedOpError  # noqa: E402
from nnforge.targets.cpu import host  # noqa: E402

CONSOLE_SCRIPT = Path(sys.executable).parent / "nnforge"


def assert_matches(actual, expected, rtol: float = 1e-5) -> None:
    """Same pytree; floats within `rtol` of the output's largest magnitude."""
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(expected)
    for got, want in zip(jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected)):
        got, want = np.asarray(got), np.asarray(want)
        assert got.shape == want.shape and got.dtype == want.dtype
        if want.dtype.kind == "f":
            scale = max(float(np.abs(want).max(initial=0)), np.finfo(np.float32).tiny)
            assert float(np.abs(got.astype(np.float64) - want).max(initial=0)) <= rtol * scale
        else:
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "factory", ["mlp", "cnn", "transformer", "scan_rnn", "cond_fori", "random_model", "training_step"]
)
def test_models_match_jax(factory: str) -> None:
    function, args = getattr(jax_models, factory)()
    compiled = nnforge.compile(function, args)
    assert isinstance(compiled, nnforge.JaxModel)
    assert_matches(compiled(*args), function(*args))


def test_training_step_repeated_matches_jax() -> None:
    """Five SGD steps, each fed the previous step's parameters."""
    step, (params, x, labels) = jax_models.training_step()
    compiled = nnforge.compile(step, (params, x, labels))
    ours, theirs = params, params
    for _ in range(5):
        our_loss, ours = compiled(ours, x, labels)
        their_loss, theirs = step(theirs, x, labels)
        assert_matches((our_loss, ours), (their_loss, theirs))
    assert float(their_loss) < float(step(params, x, labels)[0])


def _dumped(folder: Path, stage: str) -> str:
    """The IR `compile(..., dump_ir=folder)` wrote after `stage`."""
    return next(folder.glob(f"*-{stage}.mlir")).read_text()


@pytest.mark.parametrize("channels,stride", [(16, 1), (16, 2), (3, 1), (1, 1)])
def test_nhwc_convolution_is_computed_directly_or_as_a_contraction(
    channels: int, stride: int, tmp_path: Path
) -> None:
    """jax's NHWC/HWIO convolution with unit strides is computed from its
    input directly (vectorized, no window copy); with larger strides it
    becomes nnforge's im2col (windows with channels innermost times the
    filter as it is), grouped with its bias and ReLU into one dispatch
    region, as PyTorch's NCHW ones are. No convolution is left for
    upstream's scalar im2col, and none stays scalar."""
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((3, 3, channels, 32)) / (9 * channels) ** 0.5).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    x = rng.standard_normal((2, 12, 13, channels)).astype(np.float32)

    @jax.jit
    def conv(w, b, x):
        y = jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.nn.relu(y + b)

    compiled = nnforge.compile(conv, (w, b, x), dump_ir=tmp_path)
    regions = _dumped(tmp_path, "dispatch-regions")
    if stride == 1:
        assert "linalg.conv_2d_nhwc_hwcf" in regions and "nnf.dispatch" not in regions
        vectorized = _dumped(tmp_path, "vectorize")
        assert "linalg.conv_2d" not in vectorized and "vector.transfer_read" in vectorized
    else:
        assert "linalg.conv_2d" not in regions
        assert regions.count("nnf.dispatch ins") == 1 and "arith.maximumf" in regions.split("nnf.dispatch ins")[1]
    assert_matches(compiled(w, b, x), conv(w, b, x))


@pytest.mark.parametrize("cpu", ["sapphirerapids", "znver4"])
@pytest.mark.parametrize("rows", [64, 256])
def test_dense_weights_are_read_in_copied_panels_not_copied_whole(
    cpu: str, rows: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A jax model's weights are arguments: a 2 MiB weight whose rows are
    4 KiB apart is not copied into padded rows on every call
    (nnf-pad-leading-dimensions{copy-arguments=false}); the contraction's
    schedule copies the panels its register tiles read. A Zen 4's sizes
    copy no panels."""
    monkeypatch.setattr(host, "host_cpu", lambda: dataclasses.replace(host.KNOWN_CPUS[cpu], llvm_features=None))
    rng = np.random.default_rng(4)
    w = rng.standard_normal((512, 1024)).astype(np.float32) / 512 ** 0.5
    x = rng.standard_normal((rows, 512)).astype(np.float32)
    dense = jax.jit(lambda w, x: x @ w)
    compiled = nnforge.compile(dense, (w, x), dump_ir=tmp_path)
    panels = re.search(r"alloc_tensor\(\) : tensor<\d+x32xf32>", _dumped(tmp_path, "vectorize"))
    if cpu == "znver4":
        assert not panels
    else:
        assert "linalg.copy" not in _dumped(tmp_path, "dispatch-regions") and panels
    assert_matches(compiled(w, x), dense(w, x))


def test_cond_and_loop_follow_the_inputs() -> None:
    """The trip count and the branches taken come from the arguments at run time."""
    function, (x, _) = jax_models.cond_fori()
    compiled = nnforge.compile(function, (x, np.int32(5)))
    for steps, scale in ((0, 1.0), (3, -2.0), (40, 0.5)):
        arguments = (x * scale, np.int32(steps))
        assert_matches(compiled(*arguments), function(*arguments))


def test_numpy_in_numpy_out_and_jax_in_jax_out() -> None:
    function, (params, x) = jax_models.mlp()
    compiled = nnforge.compile(function, (params, x))
    assert isinstance(compiled(params, x), np.ndarray)
    result = compiled(jax.tree_util.tree_map(jnp.asarray, params), jnp.asarray(x))
    assert isinstance(result, jax.Array)


def test_pytree_outputs_and_python_scalars() -> None:
    function = jax.jit(lambda x, scale: {"scaled": x * scale, "parts": (x.sum(), x.max(axis=0))})
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    compiled = nnforge.compile(function, (x, 2.0))
    assert_matches(compiled(x, 3.0), function(x, 3.0))
    assert [spec.name for spec in compiled.signature.inputs] == ["x", "scale"]
    assert [spec.name for spec in compiled.signature.outputs] == [
        "result['parts'][0]", "result['parts'][1]", "result['scaled']"
    ]


def test_wrong_pytree_structure() -> None:
    function, (params, x) = jax_models.mlp()
    compiled = nnforge.compile(function, (params, x))
    with pytest.raises(InputError, match="structure"):
        compiled(params[:2], x)


def test_symbolic_batch_takes_any_batch() -> None:
    function, (params, x) = jax_models.mlp()
    batch = jax.ShapeDtypeStruct(jax.export.symbolic_shape("b, 64"), jnp.float32)
    compiled = nnforge.compile(function, (params, batch))
    assert compiled.signature.inputs[-1].shape == (None, 64)
    for size in (1, 3, 17):
        inputs = np.random.default_rng(size).standard_normal((size, 64)).astype(np.float32)
        assert_matches(compiled(params, inputs), function(params, inputs))


def test_symbolic_batch_and_sequence_length() -> None:
    """Two symbolic dimensions in one reshape: the transformer's rows (b * s)
    split back into batch and sequence."""
    function, (params, x, mask) = jax_models.transformer()
    scope = jax.export.SymbolicScope()
    rows = jax.export.symbolic_shape("b, s", scope=scope)
    compiled = nnforge.compile(function, (params, jax.ShapeDtypeStruct((*rows, 64), jnp.float32),
                                          jax.ShapeDtypeStruct(rows, jnp.bool_)))
    assert compiled.signature.inputs[-2].shape == (None, None, 64)
    rng = np.random.default_rng(7)
    for batch, length in ((1, 5), (3, 16), (2, 9)):
        inputs = rng.standard_normal((batch, length, 64)).astype(np.float32)
        keep = rng.random((batch, length)) < 0.8
        keep[:, 0] = True
        assert_matches(compiled(params, inputs, keep), function(params, inputs, keep))


def test_shape_assertion_is_a_run_time_check() -> None:
    """jax.export's check that dimension `b` is at least 1 fails for an empty batch."""
    function = jax.jit(lambda x: x.sum(axis=1))
    batch = jax.ShapeDtypeStruct(jax.export.symbolic_shape("b, 4"), jnp.float32)
    compiled = nnforge.compile(function, (batch,))
    assert_matches(compiled(np.ones((2, 4), np.float32)), np.full(2, 4, np.float32))
    with pytest.raises(ExecutionError, match="dimension variable 'b'"):
        compiled(np.ones((0, 4), np.float32))


def test_exported_and_saved_library(tmp_path: Path) -> None:
    function, args = jax_models.cnn()
    exported = jax.export.export(function)(*args)
    compiled = nnforge.compile(exported)
    assert_matches(compiled(*args), function(*args))
    loaded = nnforge.load(compiled.save(tmp_path / "cnn.so"))
    flat = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(args)]
    np.testing.assert_array_equal(loaded(*flat), compiled(*args))


def test_import_levels() -> None:
    function, args = jax_models.mlp()
    exported = jax.export.export(function)(*args)
    text = nnforge.import_stablehlo(exported, level="stablehlo")
    assert isinstance(text, str) and "stablehlo.dot_general" in text
    linalg = nnforge.import_stablehlo(exported)
    assert "linalg.matmul" in str(linalg) and "stablehlo" not in str(linalg)
    function, args = jax_models.transformer()
    exported = jax.export.export(function)(*args)
    nnf = nnforge.import_stablehlo(exported.mlir_module_serialized, level="nnf")
    assert nnforge.importers.raised_op_count(nnf) >= 1  # the GELU


def test_unsupported_ops_are_named_with_counts() -> None:
    def factor_twice(a):
        lower = jnp.linalg.cholesky(a @ a.T + jnp.eye(4))  # LAPACK calls on the CPU
        lower = jnp.linalg.cholesky(lower @ lower.T + jnp.eye(4))
        return jnp.fft.fft(lower).real

    with pytest.raises(UnsupportedOpError) as raised:
        nnforge.compile(jax.jit(factor_twice), (np.ones((4, 4), np.float32),))
    kinds = {op.kind: op.count for op in raised.value.ops}
    assert kinds == {"stablehlo.custom_call @lapack_spotrf_ffi": 2, "stablehlo.fft": 1}
    assert "test_jax.py" in str(raised.value)


def test_shardy_export_is_refused_with_the_way_out() -> None:
    function, args = jax_models.random_model()
    exported = jax.export.export(function)(*args)  # jax's default: Shardy
    with pytest.raises(ModelLoadError, match="jax_use_shardy_partitioner"):
        nnforge.import_stablehlo(exported)


def test_cli_import_compile_run(tmp_path: Path) -> None:
    function, (params, x) = jax_models.mlp()
    exported = jax.export.export(function)(params, x)
    model = tmp_path / "mlp.mlirbc"
    model.write_bytes(exported.mlir_module_serialized)
    flat = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves((params, x))]
    inputs = []
    for index, array in enumerate(flat):
        np.save(tmp_path / f"in{index}.npy", array)
        inputs += ["-i", str(tmp_path / f"in{index}.npy")]

    linalg = tmp_path / "mlp.mlir"
    assert nnforge.cli.main(["import", str(model), "--level", "linalg", "-o", str(linalg)]) == 0
    assert "linalg.matmul" in linalg.read_text()
    library = tmp_path / "mlp.so"
    assert nnforge.cli.main(["compile", str(model), "-o", str(library)]) == 0
    outputs = tmp_path / "out"
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "run", str(library), *inputs, "--output", str(outputs)],
        capture_output=True, text=True, check=True,
    )
    assert "result" in result.stdout
    assert_matches(np.load(outputs / "result.npy"), np.asarray(function(params, x)))
