"""`python -m test.fuzz`: runs the fuzz suite and writes its counts as JSON.

    python -m test.fuzz --cases 2000 --seed 1 --jobs 2 --json fuzz.json

Cases are spread evenly over the families (or those named with
--family); the same seed gives the same cases. Exits 1 when any case
crashed, hung, computed a wrong result or raised an error that is not an
NNForgeError.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from test.fuzz import runner
from test.fuzz.families import FAMILIES
from test.fuzz.outcomes import FAILURES


def cases(count: int, seed: int, families: list[str]) -> list[tuple[str, int, int]]:
    """`count` cases, the families taking turns."""
    return [(families[i % len(families)], seed, i // len(families)) for i in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m test.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=120, help="how many cases (default 120)")
    parser.add_argument("--seed", type=int, default=0, help="the cases' seed (default 0)")
    parser.add_argument("--family", action="append", choices=[*sorted(FAMILIES), "selftest"],
                        help="run only this family (repeatable; default all; selftest: the runner's own test)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--case-timeout", type=float, default=runner.CASE_TIMEOUT,
                        help=f"seconds a case may run (default {runner.CASE_TIMEOUT:g})")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--quiet", action="store_true", help="no line per case on stderr")
    args = parser.parse_args(argv)
    families = args.family or sorted(FAMILIES)
    report = runner.run(cases(args.cases, args.seed, families), jobs=args.jobs, case_timeout=args.case_timeout,
                        progress=not args.quiet)
    report["seed"] = args.seed
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(json.dumps({"total": report["total"], "counts": report["counts"], "seconds": report["seconds"]}, indent=2))
    for failure in report["failures"]:
        print(f"{failure['outcome']}: {failure['case']}: {failure['what']}: {failure['detail']}", file=sys.stderr)
    return 1 if any(report["total"][o] for o in FAILURES) else 0


if __name__ == "__main__":
    sys.exit(main())
