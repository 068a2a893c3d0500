"""Model exchange, measured: ONNX round trips, NNEF round trips, simplify against onnxsim and onnxslim.

    python benchmarks/exchange.py [--quick] [--stride N] [--match TEXT] [--repeats 20] [--sections A,B]
                                  [--models A,B] [--update] [--note TEXT] [--output FILE] [--no-docs]

Sections of the JSON report (benchmarks/results/exchange.json; --quick writes to the temp folder):
- "onnx_roundtrip": the onnx wheel's backend test cases (the node tests onnx generates, and the
  pytorch-converted, pytorch-operator and simple model sets): for each model nnforge imports at the TOSA
  level, the model nnforge exports, run by onnxruntime on the test's inputs, against the test's expected
  outputs (the test's own tolerances). Counts: cases, imported, exported, passed; the export refusals by op.
- "light_cnns": the wheel's 9 light CNNs: exported to ONNX (onnxruntime against onnxruntime on the
  source), exported to NNEF and compiled back by nnforge (against the source), and simplified by
  nnforge, onnxsim and onnxslim (node counts; onnxruntime latency over 7 rounds of one process per
  model: medians, and each round's ratio to the source; identical outputs).
- "transformers": the CPU benchmark's transformer layer and tiny GPT-2 as torch.onnx.export writes them,
  simplified by nnforge, onnxsim and onnxslim (node counts, latency, identical outputs).
- "nnef_anchor": NNEF against NNEF's own converter, nnef-tools: its NNEF of each light CNN compiled by
  nnforge, and nnforge's NNEF converted to ONNX by nnef-tools and run by onnxruntime, against the source.
- "torch_workloads": the tests' models and the CPU benchmark's PyTorch workloads, exported to ONNX (run by
  onnxruntime) and to NNEF (compiled back by nnforge), against eager PyTorch.
- "jax": the tests' jax models (MLP, CNN, transformer block; weights as arguments), exported to ONNX (run by
  onnxruntime) and to NNEF (compiled back by nnforge), against jax; and the StableHLO op cases of the tests
  (stablehlo_op_cases.py, static shapes), each exported to ONNX alone: how many export, how many of those
  onnxruntime runs to jax's outputs, and the refusals by kind.
--quick takes every 25th backend case (--stride), three light CNNs, three workloads and 3 latency repeats;
--match keeps the backend cases whose name holds TEXT (e.g. --match uint --sections onnx_roundtrip); --models
keeps the light CNNs and transformers named. --update keeps what the output file holds for the sections and
models not run. "runs" records, per section, when each part of it ran, the load average, and --note.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "test" / "python"))

from machine import describe  # noqa: E402

RESULTS = HERE / "results" / "exchange.json"
DOCS = HERE.parent / "docs" / "exchange.md"
MODEL_SETS = ("pytorch-converted", "pytorch-operator", "simple")
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}  # exported against source / eager


def _error(error: Exception) -> str:
    """The error's first line; for an UnsupportedOpError, the ops it names too."""
    from nnforge.errors import UnsupportedOpError

    text = str(error).strip().splitlines()
    if isinstance(error, UnsupportedOpError):
        text = [" ".join(line.strip() for line in text)]
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def _ort(path: Path | str):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _array(value) -> np.ndarray:
    """A test case's input as onnxruntime takes it (cases hold numpy scalars and TensorProtos too)."""
    from onnx import TensorProto, numpy_helper

    return numpy_helper.to_array(value) if isinstance(value, TensorProto) else np.asarray(value)


_PACKED = {"int4": 4, "uint4": 4, "int2": 2, "uint2": 2}  # bits per element


def _pack(array: np.ndarray) -> np.ndarray:
    """ml_dtypes' 4- or 2-bit array (one element a byte) packed as ONNX holds it: the first element lowest."""
    bits = _PACKED[array.dtype.name]
    per_byte = 8 // bits
    codes = array.reshape(-1).view(np.uint8) & ((1 << bits) - 1)
    codes = np.pad(codes, (0, -codes.size % per_byte)).reshape(-1, per_byte)
    return np.ascontiguousarray(sum(codes[:, i] << (bits * i) for i in range(per_byte)).astype(np.uint8))


def _unpack(data: np.ndarray, kind: str, shape: list[int]) -> np.ndarray:
    """The inverse of `_pack` for an onnxruntime output of type `kind` ("int4", ...)."""
    import ml_dtypes

    bits = _PACKED[kind]
    codes = np.stack([(data >> (bits * i)) & ((1 << bits) - 1) for i in range(8 // bits)], axis=1).reshape(-1)
    count = int(np.prod(shape, dtype=np.int64))
    if kind.startswith("int"):  # sign-extend
        codes = np.where(codes >= 1 << (bits - 1), codes.astype(np.int16) - (1 << bits), codes).astype(np.int8)
    return codes[:count].astype(getattr(ml_dtypes, kind)).reshape(shape)


def _run_ort(session, values: list) -> list[np.ndarray]:
    """onnxruntime's outputs on a test case's inputs. Arrays of the types numpy holds through ml_dtypes
    (bfloat16, float8), which onnxruntime's Python API does not take or give as numpy arrays, go in and
    come out as OrtValues over their bytes."""
    import ctypes

    import onnxruntime
    from onnx import helper

    feeds = {}
    for spec, value in zip(session.get_inputs(), values):
        array = np.ascontiguousarray(_array(value))
        if array.dtype.name in _PACKED:  # onnxruntime holds them packed, two or four to a byte, low bits first
            packed = _pack(array)
            array, data = onnxruntime.OrtValue.ortvalue_from_shape_and_type(
                list(array.shape), helper.np_dtype_to_tensor_dtype(array.dtype)), packed
            ctypes.memmove(array.data_ptr(), data.ctypes.data, data.nbytes)
        elif array.dtype.name.startswith(("bfloat16", "float8")):  # ml_dtypes' (float8_e5m2's kind is "f")
            array = onnxruntime.OrtValue.ortvalue_from_numpy_with_onnx_type(
                array.view(np.uint8 if array.dtype.itemsize == 1 else np.uint16),
                helper.np_dtype_to_tensor_dtype(array.dtype))
        else:
            array = onnxruntime.OrtValue.ortvalue_from_numpy(array)
        feeds[spec.name] = array
    results = []
    for spec, value in zip(session.get_outputs(), session.run_with_ort_values(None, feeds)):
        kind = value.data_type().removeprefix("tensor(").removesuffix(")")
        if kind in ("bfloat16", "float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz"):
            import ml_dtypes

            dtype = np.dtype(getattr(ml_dtypes, kind.replace("float8", "float8_")))
            size = int(np.prod(value.shape(), dtype=np.int64)) * dtype.itemsize
            data = bytes((ctypes.c_char * size).from_address(value.data_ptr())) if size else b""
            results.append(np.frombuffer(data, dtype).reshape(value.shape()))
        elif kind in _PACKED:
            data = np.frombuffer(bytes((ctypes.c_char * value.tensor_size_in_bytes()).from_address(value.data_ptr())),
                                 np.uint8)
            results.append(_unpack(data, kind, value.shape()))
        else:
            results.append(value.numpy())
    return results


def _close(got, expected, rtol: float, atol: float) -> bool:
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return False
    if expected.dtype.kind in "fcV":  # V: the float types of ml_dtypes (bfloat16, float8)
        return bool(np.allclose(got.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol,
                                equal_nan=True))
    return bool(np.array_equal(got, expected))


def backend_cases(stride: int, match: str = "") -> list[tuple[str, object, list, list, float, float]]:
    """(name, model, inputs, expected outputs, rtol, atol) of every stride-th backend test case whose
    name holds `match`."""
    import onnx
    from onnx import numpy_helper
    from onnx.backend.test.case.node import collect_testcases

    cases = []
    for case in collect_testcases(None):
        if case.data_sets:
            inputs, outputs = case.data_sets[0]
            cases.append((case.name, case.model, list(inputs), list(outputs), case.rtol, case.atol))
    data = Path(onnx.__file__).parent / "backend" / "test" / "data"
    for model_set in MODEL_SETS:
        for folder in sorted((data / model_set).iterdir()):
            data_set = folder / "test_data_set_0"
            if not (folder / "model.onnx").exists() or not data_set.is_dir():
                continue

            def read(prefix: str) -> list:
                arrays = []
                for file in sorted(data_set.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[1])):
                    tensor = onnx.TensorProto()
                    tensor.ParseFromString(file.read_bytes())
                    arrays.append(numpy_helper.to_array(tensor))
                return arrays

            cases.append((f"{model_set}/{folder.name}", folder / "model.onnx", read("input"), read("output"),
                          1e-3, 1e-7))
    cases.sort(key=lambda case: case[0])
    return [case for case in cases if match in case[0]][::stride]


# Ops that draw random numbers: a run gives other values than the test's expected outputs.
RANDOM_OPS = {"Bernoulli", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike"}


def _draws_random_numbers(model) -> bool:
    import onnx

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    return any(node.op_type in RANDOM_OPS for node in proto.graph.node)

def onnx_roundtrip(stride: int, match: str, scratch: Path) -> dict:
    from nnforge.exporters import import_tosa, onnx_writer, to_onnx
    from nnforge.errors import NNForgeError, UnsupportedOpError

    counts: Counter = Counter()
    refused: Counter = Counter()
    failures: dict[str, str] = {}
    cases = backend_cases(stride, match)
    for index, (name, model, inputs, expected, rtol, atol) in enumerate(cases):
        counts["cases"] += 1
        print(f"[{index + 1}/{len(cases)}] {name}", file=sys.stderr, flush=True)
        try:
            imported = import_tosa(model)
        except NNForgeError:
            continue
        counts["imported"] += 1
        path = scratch / "roundtrip.onnx"
        try:
            proto = to_onnx(imported)
            onnx_writer.save(proto, path)
        except UnsupportedOpError as error:
            refused.update({op.kind: op.count for op in error.ops})
            failures[name] = _error(error)
            continue
        except NNForgeError as error:
            failures[name] = _error(error)
            continue
        counts["exported"] += 1
        try:
            got = _run_ort(_ort(path), inputs)
        except Exception as error:  # onnxruntime's own errors
            failures[name] = "onnxruntime: " + _error(error)
            continue
        random = _draws_random_numbers(model)
        if random:  # other draws than the test's: the shapes and types are what can be compared
            counts["random"] += 1
            same = len(got) == len(expected) and all(
                g.shape == _array(e).shape and g.dtype == _array(e).dtype for g, e in zip(got, expected))
        else:
            same = len(got) == len(expected) and all(_close(g, _array(e), rtol, atol) for g, e in zip(got, expected))
        if same:
            counts["passed"] += 1
        else:
            failures[name] = "outputs differ" + (" in shape or type" if random else "")
    return {"stride": stride, "match": match, **counts, "export_refusals": dict(refused.most_common()),
            "failures": failures}


def _random_input(session) -> dict:
    rng = np.random.default_rng(0)
    return {spec.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in spec.shape]).astype(np.float32)
            for spec in session.get_inputs()}


# A child process timing one model in onnxruntime: argv model, inputs (.npz), repeats; prints the median seconds.
_TIMER = """
import statistics, sys, time
import numpy as np
import onnxruntime
options = onnxruntime.SessionOptions()
options.log_severity_level = 3
session = onnxruntime.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
feeds = dict(np.load(sys.argv[2]))
session.run(None, feeds)
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    session.run(None, feeds)
    times.append(time.perf_counter() - start)
print(statistics.median(times))
"""


def _latencies(paths: dict[str, Path], feeds: dict, repeats: int, rounds: int = 7) -> dict[str, dict]:
    """Each model's onnxruntime latency: per round, each model timed alone in a process of its own (the
    median of `repeats` runs after a warm-up run), the order rotating from round to round. Returns, per
    model, the median over the rounds ("ms") and, beside the source's, the round-by-round ratios to the
    source's latency ("ratio": median and quartiles): a ratio compares two processes that ran side by side,
    so that a slower or faster phase of the machine does not pass for a difference of the models."""
    with tempfile.TemporaryDirectory(prefix="nnforge-latency-") as folder:
        inputs = Path(folder) / "inputs.npz"
        np.savez(inputs, **feeds)
        tools = list(paths)
        times: dict[str, list[float]] = {tool: [] for tool in tools}
        for round_ in range(rounds):
            for tool in tools[round_ % len(tools):] + tools[:round_ % len(tools)]:
                done = subprocess.run([sys.executable, "-c", _TIMER, str(paths[tool]), str(inputs), str(repeats)],
                                      capture_output=True, text=True, check=True, timeout=1800)
                times[tool].append(1e3 * float(done.stdout.split()[-1]))
    results: dict[str, dict] = {tool: {"ms": statistics.median(values)} for tool, values in times.items()}
    for tool, values in times.items():
        if tool != "source" and "source" in times:
            ratios = [value / source for value, source in zip(values, times["source"])]
            first, median, third = statistics.quantiles(ratios, n=4)
            results[tool]["ratio"] = {"median": median, "q1": first, "q3": third}
    return results


def _simplifiers() -> dict:
    found = {}
    try:
        import onnxsim

        found["onnxsim"] = lambda source, target: __import__("onnx").save(
            onnxsim.simplify(__import__("onnx").load(str(source)))[0], str(target))
    except ImportError:
        pass
    try:
        import onnxslim

        def slim(source: Path, target: Path) -> None:
            with contextlib.redirect_stdout(sys.stderr):  # it prints a summary table
                onnxslim.slim(str(source), str(target))

        found["onnxslim"] = slim
    except ImportError:
        pass
    return found


def _light_cnn_cases(limit: int | None, label: str, models: set[str] | None):
    """(name, path, random inputs, onnxruntime's output on the source) of the onnx wheel's light CNNs
    (those in `models`, when given)."""
    import onnx

    data = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    for path in sorted(data.glob("*.onnx"))[:limit]:
        name = path.stem.removeprefix("light_")
        if models is not None and name not in models:
            continue
        print(f"{label} {name}", file=sys.stderr, flush=True)
        source = _ort(path)
        feeds = _random_input(source)
        yield name, path, feeds, source.run(None, feeds)[0]


def light_cnns(limit: int | None, repeats: int, scratch: Path, models: set[str] | None) -> dict:
    import nnforge

    results = {}
    for name, path, feeds, reference in _light_cnn_cases(limit, "light CNN", models):
        entry: dict = {}
        try:
            exported = nnforge.export(path, scratch / f"{name}.onnx")
            entry["onnx_equal"] = _close(_ort(exported).run(None, feeds)[0], reference, **TOLERANCE)
        except Exception as error:  # recorded, the sweep goes on
            entry["onnx_error"] = _error(error)
        try:
            folder = nnforge.export(path, scratch / f"{name}.nnef")
            got = nnforge.compile(folder)(*feeds.values())
            entry["nnef_equal"] = _close(got, reference, **TOLERANCE)
        except Exception as error:
            entry["nnef_error"] = _error(error)
        entry.update(_simplified(name, path, feeds, reference, repeats, scratch))
        results[name] = entry
    return results


def _simplified(name: str, path: Path, feeds: dict, reference: np.ndarray, repeats: int, scratch: Path) -> dict:
    """The model simplified by nnforge, onnxsim and onnxslim: node counts, outputs equal to the
    source's, onnxruntime latency (source too), errors."""
    import onnx

    from nnforge.exporters.simplify import simplify

    entry: dict = {"nodes": {"source": len(onnx.load(str(path), load_external_data=False).graph.node)}}
    simplified = {"source": path}
    try:
        target = scratch / f"{name}.nnforge-simplified.onnx"
        entry["nodes"]["nnforge"] = simplify(path, target)[1]
        simplified["nnforge"] = target
    except Exception as error:  # recorded, the sweep goes on
        entry["simplify_error"] = _error(error)
    for tool, run in _simplifiers().items():
        target = scratch / f"{name}.{tool}.onnx"
        try:
            run(path, target)
            entry["nodes"][tool] = len(onnx.load(str(target), load_external_data=False).graph.node)
            simplified[tool] = target
        except Exception as error:
            entry[f"{tool}_error"] = _error(error)
    entry["outputs_equal"] = {tool: _close(_ort(file).run(None, feeds)[0], reference, **TOLERANCE)
                              for tool, file in simplified.items() if tool != "source"}
    latencies = _latencies(simplified, feeds, repeats)
    entry["latency_ms"] = {tool: timed["ms"] for tool, timed in latencies.items()}
    entry["latency_ratio"] = {tool: timed["ratio"] for tool, timed in latencies.items() if "ratio" in timed}
    return entry


# The CPU benchmark's transformers, as torch.onnx.export writes them (static shapes).
TRANSFORMERS = ("transformer-layer-128x256", "tiny-gpt2-64tok")


def _positional(module):
    """`module` called with its inputs only: the TorchScript exporter otherwise passes forward's defaults
    as inputs too (nn.TransformerEncoderLayer's `is_causal=False` becomes a tensor and fails)."""
    import torch

    class Positional(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(*inputs)

    return Positional(module).eval()


def transformers(repeats: int, scratch: Path, models: set[str] | None) -> dict:
    """Simplify on the transformers `torch.onnx.export` writes, against onnxsim and onnxslim."""
    import torch
    import workloads

    results = {}
    for name in TRANSFORMERS:
        if models is not None and name not in models:
            continue
        print(f"transformer {name}", file=sys.stderr, flush=True)
        workload = workloads.build(name)
        path = scratch / f"{name}.onnx"
        try:
            # without the fused attention fast path, which the TorchScript exporter cannot trace
            torch.backends.mha.set_fastpath_enabled(False)
            torch.onnx.export(_positional(workload.module), workload.inputs, str(path), dynamo=False)
        except Exception as error:
            results[name] = {"export_error": _error(error)}
            continue
        source = _ort(path)
        feeds = {spec.name: tensor.numpy() for spec, tensor in zip(source.get_inputs(), workload.inputs)}
        results[name] = _simplified(name, path, feeds, source.run(None, feeds)[0], repeats, scratch)
    return results


def _nnef_tools(source_format: str, target_format: str, source: Path, target: Path) -> None:
    """nnef-tools' converter, as its documentation runs it (a child process)."""
    command = [sys.executable, "-m", "nnef_tools.convert", "--input-format", source_format,
               "--output-format", target_format, "--input-model", str(source), "--output-model", str(target)]
    if source_format == "onnx":
        command.append("--fold-constants")  # the light CNNs' ConstantOfShape nodes have no NNEF conversion
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0 or not target.exists():
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"nnef-tools {source_format} -> {target_format}: {lines[-1] if lines else done.returncode}")


def nnef_anchor(limit: int | None, scratch: Path, models: set[str] | None) -> dict:
    """NNEF against its anchor, nnef-tools: its NNEF of each light CNN compiled by nnforge, and nnforge's
    NNEF converted by nnef-tools to ONNX and run by onnxruntime; both against onnxruntime on the source."""
    import importlib.util

    import nnforge

    if importlib.util.find_spec("nnef_tools") is None:
        return {"error": "nnef-tools is not installed (pip install 'nnforge[exchange]')"}
    results = {}
    for name, path, feeds, reference in _light_cnn_cases(limit, "nnef-tools", models):
        entry: dict = {}
        try:
            theirs = scratch / f"{name}.nnef-tools.nnef"
            _nnef_tools("onnx", "nnef", path, theirs)
            entry["nnforge_compiles_nnef_tools_equal"] = _close(nnforge.compile(theirs)(*feeds.values()), reference,
                                                          **TOLERANCE)
        except Exception as error:  # recorded, the sweep goes on
            entry["nnforge_compiles_nnef_tools_error"] = _error(error)
        try:
            ours = nnforge.export(path, scratch / f"{name}.nnforge.nnef")
            back = scratch / f"{name}.nnforge.nnef-tools.onnx"
            _nnef_tools("nnef", "onnx", ours, back)
            session = _ort(back)
            got = session.run(None, {spec.name: value for spec, value in zip(session.get_inputs(), feeds.values())})
            entry["nnef_tools_reads_nnforge_equal"] = _close(got[0], reference, **TOLERANCE)
        except Exception as error:
            entry["nnef_tools_reads_nnforge_error"] = _error(error)
        results[name] = entry
    return results


def _torch_models(quick: bool) -> list[tuple[str, object, tuple]]:
    import models
    import workloads

    found = [(name, *getattr(models, name)()) for name in ("cnn", "mlp", "transformer_layer")]
    if not quick:
        for name in workloads.BUILDERS:
            workload = workloads.build(name)
            if workload.kind == "model":
                found.append((name, workload.module, workload.inputs))
    return found


def torch_workloads(quick: bool, scratch: Path) -> dict:
    import torch

    import nnforge

    results = {}
    for name, module, inputs in _torch_models(quick):
        print(f"PyTorch {name}", file=sys.stderr, flush=True)
        with torch.no_grad():
            eager = module(*inputs)
        eager = (eager[0] if isinstance(eager, (tuple, list)) else eager).numpy()
        arrays = [tensor.numpy() for tensor in inputs]
        entry: dict = {}
        try:
            path = nnforge.export(module, scratch / f"{name}.onnx", inputs)
            session = _ort(path)
            got = session.run(None, {spec.name: a for spec, a in zip(session.get_inputs(), arrays)})[0]
            entry["onnx_max_abs_error"] = float(np.abs(got - eager).max())
            entry["onnx_equal"] = _close(got, eager, rtol=1e-3, atol=1e-4)
        except Exception as error:
            entry["onnx_error"] = _error(error)
        try:
            folder = nnforge.export(module, scratch / f"{name}.nnef", inputs)
            # NNEF's "integer" has no width; nnforge reads it as i32 (token ids, here)
            got = nnforge.compile(folder)(*[a.astype(np.int32) if a.dtype.kind == "i" else a for a in arrays])
            got = got[0] if isinstance(got, (tuple, list)) else got
            entry["nnef_max_abs_error"] = float(np.abs(np.asarray(got) - eager).max())
            entry["nnef_equal"] = _close(got, eager, rtol=1e-3, atol=1e-4)
        except Exception as error:
            entry["nnef_error"] = _error(error)
        results[name] = entry
    return results


def _compare_to_jax(got: list, expected, tolerance: float) -> tuple[float, bool]:
    """(the largest difference relative to jax's largest magnitude, whether within `tolerance`)."""
    import jax

    worst = 0.0
    for value, want in zip(got, jax.tree_util.tree_leaves(expected)):
        value, want = np.asarray(value, np.float64), np.asarray(want, np.float64)
        if value.shape != want.shape:
            return float("inf"), False
        scale = max(float(np.abs(want).max(initial=0)), np.finfo(np.float32).tiny)
        worst = max(worst, float(np.abs(value - want).max(initial=0)) / scale)
    return worst, worst <= tolerance


def _jax_op_cases(scratch: Path) -> dict:
    import jax
    from stablehlo_op_cases import CASES

    import nnforge
    from nnforge.errors import UnsupportedOpError

    counts: dict = {"cases": 0, "exported": 0, "passed": 0, "failed": [], "refused": Counter()}
    for case in CASES:
        if case.symbolic:
            continue
        counts["cases"] += 1
        function = jax.jit(case.function)
        try:
            path = nnforge.export(function, scratch / "case.onnx", case.args)
        except UnsupportedOpError as error:
            counts["refused"].update(op.kind for op in error.ops)
            continue
        counts["exported"] += 1
        session = _ort(path)
        leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(case.args)]
        got = session.run(None, {spec.name: leaf for spec, leaf in zip(session.get_inputs(), leaves)})
        if _compare_to_jax(got, function(*case.args), case.tolerance)[1]:
            counts["passed"] += 1
        else:
            counts["failed"].append(case.label)
    counts["refused"] = dict(counts["refused"].most_common())
    return counts


def jax_models_section(scratch: Path) -> dict:
    import jax
    import jax_models

    import nnforge

    results: dict = {"models": {}}
    for name in ("mlp", "cnn", "transformer"):
        print(f"jax {name}", file=sys.stderr, flush=True)
        function, arguments = getattr(jax_models, name)()
        expected = function(*arguments)
        leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(arguments)]
        entry: dict = {}
        try:
            session = _ort(nnforge.export(function, scratch / f"jax_{name}.onnx", arguments))
            got = session.run(None, {spec.name: leaf for spec, leaf in zip(session.get_inputs(), leaves)})
            entry["onnx_relative_error"], entry["onnx_equal"] = _compare_to_jax(got, expected, 1e-5)
        except Exception as error:
            entry["onnx_error"] = _error(error)
        try:
            compiled = nnforge.compile(nnforge.export(function, scratch / f"jax_{name}.nnef", arguments))
            got = compiled(*leaves)
            entry["nnef_relative_error"], entry["nnef_equal"] = _compare_to_jax(
                got if isinstance(got, list) else [got], expected, 1e-5)
        except Exception as error:
            entry["nnef_error"] = _error(error)
        results["models"][name] = entry
    results["op_cases"] = _jax_op_cases(scratch)
    return results


def _mark(entry: dict, key: str) -> str:
    """yes / no for `<key>_equal`, or the start of `<key>_error`."""
    if f"{key}_equal" in entry:
        return "yes" if entry[f"{key}_equal"] else "no"
    return entry.get(f"{key}_error", "")[:60]


def _render_roundtrip(rt: dict) -> list[str]:
    every = f" (every {rt['stride']}th)" if rt["stride"] > 1 else ""
    every += f" named *{rt['match']}*" if rt.get("match") else ""
    lines = [f"| ONNX backend cases{every} | cases | import to TOSA | exported | onnxruntime = expected |",
             "|---|---|---|---|---|",
             f"| node tests + model sets | {rt.get('cases', 0)} | {rt.get('imported', 0)} | {rt.get('exported', 0)} "
             f"| {rt.get('passed', 0)} |", ""]
    if rt.get("random"):
        lines += [f"{rt['random']} of the exported draw random numbers ({', '.join(sorted(RANDOM_OPS))}): their "
                  "outputs' shapes and types are compared, not their values.", ""]
    if rt.get("export_refusals"):
        lines += ["Ops the ONNX writer refused: " + ", ".join(f"{k} ({v})" for k, v in rt["export_refusals"].items()),
                  ""]
    if rt.get("failures"):
        lines += ["Not passed: " + "; ".join(f"{name}: {why}" for name, why in rt["failures"].items()), ""]
    return lines


def _ratio(entry: dict) -> str:
    """nnforge's simplified model's latency over the source's: the median of the rounds' ratios and their
    quartiles."""
    ratio = entry.get("latency_ratio", {}).get("nnforge")
    return f"{ratio['median']:.2f}x ({ratio['q1']:.2f}–{ratio['q3']:.2f})" if ratio else "-"


def _render_light_cnns(results: dict) -> list[str]:
    tools = ["source", "nnforge", "onnxsim", "onnxslim"]
    lines = ["| light CNN | ONNX out = source | NNEF out, compiled = source | nodes: " + " / ".join(tools)
             + " | onnxruntime ms: " + " / ".join(tools)
             + " | nnforge's latency / source's, per round: median (quartiles) |",
             "|---|---|---|---|---|---|"]
    for name, entry in results.items():
        nodes = " / ".join(str(entry["nodes"].get(tool, "-")) for tool in tools)
        latency = " / ".join(f"{entry['latency_ms'][t]:.2f}" if t in entry["latency_ms"] else "-" for t in tools)
        lines.append(f"| {name} | {_mark(entry, 'onnx')} | {_mark(entry, 'nnef')} | {nodes} | {latency} "
                     f"| {_ratio(entry)} |")
    return lines + [""]


def _render_transformers(results: dict) -> list[str]:
    tools = ["source", "nnforge", "onnxsim", "onnxslim"]
    lines = ["| torch.onnx.export'ed transformer | nodes: " + " / ".join(tools) + " | onnxruntime ms: "
             + " / ".join(tools) + " | nnforge's latency / source's, per round: median (quartiles) | outputs = source: "
             + " / ".join(tools[1:])
             + " |", "|---|---|---|---|---|"]
    for name, entry in results.items():
        if "nodes" not in entry:
            lines.append(f"| {name} | {entry.get('export_error', '')[:80]} | | | |")
            continue
        nodes = " / ".join(str(entry["nodes"].get(tool, "-")) for tool in tools)
        latency = " / ".join(f"{entry['latency_ms'][t]:.2f}" if t in entry["latency_ms"] else "-" for t in tools)
        equal = " / ".join({True: "yes", False: "no"}.get(entry["outputs_equal"].get(t), "-") for t in tools[1:])
        lines.append(f"| {name} | {nodes} | {latency} | {_ratio(entry)} | {equal} |")
    return lines + [""]


def _render_nnef_anchor(results: dict) -> list[str]:
    lines = ["| light CNN | nnef-tools' NNEF, compiled by nnforge = source | nnforge's NNEF, read by nnef-tools "
             "(to ONNX, onnxruntime) = source |", "|---|---|---|"]
    for name, entry in results.items():
        lines.append(f"| {name} | {_mark(entry, 'nnforge_compiles_nnef_tools')} | "
                     f"{_mark(entry, 'nnef_tools_reads_nnforge')} |")
    return lines + [""]


def _render_torch(results: dict) -> list[str]:
    lines = ["| PyTorch model | ONNX out: max abs error vs eager | NNEF out, compiled: max abs error |",
             "|---|---|---|"]
    for name, entry in results.items():
        cells = [f"{entry[f'{kind}_max_abs_error']:.2e}" if f"{kind}_max_abs_error" in entry
                 else entry.get(f"{kind}_error", "")[:80] for kind in ("onnx", "nnef")]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return lines + [""]


def _render_jax(results: dict) -> list[str]:
    lines = ["| jax model | ONNX out: largest difference vs jax (relative) | NNEF out, compiled |", "|---|---|---|"]
    for name, entry in results["models"].items():
        cells = [f"{entry[f'{kind}_relative_error']:.1e}" if f"{kind}_relative_error" in entry
                 else entry.get(f"{kind}_error", "")[:80] for kind in ("onnx", "nnef")]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    ops = results["op_cases"]
    refused = ", ".join(f"{kind} ({count})" if count > 1 else kind for kind, count in ops["refused"].items())
    failed = f"; failed: {', '.join(ops['failed'])}" if ops["failed"] else ""
    return lines + ["", f"StableHLO op cases (static shapes) exported to ONNX alone: {ops['exported']} of "
                        f"{ops['cases']}, of which {ops['passed']} match jax in onnxruntime{failed}. "
                        f"Refused: {refused}.", ""]


_RENDERERS = {"onnx_roundtrip": _render_roundtrip, "light_cnns": _render_light_cnns,
              "nnef_anchor": _render_nnef_anchor, "transformers": _render_transformers,
              "torch_workloads": _render_torch, "jax": _render_jax}


def _render_runs(runs: list[dict]) -> list[str]:
    """The conditions each part of a section ran in: the CPU, the load average of the machine, the run's note."""
    parts = []
    for run in runs:
        load = "load unknown" if run.get("load") is None else f"load average {run['load'][0]:.1f}"
        what = "" if run.get("models", "all") == "all" else ", ".join(run["models"]) + ": "
        quick = "--quick" if run.get("settings", {}).get("quick") else ""
        cpu = run.get("cpu", "CPU not recorded")
        parts.append(what + ", ".join(field for field in (quick, cpu, load, run.get("note")) if field))
    return ["Measured " + "; ".join(parts) + ".", ""] if parts else []


def render(report: dict, source: str) -> str:
    """The markdown tables of docs/exchange.md's "Measured" section (a line for a section not run or failed)."""
    machine = report["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine.get("versions", {}).items()
                         if name in ("torch", "onnxruntime", "onnx", "mlir"))
    lines = ["## Measured", "",
             f"`python benchmarks/exchange.py` ({source}; {machine.get('logical_cpus')} logical CPUs; {versions}; "
             "the CPU of each part below it). onnxruntime latencies: per round, each model in a process of its own "
             "(the median of its runs), the order rotating; 7 rounds. A simplified model is slower than the source "
             "where the quartiles of its per-round ratios lie above 1.", ""]
    for section, renderer in _RENDERERS.items():
        result = report.get(section, {"error": "not run"})
        if "error" in result:
            lines += [f"{section}: {result['error'].strip().splitlines()[-1]}", ""]
        else:
            lines += renderer(result) + _render_runs(report.get("runs", {}).get(section, []))
    return "\n".join(lines)


SECTIONS = ("onnx_roundtrip", "light_cnns", "nnef_anchor", "transformers", "torch_workloads", "jax")


def _load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def current_runs(runs: list[dict], names) -> list[dict]:
    """Of `runs` (oldest first), those that measured some of `names` last, each naming the models it holds."""
    every = set(names)
    left, kept = set(every), []
    for run in reversed(runs):
        mine = left if run.get("models", "all") == "all" else left & set(run["models"])
        if mine:
            kept.append({**run, "models": "all" if mine == every else sorted(mine)})
            left -= mine
    return kept[::-1]


def _store(output: Path, section: str, result: dict, run: dict, fresh: dict, update: bool) -> dict:
    """Writes `section`'s `result` into the report at `output` and returns the report. Without `update` the
    report starts as `fresh`; with it, from what `output` holds (read under a lock, so that runs of other
    sections may write it too), the section's results for the models not run kept beside the new ones."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(tempfile.gettempdir()) / f"{output.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = json.loads(output.read_text()) if update and output.exists() else fresh
        runs = report.setdefault("runs", {})
        for name in SECTIONS:  # results written before runs were recorded: one run at the report's date
            if name not in runs and "error" not in report.get(name, {"error": ""}):
                runs[name] = [{"date": report.get("date"), "load": None, "models": "all",
                               "note": report.get("note", "")}]
        kept = report.get(section, {})
        if run["models"] != "all" and "error" not in kept and "error" not in result:
            result = {**kept, **result}
            runs[section] = current_runs(runs.get(section, []) + [run], result)
        else:
            runs[section] = [run]
        report[section] = result
        report.update(date=fresh["date"], machine=fresh["machine"], settings=fresh["settings"])
        output.write_text(json.dumps(report, indent=1, default=str) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a sample of each section (minutes)")
    parser.add_argument("--stride", type=int, default=None, help="every N-th backend test case (default 1; quick 25)")
    parser.add_argument("--match", default="", help="only the backend cases whose name holds this text")
    parser.add_argument("--repeats", type=int, default=None, help="onnxruntime runs per latency (default 20)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--sections", default=",".join(SECTIONS), help="which sections to run (comma-separated)")
    parser.add_argument("--models", default="", help="only these light CNNs and transformers (comma-separated)")
    parser.add_argument("--update", action="store_true",
                        help="keep the output file's results for the sections and models not run")
    parser.add_argument("--note", default="", help="the conditions of this run, recorded with it (e.g. the load)")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/exchange.md's tables")
    args = parser.parse_args(argv)
    stride = args.stride or (25 if args.quick else 1)
    repeats = args.repeats or (3 if args.quick else 20)
    output = args.output or (Path(tempfile.gettempdir()) / "nnforge-exchange-quick.json" if args.quick else RESULTS)
    models = set(args.models.split(",")) if args.models else None
    settings = {"stride": stride, "match": args.match, "repeats": repeats, "quick": args.quick}
    fresh = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "machine": describe(), "settings": settings,
             **{section: {"error": "not run (--sections)"} for section in SECTIONS}}
    report = json.loads(output.read_text()) if args.update and output.exists() else fresh
    with tempfile.TemporaryDirectory(prefix="nnforge-exchange-") as scratch:
        folder = Path(scratch)
        limit = 3 if args.quick else None
        for section, run in (("onnx_roundtrip", lambda: onnx_roundtrip(stride, args.match, folder)),
                             ("light_cnns", lambda: light_cnns(limit, repeats, folder, models)),
                             ("nnef_anchor", lambda: nnef_anchor(limit, folder, models)),
                             ("transformers", lambda: transformers(repeats, folder, models)),
                             ("torch_workloads", lambda: torch_workloads(args.quick, folder)),
                             ("jax", lambda: jax_models_section(folder))):
            if section not in args.sections.split(","):
                continue
            record = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      "cpu": fresh["machine"]["cpu"], "load": _load_average(),
                      "models": sorted(models) if models else "all", "note": args.note, "settings": settings}
            started = time.perf_counter()
            try:
                result = run()
            except Exception:  # a section's failure is reported, the others still run
                result = {"error": traceback.format_exc()}
                print(result["error"], file=sys.stderr)
            record.update(seconds=round(time.perf_counter() - started, 1), load_after=_load_average())
            if models and "error" not in result:
                record["models"] = sorted(result)  # those of this section
            report = _store(output, section, result, record, fresh, args.update)  # after each section
    print(f"wrote {output}", file=sys.stderr)
    text = render(report, str(output.relative_to(HERE.parent)) if output.is_relative_to(HERE.parent) else output.name)
    if args.quick or args.no_docs:
        print(text)
    else:
        docs = DOCS.read_text()
        head = docs.split("\n## Measured\n", 1)[0].rstrip()
        DOCS.write_text(head + "\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
