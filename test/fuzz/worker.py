"""The child process that runs fuzz cases for `test.fuzz.runner`.

Reads one case a line on stdin ("family seed index"), runs it and writes
its verdict as a JSON line on the protocol descriptor (stdout at start;
then stdout proper is redirected to stderr, so that nothing a case prints
can break the protocol). The runner times each case and restarts this
process when a case kills or hangs it.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

from test.fuzz import families
from test.fuzz.checks import Verdict
from test.fuzz.outcomes import UNCLEAN


def case_rng(family: str, seed: int, index: int) -> random.Random:
    """The generator of one case: the same case for the same (family, seed, index)."""
    return random.Random(f"{family}/{seed}/{index}")


def run_case(family: str, seed: int, index: int, scratch: Path) -> Verdict:
    """The verdict of one case; an exception escaping the family is unclean
    (families judge nnforge's own errors themselves)."""
    rng = case_rng(family, seed, index)
    folder = Path(tempfile.mkdtemp(dir=scratch))
    try:
        if family == "selftest":
            return families.self_test(index)
        return families.FAMILIES[family](rng, folder)
    except Exception as error:  # a bug in the case or an error nnforge let through
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        return Verdict(UNCLEAN, "(escaped the case)", f"{last[:300]}")


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    families.warm_up()
    with tempfile.TemporaryDirectory(prefix="nnforge-fuzz-") as scratch:
        protocol.write("ready\n")
        for line in sys.stdin:
            family, seed, index = line.split()
            print(f"--- case {family}/{seed}/{index}", file=sys.stderr, flush=True)
            start = time.perf_counter()
            verdict = run_case(family, int(seed), int(index), Path(scratch))
            protocol.write(json.dumps({
                "outcome": verdict.outcome, "what": verdict.what, "detail": verdict.detail,
                "seconds": round(time.perf_counter() - start, 3),
            }) + "\n")


if __name__ == "__main__":
    main()
