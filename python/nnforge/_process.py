"""nnforge's child processes: time limits, and their failures as clean errors.

nnforge runs code that may abort, crash or loop forever on unusual input in
child processes: torch-mlir's lowering (`nnforge.importers.handover`), the
ONNX backend's compiler (`nnforge.onnx_backend`), and the tools a save runs
(the C compiler, `mlir-translate`, `llc`). Each gets a time limit: the
environment variable NNFORGE_CHILD_TIMEOUT (seconds; default 600, generous
for the largest models) or a more specific one where a caller names it.
A child that crashes becomes a `CompileError` naming the signal and the
line of its output that says why (an assertion, an LLVM error), never the
stack dump that follows it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from nnforge.errors import ArgumentError, CompileError

DEFAULT_TIMEOUT = 600.0
TIMEOUT_VARIABLE = "NNFORGE_CHILD_TIMEOUT"

# Lines of a crashed child's output that say why it failed, best first.
_CAUSES = (
    re.compile(r"Assertion .* failed"),
    re.compile(r"LLVM ERROR: .*"),
    re.compile(r"Fatal Python error: .*"),
    re.compile(r"(?:[\w.]+(?:Error|Exception)): .*"),
    re.compile(r"\berror: .*"),
)
# Lines of the stack dumps that follow the cause (LLVM's and Python's).
_DUMP_LINE = re.compile(
    r"^\s*(#\d+ 0x|\d+\s+0x|Stack dump|PLEASE submit|File \"|Current thread|Thread 0x|"
    r"Extension modules|Traceback|\w+\.(?:so|py)(?:\.\d+)*\b|0x[0-9a-f]+)"
)


# nnforge-opt's own report of a crash in the child doing its work
# (cpp/tools/nnforge-opt/Supervisor.h): the tool then exits 1.
_TOOL_CRASH = re.compile(r"^nnforge-opt: error: ((?:MLIR (?:aborted|crashed)|the tool's process was killed) .*)$", re.M)


class ChildTimeout(CompileError):
    """A child process ran past its time limit (retrying the same work would too)."""


def time_limit(*variables: str) -> float:
    """Seconds a child may run: the first of `variables` set in the
    environment, else NNFORGE_CHILD_TIMEOUT, else DEFAULT_TIMEOUT."""
    for variable in (*variables, TIMEOUT_VARIABLE):
        text = os.environ.get(variable)
        if text:
            try:
                seconds = float(text)
            except ValueError:
                seconds = -1.0
            if not seconds > 0:
                raise ArgumentError(f"{variable}={text!r}: expected a positive number of seconds")
            return seconds
    return DEFAULT_TIMEOUT


def describe_exit(returncode: int) -> str:
    """How a child ended, in words: "was killed by signal SIGFPE" or "exited with status 3"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"{-returncode}"
        return f"was killed by signal {name}"
    return f"exited with status {returncode}"


def failure_cause(output: str, max_lines: int = 3) -> str:
    """The lines of a failed child's output that say why, without stack dumps.

    An assertion, an LLVM or Python fatal error, an exception's last line,
    or else the last lines that are not part of a dump; "" if none.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for pattern in _CAUSES:
        for line in lines:
            match = pattern.search(line)
            if match:
                return match.group(0)
    kept = [line for line in lines if not _DUMP_LINE.match(line)]
    return "\n".join(kept[-max_lines:])


def tool_crash(output: str) -> str:
    """nnforge-opt's report in `output` that MLIR crashed while it worked
    (after the assertion or LLVM error that says why, when there is one), or ""."""
    report = _TOOL_CRASH.search(output)
    if not report:
        return ""
    for pattern in _CAUSES[:2]:
        cause = pattern.search(output)
        if cause:
            return f"{report.group(1)}: {cause.group(0)}"
    return report.group(1)


def run(
    command: Sequence[str], what: str, timeout_variables: Sequence[str] = ()
) -> subprocess.CompletedProcess:
    """Runs `command` (text output captured) within `time_limit(*timeout_variables)` seconds.

    Raises CompileError naming `what` if the command cannot start, runs past
    the limit (it and its own children are killed) or is killed by a signal;
    a nonzero exit status is the caller's to judge.
    """
    timeout = time_limit(*timeout_variables)
    try:
        child = subprocess.Popen(
            list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
            start_new_session=True,  # a process group of its own: a time-out ends its children too
        )
    except OSError as error:
        raise CompileError(f"{what}: cannot run {command[0]}: {error.strerror or error}") from None
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(child)
        variables = " or ".join((*timeout_variables, TIMEOUT_VARIABLE))
        raise ChildTimeout(
            f"{what} did not finish within {timeout:g} s and was stopped (set {variables} to allow more)"
        ) from None
    except BaseException:  # KeyboardInterrupt: leave no child behind
        kill_group(child)
        raise
    if child.returncode < 0:
        cause = failure_cause(stderr)
        raise CompileError(
            f"{what} failed: {Path(command[0]).name} {describe_exit(child.returncode)}"
            + (f": {cause}" if cause else "")
        )
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


def kill_group(child: subprocess.Popen) -> None:
    """Kills `child` and its process group (started with start_new_session) and reaps it."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.communicate()


def die_with_parent() -> None:
    """Asks Linux to kill this process when its parent dies, even mid-work:
    a child compiling for a process that is gone must not run on."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
