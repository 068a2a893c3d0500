"""The CPU benchmark's rendering and its refusal of thread-pool variables
(benchmarks/render.py, run.py), the jax benchmark's and the StableHLO op
coverage's tables. Nothing is timed: the report is made up."""

from __future__ import annotations

import datetime
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
_spec = importlib.util.spec_from_file_location("benchmark_render", BENCHMARKS / "render.py")
render = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render)


def _result(ms: float) -> dict:
    return {"ms": ms, "round_ms": [ms], "calls": 3, "compile_s": 1.0, "max_error": 1e-6}


def _report() -> dict:
    machine = {"cpu": "Example CPU", "isa": ["avx512f"], "logical_cpus": 2, "usable_cpus": 2, "cores_per_socket": 2,
               "kernel": "6.1", "python": "3.11", "versions": {"torch": "2.13.0", "nnforge": "0.1.0"},
               "thread_variables": {}}
    return {
        "date": "2026-12-05T06:00:00+00:00", "machine": machine,
        "settings": {"threads": 2, "rounds": 3, "seconds": 0.5, "pause": 0.3, "quick": False},
        "workloads": {
            "a": {"title": "workload a", "kind": "model", "flops": 4e6, "compile_s": {"nnforge": 2.0}, "failed": {},
                  "naive_lowerings": ["IndexError: index out of range"],
                  "standalone": {"eager": _result(2.0), "nnforge": _result(1.0), "onnxruntime": _result(4.0)},
                  "in_process": {"eager": _result(2.0), "nnforge": _result(3.0),
                                 "onnxruntime": {"failed": "RuntimeError: boom"}},
                  "with_onnxruntime": {"eager": _result(4.0), "onnxruntime": _result(8.0), "nnforge": _result(6.0)}},
            "b": {"title": "workload b", "kind": "model", "flops": None, "compile_s": {}, "failed": {},
                  "standalone": {"eager": _result(1.0), "nnforge": _result(4.0), "onnxruntime": _result(1.0)},
                  "in_process": {"eager": _result(1.0), "onnxruntime": _result(2.0),
                                 "nnforge": {**_result(4.0), "dynamo": {"graphs": 3, "graph_breaks": 1, "warnings": [
                                     "nnforge backend: running this graph eagerly: x"]}}}},
        },
    }


def _row(text: str, first_cell: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_tables_give_geometric_means_per_mode_and_in_process_over_standalone() -> None:
    text = render.render(_report())
    assert "Example CPU" in text and "avx512f" in text and "do not edit by hand" in text
    standalone, in_process = text.split("### In-process: ")[0], text.split("### In-process: ")[1]
    # Columns: workload, eager/onnxruntime/nnforge ms, onnxruntime/eager, nnforge/eager.
    assert _row(standalone, "workload a") == ["workload a", "2.000", "4.000", "1.000", "2.00×", "0.50×"]
    assert _row(standalone, "geometric mean (workloads)")[-2:] == ["1.41× (2)", "1.41× (2)"]
    assert _row(in_process, "workload a")[2] == "failed"
    assert _row(in_process, "geometric mean (workloads)")[-2:] == ["2.00× (1)", "2.45× (2)"]
    with_onnxruntime = text.split("### In-process with an onnxruntime session: ")[1]
    assert _row(with_onnxruntime, "workload a") == ["workload a", "4.000", "8.000", "6.000", "2.00×", "1.50×"]
    # Dates of a run stay in the JSON; the page describes the figures.
    assert "2026" not in text
    ratios = text.split("### In-process time (without onnxruntime) / standalone time")[1]
    assert _row(ratios, "workload a") == ["workload a", "1.00×", "–", "3.00×"]
    assert "- a, onnxruntime, in-process: RuntimeError: boom" in text
    assert "- b, nnforge, in-process: nnforge backend: running this graph eagerly: x" in text
    details = text.split("### Compile times")[1]
    # 4e6 FLOPs in 1 ms standalone.
    assert _row(details, "workload a")[6] == "4"


def test_naive_lowerings_are_counted_and_their_causes_listed() -> None:
    report = _report()
    report["workloads"]["b"]["in_process"]["nnforge-dynamo"] = {**_result(4.0), "dynamo": {
        "graphs": 2, "graph_breaks": 1, "warnings": [], "naive_lowerings": ["CompileError: a", "CompileError: b"]}}
    text = render.render(report)
    details = text.split("### Compile times")[1]
    # Column 3: the graphs nnforge lowered naively (the most of any of the workload's compiles).
    assert _row(details, "workload a")[2] == "1"
    assert _row(details, "workload b")[2] == "2"
    assert "- a, nnforge: naive lowering (IndexError: index out of range)" in text
    assert "- b, nnforge-dynamo, in-process: naive lowering (CompileError: b)" in text


def test_the_page_keeps_its_text_and_one_generated_section(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text("# CPU performance\n\nWritten by hand.\n")
    render.write_page("first", page)
    render.write_page("second", page)
    content = page.read_text()
    assert content.startswith("# CPU performance\n\nWritten by hand.\n")
    assert content.count(render.BEGIN) == 1 and content.count(render.HEADING) == 1
    assert "second" in content and "first" not in content


def test_matmuls_are_rated_against_the_faster_blas() -> None:
    report = _report()
    blas = {"internal_api": "openblas", "version": "0.3.31", "architecture": "SkylakeX", "num_threads": 2}
    report["machine"]["thread_variables"] = {"OPENBLAS_CORETYPE": "Haswell"}
    # 2e9 FLOPs: torch.mm 200 GFLOP/s (10 ms), numpy 250 (8 ms), nnforge 225.
    report["workloads"]["m"] = {"title": "matmul m", "kind": "model", "flops": 2e9, "blas_ceiling": True,
                                "compile_s": {}, "failed": {},
                                "standalone": {"eager": _result(10.0), "nnforge": _result(2e9 / 225e6),
                                               "numpy": {**_result(8.0), "blas": blas}}}
    report["workloads"]["n"] = {"title": "matmul n", "kind": "model", "flops": 2e9, "blas_ceiling": True,
                                "compile_s": {}, "failed": {},
                                "standalone": {"eager": _result(10.0), "nnforge": _result(20.0),
                                               "numpy": {"failed": "ModuleNotFoundError: threadpoolctl"}}}
    ceiling = render.blas_ceiling(report["workloads"]["m"])
    assert ceiling["numpy_gflops"] == pytest.approx(250) and ceiling["nnforge_percent_of_fastest"] == pytest.approx(90)
    text = render.render(report)
    table = text.split("### Matmuls against the BLAS ceiling (standalone)")[1]
    assert _row(table, "matmul m") == ["matmul m", "200", "250", "225", "90%"]
    # Without numpy's figure the ceiling is torch.mm's.
    assert _row(table, "matmul n") == ["matmul n", "200", "–", "100", "50%"]
    assert "workload a" not in table.split("###")[0]
    assert "openblas 0.3.31 (kernel SkylakeX, 2 threads)" in table and "OPENBLAS_CORETYPE=Haswell" in table
    # numpy is no column of the mode tables.
    assert "numpy" not in text.split("### Matmuls against")[0].split("**Settings**")[1].split("\n", 1)[1]


def test_the_benchmark_refuses_thread_pool_variables_but_openblas_kernel_choice() -> None:
    environment = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_CORETYPE": "Haswell"}
    result = subprocess.run([sys.executable, str(BENCHMARKS / "run.py"), "--quick"], env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "OMP_WAIT_POLICY=PASSIVE" in result.stderr, result.stderr
    assert "OPENBLAS_CORETYPE" not in result.stderr


def test_numpy_runs_without_openblas_kernel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("benchmark_machine", BENCHMARKS / "machine.py")
    machine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(machine)
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "262144")
    environment = machine.blas_environment()
    assert "OPENBLAS_CORETYPE" not in environment and "OPENBLAS_L2_SIZE" not in environment
    assert environment["PATH"] == os.environ["PATH"]



def test_the_machine_names_the_cpu_with_its_microarchitecture() -> None:
    from nnforge.targets.cpu.host import host_cpu

    spec = importlib.util.spec_from_file_location("benchmark_machine", BENCHMARKS / "machine.py")
    machine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(machine)
    name = machine._cpu_name({"model name": "AMD EPYC", "cpu family": "26", "model": "2"})
    assert name == f"AMD EPYC ({host_cpu().name}, cpu family 26, model 2)"


def _benchmark_module(file: str):
    """A module of benchmarks/ (which imports its siblings), loaded from its file."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"benchmark_{Path(file).stem}", BENCHMARKS / file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def test_simplified_latencies_are_ratios_to_the_source_round_by_round(tmp_path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    exchange = _benchmark_module("exchange.py")
    paths = {}
    for name, op in (("source", "Relu"), ("nnforge", "Abs")):
        graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], name,
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), paths[name])
    latencies = exchange._latencies(paths, {"x": np.ones(4, np.float32)}, repeats=2, rounds=3)
    assert set(latencies) == {"source", "nnforge"} and "ratio" not in latencies["source"]
    assert all(timed["ms"] > 0 for timed in latencies.values())
    ratio = latencies["nnforge"]["ratio"]
    assert 0 < ratio["q1"] <= ratio["median"] <= ratio["q3"]
    entry = {"latency_ratio": {"nnforge": {"median": 1.013, "q1": 0.952, "q3": 1.061}}}
    assert exchange._ratio(entry) == "1.01x (0.95–1.06)"
    assert exchange._ratio({}) == "-"


def test_jax_table_names_the_machine_and_no_date(tmp_path: Path) -> None:
    benchmark = _benchmark_module("jax_vs_nnforge.py")
    machine = {"cpu": "Example CPU", "isa": ["avx2", "fma"], "usable_cpus": 2, "python": "3.11",
               "versions": {"jax": "0.10.2", "jaxlib": "0.10.2", "nnforge": "0.1.0", "mlir": "22.1.8.4"}}
    result = {"ms": {"jax": 2.0, "nnforge": 1.0}, "nnforge_error": 2e-7, "failures": [], "nnforge_compile_s": 3.0,
              "jax_first_call_s": 0.5}
    report = {"date": "2026-12-05T06:00:00+00:00", "machine": machine,
              "settings": {"rounds": 5, "seconds": 2.0, "tolerance": 1e-4},
              "workloads": {"w": {"title": "workload w", "flops": 4e6}},
              "runs": [{"threads": 1, "results": {"w": result}},
                       {"threads": 2, "results": {"w": {**result, "ms": {"jax": 1.0},
                                                        "failures": ["outputs differ: not timed"]}}}]}
    text = benchmark.render(report)
    assert "**Example CPU** (avx2/fma)" in text and "jax 0.10.2" in text and "2026" not in text
    assert _row(text, "1")[2:7] == ["2.000", "1.000", "0.50×", "4", "2.0e-07"]
    assert _row(text, "2")[3] == "failed" and "- workload w, 2 threads: outputs differ: not timed" in text
    page = tmp_path / "stablehlo.md"
    page.write_text(f"# jax\n\n{benchmark.BEGIN}\nold\n{benchmark.END}\nafter\n")
    benchmark.write_page(text, page)
    content = page.read_text()
    assert "old" not in content and content.endswith(f"{benchmark.END}\nafter\n") and "Example CPU" in content


def test_the_jax_benchmark_refuses_xla_variables() -> None:
    environment = {**os.environ, "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}
    result = subprocess.run([sys.executable, str(BENCHMARKS / "jax_vs_nnforge.py"), "--quick"], env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "XLA_FLAGS=" in result.stderr, result.stderr


def test_op_coverage_table_counts_cases_and_writes_no_date() -> None:
    pytest.importorskip("jax", reason="the op coverage table names jax's version (pip install '.[jax]')")
    spec = importlib.util.spec_from_file_location("benchmark_coverage", BENCHMARKS / "stablehlo_op_coverage.py")
    coverage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(coverage)

    def case(label: str, op: str) -> SimpleNamespace:
        return SimpleNamespace(label=label, op=op)

    text = coverage.table([(case("abs", "abs"), "pass", "0.0e+00"), (case("sort", "sort"), "pass", "0.0e+00"),
                           (case("sort (f16)", "sort"), "mismatch", "1.0e-02"),
                           (case("fft", "fft"), "unsupported", "stablehlo.fft")], 171.0)
    assert text.splitlines()[0].startswith("2 of 4 cases pass; 1 of the 3 StableHLO ops they exercise pass")
    assert "| fft | `fft` | unsupported | stablehlo.fft |" in text
    assert not re.search(r"\d{4}-\d{2}-\d{2}", text) and str(datetime.date.today().year) not in text
