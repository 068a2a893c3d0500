"""nnforge.isolation: MLIR no importer of nnforge's produced is built in a child first.

The modules below end the process that builds them (LLVM's fatal errors in
code generation): each is compiled in a child Python, so that a regression
fails the test instead of ending pytest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnforge

# LLVM's x86 code generation has no scalable vectors: `LLVM ERROR: Cannot
# implicitly convert a scalable size to a fixed-width size` (SIGABRT).
SCALABLE_VECTORS = """
func.func @main(%a: tensor<8xf32>) -> tensor<8xf32> {
  %c0 = arith.constant 0 : index
  %p = arith.constant 0.0 : f32
  %v = vector.transfer_read %a[%c0], %p : tensor<8xf32>, vector<[4]xf32>
  %s = arith.addf %v, %v : vector<[4]xf32>
  %r = vector.transfer_write %s, %a[%c0] : vector<[4]xf32>, tensor<8xf32>
  return %r : tensor<8xf32>
}
"""
# LLVM's assembler reports the bad instruction: an error, the process lives.
BAD_INLINE_ASSEMBLY = """
func.func @main(%a: tensor<8xf32>) -> tensor<8xf32> {
  llvm.inline_asm has_side_effects "bogus_instruction %eax", "" : () -> ()
  return %a : tensor<8xf32>
}
"""
ADD = """
func.func @main(%a: tensor<8xf32>) -> tensor<8xf32> {
  %e = tensor.empty() : tensor<8xf32>
  %r = linalg.add ins(%a, %a : tensor<8xf32>, tensor<8xf32>) outs(%e : tensor<8xf32>) -> tensor<8xf32>
  return %r : tensor<8xf32>
}
"""
COMPILE = """
import sys
import nnforge
from mlir import ir
from nnforge._native import context
text = open(sys.argv[1]).read()
model = sys.argv[1] if sys.argv[2] == "file" else ir.Module.parse(text, context())
try:
    nnforge.compile(model, optimize=sys.argv[3] == "optimize", threads=1)
    print("compiled")
except nnforge.errors.CompileError as error:
    print("CompileError:", error)
"""


def _compile_in_child(tmp_path: Path, source: str, form: str) -> str:
    path = tmp_path / "model.mlir"
    path.write_text(source)
    run = subprocess.run([sys.executable, "-c", COMPILE, str(path), form, "optimize"], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


@pytest.mark.parametrize("form", ["file", "module"])
def test_ir_that_ends_the_building_process_is_a_compile_error(tmp_path: Path, form: str) -> None:
    printed = _compile_in_child(tmp_path, SCALABLE_VECTORS, form)
    assert printed.startswith("CompileError: building ") and "ended the process doing it" in printed
    assert "LLVM ERROR: Cannot implicitly convert a scalable size" in printed


@pytest.mark.parametrize("form", ["file", "module"])
def test_an_error_llvm_reports_is_a_compile_error_in_the_process(tmp_path: Path, form: str) -> None:
    # Reported while partitions compile on other threads: collected, not exit(1).
    printed = _compile_in_child(tmp_path, BAD_INLINE_ASSEMBLY, form)
    assert printed.startswith("CompileError: LLVM code generation failed: ")
    assert "invalid instruction mnemonic 'bogus_instruction'" in printed


def test_user_ir_is_built_in_a_trial_child_first(tmp_path: Path) -> None:
    path = tmp_path / "add.mlir"
    path.write_text(ADD)
    model = nnforge.compile(path, threads=1)
    assert "trial build" in model.compile_times
    x = np.arange(8, dtype=np.float32)
    np.testing.assert_array_equal(model(x), x + x)


def test_models_from_importers_build_without_a_trial() -> None:
    torch = pytest.importorskip("torch")
    model = nnforge.compile(torch.nn.ReLU(), (torch.randn(2, 3),), threads=1)
    assert "trial build" not in model.compile_times
