"""`nnforge compile`: a model -> a shared library that `nnforge run` and `nnforge.load` run.

MODEL is an ONNX file, an NNEF model (.nnef folder or file), an MLIR file
(.mlir/.mlirbc: its one public function, or `main`) or a PyTorch factory `package.module:factory` returning the module,
or (module, example inputs). The time of each compile stage goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nnforge.cli.models import (
    add_model_arguments,
    add_progress_arguments,
    load_model_to_compile,
    positive_int,
    progress_setting,
    refuse_overwriting_model,
    timed_compile,
)


# --optimize's choices, as nnforge.compile's `optimize`.
OPTIMIZE = {"schedules": True, "affine": "affine", "none": False}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compile", help="compile a model to a shared library", description=__doc__)
    parser.add_argument("model", metavar="MODEL",
                        help="MODEL.onnx, MODEL.nnef, MODEL.mlir or package.module:factory")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="the shared library to write, e.g. model.so")
    add_model_arguments(parser)
    parser.add_argument("--target", default="cpu",
                        help="cpu (this machine), cpu:NAME (a named CPU, e.g. cpu:znver4, cpu:x86-64-v3) "
                             "or cuda (an NVIDIA GPU; runs where one is)")
    parser.add_argument("--chip", default="sm_90",
                        help="CUDA architecture for --target cuda (default sm_90)")
    parser.add_argument("--optimize", choices=tuple(OPTIMIZE), default="schedules",
                        help="CPU code generation: nnforge's schedules (default), affine (MLIR's polyhedral "
                             "passes, docs/affine.md) or none (scalar loops)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads the CPU code runs on (default: all cores; 1: sequential)")
    parser.add_argument("--dump-ir", type=Path, metavar="DIR",
                        help="write the IR after each stage into DIR")
    parser.add_argument("--timing", action="store_true",
                        help="also print MLIR's per-pass timing report")
    add_progress_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nnforge import artifact

    refuse_overwriting_model(args.model, args.output)
    artifact.check_destination(args.output)  # before compiling, which takes a while

    def say(text: str) -> None:
        if not args.quiet:
            print(f"nnforge compile: {text}", file=sys.stderr)

    start = time.perf_counter()
    loaded = load_model_to_compile(args)
    say(f"loaded {args.model}: {time.perf_counter() - start:.3f} s")
    compiled = timed_compile("compile", loaded, progress_setting(args), level=args.level, dump_ir=args.dump_ir,
                             timing=args.timing, target=args.target, chip=args.chip, threads=args.threads,
                             optimize=OPTIMIZE[args.optimize])
    start = time.perf_counter()
    compiled.save(args.output)
    say(f"linked {args.output}: {time.perf_counter() - start:.3f} s")
    signature = compiled.signature
    say(f"@{signature.entry}({', '.join(spec.describe() for spec in signature.inputs)}) -> "
        f"{', '.join(spec.describe() for spec in signature.outputs)}")
    return 0
