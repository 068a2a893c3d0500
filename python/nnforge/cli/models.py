"""What the verbs share: reading MODEL arguments, compiling them, making inputs.

MODEL is an ONNX file, an MLIR file (.mlir/.mlirbc) or a PyTorch factory
`package.module:factory` returning the module, or (module, example inputs).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MLIR_SUFFIXES = (".mlir", ".mlirbc")
NNEF_SUFFIX = ".nnef"  # a folder (graph.nnef and .dat files) or a graph file
LIBRARY_SUFFIX = ".so"


def parse_shape(text: str) -> tuple[int, ...]:
    """`1x3x224x224` -> (1, 3, 224, 224), for argparse."""
    try:
        shape = tuple(int(size) for size in text.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or any(size <= 0 for size in shape):
        raise argparse.ArgumentTypeError(f"bad --input-shape {text!r}: expected e.g. 1x3x224x224")
    return shape


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser, *, levels: bool = True) -> None:
    """The options of every verb that compiles a MODEL."""
    from nnforge.importers.levels import LEVELS

    if levels:
        compiled_levels = [level for level in LEVELS if level != "torch"]
        parser.add_argument("--level", choices=compiled_levels, default=None,
                            help="where import stops before lowering (default linalg)")
    parser.add_argument("--input-shape", action="append", default=[], metavar="DxDx...",
                        type=parse_shape,
                        help="shape of an input, once per input, e.g. 1x3x224x224: "
                        "float32 example inputs of a PyTorch factory")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="PyTorch: make dimension 0 of every input dynamic")


def add_progress_arguments(parser: argparse.ArgumentParser) -> None:
    """--quiet / --verbose: what a verb that compiles says on stderr while it does."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true",
                       help="print nothing on stderr but errors")
    group.add_argument("-v", "--verbose", action="store_true",
                       help="report each compile stage as it happens, on a terminal or not "
                       "(default: on a terminal, once a compile takes over 2 s; elsewhere, "
                       "the stage times once compiled)")


def progress_setting(args: argparse.Namespace) -> bool | None:
    """`nnforge.compile`'s `verbose` for --quiet / --verbose."""
    return False if args.quiet else True if args.verbose else None


def is_torch_factory(spec: str) -> bool:
    """Whether MODEL names a PyTorch factory rather than a file."""
    return ":" in spec and not Path(spec).exists()


def refuse_overwriting_model(model: str, output: Path) -> None:
    """ModelLoadError where -o names MODEL itself (checked before the work, which takes a while)."""
    from nnforge.errors import ModelLoadError

    if Path(model).exists() and output.resolve() == Path(model).resolve():
        raise ModelLoadError(f"-o {output} would overwrite the model itself")


def add_input_argument(parser: argparse.ArgumentParser, default: str = "") -> None:
    """-i/--input [NAME=]FILE.npy, once per input (see `read_inputs`)."""
    parser.add_argument("-i", "--input", action="append", default=[], metavar="[NAME=]FILE.npy",
                        help=f"an input: by name, or by position in the order given{default}")


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


def load_saved(model: str, options: dict[str, Any]):
    """`nnforge.load` of a model.so; ModelLoadError if any of the compile
    `options` (flag -> value given) is set: they do not apply to it."""
    import nnforge
    from nnforge.errors import ModelLoadError

    given = [flag for flag, value in options.items() if value]
    if given:
        raise ModelLoadError(f"{model} is compiled already: {', '.join(given)} "
                             f"{'does' if len(given) == 1 else 'do'} not apply")
    return nnforge.load(model)


def load_model_to_compile(
    args: argparse.Namespace, given: Sequence[tuple[str | None, np.ndarray]] = ()
) -> LoadedModel:
    """The MODEL of a verb that compiles it, with its --input-shape and
    --dynamic-batch. A PyTorch factory's example inputs are, without
    --input-shape, the inputs `given` in order (if all are), else its own."""
    from nnforge.errors import ModelLoadError

    factory = is_torch_factory(args.model)
    if args.input_shape and not factory:
        raise ModelLoadError("--input-shape applies to PyTorch factories only: "
                             "ONNX and MLIR models keep the shapes they declare")
    example_inputs = None
    if factory and given and all(name is None for name, _ in given):
        import torch

        example_inputs = [torch.from_numpy(array) for _, array in given]
    return load_model(args.model, args.input_shape, dynamic_batch=args.dynamic_batch,
                      example_inputs=example_inputs)


def load_factory(
    spec: str, input_shapes: Sequence[tuple[int, ...]], example_inputs: Sequence[Any] | None = None
):
    """(module, example inputs) from `package.module:factory`.

    Example inputs are, by priority: float32 random tensors of `input_shapes`,
    `example_inputs`, the ones the factory returns.
    """
    import torch

    from nnforge.errors import ModelLoadError

    module_name, _, factory_name = spec.partition(":")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # factories in the current directory
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except Exception as error:  # the user's module: it may raise anything while importing
        raise ModelLoadError(f"cannot load the factory {spec!r}: {type(error).__name__}: {error}") from None
    try:
        made = factory()
    except Exception as error:
        raise ModelLoadError(f"the factory {spec!r} raised {type(error).__name__}: {error}") from None
    module, factory_inputs = (made if isinstance(made, tuple) else (made, None))
    if input_shapes:
        generator = torch.Generator().manual_seed(0)
        factory_inputs = tuple(torch.randn(shape, generator=generator) for shape in input_shapes)
    elif example_inputs is not None:
        factory_inputs = tuple(example_inputs)
    if factory_inputs is None:
        raise ModelLoadError(
            f"{spec} returns a module without example inputs: give --input-shape for each input"
        )
    if isinstance(factory_inputs, torch.Tensor):
        factory_inputs = (factory_inputs,)
    return module, tuple(factory_inputs)


@dataclass
class LoadedModel:
    """A MODEL argument, ready for `nnforge.compile`."""

    spec: str
    kind: str  # "torch", "onnx", "mlir" or "nnef"
    model: Any  # what nnforge.compile takes: the module or the file's path
    example_inputs: tuple[Any, ...] | None = None  # torch tensors, for a PyTorch factory
    dynamic_shapes: Any = None


def load_model(
    spec: str,
    input_shapes: Sequence[tuple[int, ...]] = (),
    *,
    dynamic_batch: bool = False,
    example_inputs: Sequence[Any] | None = None,
) -> LoadedModel:
    """Reads MODEL: a PyTorch factory, an ONNX file or an MLIR file."""
    from nnforge.errors import ModelLoadError

    if is_torch_factory(spec):
        import torch

        module, inputs = load_factory(spec, input_shapes, example_inputs)
        dynamic_shapes = None
        if dynamic_batch:
            batch = torch.export.Dim("batch")
            dynamic_shapes = tuple({0: batch} for _ in inputs)
        return LoadedModel(spec, "torch", module, inputs, dynamic_shapes)
    path = Path(spec)
    if not path.is_file() and not (path.suffix == NNEF_SUFFIX and path.is_dir()):
        raise ModelLoadError(f"{spec}: no such file (MODEL is a .onnx, .mlir or .nnef file, "
                             "or a PyTorch factory package.module:factory)")
    if dynamic_batch:
        raise ModelLoadError("--dynamic-batch applies to PyTorch factories only: "
                             "ONNX and MLIR models keep the shapes they declare")
    if path.suffix == ".onnx":
        return LoadedModel(spec, "onnx", str(path))
    if path.suffix in MLIR_SUFFIXES:
        return LoadedModel(spec, "mlir", str(path))
    if path.suffix == NNEF_SUFFIX:
        return LoadedModel(spec, "nnef", str(path))
    raise ModelLoadError(
        f"{spec}: unknown kind of model (expected .onnx, .mlir, .mlirbc, .nnef "
        "or a PyTorch factory package.module:factory)"
    )


def report_compile_times(verb: str, times: dict[str, float], total: float) -> None:
    """One stderr line per compile stage, then the total."""
    for stage, seconds in times.items():
        print(f"nnforge {verb}: {stage}: {seconds:.3f} s", file=sys.stderr)
    print(f"nnforge {verb}: compiled in {total:.2f} s", file=sys.stderr)


def timed_compile(verb: str, loaded: LoadedModel, verbose: bool | None = None, *, profiled: bool = False,
                  **options: Any):
    """`nnforge.compile` of a loaded MODEL with `options` (level, target,
    ...), or with `profiled` `nnforge.compiler.compile_profiled` (timers
    around each region). Its stages are reported on stderr: as they happen
    (see `nnforge.compile`'s `verbose`), or else, unless `verbose` is
    False, their times once compiled (stderr is no terminal)."""
    import nnforge
    from nnforge.compiler import compile_profiled

    start = time.perf_counter()
    compiled = (compile_profiled if profiled else nnforge.compile)(
        loaded.model, loaded.example_inputs, dynamic_shapes=loaded.dynamic_shapes, verbose=verbose, **options
    )
    if verbose is None and not sys.stderr.isatty():
        report_compile_times(verb, compiled.compile_times, time.perf_counter() - start)
    return compiled


def random_inputs(signature, input_shapes: Sequence[tuple[int, ...]] = (), seed: int = 0):
    """Random numpy inputs matching a signature.

    Shapes come from `input_shapes` when given (one per input), otherwise
    from the signature with each dynamic dimension set to 1. Floats are
    standard normal, integers in [0, 2) (safe as indices), booleans random.
    """
    from nnforge.errors import InputError
    from nnforge.runtime import numpy_dtype

    if input_shapes and len(input_shapes) != len(signature.inputs):
        raise InputError(
            f"{len(input_shapes)} --input-shape given for {len(signature.inputs)} inputs "
            f"({', '.join(spec.describe() for spec in signature.inputs)})"
        )
    rng = np.random.default_rng(seed)
    arrays = []
    for index, spec in enumerate(signature.inputs):
        shape = input_shapes[index] if input_shapes else tuple(size or 1 for size in spec.shape)
        dtype = numpy_dtype(spec.dtype)
        if dtype == np.bool_:
            arrays.append(rng.integers(0, 2, shape).astype(np.bool_))
        elif np.issubdtype(dtype, np.integer):
            arrays.append(rng.integers(0, 2, shape).astype(dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype(dtype))
    return arrays


def describe_array(array: np.ndarray) -> str:
    """Shape, dtype and summary statistics of an array, on one line."""
    shape = "x".join(str(size) for size in array.shape) or "scalar"
    text = f"{shape} {array.dtype}"
    if array.size and (array.dtype.kind in "biuf" or array.dtype.name == "bfloat16"):
        values = array.astype(np.float64)
        text += (f"  min {values.min():.6g}  max {values.max():.6g}  "
                 f"mean {values.mean():.6g}  std {values.std():.6g}")
    return text
