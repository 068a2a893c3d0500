"""nnforge's child processes: time limits, and crashes reported without stack dumps."""

from __future__ import annotations

import sys

import pytest
import torch

import nnforge
from nnforge import _process
from nnforge.errors import ArgumentError, CompileError

# What LLVM prints when an assertion fails in a child, then its stack dump.
LLVM_CRASH = """\
python: /project/llvm-project/mlir/lib/Conversion/MemRefToLLVM/MemRefToLLVM.cpp:1105: virtual llvm::LogicalResult \
StoreOpLowering::matchAndRewrite(...) const: Assertion `integralElementType.getWidth() >= 8' failed.
PLEASE submit a bug report to https://github.com/llvm/llvm-project/issues/ and include the crash backtrace.
Stack dump:
0.	Program arguments: python -m nnforge.importers.torch_mlir_worker
 #0 0x00007fd7b617df3b llvm::sys::PrintStackTrace(llvm::raw_ostream&, int) (libLLVM.so+0x97df3b)
 #1 0x00007fd7b617b3a4 llvm::sys::RunSignalHandlers() (libLLVM.so+0x97b3a4)
"""
PYTHON_CRASH = """\
Fatal Python error: Floating point exception

Current thread 0x00007f3b (most recent call first):
  File "/venv/lib/python3.11/site-packages/nnforge/importers/torch_mlir_worker.py", line 167 in _run_stages
  File "<frozen runpy>", line 88 in _run_code

Extension modules: numpy.core._multiarray_umath, torch._C (total: 40)
"""


def test_failure_cause_keeps_the_reason_and_drops_the_dump() -> None:
    assert _process.failure_cause(LLVM_CRASH) == "Assertion `integralElementType.getWidth() >= 8' failed"
    assert _process.failure_cause(PYTHON_CRASH) == "Fatal Python error: Floating point exception"
    assert _process.failure_cause(" #0 0x1234 foo (libLLVM.so+0x1)\nStack dump:\n") == ""
    assert _process.failure_cause("ld: cannot find -lfoo\ncollect2: error: ld returned 1 exit status") == \
        "error: ld returned 1 exit status"


def test_time_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_process.TIMEOUT_VARIABLE, raising=False)
    assert _process.time_limit() == _process.DEFAULT_TIMEOUT
    monkeypatch.setenv(_process.TIMEOUT_VARIABLE, "12.5")
    assert _process.time_limit() == 12.5
    monkeypatch.setenv("NNFORGE_SPECIFIC", "3")
    assert _process.time_limit("NNFORGE_SPECIFIC") == 3
    for bad in ("soon", "0", "-1", "nan"):
        monkeypatch.setenv(_process.TIMEOUT_VARIABLE, bad)
        with pytest.raises(ArgumentError, match="positive number of seconds"):
            _process.time_limit()


def test_child_past_its_time_limit_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_process.TIMEOUT_VARIABLE, "0.5")
    with pytest.raises(CompileError, match=r"sleeping did not finish within 0.5 s .*NNFORGE_CHILD_TIMEOUT"):
        _process.run([sys.executable, "-c", "import time; time.sleep(60)"], "sleeping")


def test_child_killed_by_a_signal_names_it_without_the_dump() -> None:
    code = f"import os, signal, sys; sys.stderr.write({PYTHON_CRASH!r}); os.kill(os.getpid(), signal.SIGFPE)"
    with pytest.raises(CompileError) as error:
        _process.run([sys.executable, "-c", code], "dividing")
    message = str(error.value)
    assert "killed by signal SIGFPE: Fatal Python error: Floating point exception" in message
    assert "Current thread" not in message and "File " not in message


def test_child_that_cannot_start_is_a_compile_error() -> None:
    with pytest.raises(CompileError, match="cannot run /nonexistent/tool"):
        _process.run(["/nonexistent/tool"], "running a tool")


def test_torch_mlir_child_has_a_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # A torch-mlir pass that loops forever left nnforge.compile waiting for good.
    monkeypatch.setenv("NNFORGE_IMPORT_TIMEOUT", "0.01")
    with pytest.raises(CompileError, match=r"torch-mlir's lowering .* did not finish within 0.01 s"):
        nnforge.compile(torch.nn.Linear(4, 2), (torch.randn(1, 4),))


def _children(pid: int) -> list[int]:
    from pathlib import Path

    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _running(pid: int) -> bool:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_nnforge_opt_ends_as_asked_and_leaves_no_child(stop: str) -> None:
    # nnforge-opt works in a child it watches: a stop request reaches the
    # child, and a killed tool (a caller's time limit) takes the child along.
    import signal
    import subprocess
    import time

    tool = subprocess.Popen([str(nnforge.tool_path("nnforge-opt")), "-"], stdin=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not _children(tool.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        (child,) = _children(tool.pid)
        tool.send_signal(getattr(signal, stop))
        assert tool.wait(30) == -getattr(signal, stop)
        while _running(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(child)
    finally:
        tool.kill()
        tool.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")
def test_nnforge_opt_reports_an_mlir_abort_under_a_caller_ignoring_sigchld(tmp_path) -> None:
    import signal
    import subprocess

    source = tmp_path / "broadcast.mlir"
    source.write_text(
        "func.func @main(%b: tensor<3xf32>) -> tensor<2x3xf32> {\n"
        "  %e = tensor.empty() : tensor<2x3xf32>\n"
        "  %r = linalg.broadcast ins(%b : tensor<3xf32>) outs(%e : tensor<2x3xf32>) dimensions = [nan]\n"
        "  return %r : tensor<2x3xf32>\n}\n")
    run = subprocess.run([str(nnforge.tool_path("nnforge-opt")), str(source)], capture_output=True, text=True,
                         timeout=120, preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    assert run.returncode == 1, run.stderr
    assert "Stack dump" not in run.stderr
    assert _process.tool_crash(run.stderr).startswith(
        f"MLIR aborted (SIGABRT) while parsing/verifying {source} (an upstream MLIR defect; "
        "the input is invalid or unsupported): Assertion `value && \"attributes may never be null\"' failed")
