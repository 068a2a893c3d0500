"""`nnforge` command line: one module per verb in this package.

Errors are printed as one paragraph on stderr, without a Python traceback
(`--debug` adds it): an `NNForgeError` names what the user gave that is
wrong; anything else is a bug in nnforge and says so.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import traceback

# verb -> module in nnforge.cli defining `add_parser(subparsers)`, whose
# parser sets `handler(args) -> int`.
_VERBS = {
    "import": "import_cmd",
    "compile": "compile_cmd",
    "export": "export_cmd",
    "simplify": "simplify_cmd",
    "run": "run_cmd",
    "profile": "profile_cmd",
    "bench": "bench_cmd",
    "example": "example_cmd",
}
# Exit statuses: an error the user can fix; a bug in nnforge (sysexits' EX_SOFTWARE).
USER_ERROR, INTERNAL_ERROR = 1, 70
# Lines of an error message printed without --debug.
MAX_MESSAGE_LINES = 30
_DEBUG_HELP = "on an error, also print its Python traceback"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnforge",
        description="Compile PyTorch and ONNX models with upstream MLIR.",
    )
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    # Each verb's description is its module's docstring, printed as written.
    verb_parser = functools.partial(argparse.ArgumentParser, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=verb_parser)
    for module in _VERBS.values():
        importlib.import_module(f"nnforge.cli.{module}").add_parser(subparsers)
    for verb_parser in subparsers.choices.values():
        # Also after the verb; SUPPRESS keeps a `--debug` given before it.
        verb_parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    return parser


def paragraph(message: str, max_lines: int = MAX_MESSAGE_LINES) -> str:
    """`message` as one paragraph: no blank lines, at most `max_lines` lines."""
    lines = [line.rstrip() for line in message.strip().splitlines() if line.strip()]
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more lines; --debug prints all)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from nnforge.errors import NNForgeError

    args = build_parser().parse_args(argv)
    prefix = f"nnforge {args.verb}"
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except (NNForgeError, OSError) as error:
        # OSError: a file named on the command line cannot be read or written.
        if args.debug:
            traceback.print_exc()
        message = str(error) if args.debug else paragraph(str(error))
        print(f"{prefix}: error: {message}", file=sys.stderr)
        return USER_ERROR
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        first_line = paragraph(str(error), max_lines=1) or "(no message)"
        print(f"{prefix}: internal error: {type(error).__name__}: {first_line}. This is a bug in nnforge: "
              "rerun with --debug for the traceback and report it.", file=sys.stderr)
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
