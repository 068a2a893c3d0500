"""`nnforge import`: ONNX files and PyTorch factories, outputs, reports and errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import onnx
import pytest
from mlir import ir

import nnforge
import nnforge.cli
from nnforge.importers.handover import walk_ops

SQUEEZENET = Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx"


@pytest.fixture(autouse=True)
def only_the_import_verb(monkeypatch: pytest.MonkeyPatch) -> None:
    # Test this verb on its own, whatever state the other verbs are in.
    monkeypatch.setattr(nnforge.cli, "_VERBS", {"import": "import_cmd"})


def run(*argv: str) -> int:
    return nnforge.cli.main(["import", *argv])


def test_onnx_to_file_with_timings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "out.mlir"
    assert run(str(SQUEEZENET), "--level", "tosa", "-o", str(output)) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "ONNX -> torch-mlir import:" in captured.err and "torch-mlir lowering to tosa" in captured.err
    module = ir.Module.parse(output.read_text(), nnforge.context())
    assert module.operation.verify()
    assert any(op.name == "tosa.conv2d" for op in walk_ops(module.operation))


def test_onnx_to_stdout(capsys: pytest.CaptureFixture) -> None:
    assert run(str(SQUEEZENET), "--level", "torch") == 0
    assert "torch.aten.convolution" in capsys.readouterr().out


def test_bytecode(tmp_path: Path) -> None:
    output = tmp_path / "out.mlirbc"
    assert run(str(SQUEEZENET), "--emit", "bytecode", "-o", str(output)) == 0
    module = ir.Module.parse(output.read_bytes(), nnforge.context())
    assert any(op.name.startswith("linalg.") for op in walk_ops(module.operation))


def test_bytecode_needs_output(capsys: pytest.CaptureFixture) -> None:
    assert run(str(SQUEEZENET), "--emit", "bytecode") == 2
    assert "needs -o" in capsys.readouterr().err


def test_torch_factory_with_inputs(capsys: pytest.CaptureFixture) -> None:
    # models.py (next to this file) is importable: its factories return (module, inputs).
    assert run("models:mlp", "--dynamic-batch") == 0
    assert "tensor<?x32xf32>" in capsys.readouterr().out


def test_torch_factory_with_input_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "tiny_factory.py").write_text(textwrap.dedent("""
        import torch

        def make():
            return torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.ReLU()).eval()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run("tiny_factory:make", "--input-shape", "2x6", "--level", "tosa") == 0
    assert "tensor<2x6xf32>" in capsys.readouterr().out
    assert run("tiny_factory:make") == 1
    assert "--input-shape" in capsys.readouterr().err


def test_bad_input_shape(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        run("models:mlp", "--input-shape", "2xbig")
    assert "bad --input-shape '2xbig'" in capsys.readouterr().err


def test_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(str(tmp_path / "absent.onnx")) == 1
    assert "absent.onnx: no such file" in capsys.readouterr().err
    assert run("no_such_package.models:make") == 1
    assert "cannot load the factory 'no_such_package.models:make'" in capsys.readouterr().err


def test_report_does_not_fail_on_unsupported_ops(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("Relu", ["r"], ["s"], name="relu2"),
            helper.make_node("SplitToSequence", ["s"], ["y"], name="split", axis=0),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_sequence_value_info("y", TensorProto.FLOAT, None)],
    )
    path = tmp_path / "partly.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert run(str(path), "--report") == 0
    rows = {line.split()[0]: line.split()[1:3] for line in capsys.readouterr().out.splitlines()[2:-1]}
    assert rows == {"onnx.Relu": ["2", "yes"], "onnx.SplitToSequence": ["1", "no"]}
    assert run(str(path)) == 1
    assert "onnx.SplitToSequence x1 at node 'split' (SplitToSequence)" in capsys.readouterr().err
