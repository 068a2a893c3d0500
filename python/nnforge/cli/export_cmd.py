"""`nnforge export`: a model -> an ONNX file, through nnforge's TOSA level.

MODEL is an ONNX file, a TOSA-level MLIR file or a PyTorch factory
`package.module:factory` returning the module, or (module, example inputs).
The format follows the suffix of -o (.onnx). Input and output names are the
source's; weights of 1 MiB or more go to OUT.data beside OUT.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nnforge.cli.models import add_model_arguments, load_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model to ONNX through nnforge's IR",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="MODEL.onnx, MODEL.mlir or package.module:factory")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the file to write, e.g. out.onnx")
    parser.add_argument("--format", choices=("onnx",), default=None,
                        help="the format to write (default: from the suffix of -o)")
    add_model_arguments(parser, levels=False)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import onnx

    import nnforge
    from nnforge.errors import ModelLoadError

    if Path(args.model).exists() and args.output.resolve() == Path(args.model).resolve():
        raise ModelLoadError(f"-o {args.output} would overwrite the model itself")
    start = time.perf_counter()
    loaded = load_model(args.model, args.input_shape, dynamic_batch=args.dynamic_batch)
    path = nnforge.export(loaded.model, args.output, loaded.example_inputs, format=args.format,
                          dynamic_shapes=loaded.dynamic_shapes)
    written = onnx.load(str(path), load_external_data=False)
    print(f"nnforge export: wrote {path} ({len(written.graph.node)} nodes, opset "
          f"{written.opset_import[0].version}) in {time.perf_counter() - start:.2f} s", file=sys.stderr)
    return 0
