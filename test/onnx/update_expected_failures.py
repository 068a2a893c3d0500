#!/usr/bin/env python3
"""Runs ONNX's backend conformance suite and rewrites expected_failures.txt.

    python test/onnx/update_expected_failures.py            # nnforge and onnxruntime, all tests
    python test/onnx/update_expected_failures.py --pattern 'test_(abs|add)_'   # rerun some, merge

Every CPU test of onnx's `BackendTest` (node, simple, pytorch-converted,
pytorch-operator and the light "real" models) runs under each backend. Tests
run in a child process that streams one JSON line per test, so a crash in
compiled code costs one test, not the sweep; a test past --timeout seconds
is killed likewise. Per-test outcomes go to RESULTS_DIR/<backend>.jsonl,
the tests nnforge fails to expected_failures.txt (`name  # reason`, reasons
grouped by cause, noting when onnxruntime fails the test too), and a summary
of pass counts, times and top causes is printed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import traceback
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXPECTED_FAILURES = HERE / "expected_failures.txt"
BACKENDS = {"nnforge": "nnforge.onnx_backend", "onnxruntime": "onnxruntime.backend"}
# The reason prefix marking tests that kill the process running them: the
# pytest suite excludes these instead of expecting them to fail.
CRASH_PREFIX = "process crash"
# Tests whose outcome varies from run to run, with why: listed, and left out
# of pytest like crashes (an unexpected success would fail it).
FLAKY_PREFIX = "flaky"
FLAKY: dict[str, str] = {}
# Tests no backend can pass, with why; nnforge's results are right (checked
# by test/python/test_onnx_refusals.py): listed, never as "wrong values".
CANNOT_MATCH = {
    **{f"test_bernoulli{variant}_cpu": "random draws: the reference's cannot be reproduced (nnforge's are 0/1 "
       "with the given probabilities)" for variant in ("", "_double", "_double_expanded", "_expanded")},
}
# Element types torch-mlir has no equivalent for, recognised in test names.
_EXOTIC_DTYPES = (
    ("float8", "float8"), ("fp8", "float8"), ("e4m3", "float8"), ("e5m2", "float8"),
    ("float4", "float4"), ("e2m1", "float4"), ("int4", "int4/uint4"), ("uint4", "int4/uint4"),
    ("int2", "int2/uint2"), ("string", "string"), ("bfloat16", "bfloat16"),
)


def backend_tests(backend: object) -> dict[str, unittest.TestCase]:
    """Every CPU test of onnx's backend suite for `backend` (a module or Backend class), by name."""
    import onnx.backend.test

    suite = onnx.backend.test.BackendTest(backend, __name__)
    tests = {}
    for case in suite.test_cases.values():
        for test in unittest.TestLoader().loadTestsFromTestCase(case):
            tests[test._testMethodName] = test
    return tests


def test_kind(name: str, categories: dict[str, str]) -> str:
    return categories.get(name, "?")


class _OutcomeRecorder(unittest.TestResult):
    """A TestResult keeping the exception of a failed test, not only its text."""

    exception: BaseException | None = None

    def addError(self, test, err) -> None:  # noqa: N802 (unittest's name)
        super().addError(test, err)
        self.exception = err[1]

    def addFailure(self, test, err) -> None:  # noqa: N802
        super().addFailure(test, err)
        self.exception = err[1]


def run_tests_here(backend: str, names: list[str]) -> None:
    """Child mode: runs `names`, one JSON line per test start and outcome on stdout."""
    import importlib

    from nnforge.errors import NNForgeError

    # Tests may print: the records go through a private copy of stdout.
    records = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    tests = backend_tests(importlib.import_module(BACKENDS[backend]))
    for name in names:
        print(json.dumps({"start": name}), file=records, flush=True)
        result = _OutcomeRecorder()
        start = time.perf_counter()
        tests[name].run(result)
        seconds = time.perf_counter() - start
        outcome, error_type, message, nnforge_error = "pass", "", "", False
        if result.exception is not None:
            outcome = "fail"
            error_type = type(result.exception).__name__
            message = str(result.exception)
            nnforge_error = isinstance(result.exception, NNForgeError)
        elif result.skipped:
            outcome, message = "skip", result.skipped[0][1]
        print(json.dumps({"name": name, "outcome": outcome, "error_type": error_type,
                          "message": message[:4000], "nnforge_error": nnforge_error,
                          "seconds": round(seconds, 3)}),
              file=records, flush=True)


def run_tests(backend: str, names: list[str], timeout: float, log: Path) -> list[dict]:
    """Runs `names` under `backend` in child processes, surviving crashes and hangs.

    Each record is also appended to `log` as it arrives.
    """
    results: list[dict] = []
    remaining = list(names)
    while remaining:
        child = subprocess.Popen(
            [sys.executable, __file__, "--child", backend], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
        )
        child.stdin.write("\n".join(remaining))
        child.stdin.close()
        current, started = None, time.perf_counter()
        while True:
            # Loading the suite (before the first test) may take long on a busy machine.
            ready, _, _ = select.select([child.stdout], [], [], timeout if current else max(timeout, 900))
            if not ready:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                cause = f"{CRASH_PREFIX}: ran past {timeout:g} s"
                break
            line = child.stdout.readline()
            if not line:
                status = child.wait()
                cause = f"{CRASH_PREFIX}: " + (
                    f"signal {signal.Signals(-status).name}" if status < 0 else f"exit {status}"
                )
                break
            record = json.loads(line)
            if "start" in record:
                current, started = record["start"], time.perf_counter()
                continue
            _append(log, record)
            results.append(record)
            remaining.remove(record["name"])
            current = None
            print(f"[{backend}] {len(results)}/{len(names)} {record['name']}: {record['outcome']}",
                  file=sys.stderr, flush=True)
        child.stdout.close()
        if current is None:  # died between tests (e.g. while loading the suite)
            if remaining:
                raise RuntimeError(f"the {backend} test child died outside a test: {cause}")
            break
        record = {"name": current, "outcome": "fail", "error_type": "crash",
                  "message": cause, "seconds": round(time.perf_counter() - started, 3)}
        _append(log, record)
        results.append(record)
        remaining.remove(current)
    return results


def _append(log: Path, record: dict) -> None:
    with open(log, "a") as stream:
        stream.write(json.dumps(record) + "\n")


def exotic_dtype(name: str) -> str | None:
    lowered = name.lower()
    for marker, label in _EXOTIC_DTYPES:
        if marker in lowered:
            return label
    return None


_UNSUPPORTED_KIND = re.compile(r"^\s+(.+?) x\d+", re.MULTILINE)


def failure_cause(record: dict) -> str:
    """A short, groupable cause for a failed test."""
    if record["name"] in FLAKY:
        return f"{FLAKY_PREFIX}: {FLAKY[record['name']]}"
    if record["name"] in CANNOT_MATCH:
        return f"cannot match: {CANNOT_MATCH[record['name']]}"
    message, error_type = record["message"], record["error_type"]
    if error_type == "crash":
        return message
    if "ran past" in message and "was killed" in message:
        # The backend's own time limit ended it: as slow as a hang for pytest.
        return f"{CRASH_PREFIX}: does not finish (killed at the backend's time limit)"
    if "integralElementType.getWidth() >= 8" in message:
        cause = "i1 (boolean) lowering abort in MemRefToLLVM"
    elif error_type == "UnsupportedOpError" and "forms torch-mlir would compute wrongly" in message:
        kinds = sorted({kind.split(" at ")[0] for kind in _UNSUPPORTED_KIND.findall(message)})
        cause = f"refused, torch-mlir computes it wrongly: {', '.join(kinds[:3])}"
    elif error_type == "UnsupportedOpError":
        kinds = sorted(set(_UNSUPPORTED_KIND.findall(message)))
        kinds = sorted({kind.split(" at ")[0] for kind in kinds})
        if kinds and all(kind.startswith("tm_tensor.") for kind in kinds):
            cause = f"torch-mlir TMTensor op, not lowered to linalg: {', '.join(kinds[:3])}"
        else:
            cause = f"unsupported in torch-mlir: {', '.join(kinds[:3]) or message.splitlines()[0]}"
    elif "torch-mlir" in message and ("killed by signal" in message or "torch-mlir failed while" in message):
        cause = "torch-mlir abort" + _assertion_site(message)
    elif "child was killed by signal" in message or "child exited" in message:
        cause = "MLIR lowering abort" + _assertion_site(message)
    elif "torch-mlir failed to lower" in message:
        stage = re.search(r"in stage (\S+?):", message)
        cause = f"torch-mlir lowering failed ({stage.group(1) if stage else '?'})"
    elif "left ops it could not convert" in message:
        cause = "LLVM lowering left ops: " + message.split("convert:", 1)[1].strip().splitlines()[0]
    elif error_type == "ModelLoadError":
        cause = "model rejected at load: " + _first_words(message)
    elif error_type == "InputError":
        cause = "input/output type: " + _first_words(message)
    elif error_type == "AssertionError":
        if "incorrect shape" in message:
            cause = "wrong output shape"
        elif "Mismatched elements" in message or "Not equal to tolerance" in message:
            cause = "wrong values"
        elif "ACTUAL: dtype(" in message:
            cause = "wrong output dtype"
        else:
            cause = "AssertionError: " + _first_words(message)
    else:
        cause = f"{error_type}: {_first_words(message)}"
    dtype = exotic_dtype(record["name"])
    return f"dtype {dtype}: {cause}" if dtype else cause


# What each failure means for a user of `nnforge.compile` (docs/reliability.md):
# a crash or hang of the compiling child would end or stall the user's
# process; other exceptions than NNForgeErrors, and wrong values, are bugs.
RELIABILITY_CLASSES = ("pass", "clean", "cannot match", "skip", "unclean", "wrong", "hang", "crash")
# The worker's wording of an exception that is not an NNForgeError (`TypeError at file.py:12: ...`).
_WRAPPED_EXCEPTION = re.compile(r"^\w+ at [^\s:]+\.py:\d+: ")
# The ONNX backend's wording of its compiling child dying: in-process, the user's process.
_CHILD_DIED = re.compile(r"in a child process failed: the child (?!ran past)")


def reliability_class(record: dict) -> str:
    """One of RELIABILITY_CLASSES: pass, a clean refusal (an NNForgeError),
    or a failure of the guarantees (unclean, wrong, hang, crash)."""
    if record["outcome"] in ("pass", "skip"):
        return record["outcome"]
    if record["name"] in CANNOT_MATCH:
        return "cannot match"
    message, error_type = record["message"], record["error_type"]
    if error_type == "crash":
        return "hang" if "ran past" in message else "crash"
    if "ran past" in message and "was killed" in message:
        return "hang"
    if _CHILD_DIED.search(message):
        return "crash"
    if error_type == "AssertionError":
        return "wrong"
    if record.get("nnforge_error") and not _WRAPPED_EXCEPTION.match(message):
        return "clean"
    return "unclean"


def _assertion_site(message: str) -> str:
    site = re.search(r"/([\w.]+\.(?:cpp|h)):\d+", message)
    return f" ({site.group(1)})" if site else ""


def _first_words(message: str, count: int = 8) -> str:
    words = message.strip().splitlines()[0].split() if message.strip() else []
    return " ".join(words[:count])


def read_expected_failures(path: Path = EXPECTED_FAILURES) -> dict[str, str]:
    """name -> reason, from a file of `name  # reason` lines."""
    entries = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, reason = line.partition("#")
            if name.strip():
                entries[name.strip()] = reason.strip()
    return entries


def summarize(results: dict[str, list[dict]], categories: dict[str, str]) -> None:
    for backend, records in results.items():
        by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        seconds: collections.Counter = collections.Counter()
        for record in records:
            kind = test_kind(record["name"], categories)
            by_kind[kind][record["outcome"]] += 1
            seconds[kind] += record["seconds"]
        print(f"\n{backend}:")
        for kind in sorted(by_kind):
            counts = by_kind[kind]
            total = sum(counts.values())
            print(f"  {kind:22} pass {counts['pass']:4}/{total:<4} skip {counts['skip']:3}"
                  f"  {seconds[kind]:7.0f} s ({seconds[kind] / total:.2f} s/test)")
    if {"nnforge", "onnxruntime"} <= results.keys():
        outcome = {b: {r["name"]: r["outcome"] for r in results[b]} for b in results}
        for kind in sorted(set(categories.values())):
            names = [n for n, k in categories.items() if k == kind and n in outcome["onnxruntime"]]
            ort_pass = [n for n in names if outcome["onnxruntime"][n] == "pass"]
            both = [n for n in ort_pass if outcome["nnforge"].get(n) == "pass"]
            share = 100 * len(both) / len(ort_pass) if ort_pass else 0
            print(f"  {kind}: nnforge passes {len(both)}/{len(ort_pass)} ({share:.1f}%) of onnxruntime's passes")
    classes = collections.Counter(map(reliability_class, results.get("nnforge", [])))
    print("\nnnforge by outcome for a user (docs/reliability.md): "
          + ", ".join(f"{name} {classes[name]}" for name in RELIABILITY_CLASSES))
    for record in results.get("nnforge", []):
        if reliability_class(record) in ("unclean", "wrong", "hang", "crash"):
            print(f"  {reliability_class(record)}: {record['name']}: {_first_words(record['message'], 16)}")
    causes = collections.Counter(
        failure_cause(r) for r in results.get("nnforge", []) if r["outcome"] == "fail"
    )
    print("\nnnforge failure causes:")
    for cause, count in causes.most_common(25):
        print(f"  {count:4}  {cause}")


def write_expected_failures(nnforge: list[dict], onnxruntime: dict[str, str]) -> None:
    entries = read_expected_failures()
    for record in nnforge:
        entries.pop(record["name"], None)
        if record["outcome"] == "fail":
            reason = failure_cause(record)
            if onnxruntime.get(record["name"]) == "fail":
                reason += " (onnxruntime fails too)"
            entries[record["name"]] = reason
    width = max((len(name) for name in entries), default=0) + 2
    lines = [
        "# ONNX backend tests nnforge fails, written by test/onnx/update_expected_failures.py.",
        f"# Tests whose reason starts with '{CRASH_PREFIX}' or '{FLAKY_PREFIX}' are excluded from pytest,"
        " the others xfail.",
    ]
    lines += [f"{name:{width}}# {reason}" for name, reason in sorted(entries.items())]
    EXPECTED_FAILURES.write_text("\n".join(lines) + "\n")


def categories_of(tests: dict[str, unittest.TestCase]) -> dict[str, str]:
    return {name: type(test).__name__ for name, test in tests.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="nnforge,onnxruntime")
    parser.add_argument("--pattern", default="", help="regex: run only matching tests, merge the file")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per test")
    parser.add_argument("--results-dir", type=Path, default=Path("build/onnx-conformance"))
    parser.add_argument("--resume", action="store_true", help="skip tests with saved results")
    parser.add_argument("--summary-only", action="store_true", help="summarize saved results")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_tests_here(args.child, sys.stdin.read().split())
        return
    import onnx.backend.base

    tests = backend_tests(onnx.backend.base.Backend)
    categories = categories_of(tests)
    names = sorted(n for n in tests if n.endswith("_cpu") and re.search(args.pattern, n))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}
    for backend in args.backends.split(","):
        path = args.results_dir / f"{backend}.jsonl"
        saved = {}
        if path.exists():
            saved = {r["name"]: r for r in map(json.loads, path.read_text().splitlines())}
        if not args.summary_only:
            log = args.results_dir / f"{backend}.partial.jsonl"
            if log.exists():  # an interrupted run's results are results too
                saved.update((r["name"], r) for r in map(json.loads, log.read_text().splitlines()))
                path.write_text("".join(json.dumps(r) + "\n" for r in saved.values()))
                log.unlink()
            todo = [name for name in names if not (args.resume and name in saved)]
            start = time.perf_counter()
            for record in run_tests(backend, todo, args.timeout, log):
                saved[record["name"]] = record
            print(f"{backend}: {len(todo)} tests in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            path.write_text("".join(json.dumps(r) + "\n" for r in saved.values()))
            log.unlink(missing_ok=True)
        results[backend] = list(saved.values())
    for backend in BACKENDS.keys() - results.keys():  # compare with saved results of the other
        path = args.results_dir / f"{backend}.jsonl"
        if path.exists():
            results[backend] = list(map(json.loads, path.read_text().splitlines()))
    if not args.summary_only and "nnforge" in results:
        ran = set(names)
        onnxruntime = {r["name"]: r["outcome"] for r in results.get("onnxruntime", [])}
        write_expected_failures([r for r in results["nnforge"] if r["name"] in ran], onnxruntime)
    summarize(results, categories)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        traceback.print_exc()
        sys.exit(130)
