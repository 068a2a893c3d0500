"""A trial build in a child process, for MLIR that did not come from
nnforge's importers.

`nnforge.compile` lowers and generates code in the caller's process. What
nnforge's importers produce (PyTorch, ONNX, JAX, StableHLO, NNEF) is a
known set of forms, validated before import; an `mlir.ir.Module` or a
`.mlir`/`.mlirbc` file a user hands in is any IR that verifies, and
upstream passes and LLVM's code generation end the process on some of it
(an assertion, `LLVM ERROR: Cannot implicitly convert a scalable size`, an
inline assembly error's `exit(1)`). Such a module is therefore built once
in a child first, exactly as the caller's process would build it (same
target, options and prepared module); a child that dies or runs past its
time limit becomes a `CompileError`, and only a module the child built is
built in the caller's process:

    python -m nnforge.isolation    # the child: a pickled request on stdin
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

from mlir import ir

from nnforge import _process
from nnforge.errors import CompileError
from nnforge.runtime import Signature
from nnforge.targets.interface import Target


def trial_build(target: Target, module: ir.Module, level: str, signature: Signature, what: str) -> None:
    """Builds the prepared (verified) `module` for `target` in a child process.

    Raises CompileError naming `what` if the child is killed by a signal,
    exits with a status of its own (LLVM's fatal errors) or runs past its
    time limit; errors the build raises as exceptions are left to the
    caller's build, which raises them the same way.
    """
    with tempfile.TemporaryDirectory(prefix="nnforge-trial-") as folder:
        path = Path(folder) / "module.mlirbc"
        with open(path, "wb") as stream:
            module.operation.write_bytecode(stream)
        request = pickle.dumps({"target": target, "module": str(path), "level": level,
                                "signature": signature.to_json()})
        timeout = _process.time_limit()
        child = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, stderr = child.communicate(request, timeout=timeout)
        except subprocess.TimeoutExpired:
            _process.kill_group(child)
            raise _process.ChildTimeout(
                f"building {what} did not finish within {timeout:g} s in a trial child process and was stopped "
                f"(set {_process.TIMEOUT_VARIABLE} to allow more)"
            ) from None
        except BaseException:  # KeyboardInterrupt: leave no child behind
            _process.kill_group(child)
            raise
    if child.returncode != 0:
        cause = _process.failure_cause(stderr.decode(errors="replace"))
        raise CompileError(
            f"building {what} ended the process doing it ({_process.describe_exit(child.returncode)}"
            + (f": {cause}" if cause else "")
            + "): an MLIR or LLVM defect on this IR; nnforge built it in a child process, since the IR did not "
            "come from nnforge's importers"
        )


def _build_request(request: dict) -> None:
    """The child's work: parses the module and builds it as the caller would."""
    from nnforge._native import context as new_context
    from nnforge.stages import StageRunner

    module = ir.Module.parse(Path(request["module"]).read_bytes(), new_context())
    target: Target = request["target"]
    with StageRunner(verbose=False) as runner:
        module = target.lower(module, request["level"], runner)
        target.build(module, Signature.from_json(request["signature"]), runner)


def main() -> None:
    _process.die_with_parent()
    request = pickle.loads(sys.stdin.buffer.read())
    try:
        _build_request(request)
    except Exception:  # noqa: BLE001 (the caller's build raises it again, as an exception)
        pass


if __name__ == "__main__":
    main()
