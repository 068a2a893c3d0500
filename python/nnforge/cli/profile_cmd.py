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
import sys
import time
from pathlib import Path

from nnforge.cli.models import (
    add_model_arguments,
    add_progress_arguments,
    is_torch_factory,
    load_model,
    positive_int,
    progress_setting,
    random_inputs,
    report_compile_times,
)
from nnforge.cli.run_cmd import in_signature_order, read_inputs


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="time each dispatch region of a model on this CPU",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="MODEL.onnx, MODEL.mlir or package.module:factory")
    parser.add_argument("-i", "--input", action="append", default=[], metavar="[NAME=]FILE.npy",
                        help="an input: by name, or by position in the order given (default: random inputs)")
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
    from nnforge.compiler import compile_profiled
    from nnforge.errors import ModelLoadError, ProfileError
    from nnforge.profiling.html import write_page
    from nnforge.targets.cuda.model import CUDA_PROFILE_UNAVAILABLE

    if args.target == "cuda":  # before compiling, which takes a while
        raise ProfileError(CUDA_PROFILE_UNAVAILABLE)
    if args.input_shape and not is_torch_factory(args.model):
        raise ModelLoadError("--input-shape applies to PyTorch factories only")
    given = read_inputs(args.input)
    example_inputs = None
    if is_torch_factory(args.model) and given and all(name is None for name, _ in given):
        import torch

        example_inputs = [torch.from_numpy(array) for _, array in given]
    loaded = load_model(args.model, args.input_shape, dynamic_batch=args.dynamic_batch,
                        example_inputs=example_inputs)
    start = time.perf_counter()
    profiled = compile_profiled(loaded.model, loaded.example_inputs, target=args.target, level=args.level,
                                dynamic_shapes=loaded.dynamic_shapes, threads=args.threads,
                                verbose=progress_setting(args))
    if progress_setting(args) is None and not sys.stderr.isatty():  # as `nnforge compile` does
        report_compile_times("profile", profiled.compile_times, time.perf_counter() - start)
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
