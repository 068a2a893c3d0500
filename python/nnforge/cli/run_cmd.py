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
    add_model_arguments,
    add_progress_arguments,
    describe_array,
    is_torch_factory,
    load_model,
    progress_setting,
    timed_compile,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a model on inputs from .npy files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL",
                        help="model.so (from nnforge compile), MODEL.onnx, MODEL.mlir "
                        "or package.module:factory")
    parser.add_argument("-i", "--input", action="append", default=[], metavar="[NAME=]FILE.npy",
                        help="an input: by name, or by position in the order given")
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


def read_inputs(items: list[str]) -> list[tuple[str | None, np.ndarray]]:
    """(input name or None for positional, array) for each --input."""
    from nnforge.errors import InputError

    inputs = []
    for item in items:
        name, path = None, item
        if "=" in item and not Path(item).exists():
            name, path = item.split("=", 1)
            if not name:
                raise InputError(f"--input {item!r}: empty input name before '='")
        if not Path(path).is_file():
            raise InputError(f"--input {item!r}: {path}: no such file")
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InputError(f"--input {item!r}: {path} is not a numpy .npy file: {error}") from None
        if not isinstance(array, np.ndarray):
            raise InputError(f"--input {item!r}: {path} holds several arrays (.npz); "
                             "give one .npy file per input")
        inputs.append((name, array))
    return inputs


def in_signature_order(signature, given: list[tuple[str | None, np.ndarray]]) -> list[np.ndarray]:
    """The given inputs in the signature's order: positional ones first, then by name."""
    from nnforge.errors import InputError

    names = [spec.name for spec in signature.inputs]
    expected = ", ".join(spec.describe() for spec in signature.inputs) or "none"
    slots: dict[str, np.ndarray] = {}
    positional = [array for name, array in given if name is None]
    if len(positional) > len(names):
        raise InputError(f"{len(positional)} inputs given in order, but the model takes "
                         f"{len(names)} ({expected})")
    slots.update(zip(names, positional))
    for name, array in given:
        if name is None:
            continue
        if name not in names:
            raise InputError(f"the model has no input named {name!r} (its inputs: {expected})")
        if name in slots:
            raise InputError(f"input {name!r} is given twice")
        slots[name] = array
    missing = [spec.describe() for spec in signature.inputs if spec.name not in slots]
    if missing:
        raise InputError(f"missing inputs: {', '.join(missing)} (give --input NAME=FILE.npy)")
    return [slots[name] for name in names]


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
    import nnforge
    from nnforge.errors import ModelLoadError, SaveError

    if args.ranks != 1:
        return _run_on_ranks(args)
    given = read_inputs(args.input)
    if Path(args.model).suffix == LIBRARY_SUFFIX:
        if args.level or args.input_shape or args.dynamic_batch:
            raise ModelLoadError(f"{args.model} is compiled already: "
                                 "--level, --input-shape and --dynamic-batch do not apply")
        executable = nnforge.load(args.model)
    else:
        if args.input_shape and not is_torch_factory(args.model):
            raise ModelLoadError("--input-shape applies to PyTorch factories only")
        example_inputs = None
        if is_torch_factory(args.model) and given and all(name is None for name, _ in given):
            import torch

            example_inputs = [torch.from_numpy(array) for _, array in given]
        loaded = load_model(args.model, args.input_shape, dynamic_batch=args.dynamic_batch,
                            example_inputs=example_inputs)
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
