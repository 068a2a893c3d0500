"""`nnforge run`: run a compiled model (model.so) or compile and run MODEL on .npy inputs.

Inputs are numpy files, given by input name (`--input x=x.npy`) or in order
(`--input x.npy`). With --output DIR each output is written to
DIR/<output name>.npy; otherwise its shape, dtype and summary statistics are
printed. For a PyTorch factory without --input-shape, the input files are
also the example inputs it is compiled for. A model.so compiled for N
ranks (`nnforge.compile(..., ranks=N)`) runs with --ranks N: N processes
started by MPICH's mpiexec, each computing with its part of the weights;
the outputs are written once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nnforge.cli.models import (
    LIBRARY_SUFFIX,
    add_input_argument,
    add_model_arguments,
    add_progress_arguments,
    describe_array,
    in_signature_order,
    load_model_to_compile,
    load_saved,
    progress_setting,
    read_inputs,
    timed_compile,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run a model on inputs from .npy files", description=__doc__)
    parser.add_argument("model", metavar="MODEL",
                        help="model.so (from nnforge compile), MODEL.onnx, MODEL.mlir "
                        "or package.module:factory")
    add_input_argument(parser)
    parser.add_argument("--output", type=Path, metavar="DIR",
                        help="write each output to DIR/<output name>.npy")
    parser.add_argument("--ranks", type=int, default=1, metavar="N",
                        help="run model.so, compiled for N ranks, on N processes (MPICH's mpiexec)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                        help="with --ranks: stop the ranks after this long (default 600)")
    add_model_arguments(parser)
    add_progress_arguments(parser)
    parser.set_defaults(handler=run)


def _run_on_ranks(args: argparse.Namespace) -> int:
    """Starts `nnforge run` of a model.so on --ranks processes."""
    from nnforge.distributed.launch import run_ranks
    from nnforge.errors import ArgumentError

    if Path(args.model).suffix != LIBRARY_SUFFIX:
        raise ArgumentError(f"--ranks runs a model.so compiled for that many ranks "
                            f"(nnforge.compile(..., ranks=N) and save), not {args.model}")
    arguments = ["run", args.model, *[part for item in args.input for part in ("--input", item)]]
    if args.output:
        arguments += ["--output", str(args.output)]
    return run_ranks(args.ranks, arguments, args.timeout)


def _make_folder(folder: Path) -> None:
    """Creates the --output folder; SaveError where it cannot be."""
    from nnforge.errors import SaveError

    if folder.exists() and not folder.is_dir():
        raise SaveError(f"--output {folder}: it is a file; give a folder for the outputs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SaveError(f"--output {folder}: cannot create the folder: {error.strerror or error}") from None


def run(args: argparse.Namespace) -> int:
    from nnforge.errors import SaveError

    if args.ranks != 1:
        return _run_on_ranks(args)
    given = read_inputs(args.input)
    if Path(args.model).suffix == LIBRARY_SUFFIX:
        executable = load_saved(args.model, {"--level": args.level, "--input-shape": args.input_shape,
                                             "--dynamic-batch": args.dynamic_batch})
    else:
        loaded = load_model_to_compile(args, given)
        executable = timed_compile("run", loaded, progress_setting(args), level=args.level)

    outputs = executable(*in_signature_order(executable.signature, given))
    if getattr(executable, "rank", 0) != 0:
        return 0  # one of several ranks: rank 0 writes the outputs
    if not isinstance(outputs, list):
        outputs = [] if outputs is None else [outputs]
    if args.output:
        _make_folder(args.output)
    for spec, output in zip(executable.signature.outputs, outputs):
        if args.output:
            path = args.output / f"{spec.name}.npy"
            try:
                np.save(path, output)
            except OSError as error:
                raise SaveError(f"cannot write {path}: {error.strerror or error}") from None
            print(f"{spec.name}: {describe_array(output)} -> {path}")
        else:
            print(f"{spec.name}: {describe_array(output)}")
    return 0
