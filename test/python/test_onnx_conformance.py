"""ONNX's backend conformance suite (onnx.backend.test) over nnforge.onnx_backend.

Runs the CPU tests of the simple models and the light CNNs, and a
deterministic subset of the node, pytorch-converted and pytorch-operator
tests: every STRIDE-th by name (a full run takes over half an hour on two
cores). NNFORGE_FULL_ONNX_SUITE=1 runs every test. Tests listed in test/onnx/expected_failures.txt (written by
test/onnx/update_expected_failures.py) are expected to fail, so a newly
passing test shows up as an unexpected success: rerun the script then.
Listed tests that crash the process running them, or pass only sometimes, are left out.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import onnx.backend.test

import nnforge.onnx_backend

EXPECTED_FAILURES = Path(__file__).resolve().parents[1] / "onnx" / "expected_failures.txt"
# Must match update_expected_failures.CRASH_PREFIX and FLAKY_PREFIX.
LEFT_OUT_PREFIXES = ("process crash", "flaky")
# Categories of one-op tests, sampled unless the full suite is asked for.
SAMPLED_CATEGORIES = (
    "OnnxBackendNodeModelTest",
    "OnnxBackendPyTorchConvertedModelTest",
    "OnnxBackendPyTorchOperatorModelTest",
)
STRIDE = 20
FULL_SUITE = os.environ.get("NNFORGE_FULL_ONNX_SUITE") == "1"


def _expected_failures() -> dict[str, str]:
    """Test name -> reason, from `name  # reason` lines."""
    entries = {}
    for line in EXPECTED_FAILURES.read_text().splitlines():
        name, _, reason = line.partition("#")
        if name.strip():
            entries[name.strip()] = reason.strip()
    return entries


def _exact(names: list[str]) -> str:
    """One regex matching exactly the given test names."""
    return "^(?:" + "|".join(map(re.escape, sorted(names))) + ")$"


def _selected(test_cases: dict[str, type]) -> set[str]:
    """The CPU tests this run covers."""
    names = set()
    for case in test_cases.values():
        cpu_tests = sorted(name for name in vars(case) if name.startswith("test_") and name.endswith("_cpu"))
        if case.__name__ in SAMPLED_CATEGORIES and not FULL_SUITE:
            cpu_tests = cpu_tests[::STRIDE]
        names.update(cpu_tests)
    return names


backend_test = onnx.backend.test.BackendTest(nnforge.onnx_backend, __name__)
_failures = _expected_failures()
_left_out = [name for name, reason in _failures.items() if reason.startswith(LEFT_OUT_PREFIXES)]
if _left_out:
    backend_test.exclude(_exact(_left_out))
_failing = [name for name, reason in _failures.items() if not reason.startswith(LEFT_OUT_PREFIXES)]
if _failing:
    backend_test.xfail(_exact(_failing))
_test_cases = backend_test.test_cases
# Leave out what this run does not cover (CUDA tests, the other node tests)
# rather than reporting them as skipped.
_covered = _selected(_test_cases)
for _case in _test_cases.values():
    for _name in [name for name in vars(_case) if name.startswith("test_") and name not in _covered]:
        delattr(_case, _name)
globals().update(_test_cases)
