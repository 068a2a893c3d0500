"""The foundation's Python API: contexts, the nnf builders, passes, tools."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest
from mlir import ir
from mlir.dialects import func
from mlir.passmanager import PassManager

import nnforge
from nnforge.dialects import nnf

LINEAR_RELU = """
func.func @f(%x: tensor<?x8xf32>, %w: tensor<16x8xf32>) -> tensor<?x16xf32> {
  %0 = nnf.linear %x, %w : (tensor<?x8xf32>, tensor<16x8xf32>) -> tensor<?x16xf32>
  %1 = nnf.activation relu %0 : tensor<?x16xf32>
  return %1 : tensor<?x16xf32>
}
"""


def tensor(shape: list[int], element: ir.Type | None = None) -> ir.RankedTensorType:
    return ir.RankedTensorType.get(shape, element or ir.F32Type.get())


def test_context_is_the_mlir_packages_own_class():
    ctx = nnforge.context()
    assert type(ctx) is ir.Context
    assert ctx.dialects["nnf"] is not None
    # Upstream dialects are there too.
    for name in ("linalg", "tosa", "tensor", "arith", "gpu", "llvm"):
        assert ctx.dialects[name] is not None


def test_parse_and_verify():
    module = ir.Module.parse(LINEAR_RELU, nnforge.context())
    assert module.operation.verify()
    ops = [op.operation.name for op in module.body.operations[0].regions[0].blocks[0]]
    assert ops == ["nnf.linear", "nnf.activation", "func.return"]


def test_builders_infer_result_types():
    with nnforge.context(), ir.Location.unknown():
        module = ir.Module.create()
        with ir.InsertionPoint(module.body):

            @func.FuncOp.from_py_func(
                tensor([ir.ShapedType.get_dynamic_size(), 3, 32, 32]),
                tensor([8, 3, 3, 3]),
                tensor([8]),
            )
            def conv(x, f, b):
                return nnf.conv2d(
                    x, f, bias=b, strides=[2, 2], padding=[1, 1, 1, 1],
                    activation=nnf.ActivationKind.silu,
                )

        assert module.operation.verify()
        op = conv.func_op.entry_block.operations[0]
        assert str(op.result.type) == "tensor<?x8x16x16xf32>"
        assert "activation silu" in str(op)


@pytest.mark.parametrize("kind", list(nnf.ActivationKind))
def test_activation_enum_round_trips(kind):
    with nnforge.context(), ir.Location.unknown():
        module = ir.Module.create()
        with ir.InsertionPoint(module.body):

            @func.FuncOp.from_py_func(tensor([4, 4], ir.BF16Type.get()))
            def act(x):
                return nnf.activation(x, kind)

        text = str(module)
        assert ir.Module.parse(text).operation.verify()
        assert f"nnf.activation {kind}" in text


def test_builder_reports_the_dimension_at_fault():
    with nnforge.context(), ir.Location.unknown():
        module = ir.Module.create()
        with ir.InsertionPoint(module.body):
            with pytest.raises(ir.MLIRError, match=r"weight dim 1 is 9 but must equal input dim 1 \(K\), which is 8"):

                @func.FuncOp.from_py_func(tensor([4, 8]), tensor([16, 9]))
                def bad(x, w):
                    return nnf.linear(x, w)


def test_invalid_ir_is_a_diagnostic_not_a_crash():
    bad = LINEAR_RELU.replace("tensor<16x8xf32>", "tensor<16x7xf32>")
    with pytest.raises(ir.MLIRError, match="'nnf.linear' op weight dim 1 is 7"):
        ir.Module.parse(bad, nnforge.context())


def test_passes_mix_with_upstream_passes():
    ctx = nnforge.context()
    module = ir.Module.parse(LINEAR_RELU, ctx)
    PassManager.parse("builtin.module(canonicalize,cse)", ctx).run(module.operation)
    assert "nnf.linear %arg0, %arg1 activation relu" in str(module)
    # Our pass is registered and parses alongside upstream ones.
    PassManager.parse("builtin.module(convert-nnf-to-linalg,canonicalize)", ctx)


def test_unknown_pass_is_a_clear_error():
    with pytest.raises(ValueError, match="no-such-pass"):
        PassManager.parse("builtin.module(no-such-pass)", nnforge.context())


def _run_in_fresh_python(script: str) -> str:
    """Runs `script` in a new interpreter (what it loads stays out of this
    one); asserts it succeeded and returns its standard output."""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_works_beside_torch_mlir_in_one_process():
    # torch-mlir bundles its own MLIR; both must load, register and exit cleanly.
    script = textwrap.dedent(
        f"""
        import torch, torch_mlir
        from torch_mlir import fx, ir as tm_ir
        import nnforge
        from mlir import ir
        with tm_ir.Context():
            pass
        module = ir.Module.parse({LINEAR_RELU!r}, nnforge.context())
        assert module.operation.verify()
        nnforge.context(); nnforge.context()
        print("ok")
        """
    )
    assert _run_in_fresh_python(script).strip() == "ok"


def test_plugin_and_tools_are_found():
    assert nnforge.plugin_path().is_file()
    for tool in ("nnforge-opt", "mlir-opt", "FileCheck", "llc"):
        assert nnforge.tool_path(tool).is_file()
    with pytest.raises(FileNotFoundError, match="no-such-tool"):
        nnforge.tool_path("no-such-tool")


def test_nnforge_opt_console_script(tmp_path):
    script = shutil.which("nnforge-opt", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert script, "pip did not install the nnforge-opt command"
    source = tmp_path / "in.mlir"
    source.write_text(LINEAR_RELU)
    result = subprocess.run(
        [script, str(source), "--canonicalize"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "activation relu" in result.stdout
    bad = tmp_path / "bad.mlir"
    bad.write_text(LINEAR_RELU.replace("16x8", "16x7"))
    result = subprocess.run([script, str(bad)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "weight dim 1 is 7" in result.stderr


def test_torch_mlir_loads_after_code_generation() -> None:
    # Generating code with the mlir package's LLVM, then loading torch-mlir
    # (which bundles another LLVM), must not abort the process.
    script = (
        "import nnforge\n"
        "from mlir import ir\n"
        "text = 'func.func @main(%x: tensor<4xf32>) -> tensor<4xf32> { return %x : tensor<4xf32> }'\n"
        "nnforge.compile(ir.Module.parse(text, nnforge.context()))\n"
        "import torch_mlir.ir, torch\n"
        "from torch_mlir import fx\n"
        "fx.export_and_import(torch.nn.ReLU(), torch.ones(2), output_type='raw')\n"
        "print('ok')\n"
    )
    assert _run_in_fresh_python(script).strip().endswith("ok")


def test_libm_calls_compile_after_a_torch_import() -> None:
    # After torch-mlir's LLVM has run in the process, JIT-compiled code that
    # calls libm (GELU's erff) must still link.
    script = (
        "import torch, nnforge\n"
        "model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU()).eval()\n"
        "x = torch.randn(2, 8)\n"
        "imported = nnforge.import_torch(model, (x,), level='nnf')\n"
        "compiled = nnforge.compile(model, (x,))\n"
        "assert (compiled(x) - model(x)).abs().max() < 1e-5\n"
        "print('ok')\n"
    )
    assert _run_in_fresh_python(script).strip().endswith("ok")
