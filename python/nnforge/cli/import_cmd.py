"""`nnforge import`: a PyTorch, ONNX or StableHLO model -> MLIR at the torch,
tosa, stablehlo, linalg or nnf level.

MODEL is an ONNX file (MODEL.onnx), a StableHLO module (MODEL.mlirbc: a
portable artifact as jax.export serializes it, or MODEL.mlir: text) or a
PyTorch factory `package.module:factory` returning the module, or (module,
example inputs). Levels: torch and tosa for PyTorch and ONNX, stablehlo for
StableHLO, linalg and nnf for all. Progress and the time of each phase go
to stderr; the IR goes to stdout, or to the file given with -o.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Iterator

from nnforge.cli.models import MLIR_SUFFIXES, add_model_arguments, is_torch_factory, load_factory
from nnforge.importers.levels import LEVELS, STABLEHLO_LEVELS

# Every level of some frontend, in the order of the lowering.
ALL_LEVELS = ("torch", "tosa", "stablehlo", "linalg", "nnf")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("import", help="import a PyTorch or ONNX model into MLIR", description=__doc__)
    parser.add_argument("model", metavar="MODEL",
                        help="MODEL.onnx, MODEL.mlirbc / MODEL.mlir (StableHLO) or package.module:factory")
    parser.add_argument("--level", choices=ALL_LEVELS, default="linalg",
                        help="IR level to stop at (default linalg; torch and stablehlo are text only)")
    parser.add_argument("-o", "--output", type=Path, help="write the IR here (default stdout)")
    parser.add_argument("--emit", choices=("text", "bytecode"), default="text",
                        help="text (default) or MLIR bytecode (needs -o)")
    add_model_arguments(parser, levels=False)
    parser.add_argument("--report", action="store_true",
                        help="print the op-coverage table (op kind, count, supported) instead of IR")
    parser.set_defaults(handler=run)


def _phase(name: str, start: float) -> None:
    print(f"nnforge import: {name}: {time.perf_counter() - start:.2f} s", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.emit == "bytecode" and args.output is None:
        print("nnforge import: error: --emit bytecode needs -o FILE", file=sys.stderr)
        return 2
    if args.emit == "bytecode" and args.level in ("torch", "stablehlo"):
        print(f"nnforge import: error: the {args.level} level is text only", file=sys.stderr)
        return 2
    is_stablehlo = Path(args.model).suffix in MLIR_SUFFIXES
    levels = STABLEHLO_LEVELS if is_stablehlo else LEVELS
    if args.level not in levels:
        kind = "StableHLO modules" if is_stablehlo else "PyTorch and ONNX models"
        print(f"nnforge import: error: level {args.level} does not apply to {kind} "
              f"(levels: {', '.join(levels)})", file=sys.stderr)
        return 2
    if is_stablehlo and args.report:
        print("nnforge import: error: --report applies to PyTorch and ONNX models", file=sys.stderr)
        return 2

    with _importer_log_on_stderr():
        return _import(args, is_stablehlo)


@contextlib.contextmanager
def _importer_log_on_stderr() -> Iterator[None]:
    """The importers' phase times on stderr for this command only: `run` is
    also called in-process (tests, scripts), where a handler left on the
    logger would write to a stream closed long after."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("nnforge import: %(message)s"))
    logger = logging.getLogger("nnforge.importers")
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def _import(args: argparse.Namespace, is_stablehlo: bool) -> int:
    from nnforge import importers
    from nnforge.errors import SaveError
    from nnforge.importers import coverage

    is_torch = is_torch_factory(args.model)
    start = time.perf_counter()
    if is_torch:
        import torch

        module, example_inputs = load_factory(args.model, args.input_shape)
        dynamic_shapes = None
        if args.dynamic_batch:
            batch = torch.export.Dim("batch")
            dynamic_shapes = tuple({0: batch} for _ in example_inputs)
        _phase(f"loaded {args.model}", start)
        if args.report:
            report = coverage.torch_coverage(
                module, example_inputs, dynamic_shapes=dynamic_shapes, level=args.level
            )
        else:
            result = importers.import_torch(
                module, example_inputs, dynamic_shapes=dynamic_shapes, level=args.level
            )
    elif is_stablehlo:
        result = importers.import_stablehlo(Path(args.model), level=args.level)
    elif args.report:
        report = coverage.onnx_coverage(args.model, level=args.level)
    else:
        result = importers.import_onnx(args.model, level=args.level)
    _phase("import" + (" and coverage" if args.report else "") + f" at level {args.level}", start)

    if args.report:
        print(report.table())
        return 0

    start = time.perf_counter()
    try:
        if args.emit == "bytecode":
            with open(args.output, "wb") as stream:
                result.operation.write_bytecode(stream)
        else:
            text = result if isinstance(result, str) else str(result)
            if args.output is None:
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
            else:
                args.output.write_text(text)
    except OSError as error:
        raise SaveError(f"cannot write {args.output}: {error.strerror or error}") from None
    _phase(f"wrote {args.output or 'stdout'}", start)
    if args.level == "nnf":
        print(f"nnforge import: {importers.raised_op_count(result)} ops raised to nnf",
              file=sys.stderr)
    return 0
