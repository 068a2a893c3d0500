"""Benchmarks nnforge against PyTorch eager and onnxruntime on the CPU.

Every workload runs through each backend at the same thread count, with
the backends interleaved within each repeat (so that machine noise hits
them alike); medians over repeats are reported. Results are checked
against eager PyTorch (rtol/atol 1e-3) before anything is timed. Prints a
markdown table, plus numpy's sgemm rate at 1024^2 for scale.

    python benchmarks/run.py [--threads 1] [--repeats 10] [--only matmul-1024,mlp]

nnforge is `nnforge.compile(...)` (optimized code generation, the default);
"naive" is `nnforge.compile(..., optimize=False)`, skipped where one run
would take over `--naive-limit` seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import nnforge

TOLERANCE = 1e-3
# Rough naive-path rate (scalar loops), to skip runs that would take too long.
NAIVE_FLOPS_PER_SECOND = 0.5e9


@dataclass
class Workload:
    name: str
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    flops: float  # per run, for GFLOP/s and to estimate the naive time


class MatMul(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


class Softmax(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=-1)


class ResidualBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN, plus the input, ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + x)


def workloads() -> list[Workload]:
    torch.manual_seed(0)
    items = []
    for n in (512, 1024, 2048):
        items.append(Workload(f"matmul-{n}", MatMul(), (torch.randn(n, n), torch.randn(n, n)), 2.0 * n**3))
    mlp = nn.Sequential(nn.Linear(1024, 4096), nn.GELU(), nn.Linear(4096, 1024))
    items.append(Workload("mlp-64x1024x4096", mlp, (torch.randn(64, 1024),), 2 * 2.0 * 64 * 1024 * 4096))
    channels, size = 64, 32
    items.append(
        Workload(
            "resnet-block-64c-32px",
            ResidualBlock(channels),
            (torch.randn(1, channels, size, size),),
            2 * 2.0 * channels * channels * 9 * size * size,
        )
    )
    encoder = nn.TransformerEncoderLayer(d_model=256, nhead=4, dim_feedforward=1024, dropout=0.0, batch_first=True)
    seq, d = 128, 256
    encoder_flops = 2.0 * seq * d * (4 * d + 2 * 1024) + 2 * 2.0 * seq * seq * d
    items.append(Workload("transformer-layer-128x256", encoder, (torch.randn(1, seq, d),), encoder_flops))
    items.append(Workload("softmax-512x1024", Softmax(), (torch.randn(512, 1024),), 5.0 * 512 * 1024))
    items.append(Workload("layernorm-512x1024", nn.LayerNorm(1024), (torch.randn(512, 1024),), 8.0 * 512 * 1024))
    for item in items:
        item.module.eval()
    return items


def compile_nnforge(item: Workload, optimize: bool) -> tuple[Callable, float]:
    """The compiled model and its compile time (s)."""
    start = time.perf_counter()
    compiled = nnforge.compile(item.module, item.inputs, optimize=optimize)
    seconds = time.perf_counter() - start
    arrays = [t.numpy() for t in item.inputs]
    return (lambda: compiled(*arrays)), seconds


def onnxruntime_runner(item: Workload, threads: int, scratch: Path) -> Callable | None:
    """An onnxruntime session over the exported model, or None where export fails."""
    import onnxruntime

    path = scratch / f"{item.name}.onnx"
    names = [f"input{i}" for i in range(len(item.inputs))]
    try:
        torch.onnx.export(item.module, item.inputs, str(path), input_names=names, dynamo=False)
    except Exception as error:  # the TorchScript exporter rejects some modules
        print(f"{item.name}: ONNX export failed ({type(error).__name__}: {error})", file=sys.stderr)
        return None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {name: t.numpy() for name, t in zip(names, item.inputs)}
    return lambda: session.run(None, feeds)[0]


def eager_runner(item: Workload) -> Callable:
    def run():
        with torch.inference_mode():
            return item.module(*item.inputs)

    return run


def first_output(value) -> np.ndarray:
    if isinstance(value, (list, tuple)):
        value = value[0]
    return value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def time_interleaved(runners: dict[str, Callable], repeats: int) -> dict[str, float]:
    """Median milliseconds per runner, the runners taking turns in each repeat."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for runner in runners.values():
        runner()  # warm-up
    names = list(runners)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            start = time.perf_counter()
            runners[name]()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def numpy_sgemm_gflops(n: int = 1024) -> float:
    """numpy's sgemm rate, in a child without the OPENBLAS_CORETYPE/L2_SIZE overrides."""
    code = (
        "import numpy as np, time\n"
        f"n = {n}\n"
        "a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)\n"
        "a @ b\n"
        "ts = []\n"
        "for _ in range(10):\n"
        "    t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)\n"
        "print(2 * n**3 / sorted(ts)[len(ts) // 2] / 1e9)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(result.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated workload names")
    parser.add_argument("--naive-limit", type=float, default=60.0, help="seconds; skip naive beyond")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen = set(filter(None, args.only.split(",")))
    rows = []
    with tempfile.TemporaryDirectory(prefix="nnforge-bench-") as scratch:
        for item in workloads():
            if chosen and item.name not in chosen:
                continue
            expected = first_output(eager_runner(item)())
            runners = {"eager": eager_runner(item)}
            session = onnxruntime_runner(item, args.threads, Path(scratch))
            if session is not None:
                runners["onnxruntime"] = session
            runners["nnforge"], compile_seconds = compile_nnforge(item, optimize=True)
            naive_estimate = item.flops / NAIVE_FLOPS_PER_SECOND * (args.repeats + 2)
            naive_compile = None
            if naive_estimate <= args.naive_limit:
                runners["naive"], naive_compile = compile_nnforge(item, optimize=False)
            for name, runner in runners.items():
                np.testing.assert_allclose(
                    first_output(runner()), expected, rtol=TOLERANCE, atol=TOLERANCE,
                    err_msg=f"{item.name}: {name} differs from eager",
                )
            ms = time_interleaved(runners, args.repeats)
            rows.append((item, ms, compile_seconds, naive_compile))
            print(f"done {item.name}", file=sys.stderr, flush=True)
    print(f"\nthreads: {args.threads}, repeats: {args.repeats} (medians, ms)\n")
    print("| workload | eager | onnxruntime | nnforge | nnforge naive | nnforge/eager | ort/eager "
          "| nnforge GFLOP/s | compile s (opt / naive) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for item, ms, compile_seconds, naive_compile in rows:
        naive = f"{ms['naive']:.2f}" if "naive" in ms else "skipped"
        ort = f"{ms['onnxruntime']:.2f}" if "onnxruntime" in ms else "export failed"
        ort_ratio = f"{ms['onnxruntime'] / ms['eager']:.2f}x" if "onnxruntime" in ms else "-"
        naive_c = f"{naive_compile:.2f}" if naive_compile is not None else "-"
        print(
            f"| {item.name} | {ms['eager']:.2f} | {ort} | {ms['nnforge']:.2f} | {naive} "
            f"| {ms['nnforge'] / ms['eager']:.2f}x | {ort_ratio} "
            f"| {item.flops / ms['nnforge'] / 1e6:.1f} | {compile_seconds:.2f} / {naive_c} |"
        )
    print(f"\nnumpy sgemm 1024^2 (no OpenBLAS overrides): {numpy_sgemm_gflops():.1f} GFLOP/s")


if __name__ == "__main__":
    main()
