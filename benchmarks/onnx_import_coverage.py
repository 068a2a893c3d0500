"""Counts how many of the onnx wheel's test models nnforge imports at each level.

Usage: python benchmarks/onnx_import_coverage.py [--levels torch,tosa,linalg,nnf] [--failures]

Data sets: onnx/backend/test/data/{pytorch-converted,pytorch-operator,simple,light}.
A model counts as imported at a level when `nnforge.import_onnx` returns
(verified IR, nothing torch-mlir-only left). With --failures, prints why
each failing model failed (the first line of the error).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

DATA_SETS = ("pytorch-converted", "pytorch-operator", "simple", "light")


def data_dir() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def models(data_set: str) -> list[Path]:
    """The .onnx files of one of the wheel's data sets, sorted."""
    root = data_dir() / data_set
    if data_set == "light":
        return sorted(root.glob("*.onnx"))
    return sorted(path / "model.onnx" for path in root.iterdir() if (path / "model.onnx").exists())


def main(argv: list[str] | None = None) -> int:
    import nnforge
    from nnforge.errors import NNForgeError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="torch,tosa,linalg,nnf")
    parser.add_argument("--data-sets", default=",".join(DATA_SETS))
    parser.add_argument("--failures", action="store_true", help="print each failure")
    args = parser.parse_args(argv)
    levels = args.levels.split(",")

    start = time.perf_counter()
    totals: dict[tuple[str, str], int] = Counter()
    sizes: dict[str, int] = {}
    reasons: Counter = Counter()
    for data_set in args.data_sets.split(","):
        paths = models(data_set)
        sizes[data_set] = len(paths)
        for path in paths:
            name = path.stem if data_set == "light" else path.parent.name
            for level in levels:
                try:
                    nnforge.import_onnx(path, level=level)
                    totals[data_set, level] += 1
                except NNForgeError as error:
                    first = str(error).splitlines()
                    detail = " | ".join(line.strip() for line in first[:3])
                    reasons[f"{level}: {type(error).__name__}"] += 1
                    if args.failures:
                        print(f"{data_set}/{name} [{level}] {type(error).__name__}: {detail}",
                              file=sys.stderr)

    header = f"{'data set':<20}{'models':>7}" + "".join(f"{level:>8}" for level in levels)
    print(header)
    for data_set, size in sizes.items():
        print(f"{data_set:<20}{size:>7}" + "".join(f"{totals[data_set, level]:>8}" for level in levels))
    print(f"{'total':<20}{sum(sizes.values()):>7}"
          + "".join(f"{sum(totals[d, level] for d in sizes):>8}" for level in levels))
    print(f"({time.perf_counter() - start:.0f} s)")
    for reason, count in sorted(reasons.items()):
        print(f"  failures {reason}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
