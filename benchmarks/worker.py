"""The processes of the CPU benchmark (started by run.py, one role each).

    worker.py prepare FOLDER THREADS NAME...            inputs, eager outputs, ONNX files, nnforge .so files
    worker.py standalone FOLDER THREADS BACKEND NAME    one backend alone; times rounds on request (stdin)
    worker.py in-process FOLDER THREADS NAME BACKENDS ROUNDS SECONDS ORDER
                                                        the backends in this process, taking turns (ORDER
                                                        "turns") or interleaved call by call ("calls")

Each writes its answers as JSON lines on the standard output it was started
with; everything else the libraries print goes to the standard error.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

# Calls before timing starts (caches, allocators, lazy initialisation).
WARM_UP_CALLS = 3
# Calls per backend and round at least, however long they take.
MIN_CALLS = 3
# Elements of the eager op run between two timed calls where the in-process
# backends take turns: above at::parallel_for's grain (32768 elements), so
# that it runs on PyTorch's OpenMP workers, and small (256 KiB in and out)
# beside the workloads' data.
PROGRAM_OP_ELEMENTS = 65536


def _protocol_stream():
    """The standard output for answers; file descriptor 1 becomes the standard error."""
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def _failure(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:500]


def _dynamo_graphs() -> int:
    """Graphs TorchDynamo has captured in this process so far (0 where torch is not loaded)."""
    if "torch" not in sys.modules:
        return 0
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def timed_calls(call: Callable[[], object], seconds: float,
                between: Callable[[], object] | None = None) -> list[float]:
    """Milliseconds of consecutive calls, for `seconds` and at least MIN_CALLS
    calls; `between` (untimed) after each."""
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < MIN_CALLS or time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
        if between is not None:
            between()
    return times


def program_op(threads: int) -> Callable[[], object]:
    """An eager op of the program around the compiled calls: PyTorch's
    OpenMP workers run it, on little data."""
    import torch

    torch.set_num_threads(threads)
    source, result = torch.rand(PROGRAM_OP_ELEMENTS), torch.empty(PROGRAM_OP_ELEMENTS)

    def call():
        with torch.inference_mode():
            torch.mul(source, 2.0, out=result)

    return call


def standalone(answer, folder: Path, threads: int, backend: str, name: str) -> None:
    """Builds one backend, checks it, says it is ready, then times a round per line of stdin."""
    from backends import checked_runner

    try:
        runner, error = checked_runner(backend, name, folder, threads)
        for _ in range(WARM_UP_CALLS):
            runner.call()
    except Exception as failure:
        traceback.print_exc()
        answer.write(json.dumps({"failed": _failure(failure)}) + "\n")
        return
    answer.write(json.dumps({"ready": True, "compile_s": runner.compile_s, "max_error": error,
                             "torch_loaded": "torch" in sys.modules, "dynamo": runner.dynamo,
                             "blas": runner.blas}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        if "round" not in request:
            break
        answer.write(json.dumps({"ms": timed_calls(runner.call, request["round"])}) + "\n")


def in_process(answer, folder: Path, threads: int, name: str, backends: list[str], rounds: int,
               seconds: float, order: str) -> None:
    """All `backends` in this process, `rounds` times (the order rotating):
    order "turns": a round of calls of each in turn, an eager op (`program_op`)
    between two calls; "calls": a call of each in turn."""
    from backends import checked_runner

    runners, result = {}, {"backends": {}, "failed": {}}
    for backend in backends:
        try:
            runners[backend], error = checked_runner(backend, name, folder, threads)
            result["backends"][backend] = {"compile_s": runners[backend].compile_s, "max_error": error,
                                           "dynamo": runners[backend].dynamo, "round_ms": [], "calls": 0}
        except Exception as failure:
            traceback.print_exc()
            result["failed"][backend] = _failure(failure)
    names = list(runners)
    for _ in range(WARM_UP_CALLS):
        for backend in names:
            runners[backend].call()
    graphs = _dynamo_graphs()
    between = program_op(threads) if order == "turns" else None
    cycle = 0
    for index in range(rounds):
        if order == "turns":
            shift = index % len(names)
            for backend in names[shift:] + names[:shift]:
                times = timed_calls(runners[backend].call, seconds, between)
                result["backends"][backend]["round_ms"].append(statistics.median(times))
                result["backends"][backend]["calls"] += len(times)
            continue
        samples: dict[str, list[float]] = {backend: [] for backend in names}
        deadline = time.perf_counter() + seconds * len(names)
        while min((len(s) for s in samples.values()), default=MIN_CALLS) < MIN_CALLS or time.perf_counter() < deadline:
            shift = cycle % len(names)
            for backend in names[shift:] + names[:shift]:
                start = time.perf_counter()
                runners[backend].call()
                samples[backend].append((time.perf_counter() - start) * 1e3)
            cycle += 1
        for backend, times in samples.items():
            result["backends"][backend]["round_ms"].append(statistics.median(times))
            result["backends"][backend]["calls"] += len(times)
    # Graphs TorchDynamo compiled while timing: a torch.compile backend recompiling call after call.
    result["graphs_compiled_while_timing"] = _dynamo_graphs() - graphs
    answer.write(json.dumps(result) + "\n")


def prepare(answer, folder: Path, threads: int, names: list[str]) -> None:
    from backends import prepare as prepare_workload

    for name in names:
        start = time.perf_counter()
        try:
            info = prepare_workload(name, folder, threads)
        except Exception as failure:
            traceback.print_exc()
            info = {"failed_all": _failure(failure)}
        print(f"prepared {name} in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        answer.write(json.dumps({name: info}) + "\n")


def main(argv: list[str]) -> None:
    answer = _protocol_stream()
    role, folder, threads, rest = argv[0], Path(argv[1]), int(argv[2]), argv[3:]
    if role == "prepare":
        prepare(answer, folder, threads, rest)
    elif role == "standalone":
        standalone(answer, folder, threads, *rest)
    elif role == "in-process":
        name, backends, rounds, seconds, order = rest
        in_process(answer, folder, threads, name, backends.split(","), int(rounds), float(seconds), order)
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
