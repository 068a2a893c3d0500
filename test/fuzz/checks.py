"""What the case families share: classifying an exception, comparing results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from test.fuzz.outcomes import CLEAN, HANG, OK, UNCLEAN, WRONG


@dataclass
class Verdict:
    """A family's judgement of one case (the runner adds crashes and hangs)."""

    outcome: str
    what: str
    detail: str = ""


def judge_error(error: BaseException, what: str) -> Verdict:
    """An exception a case raised: clean if it is an NNForgeError with a
    message; a hang if an nnforge child ran past its time limit."""
    from nnforge.errors import NNForgeError
    from nnforge._process import ChildTimeout

    message = str(error).strip()
    first = message.splitlines()[0][:300] if message else ""
    if isinstance(error, ChildTimeout):
        return Verdict(HANG, what, f"ChildTimeout: {first}")
    if isinstance(error, NNForgeError) and message:
        return Verdict(CLEAN, what, f"{type(error).__name__}: {first}")
    return Verdict(UNCLEAN, what, f"{type(error).__module__}.{type(error).__name__}: {first or '(no message)'}")


def difference(actual: Any, expected: Any, rtol: float = 1e-4, atol: float = 1e-5, nan_either: bool = False) -> str:
    """"" when `actual` matches `expected` (arrays or lists of arrays: same
    count, shapes, dtypes' kinds, values within tolerance, NaN where NaN),
    else what differs. `nan_either`: a NaN on either side matches anything
    (weights holding NaN or Inf: 0 x NaN at a padded tap is NaN in IEEE
    arithmetic, which nnforge and PyTorch compute and onnxruntime skips)."""
    actual = list(actual) if isinstance(actual, (list, tuple)) else [actual]
    expected = list(expected) if isinstance(expected, (list, tuple)) else [expected]
    if len(actual) != len(expected):
        return f"{len(actual)} results, expected {len(expected)}"
    for index, (a, e) in enumerate(zip(actual, expected)):
        a, e = np.asarray(a), np.asarray(e)
        if a.shape != e.shape:
            return f"result {index}: shape {list(a.shape)}, expected {list(e.shape)}"
        if a.dtype.kind != e.dtype.kind and not (a.dtype.kind in "iu" and e.dtype.kind in "iu"):
            return f"result {index}: dtype {a.dtype}, expected {e.dtype}"
        if a.dtype.kind in "fc" or e.dtype.kind in "fc":
            a64, e64 = a.astype(np.float64), e.astype(np.float64)
            tolerance = atol + rtol * np.abs(e64)
            nan = (np.isnan(a64) | np.isnan(e64)) if nan_either else (np.isnan(a64) & np.isnan(e64))
            bad = ~((np.abs(a64 - e64) <= tolerance) | nan | (a64 == e64))
        else:
            bad = a != e
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            return (f"result {index}: {int(bad.sum())} of {bad.size} values differ, "
                    f"first at {list(where)}: {a[where]!r} vs {e[where]!r}")
    return ""


def judge_results(
    actual: Any, expected: Any, what: str, rtol: float = 1e-4, atol: float = 1e-5, nan_either: bool = False
) -> Verdict:
    """OK when `actual` matches the oracle's `expected`, else WRONG with the difference."""
    diff = difference(actual, expected, rtol, atol, nan_either)
    return Verdict(WRONG, what, diff) if diff else Verdict(OK, what)
