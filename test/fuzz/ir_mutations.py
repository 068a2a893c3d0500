"""Mutated MLIR through `nnforge-opt` (nnforge's passes and the CPU
pipeline) and through `nnforge.compile`.

Mutations: the whole module in another element type (valid IR: compiled
and compared with numpy), a dimension changed in one place or everywhere,
lines deleted, duplicated or swapped, the text cut short, op names and
attribute values replaced, bytes flipped. nnforge-opt runs as a child
with a time limit (a signal is a crash, a time-out a hang); nnforge.compile
runs in the worker itself, as a user's process would.
"""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import numpy as np

from test.fuzz import mlir_seeds
from test.fuzz.checks import Verdict, judge_error, judge_results
from test.fuzz.outcomes import CLEAN, CRASH, HANG, NO_ORACLE, OK

_ELEMENT_TYPES = ("f32", "f64", "f16", "bf16", "i1", "i3", "i8", "i16", "i32", "i64", "ui8", "si32", "index",
                  "complex<f32>", "f8E4M3FN", "i128")
_OPS = ("linalg.matmul", "linalg.add", "linalg.max", "linalg.fill", "linalg.broadcast", "linalg.generic",
        "linalg.transpose", "linalg.batch_matmul", "linalg.sub", "linalg.div", "tensor.empty", "tosa.add",
        "tosa.mul", "tosa.sub", "tosa.matmul", "nnf.softmax", "nnf.linear", "nnf.activation", "nnf.layer_norm",
        "linalg.conv_2d_nhwc_hwcf", "linalg.conv_2d_nchw_fchw", "linalg.pooling_nchw_max")
OPT_TIMEOUT = 60.0


def _pipelines() -> dict[str, str]:
    from nnforge import pipelines
    from nnforge.targets.cpu.host import KNOWN_CPUS, ScheduleSizes

    zen4 = ScheduleSizes.for_cpu(KNOWN_CPUS["znver4"])
    naive = ",".join(p for _, p in pipelines.stages("linalg"))
    return {
        "cpu-naive": naive,
        "tosa-cpu-naive": ",".join(p for _, p in pipelines.stages("tosa")),
        "dispatch-regions": ",".join((pipelines.NNF_TO_LINALG, pipelines.LINALG_FUSION, pipelines.dispatch_regions(
            copy_arguments=False,
            row_tiles=zen4.full_rate_register_rows(),
            convolution_panel=(zen4.direct_filter_panel, zen4.direct_filter_bytes),
            direct_min_width=zen4.direct_min_width,
        ))),
        "bufferize": f"{pipelines.NNF_TO_LINALG},{pipelines.BUFFERIZE}",
    }


def mutate(rng: random.Random, text: str) -> tuple[str, str]:
    """`text` changed one way: (new text, what changed)."""
    lines = text.splitlines()
    body = [i for i, line in enumerate(lines) if line.strip() and not line.strip().startswith(("func.func", "]", "}"))]
    choice = rng.randrange(9)
    if choice == 0:
        sizes = sorted(set(re.findall(r"(?<=[<x])(\d+)(?=x)", text)))
        if sizes:
            old, new = rng.choice(sizes), rng.choice(["0", "1", "7", "?", "1000000"])
            if rng.random() < 0.5:
                return re.sub(rf"(?<=[<x]){old}(?=x)", new, text), f"dimension {old} -> {new} everywhere"
            matches = list(re.finditer(rf"(?<=[<x]){old}(?=x)", text))
            match = rng.choice(matches)
            return text[:match.start()] + new + text[match.end():], f"one dimension {old} -> {new}"
    if choice == 1 and body:
        index = rng.choice(body)
        return "\n".join(lines[:index] + lines[index + 1:]), f"line {index} deleted"
    if choice == 2 and body:
        index = rng.choice(body)
        return "\n".join(lines[:index + 1] + lines[index:]), f"line {index} duplicated"
    if choice == 3 and len(body) > 1:
        a, b = sorted(rng.sample(body, 2))
        lines[a], lines[b] = lines[b], lines[a]
        return "\n".join(lines), f"lines {a} and {b} swapped"
    if choice == 4:
        cut = rng.randrange(len(text))
        return text[:cut], f"cut at {cut}"
    if choice == 5:
        present = [op for op in _OPS if op in text]
        if present:
            old, new = rng.choice(present), rng.choice(_OPS)
            return text.replace(old, new, 1), f"{old} -> {new}"
    if choice == 6:
        numbers = list(re.finditer(r"(?<![\w%#x])-?\d+(?:\.\d+)?(?![\w.])", text))
        if numbers:
            match = rng.choice(numbers)
            new = rng.choice(["0", "-1", "2", "-7", "1.5", "9223372036854775807", "nan"])
            return text[:match.start()] + new + text[match.end():], f"number {match.group()} -> {new}"
    if choice == 7:
        data = bytearray(text.encode())
        for _ in range(rng.choice([1, 3])):
            data[rng.randrange(len(data))] = rng.randrange(32, 127)
        return data.decode(errors="replace"), "characters replaced"
    index = rng.choice(body) if body else 0
    element = rng.choice(["f32", "i32", "f16", "i1"])
    lines[index] = re.sub(r"x(f32|f64|f16|i32|i64|i8|i16)>", f"x{element}>", lines[index], count=1)
    return "\n".join(lines), f"line {index}: one tensor's element type -> {element}"


def _run_opt(path: Path, pipeline: str, what: str) -> Verdict:
    from nnforge import tool_path
    from nnforge._process import describe_exit, failure_cause

    command = [str(tool_path("nnforge-opt")), str(path), f"--pass-pipeline=builtin.module({pipeline})",
               "-o", "/dev/null"]
    try:
        child = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=OPT_TIMEOUT)
    except subprocess.TimeoutExpired:
        return Verdict(HANG, what, f"nnforge-opt ran past {OPT_TIMEOUT:g} s")
    if child.returncode < 0:
        return Verdict(CRASH, what, f"nnforge-opt {describe_exit(child.returncode)}: {failure_cause(child.stderr)}")
    if child.returncode == 0:
        return Verdict(OK, what)
    if "error:" in child.stderr:
        return Verdict(CLEAN, what, failure_cause(child.stderr)[:300])
    return Verdict(CRASH, what, f"nnforge-opt {describe_exit(child.returncode)} without a diagnostic: "
                                f"{failure_cause(child.stderr)[:300]}")


def _compile(path: Path, seed: mlir_seeds.Seed, element: str | None, rng: random.Random, what: str) -> Verdict:
    import nnforge
    from nnforge.runtime import numpy_dtype

    generator = np.random.default_rng(rng.randrange(2**32))
    try:
        compiled = nnforge.compile(path, threads=rng.choice([1, 2]), optimize=rng.random() < 0.7)
        if element is not None:
            arrays = mlir_seeds.inputs(seed, element, generator)
        else:
            arrays = []
            for spec in compiled.signature.inputs:
                dtype = numpy_dtype(spec.dtype)
                shape = tuple(3 if size is None else size for size in spec.shape)
                arrays.append(generator.integers(-3, 4, shape).astype(dtype))
        actual = compiled(*arrays)
    except Exception as error:
        return judge_error(error, what)
    if element is None:
        return Verdict(NO_ORACLE, what, "compiled and ran; the mutant has no reference")
    expected = seed.reference(*arrays)
    loose = element in ("f16", "bf16")
    return judge_results(actual, expected, what, rtol=1e-2 if loose else 1e-4, atol=1e-2 if loose else 1e-5)


def case(rng: random.Random, folder: Path) -> Verdict:
    seed = rng.choice(mlir_seeds.SEEDS)
    path = folder / f"{seed.name}.mlir"
    through_opt = rng.random() < 0.5
    if rng.random() < 0.3:
        # Another element type everywhere: valid where the seed allows it.
        element = rng.choice(seed.types if rng.random() < 0.7 else _ELEMENT_TYPES)
        text = seed.text("f32").replace("xf32>", f"x{element}>").replace(": f32", f": {element}") \
            .replace("%a: f32", f"%a: {element}").replace("%acc: f32", f"%acc: {element}") \
            if element not in seed.types else seed.text(element)
        what = f"{seed.name} in {element}"
        oracle = element if element in seed.types else None
    else:
        text, change = mutate(rng, seed.text(rng.choice(seed.types)))
        what = f"{seed.name}: {change}"
        oracle = None
    path.write_text(text)
    if through_opt:
        pipelines = _pipelines()
        name = "tosa-cpu-naive" if seed.name == "tosa" and rng.random() < 0.7 else rng.choice(sorted(pipelines))
        return _run_opt(path, pipelines[name], f"nnforge-opt {name}: {what}")
    return _compile(path, seed, oracle, rng, f"compile: {what}")
