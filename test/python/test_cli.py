"""`nnforge compile`, `run` and `bench` on a small ONNX model, an nnf .mlir file and a PyTorch factory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nnforge.cli
from nnforge.cli import example_cmd

CONSOLE_SCRIPT = Path(sys.executable).parent / "nnforge"
WEIGHT = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
BIAS = np.linspace(-1, 1, 4, dtype=np.float32)


def linear_relu_onnx(path: Path) -> Path:
    """relu(x @ WEIGHT + BIAS) with x: [batch, 8], as an ONNX file."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "weight"], ["product"]),
            helper.make_node("Add", ["product", "bias"], ["sum"]),
            helper.make_node("Relu", ["sum"], ["y"]),
        ],
        "linear_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(WEIGHT, "weight"), numpy_helper.from_array(BIAS, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def expected_linear_relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ WEIGHT + BIAS, 0)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return linear_relu_onnx(tmp_path_factory.mktemp("onnx") / "linear_relu.onnx")


@pytest.fixture(scope="module")
def library(onnx_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ONNX model compiled to a shared library by `nnforge compile`."""
    output = tmp_path_factory.mktemp("so") / "linear_relu.so"
    assert nnforge.cli.main(["compile", str(onnx_file), "-o", str(output)]) == 0
    return output


def save(path: Path, array: np.ndarray) -> str:
    np.save(path, array)
    return str(path)


def test_compile_prints_stage_times(onnx_file: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    output, dumps = tmp_path / "model.so", tmp_path / "ir"
    assert nnforge.cli.main(["compile", str(onnx_file), "-o", str(output),
                             "--level", "tosa", "--dump-ir", str(dumps)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    for stage in ("import:", "llvm:", "compiled in", f"linked {output}", "@linear_relu(x: ?x8xf32)"):
        assert stage in captured.err
    assert output.is_file()
    assert any(path.name.endswith("input-tosa.mlir") for path in dumps.iterdir())


def test_compile_quiet_prints_nothing(onnx_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert nnforge.cli.main(["compile", str(onnx_file), "-o", str(tmp_path / "model.so"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_compile_threads_one_needs_no_openmp_runtime(onnx_file: Path, tmp_path: Path) -> None:
    import ctypes

    from nnforge import openmp

    output = tmp_path / "model.so"
    assert nnforge.cli.main(["compile", str(onnx_file), "-o", str(output), "--threads", "1"]) == 0
    assert not hasattr(ctypes.CDLL(str(output)), openmp.BIND_SYMBOL)
    with pytest.raises(SystemExit):
        nnforge.cli.main(["compile", str(onnx_file), "-o", str(output), "--threads", "0"])


def test_compile_needs_output_and_never_overwrites_the_model(
    onnx_file: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        nnforge.cli.main(["compile", str(onnx_file)])
    assert exit_info.value.code == 2
    assert nnforge.cli.main(["compile", str(onnx_file), "-o", str(onnx_file)]) == 1
    assert "would overwrite the model" in capsys.readouterr().err
    assert nnforge.cli.main(["export", str(onnx_file), "-o", str(onnx_file)]) == 1
    assert "would overwrite the model" in capsys.readouterr().err
    onnx.checker.check_model(str(onnx_file))


def test_run_library_by_name_into_folder(library: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    outputs = tmp_path / "out"
    assert nnforge.cli.main(["run", str(library), "--input", "x=" + save(tmp_path / "x.npy", x),
                             "--output", str(outputs)]) == 0
    np.testing.assert_allclose(np.load(outputs / "y.npy"), expected_linear_relu(x),
                               rtol=1e-5, atol=1e-5)
    assert "y: 3x4 float32" in capsys.readouterr().out


def test_run_onnx_by_position_prints_summary(onnx_file: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    x = np.ones((2, 8), np.float32)
    assert nnforge.cli.main(["run", str(onnx_file), "--input", save(tmp_path / "x.npy", x)]) == 0
    captured = capsys.readouterr()
    expected = expected_linear_relu(x)
    assert f"y: 2x4 float32  min {expected.min():.6g}  max {expected.max():.6g}" in captured.out
    assert "compiled in" in captured.err


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda d: ["y=" + save(d / "x.npy", np.ones((2, 8), np.float32))],
         "no input named 'y' (its inputs: x: ?x8xf32)"),
        (lambda d: ["x=" + str(d / "missing.npy")], "missing.npy: no such file"),
        (lambda d: [save(d / "x.npy", np.ones((2, 5), np.float32))],
         "dimension 1 must be 8 (x: ?x8xf32), got shape [2, 5]"),
        (lambda d: [save(d / "x.npy", np.ones((2, 8)))], "expected dtype float32"),
        (lambda d: [], "missing inputs: x: ?x8xf32"),
        (lambda d: [save(d / "a.npy", np.ones((2, 8), np.float32))] * 2,
         "2 inputs given in order, but the model takes 1"),
    ],
    ids=["unknown-name", "missing-file", "wrong-shape", "wrong-dtype", "no-input", "too-many"],
)
def test_run_input_errors(library: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                          make_input, message: str) -> None:
    arguments = [option for item in make_input(tmp_path) for option in ("--input", item)]
    assert nnforge.cli.main(["run", str(library), *arguments]) == 1
    error = capsys.readouterr().err
    assert error.startswith("nnforge run: error: ") and message in error


@pytest.mark.parametrize(
    "verb, options, message",
    [
        ("run", ["--level", "linalg"], "is compiled already: --level does not apply"),
        ("run", ["--dynamic-batch", "--input-shape", "2x8"],
         "is compiled already: --input-shape, --dynamic-batch do not apply"),
        ("bench", ["--level", "nnf"], "is compiled already: --level does not apply"),
    ],
)
def test_compile_options_given_for_a_library_are_refused(library: Path, capsys: pytest.CaptureFixture,
                                                        verb: str, options: list[str], message: str) -> None:
    assert nnforge.cli.main([verb, str(library), *options]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["compile", "run", "profile"])
def test_input_shape_of_a_file_model_is_refused(onnx_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                verb: str) -> None:
    output = ["-o", str(tmp_path / "out.so")] if verb == "compile" else []
    assert nnforge.cli.main([verb, str(onnx_file), "--input-shape", "2x8", *output]) == 1
    assert "--input-shape applies to PyTorch factories only" in capsys.readouterr().err


def test_nnf_mlir_file_compile_and_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = example_cmd.example_weights()
    source = tmp_path / "classifier.mlir"
    source.write_text(str(example_cmd.build_classifier(weights)))
    library = tmp_path / "classifier.so"
    assert nnforge.cli.main(["compile", str(source), "-o", str(library)]) == 0
    x = np.random.default_rng(2).standard_normal((5, example_cmd.FEATURES)).astype(np.float32)
    outputs = tmp_path / "out"
    assert nnforge.cli.main(["run", str(library), "--input", "input0=" + save(tmp_path / "x.npy", x),
                             "--output", str(outputs)]) == 0
    probabilities = np.load(outputs / "output0.npy")
    np.testing.assert_allclose(probabilities, example_cmd.reference(x, weights), atol=1e-5)
    assert "output0: 5x10 float32" in capsys.readouterr().out


def test_bench_onnx_beside_onnxruntime(onnx_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert nnforge.cli.main(["bench", str(onnx_file), "--repeat", "3", "--warmup", "1",
                             "--input-shape", "16x8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "inputs: x=16x8" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    assert rows["nnforge"][3] == "1.00x" and rows["nnforge"][4] == "reference"
    assert float(rows["onnxruntime"][1]) > 0
    assert float(rows["onnxruntime"][-1]) < 1e-5  # max |diff| vs nnforge


def test_bench_torch_factory_beside_eager(capsys: pytest.CaptureFixture) -> None:
    # models.py (next to this file) is importable: its factories return (module, inputs).
    assert nnforge.cli.main(["bench", "models:mlp", "--repeat", "3", "--warmup", "1"]) == 0
    output = capsys.readouterr().out
    assert "inputs: input0=4x32" in output
    for backend in ("nnforge", "onnxruntime", "torch eager"):
        assert f"\n{backend} " in output


def test_console_script_reports_errors_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "run", str(tmp_path / "absent.onnx")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("nnforge run: error: ")
    assert "absent.onnx: no such file" in result.stderr and "Traceback" not in result.stderr


def _console(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), *arguments], capture_output=True, text=True, timeout=600)


def _one_paragraph_error(result: subprocess.CompletedProcess, verb: str, *words: str) -> None:
    """An error on stderr: one paragraph (no blank line), no traceback, naming `words`."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    error = result.stderr[result.stderr.index(f"nnforge {verb}: error: "):]  # after the progress lines
    assert "\n\n" not in error.strip()
    for word in words:
        assert word in error


def test_compile_into_unwritable_place_is_a_clean_error(onnx_file: Path) -> None:
    # PermissionError's traceback before.
    _one_paragraph_error(_console("compile", str(onnx_file), "-o", "/proc/model.so"),
                         "compile", "cannot save the model as /proc/model.so")


def test_compile_into_an_existing_folder_is_refused(onnx_file: Path, tmp_path: Path) -> None:
    # Exited 0 and wrote DIR/<dirname> before.
    _one_paragraph_error(_console("compile", str(onnx_file), "-o", str(tmp_path)), "compile", "it is a folder")
    assert not any(tmp_path.iterdir())


def test_dump_ir_naming_an_existing_file_is_a_clean_error(onnx_file: Path, tmp_path: Path) -> None:
    # FileExistsError's traceback before.
    existing = tmp_path / "ir"
    existing.write_text("")
    _one_paragraph_error(_console("compile", str(onnx_file), "-o", str(tmp_path / "m.so"), "--dump-ir",
                                  str(existing)), "compile", "it is a file, not a folder")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    for arguments in (["--debug", "run", str(tmp_path / "absent.onnx")],
                      ["run", str(tmp_path / "absent.onnx"), "--debug"]):
        result = _console(*arguments)
        assert result.returncode == 1
        assert "Traceback" in result.stderr and "nnforge run: error: " in result.stderr


def test_internal_errors_say_they_are_bugs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from nnforge.cli import run_cmd

    def broken(args: object) -> int:
        raise KeyError("oops")

    monkeypatch.setattr(run_cmd, "run", broken)
    assert nnforge.cli.main(["run", "model.so"]) == nnforge.cli.INTERNAL_ERROR
    error = capsys.readouterr().err
    assert error.startswith("nnforge run: internal error: KeyError: 'oops'. This is a bug in nnforge")
    assert "Traceback" not in error


def test_long_messages_are_cut_to_one_paragraph() -> None:
    message = "first\n\n" + "\n".join(f"line {i}" for i in range(100))
    text = nnforge.cli.paragraph(message)
    assert "\n\n" not in text and text.count("\n") == nnforge.cli.MAX_MESSAGE_LINES
    assert text.endswith("(71 more lines; --debug prints all)")
