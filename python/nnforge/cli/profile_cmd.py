"""`nnforge profile`: where the time of a model's call goes, region by region.

MODEL is compiled for this machine's CPU with timers around each dispatch
region (and each op computed outside one), called once, then --runs times
on the inputs (--input files, as for `nnforge run`, or random ones of the
model's shapes). Prints the --top regions with their share of the time and
the source lines they came from, and writes an HTML page (--html) of the
model's graph with each region colored by its share.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nnforge.cli.models import (
    add_input_argument,
    add_model_arguments,
    add_progress_arguments,
    in_signature_order,
    is_torch_factory,
    load_model_to_compile,
    positive_int,
    progress_setting,
    random_inputs,
    read_inputs,
    timed_compile,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile", help="time each dispatch region of a model on this CPU", description=__doc__
    )
    parser.add_argument("model", metavar="MODEL", help="MODEL.onnx, MODEL.mlir or package.module:factory")
    add_input_argument(parser, " (default: random inputs)")
    add_model_arguments(parser)
    parser.add_argument("--target", default="cpu",
                        help="cpu (this machine; the only target with timers)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads the CPU code runs on (default: all cores; 1: sequential)")
    parser.add_argument("--runs", type=positive_int, default=10, help="calls timed (default 10)")
    parser.add_argument("--top", type=positive_int, default=10, help="regions printed (default 10)")
    parser.add_argument("--html", type=Path, metavar="FILE.html",
                        help="the page to write (default: MODEL's name with .profile.html, here)")
    add_progress_arguments(parser)
    parser.set_defaults(handler=run)


def default_page(spec: str) -> Path:
    """`model.onnx` -> model.profile.html; `pkg.mod:factory` -> factory.profile.html."""
    name = spec.rpartition(":")[2] if is_torch_factory(spec) else Path(spec).stem
    return Path(f"{name or 'model'}.profile.html")


def run(args: argparse.Namespace) -> int:
    from nnforge.errors import ProfileError
    from nnforge.profiling.html import write_page
    from nnforge.targets.cuda.model import CUDA_PROFILE_UNAVAILABLE

    if args.target == "cuda":  # before compiling, which takes a while
        raise ProfileError(CUDA_PROFILE_UNAVAILABLE)
    given = read_inputs(args.input)
    loaded = load_model_to_compile(args, given)
    profiled = timed_compile("profile", loaded, progress_setting(args), profiled=True, target=args.target,
                             level=args.level, threads=args.threads)
    profiled.description = args.model
    if given:
        inputs = in_signature_order(profiled.signature, given)
    elif loaded.example_inputs is not None and not args.dynamic_batch:
        inputs = [tensor.numpy() for tensor in loaded.example_inputs]
    else:
        inputs = random_inputs(profiled.signature, args.input_shape)
    profile = profiled.measure(inputs, args.runs)
    print(profile.text(top=args.top))
    page = write_page(profile, args.html or default_page(args.model))
    print(f"graph: {page}")
    return 0
