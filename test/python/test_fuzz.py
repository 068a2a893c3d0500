"""The fuzz suite (test/fuzz): its runner classifies each way a case can
end, and a fixed, small set of cases of every family ends in no crash, no
hang, no wrong result and no error that is not an NNForgeError.

The full run is `python -m test.fuzz --cases N --seed S` (docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
# Cases per family in CI, and the seed: about a minute on two cores.
CI_CASES_PER_FAMILY = 6
CI_SEED = 0
# test.fuzz.families.FAMILIES
FAMILIES = ("api", "artifacts", "concurrency", "inputs", "ir", "onnx")


def fuzz(tmp_path: Path, *arguments: str) -> dict:
    """Runs `python -m test.fuzz` with `arguments`; its JSON report."""
    report = tmp_path / "fuzz.json"
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY))
    subprocess.run([sys.executable, "-m", "test.fuzz", "--quiet", "--json", str(report), *arguments],
                   cwd=REPOSITORY, env=environment, capture_output=True, text=True, timeout=1200)
    return json.loads(report.read_text())


def test_runner_classifies_crashes_hangs_and_errors(tmp_path: Path) -> None:
    report = fuzz(tmp_path, "--family", "selftest", "--cases", "4", "--case-timeout", "20")
    outcomes = {f["case"]: f["outcome"] for f in report["failures"]}
    assert report["total"]["clean"] == 1
    assert outcomes == {"selftest/0/1": "unclean", "selftest/0/2": "crash", "selftest/0/3": "hang"}
    crash = next(f for f in report["failures"] if f["outcome"] == "crash")
    assert "SIGSEGV" in crash["detail"]


def test_ci_subset_finds_no_crash_hang_wrong_or_unclean_error(tmp_path: Path) -> None:
    report = fuzz(tmp_path, "--cases", str(CI_CASES_PER_FAMILY * len(FAMILIES)), "--seed", str(CI_SEED),
                  "--jobs", "2")
    failures = "\n".join(f"{f['outcome']}: {f['case']}: {f['what']}: {f['detail']}" for f in report["failures"])
    assert not report["failures"], failures
    assert set(report["counts"]) == set(FAMILIES)
    # The cases exercise both paths: refusals and results checked against an oracle.
    assert report["total"]["clean"] > 0 and report["total"]["ok"] > 0


@pytest.mark.parametrize("index", [21, 333])
def test_mlir_assertions_in_nnforge_opt_are_clean_errors(tmp_path: Path, index: int) -> None:
    # Seed 6's two crashes: MLIR asserts parsing `dimensions = [nan]` (ir/6/21)
    # and verifying a dilation of 2**63 - 1 (ir/6/333); nnforge-opt's child
    # dies, the tool reports it and exits 1.
    from test.fuzz.outcomes import CLEAN
    from test.fuzz.worker import run_case

    verdict = run_case("ir", 6, index, tmp_path)
    assert verdict.outcome == CLEAN, verdict
    assert "Assertion" in verdict.detail


def test_nan_from_non_finite_weights_is_not_a_wrong_result() -> None:
    # A mutated Conv's weights held NaN: at a padded tap nnforge (and PyTorch)
    # compute 0 x NaN = NaN where onnxruntime skips the tap (fuzz case onnx/5/12).
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from test.fuzz.checks import difference
    from test.fuzz.onnx_models import _non_finite_weights

    actual, expected = np.array([1.0, np.nan], np.float32), np.array([1.0, 2.0], np.float32)
    assert difference(actual, expected)
    assert not difference(actual, expected, nan_either=True)
    assert difference(np.array([1.0, 3.0]), expected, nan_either=True)

    def model(weights: np.ndarray) -> bytes:
        graph = helper.make_graph(
            [helper.make_node("Add", ["x", "w"], ["y"])], "g",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
            [numpy_helper.from_array(weights, "w")])
        return helper.make_model(graph).SerializeToString()

    assert _non_finite_weights(model(np.array([1.0, np.inf], np.float32)))
    assert not _non_finite_weights(model(np.array([1.0, 2.0], np.float32)))
