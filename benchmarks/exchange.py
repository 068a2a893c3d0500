"""Model exchange, measured: ONNX round trips, NNEF round trips, simplify against onnxsim and onnxslim.

    python benchmarks/exchange.py [--quick] [--stride N] [--repeats 20] [--output FILE] [--no-docs]

Sections of the JSON report (benchmarks/results/exchange.json; --quick writes to the temp folder):
- "onnx_roundtrip": the onnx wheel's backend test cases (the node tests onnx generates, and the
  pytorch-converted, pytorch-operator and simple model sets): for each model nnforge imports at the TOSA
  level, the model nnforge exports, run by onnxruntime on the test's inputs, against the test's expected
  outputs (the test's own tolerances). Counts: cases, imported, exported, passed; the export refusals by op.
- "light_cnns": the wheel's 9 light CNNs: exported to ONNX (onnxruntime against onnxruntime on the
  source), exported to NNEF and compiled back by nnforge (against the source), and simplified by
  nnforge, onnxsim and onnxslim (node counts, onnxruntime latency standalone medians, identical outputs).
- "torch_workloads": the tests' models and the CPU benchmark's PyTorch workloads, exported to ONNX (run by
  onnxruntime) and to NNEF (compiled back by nnforge), against eager PyTorch.
--quick takes every 25th backend case (--stride), three light CNNs, three workloads and 3 latency repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import statistics
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
    text = str(error).strip().splitlines()
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


def _close(got, expected, rtol: float, atol: float) -> bool:
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return False
    if expected.dtype.kind in "fc":
        return bool(np.allclose(got.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol,
                                equal_nan=True))
    return bool(np.array_equal(got, expected))


def backend_cases(stride: int) -> list[tuple[str, object, list, list, float, float]]:
    """(name, model, inputs, expected outputs, rtol, atol) of every stride-th backend test case."""
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
    return cases[::stride]


def onnx_roundtrip(stride: int, scratch: Path) -> dict:
    from nnforge.exporters import import_tosa, onnx_writer, tosa_graph
    from nnforge.errors import NNForgeError, UnsupportedOpError

    counts: Counter = Counter()
    refused: Counter = Counter()
    failures: dict[str, str] = {}
    cases = backend_cases(stride)
    for index, (name, model, inputs, expected, rtol, atol) in enumerate(cases):
        counts["cases"] += 1
        print(f"[{index + 1}/{len(cases)}] {name}", file=sys.stderr, flush=True)
        try:
            module, input_names, output_names, dims = import_tosa(model)
        except NNForgeError:
            continue
        counts["imported"] += 1
        path = scratch / "roundtrip.onnx"
        try:
            proto = onnx_writer.to_model(tosa_graph.read(module), input_names, output_names, input_dims=dims)
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
            session = _ort(path)
            feeds = {spec.name: _array(value) for spec, value in zip(session.get_inputs(), inputs)}
            got = session.run(None, feeds)
        except Exception as error:  # onnxruntime's own errors
            failures[name] = "onnxruntime: " + _error(error)
            continue
        if len(got) == len(expected) and all(_close(g, e, rtol, atol) for g, e in zip(got, expected)):
            counts["passed"] += 1
        else:
            failures[name] = "outputs differ"
    return {"stride": stride, **counts, "export_refusals": dict(refused.most_common()), "failures": failures}


def _random_input(session) -> dict:
    rng = np.random.default_rng(0)
    return {spec.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in spec.shape]).astype(np.float32)
            for spec in session.get_inputs()}


def _latency(path: Path, feeds: dict, repeats: int) -> float:
    """Median seconds of one onnxruntime run (after a warm-up run)."""
    session = _ort(path)
    session.run(None, feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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


def light_cnns(limit: int | None, repeats: int, scratch: Path) -> dict:
    import onnx

    import nnforge
    from nnforge.exporters.simplify import simplify

    data = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    results = {}
    for path in sorted(data.glob("*.onnx"))[:limit]:
        name = path.stem.removeprefix("light_")
        print(f"light CNN {name}", file=sys.stderr, flush=True)
        source = _ort(path)
        feeds = _random_input(source)
        reference = source.run(None, feeds)[0]
        entry: dict = {"nodes": {"source": len(onnx.load(str(path), load_external_data=False).graph.node)}}
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
        simplified = {"source": path}
        try:
            target = scratch / f"{name}.nnforge-simplified.onnx"
            entry["nodes"]["nnforge"] = simplify(path, target)[1]
            simplified["nnforge"] = target
        except Exception as error:
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
        entry["latency_ms"] = {tool: 1e3 * _latency(file, feeds, repeats) for tool, file in simplified.items()}
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
            got = nnforge.compile(folder)(*arrays)
            got = got[0] if isinstance(got, (tuple, list)) else got
            entry["nnef_max_abs_error"] = float(np.abs(np.asarray(got) - eager).max())
            entry["nnef_equal"] = _close(got, eager, rtol=1e-3, atol=1e-4)
        except Exception as error:
            entry["nnef_error"] = _error(error)
        results[name] = entry
    return results


def render(report: dict, source: str) -> str:
    """The markdown tables of docs/exchange.md's "Measured" section."""
    machine = report["machine"]
    cpu = machine.get("cpu", {}).get("model", "") if isinstance(machine.get("cpu"), dict) else machine.get("cpu", "")
    lines = ["## Measured", "",
             f"`python benchmarks/exchange.py` ({source}, {report['date']}, {cpu or 'CPU unknown'}).", ""]
    failed = [section for section in ("onnx_roundtrip", "light_cnns", "torch_workloads")
              if "error" in report[section]]
    if failed:
        return "\n".join(lines + [f"Sections that failed: {', '.join(failed)} (see the JSON)."]) + "\n"
    rt = report["onnx_roundtrip"]
    lines += ["| ONNX backend cases (every %dth) | cases | import to TOSA | exported | onnxruntime = expected |"
              % rt["stride"] if rt["stride"] > 1 else "| ONNX backend cases | cases | import to TOSA | exported | "
              "onnxruntime = expected |", "|---|---|---|---|---|",
              f"| node tests + model sets | {rt.get('cases', 0)} | {rt.get('imported', 0)} | {rt.get('exported', 0)} "
              f"| {rt.get('passed', 0)} |", ""]
    if rt.get("export_refusals"):
        lines += ["Ops the ONNX writer refused: " + ", ".join(f"{k} ({v})" for k, v in rt["export_refusals"].items()),
                  ""]
    tools = ["source", "nnforge", "onnxsim", "onnxslim"]
    lines += ["| light CNN | ONNX out = source | NNEF out, compiled = source | nodes: " + " / ".join(tools)
              + " | onnxruntime ms: " + " / ".join(tools) + " |", "|---|---|---|---|---|"]
    for name, entry in report["light_cnns"].items():
        def mark(key: str) -> str:
            return "yes" if entry.get(f"{key}_equal") else ("no" if f"{key}_equal" in entry
                                                           else entry.get(f"{key}_error", "")[:60])
        nodes = " / ".join(str(entry["nodes"].get(tool, "-")) for tool in tools)
        latency = " / ".join(f"{entry['latency_ms'][t]:.2f}" if t in entry["latency_ms"] else "-" for t in tools)
        lines.append(f"| {name} | {mark('onnx')} | {mark('nnef')} | {nodes} | {latency} |")
    lines += ["", "| PyTorch model | ONNX out: max abs error vs eager | NNEF out, compiled: max abs error |",
              "|---|---|---|"]
    for name, entry in report["torch_workloads"].items():
        onnx_cell = f"{entry['onnx_max_abs_error']:.2e}" if "onnx_max_abs_error" in entry else entry.get("onnx_error", "")[:80]
        nnef_cell = f"{entry['nnef_max_abs_error']:.2e}" if "nnef_max_abs_error" in entry else entry.get("nnef_error", "")[:80]
        lines.append(f"| {name} | {onnx_cell} | {nnef_cell} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a sample of each section (minutes)")
    parser.add_argument("--stride", type=int, default=None, help="every N-th backend test case (default 1; quick 25)")
    parser.add_argument("--repeats", type=int, default=None, help="onnxruntime runs per latency (default 20)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--sections", default="onnx_roundtrip,light_cnns,torch_workloads",
                        help="which sections to run (comma-separated)")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/exchange.md's tables")
    args = parser.parse_args(argv)
    stride = args.stride or (25 if args.quick else 1)
    repeats = args.repeats or (3 if args.quick else 20)
    output = args.output or (Path(tempfile.gettempdir()) / "nnforge-exchange-quick.json" if args.quick else RESULTS)
    started = time.perf_counter()
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": describe(), "settings": {"stride": stride, "repeats": repeats, "quick": args.quick}}
    with tempfile.TemporaryDirectory(prefix="nnforge-exchange-") as scratch:
        folder = Path(scratch)
        for section, run in (("onnx_roundtrip", lambda: onnx_roundtrip(stride, folder)),
                             ("light_cnns", lambda: light_cnns(3 if args.quick else None, repeats, folder)),
                             ("torch_workloads", lambda: torch_workloads(args.quick, folder))):
            if section not in args.sections.split(","):
                report[section] = {"error": "not run (--sections)"}
                continue
            try:
                report[section] = run()
            except Exception:  # a section's failure is reported, the others still run
                report[section] = {"error": traceback.format_exc()}
                print(report[section]["error"], file=sys.stderr)
            report["total_s"] = time.perf_counter() - started
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps(report, indent=1, default=str) + "\n")  # after each section
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
