"""`nnforge` command line: one module per verb in this package."""

from __future__ import annotations

import argparse
import importlib
import sys

# verb -> module in nnforge.cli defining `add_parser(subparsers)`, whose
# parser sets `handler(args) -> int`.
_VERBS = {
    "import": "import_cmd",
    "compile": "compile_cmd",
    "run": "run_cmd",
    "bench": "bench_cmd",
    "example": "example_cmd",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnforge",
        description="Compile PyTorch and ONNX models with upstream MLIR.",
    )
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for module in _VERBS.values():
        importlib.import_module(f"nnforge.cli.{module}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from nnforge.errors import NNForgeError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except NNForgeError as error:
        print(f"nnforge {args.verb}: error: {error}", file=sys.stderr)
        return 1
    except FileNotFoundError as error:
        print(f"nnforge {args.verb}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
