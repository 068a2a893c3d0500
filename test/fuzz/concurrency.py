"""Concurrent use: threads calling one compiled model, compiling models
(MLIR, ONNX, PyTorch modules) at once, loading one saved library, and
compiling while others run. Every thread's results are compared with
numpy; a deadlock shows as a hang.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from test.fuzz import artifacts, mlir_seeds, onnx_models, run_inputs
from test.fuzz.checks import Verdict, difference, judge_error
from test.fuzz.outcomes import OK, WRONG


def _in_threads(jobs: list[Callable[[], str]]) -> tuple[list[str], list[BaseException]]:
    """Runs `jobs` in threads started together; their differences ("" when
    right) and the exceptions they raised."""
    barrier = threading.Barrier(len(jobs))
    differences: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def body(job: Callable[[], str]) -> None:
        try:
            barrier.wait()
            diff = job()
            with lock:
                differences.append(diff)
        except BaseException as error:  # noqa: BLE001 - reported to the case
            with lock:
                errors.append(error)

    threads = [threading.Thread(target=body, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return differences, errors


def _caller(compiled: Any, seed: mlir_seeds.Seed, element: str, seed_value: int, calls: int) -> Callable[[], str]:
    def job() -> str:
        generator = np.random.default_rng(seed_value)
        for _ in range(calls):
            arrays = mlir_seeds.inputs(seed, element, generator)
            diff = difference(compiled(*arrays), seed.reference(*arrays))
            if diff:
                return diff
        return ""
    return job


def _mlir_compiler(folder: Path, seed: mlir_seeds.Seed, element: str, index: int) -> Callable[[], str]:
    def job() -> str:
        import nnforge

        path = folder / f"{seed.name}_{element}_{index}.mlir"
        path.write_text(seed.text(element))
        compiled = nnforge.compile(path, threads=1 + index % 2)
        return _caller(compiled, seed, element, index, 2)()
    return job


def _onnx_compiler(name: str, index: int) -> Callable[[], str]:
    def job() -> str:
        import nnforge
        import onnxruntime

        proto = onnx_models.seeds()[name]()
        compiled = nnforge.compile(proto, threads=1)
        arrays = onnx_models.random_inputs(random.Random(index), compiled.signature)
        session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        return difference(compiled(*arrays), session.run(None, dict(zip(names, arrays))), 1e-3, 1e-4)
    return job


def _torch_compiler(index: int) -> Callable[[], str]:
    def job() -> str:
        import torch

        import nnforge

        torch.manual_seed(index)
        module = torch.nn.Sequential(torch.nn.Linear(6, 4 + index), torch.nn.ReLU()).eval()
        x = torch.randn(3, 6)
        compiled = nnforge.compile(module, (x,), threads=1)
        with torch.no_grad():
            expected = module(x).numpy()
        return difference(compiled(x.numpy()), expected)
    return job


def _loader(path: Path, index: int) -> Callable[[], str]:
    def job() -> str:
        import nnforge

        seed = mlir_seeds.BY_NAME["mlp"]
        return _caller(nnforge.load(path), seed, "f32", index, 3)()
    return job


def case(rng: random.Random, folder: Path) -> Verdict:
    kind = rng.choice(["call", "call", "compile-mlir", "compile-onnx", "compile-torch", "load", "mixed"])
    count = rng.choice([2, 3, 4, 8])
    if kind == "call":
        name, element = rng.choice(run_inputs._CHOICES)
        compiled, seed, element = run_inputs.model(name, element, folder.parent)
        jobs = [_caller(compiled, seed, element, rng.randrange(2**32), 5) for _ in range(count)]
        what = f"{count} threads calling {name} {element}"
    elif kind == "compile-mlir":
        count = min(count, 3)
        picks = [rng.choice(mlir_seeds.SEEDS[:3]) for _ in range(count)]
        jobs = [_mlir_compiler(folder, seed, rng.choice(seed.types[:2]), i) for i, seed in enumerate(picks)]
        what = f"{count} threads compiling {[s.name for s in picks]}"
    elif kind == "compile-onnx":
        count = 2
        names = [rng.choice(["mlp", "softmax", "gemm", "concat"]) for _ in range(count)]
        jobs = [_onnx_compiler(name, i) for i, name in enumerate(names)]
        what = f"{count} threads compiling ONNX {names}"
    elif kind == "compile-torch":
        count = 2
        jobs = [_torch_compiler(i) for i in range(count)]
        what = f"{count} threads compiling PyTorch modules"
    elif kind == "load":
        path = artifacts.saved(folder)
        jobs = [_loader(path, rng.randrange(2**32)) for _ in range(count)]
        what = f"{count} threads loading and calling one saved library"
    else:
        name, element = rng.choice(run_inputs._CHOICES)
        compiled, seed, element = run_inputs.model(name, element, folder.parent)
        jobs = [_caller(compiled, seed, element, rng.randrange(2**32), 10) for _ in range(count - 1)]
        other = rng.choice(mlir_seeds.SEEDS[:3])
        jobs.append(_mlir_compiler(folder, other, other.types[0], 99))
        what = f"{count - 1} threads calling {name} while one compiles {other.name}"
    differences, errors = _in_threads(jobs)
    if errors:
        return judge_error(errors[0], what)
    wrong = [d for d in differences if d]
    return Verdict(WRONG, what, wrong[0]) if wrong else Verdict(OK, what)
