"""From torch-mlir to nnforge: lower in a child process, parse, verify.

torch-mlir bundles its own, newer MLIR. Its modules never meet nnforge's
objects: the lowering runs in `torch_mlir_worker` (a child process, because
torch-mlir's assertion-enabled passes can abort on unexpected input) and its
result crosses over as text, parsed and verified in `nnforge.context()`.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from nnforge import _process
from nnforge.errors import CompileError, ModelLoadError, UnsupportedOp, UnsupportedOpError
from nnforge.importers import weight_arguments

log = logging.getLogger("nnforge.importers")

# The environment variable limiting torch-mlir's lowering, in seconds (see
# `nnforge._process.time_limit`; some torch-mlir passes loop forever on some inputs).
TIMEOUT_VARIABLE = "NNFORGE_IMPORT_TIMEOUT"

# How to turn a printed MLIR location into words for the user.
LocationDescriber = Callable[[str], str]


def group_ops(
    found: Iterable[tuple[str, str]], describe: LocationDescriber
) -> list[UnsupportedOp]:
    """One UnsupportedOp per kind, in order of first occurrence, from (kind, location) pairs."""
    counts: dict[str, int] = {}
    places: dict[str, list[str]] = {}
    for kind, location in found:
        counts[kind] = counts.get(kind, 0) + 1
        where = describe(location)
        if where and where not in places.setdefault(kind, []):
            places[kind].append(where)
    return [UnsupportedOp(kind, count, tuple(places.get(kind, ()))) for kind, count in counts.items()]


def _failure_message(report: dict, describe: LocationDescriber, max_lines: int = 5) -> str:
    lines = []
    for diagnostic in report.get("diagnostics", [])[:max_lines]:
        where = describe(diagnostic["location"])
        message = diagnostic["message"].splitlines()[0] if diagnostic["message"] else ""
        lines.append(f"  {message}" + (f" (at {where})" if where else ""))
    more = len(report.get("diagnostics", [])) - max_lines
    if more > 0:
        lines.append(f"  ... ({more} more)")
    return "\n".join(lines)


def lower_with_torch_mlir(
    torch_module, source: str, level: str, describe: LocationDescriber, what: str
) -> str:
    """Lowers a torch-mlir module (raw FX import or ONNX import) to `level`; returns its text.

    `source` is "fx" or "onnx"; `level` one of torch-mlir's: torch, tosa,
    linalg. See `run_worker` for the errors.
    """
    bytecode = io.BytesIO()
    torch_module.operation.write_bytecode(bytecode)
    return run_worker(bytecode.getvalue(), source, level, describe, what)


def run_worker(data: bytes, source: str, level: str, describe: LocationDescriber, what: str) -> str:
    """Lowers the module in `data` (read as `source`: fx, onnx, stablehlo) to
    `level` in torch-mlir's child process; returns the result's text.

    Raises ModelLoadError if `data` does not parse, UnsupportedOpError naming
    every op torch-mlir could not convert, CompileError for other failures
    (a crash included).
    """
    with tempfile.TemporaryDirectory(prefix="nnforge-import-") as scratch:
        scratch_dir = Path(scratch)
        source_path = scratch_dir / "input.mlirbc"
        source_path.write_bytes(data)
        start = time.perf_counter()
        command = [
            sys.executable, "-m", "nnforge.importers.torch_mlir_worker",
            str(source_path), str(scratch_dir), "--source", source, "--level", level,
        ]
        child = _process.run(command, f"torch-mlir's lowering of {what} to {level}", (TIMEOUT_VARIABLE,))
        log.info("torch-mlir lowering to %s: %.2f s", level, time.perf_counter() - start)
        report_path = scratch_dir / "report.json"
        if child.returncode != 0 or not report_path.exists():
            cause = _process.failure_cause(child.stderr)
            raise CompileError(
                f"torch-mlir failed while lowering {what} to {level}: its child process "
                f"{_process.describe_exit(child.returncode)}" + (f": {cause}" if cause else "")
            )
        report = json.loads(report_path.read_text())
        if report["status"] == "ok":
            return (scratch_dir / "module.mlir").read_text()
    stage = report["stage"]
    if stage == "parse":
        raise ModelLoadError(f"{what} cannot be read as MLIR:\n" + _failure_message(report, describe))
    if report.get("ops"):
        raise UnsupportedOpError(
            group_ops(map(tuple, report["ops"]), describe),
            context=f"{what} (torch-mlir stage {stage})",
        )
    raise CompileError(
        f"torch-mlir failed to lower {what} in stage {stage}:\n"
        + _failure_message(report, describe)
    )


# A dense i1 constant printed as hex: its data and the element count of its type.
_I1_HEX = re.compile(r'dense<"0x([0-9A-Fa-f]*)">(\s*:\s*(?:tensor|vector)<((?:\d+x)*)i1>)')


def _pack_i1(match: re.Match) -> str:
    """One dense i1 hex constant re-encoded from one byte per element to MLIR 22's bits."""
    import numpy as np

    data = np.frombuffer(bytes.fromhex(match.group(1)), np.uint8)
    count = math.prod(int(size) for size in match.group(3).split("x") if size)
    if data.size == 1:  # a splat: MLIR 22 reads 0x00 or 0xFF
        packed = b"\xff" if data[0] else b"\x00"
    elif data.size == count:
        packed = np.packbits(data != 0, bitorder="little").tobytes()
    else:
        return match.group(0)
    return f'dense<"0x{packed.hex().upper()}">{match.group(2)}'


def pack_i1_constants(text: str) -> str:
    """torch-mlir's text with its dense i1 hex constants as MLIR 22 parses them.

    torch-mlir's newer MLIR stores an i1 element in a byte (llvm-project
    #180397); MLIR 22 packs eight to a byte, the first in the lowest bit,
    and reads a one-byte hex splat only as 0x00 or 0xFF.
    """
    return _I1_HEX.sub(_pack_i1, text)


def to_nnforge_module(text: str, what: str):
    """Parses torch-mlir's output in a new `nnforge.context()` and verifies it."""
    from mlir import ir

    from nnforge._native import context as new_context

    context = new_context()
    try:
        module = ir.Module.parse(pack_i1_constants(text), context)
    except ir.MLIRError as error:
        raise CompileError(f"the IR torch-mlir produced for {what} does not parse: {error}") from None
    try:
        module.operation.verify()
    except ir.MLIRError as error:
        raise CompileError(f"the IR torch-mlir produced for {what} does not verify: {error}") from None
    return module


def walk_ops(operation) -> Iterable:
    """Every op nested in `operation` (an `mlir.ir.Operation`), in pre-order."""
    for region in operation.regions:
        for block in region.blocks:
            for op in block.operations:
                yield op.operation
                yield from walk_ops(op.operation)


RAISED_OPS_ATTRIBUTE = "nnforge.raised_ops"


def raise_to_nnf(module) -> int:
    """Runs nnforge's `nnf-raise` on `module`; records and returns the number of nnf ops."""
    from mlir import ir, passmanager

    with module.context:
        try:
            pipeline = passmanager.PassManager.parse("builtin.module(nnf-raise)")
        except ValueError as error:
            raise CompileError(f"the nnf level needs the nnf-raise pass: {error}") from None
        try:
            pipeline.run(module.operation)
        except ir.MLIRError as error:
            raise CompileError(f"nnf-raise failed: {error}") from None
        raised = sum(1 for op in walk_ops(module.operation) if op.name.startswith("nnf."))
        module.operation.attributes[RAISED_OPS_ATTRIBUTE] = ir.IntegerAttr.get(
            ir.IntegerType.get_signless(64), raised
        )
    log.info("nnf-raise: %d ops raised to nnf", raised)
    return raised


def raised_op_count(module) -> int:
    """How many ops `nnf-raise` raised in a module imported at level "nnf"."""
    from mlir import ir

    return ir.IntegerAttr(module.operation.attributes[RAISED_OPS_ATTRIBUTE]).value


def finish(text: str, level: str, what: str, weights: Sequence = ()):
    """torch-mlir's output at our `level`: text for "torch", else a verified
    module, its last arguments bound to `weights` (arrays the frontend kept
    aside: `weight_arguments.bind`)."""
    if level == "torch":
        return text
    start = time.perf_counter()
    module = to_nnforge_module(text, what)
    weight_arguments.bind(module, weights)
    log.info("hand-over to nnforge's MLIR (parse + verify): %.2f s", time.perf_counter() - start)
    if level == "nnf":
        raise_to_nnf(module)
    return module
