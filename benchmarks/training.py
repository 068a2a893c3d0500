"""Training-step benchmark: nnforge vs eager PyTorch vs inductor.

    python benchmarks/training.py [--threads 2] [--steps 50] [--only mlp,gpt2] [--quick]

For each workload of examples/training_workloads.py and each backend (eager,
torch.compile with inductor, torch.compile with backend="nnforge"), a fresh
process trains the model from the same weights with Adam: a step is forward,
backward and optimizer. Recorded per backend: the median step time after the
first (the first compiles), the compile time (first step minus the median;
for nnforge also its own fwd+bwd compile time from `torch_backend.stats()`),
the process's peak resident memory, the losses (compared with eager's) and,
for nnforge, the graphs compiled and fallbacks. Every backend runs at its
defaults with the same torch thread count. Results go to
benchmarks/results/training.json with the machine described, and the table
into docs/training.md; `--quick` (2 workloads, 6 steps) writes a temporary
JSON file and leaves the docs alone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))
sys.path.insert(0, str(HERE))

from machine import describe, thread_variables  # noqa: E402

RESULTS = HERE / "results" / "training.json"
PAGE = HERE.parent / "docs" / "training.md"
BACKENDS = ("eager", "inductor", "nnforge")
WORKLOADS = ("mlp", "cnn", "encoder", "gpt2")
QUICK = ("mlp", "gpt2")
TABLE_START, TABLE_END = "<!-- training-benchmark:start -->", "<!-- training-benchmark:end -->"


def worker(name: str, backend: str, threads: int, steps: int) -> dict:
    """Trains `name` with `backend` in this process; the measurements."""
    import torch

    import training_workloads

    torch.set_num_threads(threads)
    workload = training_workloads.WORKLOADS[name]()
    model = workload.model
    if backend == "eager":
        forward = model
    elif backend == "inductor":
        forward = torch.compile(model)
    else:
        forward = torch.compile(model, backend="nnforge")
    optimizer = training_workloads.optimizer("adam", model, workload)
    model.train()
    torch.manual_seed(0)
    times, losses = [], []
    for step in range(steps):
        inputs, targets = workload.batch(step, workload.batch_size)
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = workload.loss(forward(inputs), targets)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    steady = statistics.median(times[1:])
    result = {
        "step_ms": steady * 1e3,
        "compile_s": max(times[0] - steady, 0.0),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "losses": losses,
    }
    if backend == "nnforge":
        from nnforge.integrations import torch_backend

        stats = torch_backend.stats()
        result["nnforge_compile_s"] = stats["compile_seconds"]
        result["graphs_compiled"] = stats["graphs_compiled"]
        result["fallbacks"] = stats["fallbacks"]
    return result


def _run(name: str, backend: str, threads: int, steps: int) -> dict:
    command = [sys.executable, __file__, "--worker", name, backend, "--threads", str(threads), "--steps", str(steps)]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        return {"error": (finished.stderr.strip().splitlines() or ["exit " + str(finished.returncode)])[-1]}
    return json.loads(finished.stdout.strip().splitlines()[-1])


def _table(report: dict) -> str:
    threads = report["settings"]["threads"]
    lines = [
        f"Adam, {report['settings']['steps']} steps, {threads} thread(s), {report['machine']['cpu']}; "
        "step = forward + backward + optimizer (median after the first); compile = first step minus "
        "the median (nnforge's own fwd+bwd compile time in brackets); RSS = the process's peak.",
        "",
        "| workload | eager ms | inductor ms | nnforge ms | nnforge / eager | compile inductor s | "
        "compile nnforge s | RSS eager / inductor / nnforge MB | max loss diff (rel) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for name, entry in report["workloads"].items():
        eager, inductor, nnforge = (entry.get(backend, {}) for backend in BACKENDS)

        def ms(result: dict) -> str:
            return f"{result['step_ms']:.2f}" if "step_ms" in result else "failed"

        ratio = nnforge["step_ms"] / eager["step_ms"] if "step_ms" in nnforge and "step_ms" in eager else None
        if ratio:
            ratios.append(ratio)
        rss = " / ".join(f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "-" for r in (eager, inductor, nnforge))
        compile_nnforge = (f"{nnforge['compile_s']:.1f} ({nnforge['nnforge_compile_s']:.1f})"
                           if "compile_s" in nnforge else "-")
        compile_inductor = f"{inductor['compile_s']:.1f}" if "compile_s" in inductor else "-"
        difference = entry.get("max_loss_difference")
        lines.append(
            f"| {name} | {ms(eager)} | {ms(inductor)} | {ms(nnforge)} | "
            f"{f'{ratio:.2f}x' if ratio else '-'} | {compile_inductor} | {compile_nnforge} | {rss} | "
            f"{f'{difference:.1e}' if difference is not None else '-'} |"
        )
    if ratios:
        geometric_mean = math.exp(sum(map(math.log, ratios)) / len(ratios))
        lines += ["", f"Geometric mean, nnforge / eager step time: {geometric_mean:.2f}x."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads for every backend (default 2)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--only", default="", help="comma-separated workloads: " + ", ".join(WORKLOADS))
    parser.add_argument("--quick", action="store_true", help=f"{', '.join(QUICK)}, 6 steps, JSON to a temporary file, no docs")
    parser.add_argument("--output", type=Path, help=f"JSON file (default {RESULTS.relative_to(HERE.parent)})")
    parser.add_argument("--worker", nargs=2, metavar=("WORKLOAD", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.threads, args.steps)))
        return 0
    variables = thread_variables()
    if variables:
        raise SystemExit("the benchmark runs every backend at its defaults; unset "
                         + ", ".join(f"{k}={v}" for k, v in sorted(variables.items())))
    names = [name for name in args.only.split(",") if name] or list(QUICK if args.quick else WORKLOADS)
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")
    if args.quick:
        args.steps = 6
    output = args.output or (Path(tempfile.gettempdir()) / "nnforge-training-quick.json" if args.quick else RESULTS)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": describe(),
        "settings": {"threads": args.threads, "steps": args.steps, "optimizer": "adam", "quick": args.quick},
        "workloads": {},
    }
    for name in names:
        entry = report["workloads"][name] = {}
        for backend in BACKENDS:
            print(f"{name}: {backend}", file=sys.stderr, flush=True)
            entry[backend] = _run(name, backend, args.threads, args.steps)
        eager, nnforge = entry["eager"], entry["nnforge"]
        if "losses" in eager and "losses" in nnforge:
            entry["max_loss_difference"] = max(
                abs(a - b) / abs(b) for a, b in zip(nnforge["losses"], eager["losses"])
            )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n")
    table = _table(report)
    print(table)
    print(f"results: {output}", file=sys.stderr)
    if not args.quick and PAGE.exists():
        text = PAGE.read_text()
        if TABLE_START in text and TABLE_END in text:
            before, rest = text.split(TABLE_START, 1)
            PAGE.write_text(before + TABLE_START + "\n" + table + "\n" + TABLE_END + rest.split(TABLE_END, 1)[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
