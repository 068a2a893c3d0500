"""Op coverage: which of a model's ops nnforge's import handles.

`onnx_coverage` and `torch_coverage` import the model and, instead of
raising, return one row per op kind with its count and whether it converted.
Only failures that name ops can mark a kind unsupported; any other failure
is returned as `error` with every row's `supported` left as None (unknown).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from nnforge.errors import NNForgeError, UnsupportedOpError
from nnforge.importers import onnx_frontend, torch_frontend

_ONNX_TYPE_IN_LOCATION = re.compile(r"\((\w+)\)$")


@dataclass(frozen=True)
class OpCoverage:
    """One op kind of a model: how many, and whether the import handled it."""

    kind: str
    count: int
    supported: bool | None
    # torch-mlir ops that failed for it, when they differ from `kind`
    blamed: tuple[str, ...] = ()


@dataclass
class CoverageReport:
    """The rows of a model, and the failure that was not about ops, if any."""

    what: str
    level: str
    rows: list[OpCoverage] = field(default_factory=list)
    error: str | None = None

    @property
    def supported(self) -> bool:
        return self.error is None and all(row.supported for row in self.rows)

    def table(self) -> str:
        """The rows as a text table."""
        width = max([len(row.kind) for row in self.rows] + [len("op kind")])
        lines = [f"op coverage of {self.what} at level {self.level}:",
                 f"{'op kind':<{width}}  {'count':>6}  supported"]
        for row in self.rows:
            status = {True: "yes", False: "no", None: "?"}[row.supported]
            blamed = f"  ({', '.join(row.blamed)})" if row.blamed else ""
            lines.append(f"{row.kind:<{width}}  {row.count:>6}  {status}{blamed}")
        unsupported = sum(1 for row in self.rows if row.supported is False)
        lines.append(f"{len(self.rows)} op kinds, {unsupported} unsupported")
        if self.error:
            lines.append(f"import failed for another reason: {self.error}")
        return "\n".join(lines)


def _rows(counts: Counter, blamed: dict[str, list[str]], failed: str | None) -> list[OpCoverage]:
    rows = []
    for kind, count in sorted(counts.items()):
        if failed is not None:
            supported = None
        else:
            supported = kind not in blamed
        causes = tuple(cause for cause in blamed.get(kind, ()) if cause != kind)
        rows.append(OpCoverage(kind, count, supported, causes))
    return rows


def onnx_coverage(model: onnx_frontend.OnnxModel, level: str = "linalg") -> CoverageReport:
    """The op coverage of an ONNX model, per ONNX op type ("onnx.Conv")."""
    proto, what = onnx_frontend.load_model(model)
    counts = onnx_frontend.op_counts(onnx_frontend.prepare(proto, what))
    blamed: dict[str, list[str]] = {}
    failed = None
    try:
        onnx_frontend.import_onnx(model, level=level)
    except UnsupportedOpError as error:
        for op in error.ops:
            types = {f"onnx.{m.group(1)}" for where in op.locations
                     for m in [_ONNX_TYPE_IN_LOCATION.search(where)] if m}
            for kind in types or {op.kind}:
                blamed.setdefault(kind, []).append(op.kind)
                counts.setdefault(kind, op.count)
    except NNForgeError as error:
        failed = str(error)
    return CoverageReport(what, level, _rows(counts, blamed, failed), failed)


def torch_coverage(module, example_args, *, dynamic_shapes=None, level: str = "linalg") -> CoverageReport:
    """The op coverage of a PyTorch module, per op of its torch-mlir import."""
    program, what = torch_frontend.export_decomposed(module, example_args, dynamic_shapes)
    counts = torch_frontend.op_counts(torch_frontend.import_to_torch_mlir(program, what)[0])
    blamed: dict[str, list[str]] = {}
    failed = None
    try:
        torch_frontend.import_torch(module, example_args, dynamic_shapes=dynamic_shapes, level=level)
    except UnsupportedOpError as error:
        for op in error.ops:
            blamed.setdefault(op.kind, []).append(op.kind)
            counts.setdefault(op.kind, op.count)
    except NNForgeError as error:
        failed = str(error)
    return CoverageReport(what, level, _rows(counts, blamed, failed), failed)


__all__ = ["CoverageReport", "OpCoverage", "onnx_coverage", "torch_coverage"]
