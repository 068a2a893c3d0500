"""How compile time, memory and loading grow with a model's weights.

For each size, a fresh process builds the model (random weights), compiles
it with `nnforge.compile` (defaults), saves it (`model.so` + `model.weights`)
and checks it against eager PyTorch; another fresh process, without torch,
loads the saved model with `nnforge.load` and runs it once. Reported per
size: the f32 weights, compile time, peak resident memory of the compiling
process and its children together (the sum over the process tree, sampled
every 10 ms) and of the compiling process alone, save time, load time, the
sizes of the library and the weights file, and the largest relative error.

    python benchmarks/model_size.py                      # MLP d -> 4d -> d, d = 256 ... 4096
    python benchmarks/model_size.py --quick              # d = 256, 512, 1024 (a minute)
    python benchmarks/model_size.py --sizes 256,8192
    python benchmarks/model_size.py --gpt-1b             # the 1.07-billion-parameter decoder
    python benchmarks/model_size.py --gpt-1b --max-rss-gb 11   # stopped if its processes hold more
    python benchmarks/model_size.py --gpt-1b --gpt-layers 4    # the same decoder, 4 layers (0.27 B)
    python benchmarks/model_size.py --load-gb 4.3        # loading a 4.3 GB weights file alone

The MLP is d -> 4d -> d with GELU, batch 8. "beyond weight-free" is the
compile time above the smallest size's, per MB of weights above its
weights (the smallest size stands for the part that does not depend on
the weights: the same ops on tiny tensors). `--gpt-1b` is a decoder-only
transformer of 20 layers, d = 2048, vocabulary 32000 (the output
projection tied to the embedding): 1.07 billion parameters, one forward
pass over 128 tokens. `--load-gb` measures what loading a saved model
costs beyond its library: a weights file of that size (64 MiB weights)
mapped and checked against its manifest (names, types, shapes, size and
digest), as `nnforge.load` does, and read once more, as the first run
does, in a fresh process (the file in the page cache, as after saving).
Results go to benchmarks/results/model-size-<date>.json
and, rendered, to stdout as a markdown table (docs/model-size.md holds it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MB = 1 << 20


def machine() -> dict:
    cpu = platform.processor()
    flags: set[str] = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and (not cpu or cpu == "x86_64"):
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    isa = next((name for name in ("avx512f", "avx2", "sse4_2") if name in flags), "")
    memory = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    versions = {}
    for package in ("nnforge", "torch", "torch_mlir", "numpy"):
        try:
            from importlib.metadata import version

            versions[package] = version(package.replace("_", "-"))
        except Exception:  # not installed
            versions[package] = None
    return {"cpu": cpu, "isa": isa, "cores": len(os.sched_getaffinity(0)),
            "memory_gb": round(int(memory) / (1 << 20), 1), "python": platform.python_version(),
            "versions": versions}


def _tree_rss(root: int) -> int:
    """Resident bytes of process `root` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stream:
                fields = stream.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


def run_measured(command: list[str], limit: int | None = None) -> tuple[dict, int]:
    """Runs `command` (which prints one JSON line last); its report and the
    peak resident memory of its process tree. The process is killed once
    its tree holds more than `limit` bytes (a machine shared with others)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(process.pid))
            if limit is not None and peak > limit:
                process.kill()  # its children (torch-mlir's) die with it
                return
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    if limit is not None and peak > limit:
        raise RuntimeError(f"stopped: its processes held {peak / MB / 1024:.1f} GB, over the limit "
                           f"of {limit / MB / 1024:.1f} GB (--max-rss-gb)")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit status {process.returncode}")
    return json.loads(output.strip().splitlines()[-1]), peak


def build_mlp(d: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)).eval()
    return model, (torch.randn(8, d),)


def build_gpt(layers: int = 20, d: int = 2048, vocabulary: int = 32000, tokens: int = 128):
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
            self.heads = d // 128

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            batch, length, _ = x.shape
            q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
            q, k, v = (t.reshape(batch, length, self.heads, 128).transpose(1, 2) for t in (q, k, v))
            scores = (q @ k.transpose(-1, -2)) * (128 ** -0.5) + mask
            attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, d)
            x = x + self.out(attended)
            return x + self.mlp(self.norm2(x))

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(vocabulary, d)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.norm = nn.LayerNorm(d)
            self.register_buffer("mask", torch.full((tokens, tokens), float("-inf")).triu(1))

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            x = self.embedding(ids)
            for block in self.blocks:
                x = block(x, self.mask)
            return self.norm(x) @ self.embedding.weight.T

    torch.manual_seed(0)
    with torch.no_grad():
        model = Decoder().eval()
    return model, (torch.randint(0, vocabulary, (1, tokens)),)


def compile_child(kind: str, size: int, folder: str) -> dict:
    """In a fresh process: build, compile, save, check against eager."""
    import resource

    import numpy as np
    import torch

    import nnforge

    model, inputs = build_gpt(layers=size) if kind == "gpt" else build_mlp(size)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    with torch.no_grad():
        expected = model(*inputs).numpy()
    start = time.perf_counter()
    compiled = nnforge.compile(model, inputs)
    compile_s = time.perf_counter() - start
    path = Path(folder) / "model.so"
    start = time.perf_counter()
    compiled.save(path)
    save_s = time.perf_counter() - start
    got = compiled(*[t.numpy() for t in inputs])
    np.save(Path(folder) / "expected.npy", expected)
    for index, tensor in enumerate(inputs):
        np.save(Path(folder) / f"input{index}.npy", tensor.numpy())
    weights_file = path.with_suffix(".weights")
    return {
        "weights_mb": weights / MB,
        "compile_s": compile_s,
        "stages_s": {name: round(seconds, 3) for name, seconds in compiled.compile_times.items()},
        "save_s": save_s,
        "self_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "so_mb": path.stat().st_size / MB,
        "weights_file_mb": weights_file.stat().st_size / MB if weights_file.exists() else 0.0,
        "max_relative_error": float(np.max(np.abs(got - expected)) / np.max(np.abs(expected))),
    }


def load_child(folder: str) -> dict:
    """In a fresh process without torch: load the saved model, run it once."""
    import numpy as np

    import nnforge

    inputs = [np.load(path) for path in sorted(Path(folder).glob("input*.npy"))]
    start = time.perf_counter()
    model = nnforge.load(Path(folder) / "model.so")
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    got = model(*inputs)
    first_run_s = time.perf_counter() - start
    expected = np.load(Path(folder) / "expected.npy")
    return {"load_s": load_s, "first_run_s": first_run_s,
            "load_max_relative_error": float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))}


def weights_load_child(gigabytes: float, folder: str) -> dict:
    """In a fresh process: a weights file of `gigabytes` written (one random
    64 MiB weight written again and again), then mapped and checked as
    `nnforge.load` does, then read through once."""
    import numpy as np

    from nnforge import weights
    from nnforge.runtime import numpy_dtype

    block = np.random.default_rng(0).standard_normal(16 << 20, dtype=np.float32)
    count = max(1, round(gigabytes * 1024 * MB / block.nbytes))
    path = Path(folder) / "model.weights"
    manifest = weights.write(path, [(f"w{i}", "f32", block.shape, memoryview(block).cast("B")) for i in range(count)])
    start = time.perf_counter()
    mapped = weights.MappedWeights(path, manifest, numpy_dtype)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    total = sum(float(array[::1024].sum()) for array in mapped.arrays)  # a value of every page
    read_s = time.perf_counter() - start
    return {"model": "weights file", "weights_mb": path.stat().st_size / MB, "load_s": load_s,
            "read_after_load_s": read_s, "checksum": total}


def measure(kind: str, size: int, limit: int | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="nnforge-model-size-") as folder:
        script = str(Path(__file__).resolve())
        compiled, peak = run_measured([sys.executable, script, "--child-compile", kind, str(size), folder], limit)
        loaded, load_peak = run_measured([sys.executable, script, "--child-load", folder], limit)
    return {"model": kind, "d": size, **compiled, "tree_peak_rss_mb": peak / MB, **loaded,
            "load_peak_rss_mb": load_peak / MB}


def render(report: dict) -> str:
    rows = report["rows"]
    base = rows[0] if rows and rows[0]["model"] == "mlp" else None
    lines = [
        f"Machine: {report['machine']['cpu']} ({report['machine']['isa']}, {report['machine']['cores']} cores, "
        f"{report['machine']['memory_gb']} GB), {report['date'][:10]}.",
        "",
        "| model | f32 weights | compile | beyond weight-free | peak RSS (tree) | peak RSS (compiler) "
        "| save | load | first run | `.so` | `.weights` | max rel. error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        name = f"MLP d = {row['d']}" if row["model"] == "mlp" else f"decoder, {row['d']} layers"
        beyond = "–"
        if base is not None and row is not base and row["model"] == "mlp":
            beyond = f"{(row['compile_s'] - base['compile_s']) / (row['weights_mb'] - base['weights_mb']):.4f} s/MB"
        lines.append(
            f"| {name} | {row['weights_mb']:.0f} MB | {row['compile_s']:.2f} s | {beyond} "
            f"| {row['tree_peak_rss_mb'] / 1024:.2f} GB | {row['self_peak_rss_mb'] / 1024:.2f} GB "
            f"| {row['save_s']:.2f} s | {row['load_s']:.3f} s | {row['first_run_s']:.3f} s "
            f"| {row['so_mb']:.2f} MB | {row['weights_file_mb']:.0f} MB | {row['max_relative_error']:.1e} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,1024,2048,4096,8192", help="MLP widths d, comma-separated")
    parser.add_argument("--quick", action="store_true", help="d = 256, 512, 1024 only")
    parser.add_argument("--gpt-1b", action="store_true", help="the 1.07-billion-parameter decoder instead")
    parser.add_argument("--gpt-layers", type=int, default=20, help="its layers (20: 1.07 billion parameters)")
    parser.add_argument("--render", type=Path, help="print the table of a results file")
    parser.add_argument("--max-rss-gb", type=float, help="stop a measurement whose processes hold more memory")
    parser.add_argument("--load-gb", type=float, help="the load of a weights file of this size alone")
    parser.add_argument("--child-load-weights", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child-compile", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child-load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_compile:
        kind, size, folder = args.child_compile
        print(json.dumps(compile_child(kind, int(size), folder)))
        return
    if args.child_load:
        print(json.dumps(load_child(args.child_load)))
        return
    if args.child_load_weights:
        print(json.dumps(weights_load_child(float(args.child_load_weights[0]), args.child_load_weights[1])))
        return
    if args.load_gb:
        with tempfile.TemporaryDirectory(prefix="nnforge-model-size-") as folder:
            script = str(Path(__file__).resolve())
            row, peak = run_measured([sys.executable, script, "--child-load-weights", str(args.load_gb), folder])
        report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "machine": machine(),
                  **row, "peak_rss_mb": peak / MB}
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"model-size-load-{report['date'][:19].replace(':', '')}.json"
        path.write_text(json.dumps(report, indent=1))
        print(json.dumps(report, indent=1))
        print(f"\n(results: {path})", file=sys.stderr)
        return
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return
    if args.gpt_1b:
        plan = [("gpt", args.gpt_layers)]
    else:
        plan = [("mlp", int(d)) for d in ("256,512,1024" if args.quick else args.sizes).split(",")]
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "machine": machine(), "rows": []}
    for kind, size in plan:
        limit = int(args.max_rss_gb * 1024 * MB) if args.max_rss_gb else None
        report["rows"].append(measure(kind, size, limit))
        print(json.dumps(report["rows"][-1]), file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    stamp = report["date"][:19].replace(":", "")
    path = RESULTS / f"model-size-{'gpt-' if args.gpt_1b else ''}{stamp}.json"
    path.write_text(json.dumps(report, indent=1))
    print(render(report))
    print(f"\n(results: {path})", file=sys.stderr)


if __name__ == "__main__":
    main()
