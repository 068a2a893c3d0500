"""Benchmarks nnforge against PyTorch eager, inductor and onnxruntime on the CPU, in two modes.

    python benchmarks/run.py                      # all workloads, 2 threads; JSON + docs/performance.md
    python benchmarks/run.py --quick              # 3 workloads, 2 short rounds: checks that it runs
    python benchmarks/run.py --only matmul-512,graph-break-mlp --threads 1

Every backend runs at its defaults with the same thread count (--threads):
no OMP_*, KMP_*, GOMP_* or other thread-pool variable is set, and the
benchmark refuses to run where the environment has one, except OpenBLAS's
kernel choice (machine.OPENBLAS_KERNEL_VARIABLES), which only numpy's BLAS
reads: the numpy process starts without it.

- standalone: each backend in a process of its own (nnforge: the saved .so
  loaded with nnforge.load, without torch, and the same for nnforge's affine
  generator; onnxruntime: an InferenceSession, without torch; eager,
  inductor: the module; for the matmuls, numpy's `a @ b` as the BLAS ceiling
  beside eager's torch.mm), the processes taking turns
  over rounds (the order rotating, a pause before each turn so that the
  previous process's workers go idle);
- in-process: the PyTorch-side backends (eager, inductor, nnforge's .so,
  nnforge under torch.compile) in one process, as in the program of a
  torch.compile user: they take turns by rounds (the order rotating), and
  an eager op of the program runs on PyTorch's workers between two calls;
- in-process with onnxruntime: every backend, an onnxruntime session too
  (its thread pool spins between runs, at its defaults), a call of each in
  turn: each call also starts with the caches holding the other backends'
  weights.

Each figure is the median over rounds of a round's median call (ms).
Outputs are checked against eager's (rtol/atol 1e-3) in every process
before anything is timed. Results go to benchmarks/results/cpu.json and are
rendered into docs/performance.md (see render.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backends import BACKENDS, BLAS_CEILING, STANDALONE_ONLY
from machine import OPENBLAS_KERNEL_VARIABLES, blas_environment, describe, thread_variables
from render import PAGE, blas_ceiling, render, write_page
from workloads import BUILDERS, QUICK

HERE = Path(__file__).resolve().parent
WORKER = HERE / "worker.py"
RESULTS = HERE / "results" / "cpu.json"
# Seconds a process may take to prepare one workload (compiling ResNet-18, inductor's first call).
START_TIMEOUT = 1800.0
# How the backends of each in-process mode share the process (worker.py in-process): "turns",
# rounds of one backend's calls with an eager op of the program between them; "calls", a call of
# each backend in turn. Each backend of the call-by-call order starts every call after the others'
# calls on their own copies of the weights: colder caches than a program with one compiled model
# has, at any thread count.
ORDERS = {"in_process": "turns", "with_onnxruntime": "calls"}


class WorkerFailed(Exception):
    pass


def _start(*arguments: str, environment: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *arguments], cwd=HERE, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1, env=environment)


def _answer(process: subprocess.Popen, timeout: float) -> dict:
    """The next JSON line a worker writes (WorkerFailed if it ends or takes longer than `timeout` s)."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            process.kill()
            raise WorkerFailed(f"no answer within {timeout:.0f} s")
    line = process.stdout.readline()
    if not line:
        raise WorkerFailed(f"the process ended (exit status {process.wait()}; its messages are above)")
    return json.loads(line)


def _request(process: subprocess.Popen, message: dict) -> None:
    process.stdin.write(json.dumps(message) + "\n")
    process.stdin.flush()


def _summary(round_ms: list[float], calls: int, **details) -> dict:
    return {"ms": statistics.median(round_ms), "round_ms": round_ms, "calls": calls, **details}


def prepare(names: list[str], folder: Path, threads: int) -> dict:
    """What worker.py prepare writes for each workload: title, kind, FLOPs, compile times, failures."""
    process = _start("prepare", str(folder), str(threads), *names)
    infos = {}
    for name in names:
        infos.update(_answer(process, START_TIMEOUT))
    process.wait()
    return infos


def standalone(name: str, backends: list[str], folder: Path, threads: int, rounds: int, seconds: float,
               pause: float) -> dict:
    """Each backend in a process of its own, the processes timing a round in turn."""
    results: dict = {}
    workers: dict[str, subprocess.Popen] = {}
    for backend in backends:
        process = _start("standalone", str(folder), str(threads), backend, name,
                         environment=blas_environment() if backend == BLAS_CEILING else None)
        try:
            ready = _answer(process, START_TIMEOUT)
        except WorkerFailed as failure:
            ready = {"failed": str(failure)}
        if "failed" in ready:
            results[backend] = {"failed": ready["failed"]}
            process.kill()
            process.wait()
            continue
        workers[backend] = process
        results[backend] = {"compile_s": ready["compile_s"], "max_error": ready["max_error"],
                            "torch_loaded": ready["torch_loaded"], "dynamo": ready["dynamo"], "round_ms": [],
                            "calls": 0}
        if ready["blas"]:
            results[backend]["blas"] = ready["blas"]
    order = list(workers)
    for index in range(rounds if order else 0):
        shift = index % len(order)
        for backend in order[shift:] + order[:shift]:
            if "failed" in results[backend]:
                continue
            time.sleep(pause)
            try:
                _request(workers[backend], {"round": seconds})
                times = _answer(workers[backend], START_TIMEOUT)["ms"]
            except (WorkerFailed, BrokenPipeError) as failure:
                results[backend] = {"failed": f"during round {index}: {failure}"}
                continue
            results[backend]["round_ms"].append(statistics.median(times))
            results[backend]["calls"] += len(times)
    for backend, process in workers.items():
        if process.poll() is None:
            _request(process, {"quit": True})
        process.stdin.close()
        process.wait()
    return {backend: _summary(**result) if "round_ms" in result else result for backend, result in results.items()}


def in_process(name: str, backends: list[str], folder: Path, threads: int, rounds: int, seconds: float,
               order: str) -> dict:
    """`backends` in one process, taking turns (`order` "turns": rounds, an
    eager op between calls) or a call of each in turn ("calls")."""
    process = _start("in-process", str(folder), str(threads), name, ",".join(backends), str(rounds), str(seconds),
                     order)
    try:
        answer = _answer(process, START_TIMEOUT + rounds * seconds * len(backends) * 10)
    except WorkerFailed as failure:
        return {backend: {"failed": str(failure)} for backend in backends}
    process.wait()
    results = {backend: {"failed": reason} for backend, reason in answer["failed"].items()}
    for backend, result in answer["backends"].items():
        results[backend] = _summary(**result)
    if answer["graphs_compiled_while_timing"]:
        for backend in ("inductor", "nnforge-dynamo"):
            if backend in results and "ms" in results[backend]:
                results[backend]["warning"] = (f"TorchDynamo compiled {answer['graphs_compiled_while_timing']} graphs "
                                              "while the backends were timed (recompilation between calls)")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for every backend (default 2)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=0.5, help="timed seconds per backend and round")
    parser.add_argument("--pause", type=float, default=0.3,
                        help="seconds before each standalone turn (idle workers of the previous process go to sleep)")
    parser.add_argument("--only", default="", help="comma-separated workload names: " + ", ".join(BUILDERS))
    parser.add_argument("--quick", action="store_true",
                        help=f"{', '.join(QUICK)}; 2 rounds of 0.05 s; JSON to a temporary file, no docs")
    parser.add_argument("--output", type=Path, help=f"JSON file (default {RESULTS.relative_to(HERE.parent)})")
    parser.add_argument("--no-docs", action="store_true", help=f"leave {PAGE.name} as it is")
    args = parser.parse_args(argv)
    variables = {name: value for name, value in thread_variables().items() if name not in OPENBLAS_KERNEL_VARIABLES}
    if variables:
        raise SystemExit("the benchmark runs every backend at its defaults; unset "
                         + ", ".join(f"{k}={v}" for k, v in sorted(variables.items())))
    names = [name for name in args.only.split(",") if name] or list(QUICK if args.quick else BUILDERS)
    unknown = [name for name in names if name not in BUILDERS]
    if unknown:
        raise SystemExit(f"unknown workloads {unknown}; known: {', '.join(BUILDERS)}")
    if args.quick:
        args.rounds, args.seconds, args.pause = 2, 0.05, 0.05
    output = args.output or (Path(tempfile.gettempdir()) / "nnforge-cpu-quick.json" if args.quick else RESULTS)
    started = time.perf_counter()
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": describe(),
        "settings": {"threads": args.threads, "rounds": args.rounds, "seconds": args.seconds,
                     "pause": args.pause, "quick": args.quick, "orders": ORDERS},
        "workloads": {},
    }
    with tempfile.TemporaryDirectory(prefix="nnforge-bench-") as scratch:
        folder = Path(scratch)
        infos = prepare(names, folder, args.threads)
        for name in names:
            info = infos[name]
            entry = report["workloads"][name] = {**info, "standalone": {}, "in_process": {}, "with_onnxruntime": {}}
            if "failed_all" in info:
                continue
            backends = [b for b in BACKENDS[info["kind"]] if b not in info["failed"]]
            backends += [BLAS_CEILING] if info["blas_ceiling"] else []
            print(f"{name}: standalone", file=sys.stderr, flush=True)
            entry["standalone"] = standalone(name, backends, folder, args.threads, args.rounds, args.seconds,
                                             args.pause)
            if info["blas_ceiling"]:
                entry["ceiling"] = blas_ceiling(entry)
            print(f"{name}: in-process", file=sys.stderr, flush=True)
            in_process_backends = [backend for backend in backends if backend not in STANDALONE_ONLY]
            torch_side = [backend for backend in in_process_backends if backend != "onnxruntime"]
            entry["in_process"] = in_process(name, torch_side, folder, args.threads, args.rounds, args.seconds,
                                             ORDERS["in_process"])
            if "onnxruntime" in backends:
                print(f"{name}: in-process with onnxruntime", file=sys.stderr, flush=True)
                entry["with_onnxruntime"] = in_process(name, in_process_backends, folder, args.threads, args.rounds,
                                                       args.seconds, ORDERS["with_onnxruntime"])
    report["total_s"] = time.perf_counter() - started
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {output}", file=sys.stderr)
    text = render(report, str(output.relative_to(HERE.parent)) if output.is_relative_to(HERE.parent) else str(output))
    if args.quick or args.no_docs:
        print(text)
    else:
        write_page(text)
        print(f"wrote {PAGE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
