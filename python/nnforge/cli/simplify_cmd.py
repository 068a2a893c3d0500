"""`nnforge simplify`: an ONNX model imported, folded, canonicalized and fused through nnforge's IR, written back.

Prints the node counts before and after. Graph input and output names and
dynamic dimensions are kept (see nnforge.exporters.simplify).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("simplify", help="simplify an ONNX model through nnforge's IR", description=__doc__)
    parser.add_argument("model", metavar="MODEL", type=Path, help="MODEL.onnx")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the simplified model to write (.onnx)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nnforge.errors import ArgumentError, ModelLoadError
    from nnforge.exporters.simplify import simplify

    if args.model.suffix != ".onnx" or args.output.suffix != ".onnx":
        raise ArgumentError("nnforge simplify reads and writes .onnx files")
    if args.model.exists() and args.output.resolve() == args.model.resolve():
        raise ModelLoadError(f"-o {args.output} would overwrite the model itself")
    start = time.perf_counter()
    before, after = simplify(args.model, args.output)
    print(f"nnforge simplify: {before} nodes -> {after} nodes, wrote {args.output} "
          f"in {time.perf_counter() - start:.2f} s", file=sys.stderr)
    return 0
