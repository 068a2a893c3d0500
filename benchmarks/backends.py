"""The backends the CPU benchmark compares, each at its defaults but for the thread count.

- eager: the PyTorch module (`torch.set_num_threads(N)`);
- inductor: `torch.compile(module)`;
- onnxruntime: an `InferenceSession` of the module exported to ONNX (`intra_op_num_threads=N`);
- nnforge: the module compiled ahead of time with `nnforge.compile(..., threads=N)`, saved as a `.so`
  and loaded with `nnforge.load` (numpy and ctypes: no torch where torch is not loaded already);
- nnforge-dynamo: `torch.compile(module, backend="nnforge")`, nnforge following PyTorch's thread count;
- affine: as nnforge, compiled with `optimize="affine"` (MLIR's affine passes instead of nnforge's
  schedules; docs/affine.md), in standalone mode only;
- numpy: `a @ b` on numpy's OpenBLAS (its thread count set with threadpoolctl), for the matmul
  workloads only: the BLAS ceiling beside eager's `torch.mm`, in standalone mode only.

`prepare` writes what the processes that time share (inputs, eager's outputs, the ONNX file, the
`.so`) into a folder; `runner` builds one backend's call from it in the calling process. Modules
are imported where a backend needs them, so that a process timing nnforge or onnxruntime alone
never imports torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The backends each kind of workload runs on, in the order of the tables.
BACKENDS = {
    "model": ("eager", "inductor", "onnxruntime", "nnforge", "affine"),
    "graph-break": ("eager", "inductor", "nnforge-dynamo"),
}
# The backend added to the workloads whose BLAS ceiling is timed (`Workload.blas_ceiling`).
BLAS_CEILING = "numpy"
# Backends timed in standalone mode only (a second code generator of nnforge's, not a program's
# choice; the BLAS ceiling).
STANDALONE_ONLY = ("affine", BLAS_CEILING)
# The nnforge backends of `prepare`: their `nnforge.compile` option and the suffix of their library.
NNFORGE_BUILDS = {"nnforge": ({}, ".so"), "affine": ({"optimize": "affine"}, ".affine.so")}
# Backends that need torch in their process.
TORCH_BACKENDS = ("eager", "inductor", "nnforge-dynamo")
# Outputs must match eager's within this (relative and absolute) before anything is timed.
TOLERANCE = 1e-3


@dataclass
class Runner:
    call: Callable[[], object]
    compile_s: float | None  # compile time (inductor, torch.compile: the first call); None where none here
    # torch.compile backends: graphs TorchDynamo captured, graph breaks, the
    # warnings of the first call (nnforge's backend warns where it runs a graph
    # eagerly) and, for nnforge's, the causes of its naive lowerings.
    dynamo: dict | None = None
    # numpy: its BLAS as threadpoolctl describes it (library, version, kernel, threads).
    blas: dict | None = None


@contextlib.contextmanager
def naive_lowerings() -> Iterator[list[str]]:
    """Collects the causes of nnforge's fallbacks to its naive lowering (scalar
    loops, one thread: a schedule failed on a graph) while the block runs."""
    from nnforge.targets.cpu.target import NAIVE_LOWERING

    causes: list[str] = []

    class Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if hasattr(record, NAIVE_LOWERING):
                causes.append(getattr(record, NAIVE_LOWERING))

    logger, handler = logging.getLogger("nnforge"), Collector(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield causes
    finally:
        logger.removeHandler(handler)


def as_arrays(value: object) -> list[np.ndarray]:
    """A call's outputs as numpy arrays, in order."""
    if isinstance(value, (list, tuple)):
        return [array for item in value for array in as_arrays(item)]
    if hasattr(value, "detach"):
        return [value.detach().numpy()]
    return [np.asarray(value)]


def check(name: str, backend: str, outputs: list[np.ndarray], expected: list[np.ndarray]) -> float:
    """The largest absolute difference from eager's outputs (AssertionError beyond TOLERANCE)."""
    assert len(outputs) == len(expected), f"{name}: {backend} returns {len(outputs)} outputs, eager {len(expected)}"
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE, err_msg=f"{name}: {backend} differs")
    return max((float(np.abs(got.astype(np.float64) - want).max()) for got, want in zip(outputs, expected)),
               default=0.0)


def _export_onnx(module, inputs, path: Path, names: list[str]) -> str | None:
    """Exports to ONNX (TorchScript exporter, else the dynamo-based one); None, or why both failed."""
    import torch

    failures = []
    for dynamo in (False, True):
        try:
            torch.onnx.export(module, inputs, str(path), input_names=names, dynamo=dynamo)
            return None
        except Exception as error:  # each exporter rejects some modules
            failures.append(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    return "ONNX export failed: " + "; ".join(failures)


def prepare(name: str, folder: Path, threads: int) -> dict:
    """Writes `name`'s inputs, eager outputs, ONNX file and nnforge `.so` into `folder`.

    Returns compile times, the causes of nnforge's naive lowerings (`naive_lowerings`) and, per
    backend, why it cannot run the workload.
    """
    import torch

    import nnforge
    from workloads import build

    torch.set_num_threads(threads)
    workload = build(name)
    with torch.inference_mode():
        expected = as_arrays(workload.module(*workload.inputs))
    arrays = [tensor.numpy() for tensor in workload.inputs]
    np.savez(folder / f"{name}.npz", **{f"input{i}": a for i, a in enumerate(arrays)},
             **{f"expected{i}": a for i, a in enumerate(expected)})
    info: dict = {"title": workload.title, "kind": workload.kind, "flops": workload.flops,
                  "blas_ceiling": workload.blas_ceiling, "compile_s": {}, "failed": {}}
    if workload.kind == "model":
        names = [f"input{i}" for i in range(len(arrays))]
        failure = _export_onnx(workload.module, workload.inputs, folder / f"{name}.onnx", names)
        if failure:
            info["failed"]["onnxruntime"] = failure
        for backend, (options, suffix) in NNFORGE_BUILDS.items():
            try:
                with naive_lowerings() as causes:
                    start = time.perf_counter()
                    compiled = nnforge.compile(workload.module, workload.inputs, threads=threads, **options)
                    info["compile_s"][backend] = time.perf_counter() - start
                if backend == "nnforge":
                    info["naive_lowerings"] = causes
                compiled.save(folder / f"{name}{suffix}")
            except Exception as error:  # recorded in the table rather than ending the benchmark
                info["failed"][backend] = f"{type(error).__name__}: {error}"
    (folder / f"{name}.json").write_text(json.dumps(info))
    return info


def load_data(name: str, folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(inputs, eager's outputs) as `prepare` wrote them."""
    data = np.load(folder / f"{name}.npz")
    count = sum(key.startswith("input") for key in data.files)
    return ([data[f"input{i}"] for i in range(count)],
            [data[f"expected{i}"] for i in range(len(data.files) - count)])


def _torch_runner(backend: str, name: str, threads: int) -> Runner:
    import torch

    from workloads import build

    torch.set_num_threads(threads)
    workload = build(name)
    module, inputs = workload.module, workload.inputs
    if backend == "inductor":
        module = torch.compile(module)
    elif backend == "nnforge-dynamo":
        module = torch.compile(module, backend="nnforge")

    def call():
        with torch.inference_mode():
            return module(*inputs)

    if backend == "eager":
        return Runner(call, None)
    from torch._dynamo.utils import counters

    graphs, breaks = counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())
    collecting = naive_lowerings() if backend == "nnforge-dynamo" else contextlib.nullcontext([])
    with warnings.catch_warnings(record=True) as caught, collecting as causes:
        warnings.simplefilter("always")
        start = time.perf_counter()
        call()
        seconds = time.perf_counter() - start
    dynamo = {"graphs": counters["stats"]["unique_graphs"] - graphs,
              "graph_breaks": sum(counters["graph_break"].values()) - breaks,
              "warnings": sorted({str(w.message).splitlines()[0] for w in caught if "nnforge" in str(w.message)}),
              "naive_lowerings": causes}
    return Runner(call, seconds, dynamo)


def runner(backend: str, name: str, folder: Path, threads: int) -> Runner:
    """`backend`'s call of workload `name`, built in this process."""
    if backend in TORCH_BACKENDS:
        return _torch_runner(backend, name, threads)
    inputs, _ = load_data(name, folder)
    if backend in NNFORGE_BUILDS:
        import nnforge

        model = nnforge.load(folder / f"{name}{NNFORGE_BUILDS[backend][1]}")
        return Runner(lambda: model(*inputs), None)
    if backend == "onnxruntime":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(folder / f"{name}.onnx"), options,
                                               providers=["CPUExecutionProvider"])
        feeds = {f"input{i}": array for i, array in enumerate(inputs)}
        return Runner(lambda: session.run(None, feeds), None)
    if backend == BLAS_CEILING:
        return _numpy_runner(inputs, threads)
    raise ValueError(f"unknown backend {backend!r}")


def _numpy_runner(inputs: list[np.ndarray], threads: int) -> Runner:
    """numpy's `a @ b` on `threads` threads of its BLAS."""
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(threads, user_api="blas")
    blas = [info for info in threadpool_info() if info["user_api"] == "blas"]
    if not blas:
        raise RuntimeError("threadpoolctl finds no BLAS loaded by numpy")
    a, b = inputs
    description = {key: blas[0].get(key) for key in ("internal_api", "version", "architecture", "num_threads")}
    return Runner(lambda: a @ b, None, blas=description)


def checked_runner(backend: str, name: str, folder: Path, threads: int) -> tuple[Runner, float]:
    """`runner`, its outputs checked against eager's: (runner, largest difference)."""
    built = runner(backend, name, folder, threads)
    _, expected = load_data(name, folder)
    return built, check(name, backend, as_arrays(built.call()), expected)
