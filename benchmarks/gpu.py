"""nnforge's CUDA target against PyTorch on the GPU: numerics and times.

Two halves, so that the GPU machine needs neither MLIR nor a compiler:

  python benchmarks/gpu.py --compile-only [--out DIR] [--chip sm_90] [--only NAMES]
      (with nnforge installed; no GPU needed) compiles each model to
      DIR/<name>/model.so (+ libmlir_cuda_runtime.so) and prints kernel
      counts, cubin and library sizes. Weights come from a seeded numpy
      generator, so both machines build the same models without carrying them.
  python benchmarks/gpu.py --run-only [--out DIR] [--repeat N]
      (on the GPU machine: numpy + torch with CUDA) loads each model with
      nnforge.load (python/ of this checkout on sys.path: numpy + ctypes only),
      checks it against the same torch model on CUDA and times both.
  Without either flag it does both (a machine with nnforge and a GPU).

Times are medians of --repeat calls, the three timings taking turns in every
repeat (a slow spell of the machine hits all three). "nnforge" and "torch
e2e" both start from numpy arrays in host memory and end with numpy arrays
(copies included); "torch gpu" is torch with the data already on the GPU. For the
matmuls the kernel time of the nnforge call is also measured with
torch.profiler (CUPTI sees every kernel of the process) and shown as
TFLOP/s next to cuBLAS's (torch's default FP32 matmul, TF32 off).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "gpu-models"


class Matmul(nn.Module):
    def forward(self, a, b):
        return a @ b


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(1024, 2048)
        self.second = nn.Linear(2048, 1024)

    def forward(self, x):
        return self.second(F.gelu(self.first(x)))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(3, 32, 3, padding=1)
        self.second = nn.Conv2d(32, 64, 3, padding=1)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.first(x)), 2)
        x = F.relu(self.second(x))
        return self.head(x.mean(dim=(2, 3)))


def models() -> dict[str, tuple[nn.Module, tuple[torch.Size, ...], float]]:
    """name -> (module, input shapes, FLOPs per call or 0)."""
    table = {}
    for size in (1024, 2048, 4096):
        table[f"matmul{size}"] = (Matmul(), ((size, size), (size, size)), 2.0 * size**3)
    table["mlp"] = (MLP(), ((256, 1024),), 0.0)
    table["cnn"] = (SmallCNN(), ((8, 3, 64, 64),), 0.0)
    table["transformer"] = (
        nn.TransformerEncoderLayer(512, 8, 2048, dropout=0.0, batch_first=True),
        ((4, 128, 512),),
        0.0,
    )
    for name, (module, _, _) in table.items():
        module.eval()
        rng = np.random.default_rng(sum(map(ord, name)) + 1)
        with torch.no_grad():
            for parameter in module.parameters():
                fan_in = int(np.prod(parameter.shape[1:])) if parameter.ndim > 1 else parameter.numel()
                bound = 1.0 / np.sqrt(fan_in)
                values = rng.uniform(-bound, bound, tuple(parameter.shape)).astype(np.float32)
                parameter.copy_(torch.from_numpy(values))
    return table


def inputs_for(name: str, shapes) -> list[np.ndarray]:
    rng = np.random.default_rng(sum(map(ord, name)))
    return [rng.standard_normal(shape, dtype=np.float32) for shape in shapes]


def compile_all(out: Path, chip: str, names: list[str]) -> None:
    sys.path.insert(0, str(ROOT / "python"))
    import nnforge
    from nnforge.targets.cuda.library import save_cuda_library
    from nnforge.targets.cuda.lowering import kernel_objects

    table = models()
    for name in names:
        module, shapes, _ = table[name]
        start = time.perf_counter()
        example = tuple(torch.from_numpy(array) for array in inputs_for(name, shapes))
        compiled = nnforge.compile(module, example, target="cuda", chip=chip)
        directory = out / name
        files = save_cuda_library(compiled.module, compiled.signature, directory / "model.so")
        cubins = [len(data) for _, data in kernel_objects(compiled.module)]
        sizes = ", ".join(f"{path.name} {path.stat().st_size / 1024:.0f} KiB" for path in files)
        print(f"{name}: {time.perf_counter() - start:.1f} s, {len(cubins)} kernels, "
              f"cubins {sum(cubins) / 1024:.0f} KiB (largest {max(cubins) / 1024:.0f} KiB); {sizes}")
    (out / "chip.json").write_text(json.dumps({"chip": chip}))


def interleaved_medians(functions: dict[str, object], repeat: int) -> dict[str, float]:
    """Median seconds per call of each function, the functions taking turns in every repeat."""
    for function in functions.values():
        function()  # warm-up (module load, allocator, cuBLAS handles)
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeat):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def kernel_seconds(function) -> float:
    """GPU kernel time of one call, from the CUDA activity trace."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as trace:
        function()
        torch.cuda.synchronize()
    total_us = sum(event.device_time for event in trace.events()
                   if event.device_type == torch.autograd.DeviceType.CUDA
                   and "memcpy" not in event.name.lower() and "memset" not in event.name.lower())
    return total_us * 1e-6


def run_all(out: Path, repeat: int, names: list[str]) -> int:
    sys.path.insert(0, str(ROOT / "python"))
    import nnforge

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    table = models()
    failures = 0
    print(f"{torch.cuda.get_device_name()}, chip {json.loads((out / 'chip.json').read_text())['chip']}")
    print(f"{'model':<12} {'max err':>9} {'nnforge ms':>11} {'torch e2e ms':>13} {'torch gpu ms':>13} "
          f"{'ratio e2e':>10}  kernels")
    for name in names:
        module, shapes, flops = table[name]
        module = module.cuda()
        arrays = inputs_for(name, shapes)
        compiled = nnforge.load(out / name / "model.so")
        with torch.no_grad():
            on_gpu = [torch.from_numpy(array).cuda() for array in arrays]
            expected = module(*on_gpu).cpu().numpy()
            result = compiled(*arrays)
            error = float(np.max(np.abs(result - expected)) / (np.max(np.abs(expected)) or 1.0))
            medians = interleaved_medians({
                "ours": lambda: compiled(*arrays),
                "theirs_e2e": lambda: module(*[torch.from_numpy(a).cuda() for a in arrays]).cpu(),
                "theirs_gpu": lambda: module(*on_gpu),
            }, repeat)
            ours, theirs_e2e, theirs_gpu = medians["ours"], medians["theirs_e2e"], medians["theirs_gpu"]
        ok = error < 1e-3
        failures += not ok
        detail = ""
        if flops:
            ours_kernel = kernel_seconds(lambda: compiled(*arrays))
            with torch.no_grad():
                theirs_kernel = kernel_seconds(lambda: module(*on_gpu))
            detail = (f"nnforge {flops / ours_kernel / 1e12:.2f} TFLOP/s, "
                      f"cuBLAS {flops / theirs_kernel / 1e12:.2f} TFLOP/s "
                      f"({ours_kernel / theirs_kernel:.1f}x its time)")
        print(f"{name:<12} {error:>9.1e} {ours * 1e3:>11.3f} {theirs_e2e * 1e3:>13.3f} "
              f"{theirs_gpu * 1e3:>13.3f} {ours / theirs_e2e:>10.2f}  {detail}"
              f"{'' if ok else '  MISMATCH'}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--chip", default="sm_90")
    parser.add_argument("--only", help="comma-separated model names")
    parser.add_argument("--repeat", type=int, default=20)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--compile-only", action="store_true", help="compile, no GPU needed")
    which.add_argument("--run-only", action="store_true", help="run what --compile-only wrote")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(models())
    if not args.run_only:
        compile_all(args.out, args.chip, names)
    if args.compile_only:
        return 0
    if not torch.cuda.is_available():
        print("running needs a CUDA GPU and torch with CUDA", file=sys.stderr)
        return 2
    return run_all(args.out, args.repeat, names)


if __name__ == "__main__":
    sys.exit(main())
