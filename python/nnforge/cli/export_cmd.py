"""`nnforge export`: a model -> an ONNX file or NNEF folder, through nnforge's TOSA level.

MODEL is an ONNX file, an NNEF model (.nnef), a TOSA-level MLIR file or a
PyTorch factory `package.module:factory` returning the module, or (module,
example inputs). The format follows the suffix of -o: .onnx (weights of
1 MiB or more go to OUT.data beside OUT) or .nnef (a folder: graph.nnef and
a .dat file per weight). Input and output names are the source's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nnforge.cli.models import add_model_arguments, load_model, refuse_overwriting_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a model to ONNX or NNEF through nnforge's IR", description=__doc__
    )
    parser.add_argument("model", metavar="MODEL", help="MODEL.onnx, MODEL.mlir or package.module:factory")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the file to write: out.onnx or out.nnef")
    parser.add_argument("--format", choices=("onnx", "nnef"), default=None,
                        help="the format to write (default: from the suffix of -o)")
    add_model_arguments(parser, levels=False)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import onnx

    import nnforge

    refuse_overwriting_model(args.model, args.output)
    start = time.perf_counter()
    loaded = load_model(args.model, args.input_shape, dynamic_batch=args.dynamic_batch)
    path = nnforge.export(loaded.model, args.output, loaded.example_inputs, format=args.format,
                          dynamic_shapes=loaded.dynamic_shapes)
    if path.is_dir():  # NNEF
        what = f"{sum(1 for _ in path.glob('*.dat'))} tensor files"
    else:
        written = onnx.load(str(path), load_external_data=False)
        what = f"{len(written.graph.node)} nodes, opset {written.opset_import[0].version}"
    print(f"nnforge export: wrote {path} ({what}) in {time.perf_counter() - start:.2f} s", file=sys.stderr)
    return 0
