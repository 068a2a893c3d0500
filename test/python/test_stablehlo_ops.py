"""nnforge's StableHLO op test set (stablehlo_op_cases.py) against jax (XLA).

The cases nnforge converts are compiled together, as one jax function
returning every case's outputs (one compilation instead of eighty), and
compared case by case; those it does not convert must be named in one
UnsupportedOpError. NNFORGE_SLOW_TESTS=1 also compiles each case alone (as
benchmarks/stablehlo_op_coverage.py does for docs/stablehlo.md).

Tolerance: within 1e-5 of the largest magnitude of jax's output (f32),
integers exactly; the f16 case within one f16 rounding step (each case's
`tolerance`).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="jax is not installed (pip install 'nnforge[jax]')")
from stablehlo_op_cases import CASES  # noqa: E402

import nnforge  # noqa: E402
from nnforge.errors import UnsupportedOpError  # noqa: E402

# What nnforge does not convert, as UnsupportedOpError names it.
UNSUPPORTED = {
    "fft": "stablehlo.fft",
    "custom_call (LAPACK)": "stablehlo.custom_call @lapack_spotrf_ffi",
    "custom_call (LAPACK triangular solve)": "stablehlo.custom_call @lapack_strsm_ffi",
}
SUPPORTED = [case for case in CASES if case.label not in UNSUPPORTED]


def largest_error(actual, expected) -> float:
    worst = 0.0
    for got, want in zip(jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected)):
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        assert got.shape == want.shape
        scale = max(float(np.abs(want).max(initial=0)), np.finfo(np.float32).tiny)
        worst = max(worst, float(np.abs(got - want).max(initial=0)) / scale)
    return worst


def check(case, actual, expected, what: str = "") -> None:
    error = largest_error(actual, expected)
    assert error <= case.tolerance, f"{case.label}{what}: largest difference {error:.2e}"


def test_supported_ops_match_jax() -> None:
    cases = [case for case in SUPPORTED if not case.symbolic]
    function = jax.jit(lambda *groups: [case.function(*args) for case, args in zip(cases, groups)])
    groups = [case.args for case in cases]
    compiled = nnforge.compile(function, groups)
    for case, actual, expected in zip(cases, compiled(*groups), function(*groups)):
        check(case, actual, expected)


def test_symbolic_shape_ops_match_jax() -> None:
    cases = [case for case in SUPPORTED if case.symbolic]
    function = jax.jit(lambda *groups: [case.function(*args) for case, args in zip(cases, groups)])
    scope = jax.export.SymbolicScope()
    compiled = nnforge.compile(function, [case.example_args(scope) for case in cases])
    for rows in (3, 1, 6):
        groups = [tuple(np.resize(arg, (rows, *np.shape(arg)[1:])) for arg in case.args) for case in cases]
        for case, actual, expected in zip(cases, compiled(*groups), function(*groups)):
            check(case, actual, expected, f", {rows} rows")


def test_unsupported_ops_are_named() -> None:
    cases = [case for case in CASES if case.label in UNSUPPORTED]
    function = jax.jit(lambda *groups: [case.function(*args) for case, args in zip(cases, groups)])
    with pytest.raises(UnsupportedOpError) as raised:
        nnforge.compile(function, [case.example_args(jax.export.SymbolicScope()) for case in cases])
    assert {op.kind for op in raised.value.ops} == set(UNSUPPORTED.values())


@pytest.mark.skipif(not os.environ.get("NNFORGE_SLOW_TESTS"), reason="NNFORGE_SLOW_TESTS=1 compiles each op alone")
@pytest.mark.parametrize("case", SUPPORTED, ids=[case.label for case in SUPPORTED])
def test_each_op_alone(case) -> None:
    function = jax.jit(case.function)
    compiled = nnforge.compile(function, case.example_args())
    check(case, compiled(*case.args), function(*case.args))
