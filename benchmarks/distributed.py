"""Tensor parallelism on this machine: one rank with 2 threads vs 2 ranks with 1 thread each.

The MLP of issue #26 (batch 64, 4096 -> 16384 -> 4096, 512 MB of f32
weights) compiled twice: `nnforge.compile(model, x, threads=2)` (one
process) and `nnforge.compile(model, x, ranks=2, threads=1)` (the two
linear layers split Megatron-style, one all-reduce per call). Each is saved
and run in fresh processes (`python ... --worker`, or `mpiexec -n 2`), so
that the compiler and the PyTorch model are not counted in their memory.
Reported per configuration: median time per call, bytes the collectives
carry per call (the all-reduce buffer, per rank), resident memory per
process after the calls (VmRSS) and its peak (VmHWM); outputs are checked
against PyTorch (rtol 1e-4) first. Writes JSON (with the machine) and
prints it.

    python benchmarks/distributed.py [--model mlp|encoder] [--quick] [--calls 20] [--output ...json]

`--model encoder`: torch.nn.TransformerEncoderLayer (batch 8, sequence 128,
512 features, 8 heads, 2048 hidden), its attention split by heads and its
MLP Megatron-style (`sharding="auto"`, two all-reduces per call); also run
as 2 ranks with the MLP split alone (attention replicated on both ranks).
`--quick`: a 512 -> 2048 -> 512 MLP (or a 64-feature encoder layer), a few
calls (checks the script, not a figure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FULL = {"batch": 64, "features": 4096, "hidden": 16384}
QUICK = {"batch": 64, "features": 512, "hidden": 2048}
ENCODER = {"batch": 8, "sequence": 128, "features": 512, "heads": 8, "hidden": 2048}
ENCODER_QUICK = {"batch": 2, "sequence": 16, "features": 64, "heads": 4, "hidden": 128}
# The encoder layer's MLP pair alone: its attention replicated on every rank.
ENCODER_MLP_ONLY = {"linear1.weight": 0, "linear1.bias": 0, "linear2.weight": 1}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def worker(library: str, inputs: str, expected: str, calls: int, result: str) -> None:
    """Loads `library`, checks its output, times `calls` calls; writes this process's figures to `result`."""
    import nnforge

    model = nnforge.load(library)
    x = np.load(inputs)
    y = model(x)
    np.testing.assert_allclose(y, np.load(expected), rtol=1e-4, atol=1e-4)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    figures = {"rank": model.rank, "ranks": model.ranks, "median_s": statistics.median(times),
               "min_s": min(times), "rss_mib": _status_kib("VmRSS") / 1024, "peak_rss_mib": _status_kib("VmHWM") / 1024}
    Path(f"{result}.{model.rank}").write_text(json.dumps(figures))


def _machine() -> dict:
    from importlib.metadata import version

    cpu = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    isa = [name for name in ("avx512f", "avx2", "fma") if f" {name}" in flags]
    return {"cpu": cpu, "isa": isa, "usable_cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "nnforge": version("nnforge"), "mlir": version("xtc-mlir-python-bindings"), "mpich": version("mpich"),
            "torch": version("torch")}


def _run(command: list[str], folder: Path, result: str, ranks: int) -> list[dict]:
    subprocess.run(command, check=True, cwd=folder, timeout=3600)
    return [json.loads((folder / f"{result}.{rank}").read_text()) for rank in range(ranks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("mlp", "encoder"), default="mlp")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None,
                        help="default: benchmarks/results/distributed.json (distributed_encoder.json for the encoder)")
    parser.add_argument("--worker", nargs=5, metavar=("LIBRARY", "X", "EXPECTED", "CALLS", "RESULT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        library, inputs, expected, calls, result = args.worker
        worker(library, inputs, expected, int(calls), result)
        return

    import torch

    import nnforge
    from nnforge.distributed import mpi

    calls = args.calls or (5 if args.quick else 20)
    torch.manual_seed(0)
    if args.model == "mlp":
        sizes = QUICK if args.quick else FULL
        model = torch.nn.Sequential(torch.nn.Linear(sizes["features"], sizes["hidden"]), torch.nn.ReLU(),
                                    torch.nn.Linear(sizes["hidden"], sizes["features"])).eval()
        x = torch.randn(sizes["batch"], sizes["features"])
        variants = {"two_ranks_one_thread": "auto"}
    else:
        sizes = ENCODER_QUICK if args.quick else ENCODER
        model = torch.nn.TransformerEncoderLayer(sizes["features"], sizes["heads"], sizes["hidden"], dropout=0.0,
                                                 batch_first=True).eval()
        x = torch.randn(sizes["batch"], sizes["sequence"], sizes["features"])
        variants = {"two_ranks_one_thread": "auto", "two_ranks_one_thread_attention_replicated": ENCODER_MLP_ONLY}
    weights_mib = sum(parameter.numel() for parameter in model.parameters()) * 4 / 2**20
    report = {"machine": _machine(),
              "model": {"kind": args.model, **sizes, "weights_mib": weights_mib, "quick": args.quick, "calls": calls}}
    with tempfile.TemporaryDirectory(prefix="nnforge-bench-") as scratch:
        folder = Path(scratch)
        np.save(folder / "x.npy", x.numpy())
        with torch.no_grad():
            np.save(folder / "expected.npy", model(x).numpy())
        one = nnforge.compile(model, (x,), threads=2)
        one.save(folder / "one.so")
        del one
        script = str(Path(__file__).resolve())
        single = _run([sys.executable, script, "--worker", "one.so", "x.npy", "expected.npy", str(calls), "one"],
                      folder, "one", 1)
        report["one_rank_two_threads"] = single[0]
        for name, sharding in variants.items():
            two = nnforge.compile(model, (x,), ranks=2, threads=1, sharding=sharding)
            two.save(folder / f"{name}.so")
            collectives, split_parameters = two.collectives, sorted(two.sharding)
            del two
            split = _run([str(mpi.launcher()), "-n", "2", sys.executable, script, "--worker", f"{name}.so", "x.npy",
                          "expected.npy", str(calls), name], folder, name, 2)
            report[name] = {"ranks": split, "split_parameters": split_parameters,
                            "collectives_per_call": collectives,
                            "bytes_per_call": sum(size for _, size in collectives),
                            "time_ratio": max(rank["median_s"] for rank in split) / single[0]["median_s"]}
    output = args.output or Path(__file__).parent / "results" / (
        "distributed.json" if args.model == "mlp" else "distributed_encoder.json")
    output.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
