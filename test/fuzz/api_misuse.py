"""API and command-line misuse: models, levels, targets, thread counts and
paths nnforge does not take, given to `nnforge.compile`, `save`, `load`,
`import_onnx` and the `nnforge` command. Each must end in an NNForgeError
(the command: exit status 1 or argparse's 2, one paragraph on stderr, no
traceback) or work.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from test.fuzz import mlir_seeds, onnx_models
from test.fuzz.checks import Verdict, judge_error, judge_results
from test.fuzz.outcomes import CLEAN, CRASH, HANG, OK, UNCLEAN

CLI_TIMEOUT = 300.0


def _onnx_file(folder: Path) -> Path:
    import onnx

    path = folder / "mlp.onnx"
    onnx.save(onnx_models.seeds()["mlp"](), str(path))
    return path


def _mlir_file(folder: Path) -> Path:
    path = folder / "mlp.mlir"
    path.write_text(mlir_seeds.BY_NAME["mlp"].text("f32"))
    return path


def _model(rng: random.Random, folder: Path) -> tuple[Any, str]:
    choice = rng.randrange(10)
    if choice == 0:
        value = rng.choice([None, 3, b"bytes", [1, 2], {"model": 1}, np.zeros(3)])
        return value, f"model {type(value).__name__}"
    if choice == 1:
        return folder / "missing.onnx", "a missing .onnx"
    if choice == 2:
        (folder / "dir.onnx").mkdir()
        return folder / "dir.onnx", "a folder named .onnx"
    if choice == 3:
        path = folder / "text.onnx"
        path.write_text(rng.choice(["", "not onnx", "\0" * 10]))
        return path, f"a text file named .onnx ({path.stat().st_size} bytes)"
    if choice == 4:
        path = folder / "bad.mlir"
        path.write_text(rng.choice(["", "func.func @main(", "module {}", "\xff\xfe", "func.func @f() { return }",
                                    "func.func @a(%x: tensor<2xf32>) -> tensor<2xf32> { return %x : tensor<2xf32> }\n"
                                    "func.func @b(%x: tensor<2xf32>) -> tensor<2xf32> { return %x : tensor<2xf32> }"]))
        return path, f"a .mlir file {path.read_text()[:40]!r}"
    if choice == 5:
        import torch

        module = torch.nn.Linear(4, 3)
        example = rng.choice([None, (), (torch.randn(2, 5),), (torch.randn(2, 4), torch.randn(2)), "x",
                              (np.zeros((2, 4), np.float32),)])
        return (module, example), f"a torch module with example inputs {example!r:.60}"
    if choice == 6:
        return folder / "model.txt", "a path with an unknown suffix"
    if choice == 7:
        return str(folder / "a\0b.onnx"), "a path with a NUL"
    return _mlir_file(folder), "a valid .mlir"


def _options(rng: random.Random, folder: Path) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for _ in range(rng.randrange(1, 3)):
        name = rng.choice(["level", "target", "threads", "optimize", "dump_ir", "chip", "dynamic_shapes"])
        if name == "level":
            options[name] = rng.choice(["bogus", "", 3, "torch", "linalg-on-buffers", "LINALG", "tosa", "nnf"])
        elif name == "target":
            options[name] = rng.choice(["gpu", "cpu:bogus", "", None, 7, "cpu:", "cuda:sm_90", "cpu:x86-64"])
        elif name == "threads":
            options[name] = rng.choice([0, -1, 1.5, "2", True, None, 3, 2**40])
        elif name == "optimize":
            options[name] = rng.choice(["yes", None, 0, 1])
        elif name == "dump_ir":
            existing = folder / "existing.txt"
            existing.write_text("x")
            options[name] = rng.choice([existing, "/proc/nnforge-dump", 3, folder / "dump"])
        elif name == "chip":
            options[name] = rng.choice(["sm_1", "", None, "sm_90"])
        else:
            options[name] = rng.choice([{"x": {0: "batch"}}, [1], "dynamic"])
    return options


def _api(rng: random.Random, folder: Path) -> Verdict:
    import nnforge

    model, what = _model(rng, folder)
    options = _options(rng, folder)
    what = f"compile({what}, {', '.join(f'{k}={v!r:.40}' for k, v in options.items())})"
    example = None
    if isinstance(model, tuple):
        model, example = model
    try:
        compiled = nnforge.compile(model, example, **options)
    except Exception as error:
        return judge_error(error, what)
    if not hasattr(compiled, "signature"):
        return Verdict(OK, what, "compiled (no signature to check)")
    save_to = rng.choice([folder, folder / "sub" / "m.so", "/proc/m.so", None, 5, str(folder / "a\0.so")])
    try:
        compiled.save(save_to)
    except Exception as error:
        verdict = judge_error(error, f"{what}.save({save_to!r})")
        if verdict.outcome != CLEAN:
            return verdict
    if model == _mlir_file(folder) or str(model).endswith("mlp.mlir"):
        seed = mlir_seeds.BY_NAME["mlp"]
        arrays = mlir_seeds.inputs(seed, "f32", np.random.default_rng(0))
        try:
            actual = compiled(*arrays)
        except Exception as error:
            return judge_error(error, what)
        return judge_results(actual, seed.reference(*arrays), what)
    return Verdict(OK, what, "compiled")


def _cli(rng: random.Random, folder: Path) -> Verdict:
    onnx_file = _onnx_file(folder)
    existing = folder / "existing.txt"
    existing.write_text("x")
    garbage = folder / "garbage.so"
    garbage.write_bytes(os.urandom(512))
    bad_npy = folder / "bad.npy"
    bad_npy.write_bytes(b"\x93NUMPY garbage")
    commands = [
        ["compile", str(onnx_file), "-o", "/sys/model.so"],
        ["compile", str(onnx_file), "-o", str(folder), "-q"],
        ["compile", str(onnx_file), "-o", str(folder / "m.so"), "--dump-ir", str(existing), "-q"],
        ["compile", str(folder / "missing.onnx"), "-o", str(folder / "m.so")],
        ["compile", str(onnx_file), "-o", str(folder / "m.so"), "--threads", "0"],
        ["compile", str(onnx_file), "-o", str(folder / "m.so"), "--target", "cpu:bogus"],
        ["compile", str(onnx_file), "-o", str(folder / "m.so"), "--input-shape", "-1x4"],
        ["compile", str(onnx_file), "-o", str(folder / "m.so"), "--input-shape", "2x5", "-q"],
        ["run", str(garbage)],
        ["run", str(onnx_file), "-i", str(bad_npy)],
        ["run", str(onnx_file), "-i", f"nope={folder / 'missing.npy'}"],
        ["import", str(existing)],
        ["import", str(onnx_file), "--level", "bogus"],
        ["bench", str(folder / "missing.onnx")],
        ["compile"],
    ]
    arguments = rng.choice(commands)
    what = "nnforge " + " ".join(arguments).replace(str(folder), "DIR")
    try:
        child = subprocess.run([sys.executable, "-m", "nnforge.cli", *arguments], capture_output=True, text=True,
                               errors="replace", timeout=CLI_TIMEOUT, cwd=folder)
    except subprocess.TimeoutExpired:
        return Verdict(HANG, what, f"ran past {CLI_TIMEOUT:g} s")
    from nnforge._process import describe_exit

    stderr = child.stderr.strip()
    if child.returncode < 0:
        return Verdict(CRASH, what, f"{describe_exit(child.returncode)}: {stderr[-300:]}")
    if "Traceback" in stderr:
        return Verdict(UNCLEAN, what, f"exit {child.returncode} with a traceback: {stderr.splitlines()[-1][:300]}")
    if child.returncode == 0:
        return Verdict(OK, what, "succeeded")
    if child.returncode in (1, 2) and stderr and "\n\n" not in stderr:
        return Verdict(CLEAN, what, stderr.splitlines()[-1][:300])
    return Verdict(UNCLEAN, what, f"exit {child.returncode}: {stderr[-300:]}")


def case(rng: random.Random, folder: Path) -> Verdict:
    return _cli(rng, folder) if rng.random() < 0.25 else _api(rng, folder)
