"""Benchmarks nnforge against PyTorch eager, torch.compile and onnxruntime on the CPU.

Every workload runs through each backend at the same thread count, with
the backends interleaved within each repeat (so that machine noise hits
them alike); medians over repeats are reported. Results are checked
against eager PyTorch (rtol/atol 1e-3) before anything is timed. Prints a
markdown table with geometric means, plus numpy's sgemm rate for scale.

    python benchmarks/run.py [--threads N] [--repeats 10] [--only matmul-1024,mlp-64x1024x4096]

nnforge is `nnforge.compile(..., threads=N)` (optimized code generation);
"naive" is `nnforge.compile(..., optimize=False)` (single-threaded scalar
loops), skipped where one run would take over `--naive-limit` seconds;
"inductor" is `torch.compile(module)`.
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

# Every backend has a thread pool (torch: libgomp, nnforge: libiomp5,
# onnxruntime: its own) whose workers by default spin for a while after each
# run, taking the cores from whichever backend runs next in the interleaved
# timing. Idle workers sleep at once instead, for all of them alike.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import nnforge  # noqa: E402

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


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, depthwise 3x3, 1x1 project (BN, ReLU6), plus the input."""

    def __init__(self, channels: int, expansion: int):
        super().__init__()
        hidden = channels * expansion
        self.layers = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class BasicBlock(nn.Module):
    """ResNet-18's block, with a strided 1x1 projection where the shape changes."""

    def __init__(self, inputs: int, outputs: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 224x224 ImageNet inputs (torchvision's layout)."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        stages, inputs = [], 64
        for outputs, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages += [BasicBlock(inputs, outputs, stride), BasicBlock(outputs, outputs, 1)]
            inputs = outputs
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stages(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


# ResNet-18 at 224x224: 1.82 GMACs.
RESNET18_FLOPS = 2 * 1.82e9


def workloads() -> list[Workload]:
    torch.manual_seed(0)
    items = []
    for n in (512, 1024, 2048):
        items.append(Workload(f"matmul-{n}", MatMul(), (torch.randn(n, n), torch.randn(n, n)), 2.0 * n**3))
    mlp = nn.Sequential(nn.Linear(1024, 4096), nn.GELU(), nn.Linear(4096, 1024))
    items.append(Workload("mlp-64x1024x4096", mlp, (torch.randn(64, 1024),), 2 * 2.0 * 64 * 1024 * 4096))
    items.append(Workload("resnet18-224", ResNet18(), (torch.randn(1, 3, 224, 224),), RESNET18_FLOPS))
    channels, size, expansion = 32, 56, 6
    hidden = channels * expansion
    items.append(
        Workload(
            "mobilenet-block-32c-56px",
            InvertedResidual(channels, expansion),
            (torch.randn(1, channels, size, size),),
            2.0 * size * size * (2 * channels * hidden + 9 * hidden),
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


def compile_nnforge(item: Workload, optimize: bool, threads: int) -> tuple[Callable, float]:
    """The compiled model and its compile time (s)."""
    start = time.perf_counter()
    compiled = nnforge.compile(item.module, item.inputs, optimize=optimize, threads=threads)
    seconds = time.perf_counter() - start
    arrays = [t.numpy() for t in item.inputs]
    return (lambda: compiled(*arrays)), seconds


def inductor_runner(item: Workload) -> tuple[Callable, float] | None:
    """torch.compile (inductor) and its compile time (the first call), or None where it fails."""
    compiled = torch.compile(item.module)

    def run():
        with torch.inference_mode():
            return compiled(*item.inputs)

    start = time.perf_counter()
    try:
        run()
    except Exception as error:  # inductor needs a working C++ toolchain
        print(f"{item.name}: torch.compile failed ({type(error).__name__}: {error})", file=sys.stderr)
        return None
    return run, time.perf_counter() - start


def export_onnx(item: Workload, path: Path, names: list[str]) -> bool:
    """Exports the workload to ONNX: TorchScript exporter, else the dynamo-based one."""
    failures = []
    for dynamo in (False, True):
        try:
            torch.onnx.export(item.module, item.inputs, str(path), input_names=names, dynamo=dynamo)
            return True
        except Exception as error:  # each exporter rejects some modules
            failures.append(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    print(f"{item.name}: ONNX export failed ({'; '.join(failures)})", file=sys.stderr)
    return False


def onnxruntime_runner(item: Workload, threads: int, scratch: Path) -> Callable | None:
    """An onnxruntime session over the exported model, or None where export fails."""
    import onnxruntime

    path = scratch / f"{item.name}.onnx"
    names = [f"input{i}" for i in range(len(item.inputs))]
    if not export_onnx(item, path, names):
        return None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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


def numpy_sgemm_gflops(n: int, threads: int) -> float:
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
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(result.stdout.strip())


def geometric_mean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def print_table(rows: list[tuple], threads: int, repeats: int) -> None:
    print(f"\nthreads: {threads}, repeats: {repeats} (medians, ms; ratios: time / eager time)\n")
    print("| workload | eager | inductor | onnxruntime | nnforge | naive | nnforge/eager | inductor/eager "
          "| ort/eager | naive/nnforge | nnforge GFLOP/s | compile s (nnforge / inductor) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")

    def cell(ms: dict, name: str) -> str:
        return f"{ms[name]:.2f}" if name in ms else "–"

    def ratio(ms: dict, name: str) -> str:
        return f"{ms[name] / ms['eager']:.2f}×" if name in ms else "–"

    def mean(name: str) -> str:
        values = [ms[name] / ms["eager"] for _, ms, _ in rows if name in ms]
        return f"{geometric_mean(values):.2f}× ({len(values)})" if values else "–"

    for item, ms, compile_times in rows:
        naive_speedup = f"{ms['naive'] / ms['nnforge']:.0f}×" if "naive" in ms else "–"
        inductor_compile = f"{compile_times['inductor']:.1f}" if "inductor" in compile_times else "–"
        print(
            f"| {item.name} | {cell(ms, 'eager')} | {cell(ms, 'inductor')} | {cell(ms, 'onnxruntime')} "
            f"| {cell(ms, 'nnforge')} | {cell(ms, 'naive')} | {ratio(ms, 'nnforge')} | {ratio(ms, 'inductor')} "
            f"| {ratio(ms, 'onnxruntime')} | {naive_speedup} | {item.flops / ms['nnforge'] / 1e6:.1f} "
            f"| {compile_times['nnforge']:.1f} / {inductor_compile} |"
        )
    print(f"| geometric mean | | | | | | {mean('nnforge')} | {mean('inductor')} | {mean('onnxruntime')} | | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="for every backend (default: all cores)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated workload names")
    parser.add_argument("--no-inductor", action="store_true", help="leave out torch.compile")
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
            compile_times = {}
            if not args.no_inductor:
                inductor = inductor_runner(item)
                if inductor is not None:
                    runners["inductor"], compile_times["inductor"] = inductor
            session = onnxruntime_runner(item, args.threads, Path(scratch))
            if session is not None:
                runners["onnxruntime"] = session
            runners["nnforge"], compile_times["nnforge"] = compile_nnforge(item, True, args.threads)
            if item.flops / NAIVE_FLOPS_PER_SECOND * (args.repeats + 2) <= args.naive_limit:
                runners["naive"], compile_times["naive"] = compile_nnforge(item, False, 1)
            for name, runner in runners.items():
                np.testing.assert_allclose(
                    first_output(runner()), expected, rtol=TOLERANCE, atol=TOLERANCE,
                    err_msg=f"{item.name}: {name} differs from eager",
                )
            rows.append((item, time_interleaved(runners, args.repeats), compile_times))
            print(f"done {item.name}", file=sys.stderr, flush=True)
    print_table(rows, args.threads, args.repeats)
    print(f"\nnumpy sgemm 1024^2, {args.threads} thread(s), OpenBLAS overrides unset: "
          f"{numpy_sgemm_gflops(1024, args.threads):.1f} GFLOP/s; 2048^2: {numpy_sgemm_gflops(2048, args.threads):.1f}")


if __name__ == "__main__":
    main()
