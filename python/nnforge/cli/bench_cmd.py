"""`nnforge bench`: compile time and latency of nnforge, beside onnxruntime and PyTorch eager.

MODEL is as for `nnforge compile`, or a model.so (no compile then). Inputs
are random, shaped by the signature (each dynamic dimension 1) or by
--input-shape; a PyTorch factory's own example inputs are used as they are.
onnxruntime runs ONNX models and PyTorch factories (exported to ONNX), torch
eager runs PyTorch factories, each where installed. Runs are interleaved (one
of each backend per round) so that machine load hits all alike; the table
gives the median and min latency and each backend's median relative to
nnforge's (above 1: nnforge is faster).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nnforge.cli.models import (
    LIBRARY_SUFFIX,
    LoadedModel,
    add_model_arguments,
    add_progress_arguments,
    load_model,
    load_saved,
    positive_int,
    progress_setting,
    random_inputs,
    timed_compile,
)

Backend = Callable[[], list[np.ndarray]]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="time a model compiled by nnforge against onnxruntime and PyTorch", description=__doc__
    )
    parser.add_argument("model", metavar="MODEL",
                        help="MODEL.onnx, MODEL.mlir, package.module:factory or model.so")
    parser.add_argument("--repeat", type=positive_int, default=20,
                        help="timed runs of each backend (default 20)")
    parser.add_argument("--warmup", type=_non_negative, default=3,
                        help="untimed runs of each backend first (default 3)")
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1,
                        help="threads for every backend: nnforge, onnxruntime, torch "
                        "(default: all cores)")
    add_model_arguments(parser)
    add_progress_arguments(parser)
    parser.set_defaults(handler=run)


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text}")
    return value


def _as_list(outputs) -> list[np.ndarray]:
    """Outputs of any backend as a list of numpy arrays."""
    if isinstance(outputs, (list, tuple)):
        return [np.asarray(output) for output in outputs]
    if outputs is None:
        return []
    return [np.asarray(outputs)]


def _onnxruntime_backend(
    loaded: LoadedModel, inputs: list[np.ndarray], threads: int, scratch: Path
) -> Backend | str:
    """A backend running the model in onnxruntime, or why there is none."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    import onnxruntime

    path = loaded.model
    if loaded.kind == "torch":
        import torch

        path = str(scratch / "exported.onnx")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporter's deprecation notices
                torch.onnx.export(loaded.model, loaded.example_inputs, path, dynamo=False)
        except Exception as error:  # any exporter failure only means no onnxruntime row
            return f"torch.onnx.export failed: {str(error).splitlines()[0]}"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [node.name for node in session.get_inputs()]
    if len(names) != len(inputs):
        return f"the ONNX model takes {len(names)} inputs, nnforge's {len(inputs)}"
    feed = dict(zip(names, inputs))
    return lambda: session.run(None, feed)


def _torch_backend(loaded: LoadedModel, threads: int) -> Backend:
    import torch

    torch.set_num_threads(threads)
    module, inputs = loaded.model, loaded.example_inputs

    def call() -> list[np.ndarray]:
        with torch.no_grad():
            outputs = module(*inputs)
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        return [output.numpy() for output in outputs]

    return call


def _time_interleaved(backends: dict[str, Backend], warmup: int, repeat: int) -> dict[str, list[float]]:
    """Seconds per run of each backend, one run of each per round, rotating who goes first."""
    for backend in backends.values():
        for _ in range(warmup):
            backend()
    names = list(backends)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeat):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            backends[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def _max_difference(reference: list[np.ndarray], other: list[np.ndarray]) -> str:
    if len(reference) != len(other):
        return f"{len(other)} outputs vs nnforge's {len(reference)}"
    if any(a.shape != b.shape for a, b in zip(reference, other)):
        return "output shapes differ"
    worst = max((float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max(initial=0))
                 for a, b in zip(reference, other)), default=0.0)
    return f"max |diff| vs nnforge {worst:.2e}"


def run(args: argparse.Namespace) -> int:
    if Path(args.model).suffix == LIBRARY_SUFFIX:
        loaded = None
        executable = load_saved(args.model, {"--level": args.level, "--dynamic-batch": args.dynamic_batch})
        compile_note = "loaded, not compiled"
    else:
        loaded = load_model(args.model, args.input_shape, dynamic_batch=args.dynamic_batch)
        start = time.perf_counter()
        executable = timed_compile("bench", loaded, progress_setting(args), level=args.level, threads=args.threads)
        compile_note = f"{time.perf_counter() - start:.2f} s"

    if loaded is not None and loaded.kind == "torch":
        inputs = [tensor.detach().numpy() for tensor in loaded.example_inputs]
    else:
        inputs = random_inputs(executable.signature, args.input_shape)

    backends: dict[str, Backend] = {"nnforge": lambda: _as_list(executable(*inputs))}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nnforge-bench-") as scratch:
        if loaded is not None and loaded.kind in ("onnx", "torch"):
            backend = _onnxruntime_backend(loaded, inputs, args.threads, Path(scratch))
            if isinstance(backend, str):
                notes.append(f"onnxruntime skipped: {backend}")
            else:
                backends["onnxruntime"] = backend
        if loaded is not None and loaded.kind == "torch":
            backends["torch eager"] = _torch_backend(loaded, args.threads)
        print(f"nnforge bench: {len(backends)} backend(s), {args.warmup} warmup and "
              f"{args.repeat} timed runs each, interleaved", file=sys.stderr)
        seconds = _time_interleaved(backends, args.warmup, args.repeat)
        outputs = {name: _as_list(backend()) for name, backend in backends.items()}

    shapes = ", ".join(f"{spec.name}={'x'.join(map(str, array.shape))}"
                       for spec, array in zip(executable.signature.inputs, inputs))
    print(f"model: {args.model}  inputs: {shapes or 'none'}")
    print(f"compile: {compile_note}   threads: {args.threads}")
    print(f"{'backend':<14}{'median ms':>12}{'min ms':>12}{'time/nnforge':>14}  outputs")
    base = statistics.median(seconds["nnforge"])
    for name, times in seconds.items():
        median = statistics.median(times)
        check = "reference" if name == "nnforge" else _max_difference(
            outputs["nnforge"], outputs[name])
        print(f"{name:<14}{median * 1e3:>12.3f}{min(times) * 1e3:>12.3f}"
              f"{median / base:>13.2f}x  {check}")
    for note in notes:
        print(note)
    return 0
