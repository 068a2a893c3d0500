"""PyTorch modules -> MLIR, through torch.export and torch-mlir's FX importer."""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
import warnings
from collections import Counter
from typing import Any

from nnforge.errors import ModelLoadError, UnsupportedOp, UnsupportedOpError
from nnforge.importers import handover
from nnforge.importers.levels import TORCH_MLIR_LEVEL, check_level

log = logging.getLogger("nnforge.importers")

_FRAME = re.compile(r'"([^"]+)":(\d+):\d+')
# torch.export and the decompositions torch-mlir's FX importer runs install
# process-wide dispatch modes: two threads tracing at once fail ("... slot
# already set"). Tracing is serialized behind this lock (re-entrant: a
# module's forward may itself compile).
_TRACING_LOCK = threading.RLock()


def _torch():
    try:
        import torch
    except ImportError as error:
        raise ModelLoadError(
            "importing PyTorch models needs torch: pip install 'nnforge[frontends]'"
        ) from error
    return torch


def location_describer() -> handover.LocationDescriber:
    """Describes an FX-imported location as the innermost source line outside torch."""
    torch_dir = os.path.dirname(_torch().__file__) + os.sep

    def describe(location: str) -> str:
        frames = _FRAME.findall(location)  # innermost first
        user = [(file, line) for file, line in frames if not file.startswith(torch_dir)]
        file, line = (user or frames or [("", "")])[0]
        return f"{file}:{line}" if file else ""

    return describe


def export(module, example_args: tuple, dynamic_shapes: Any = None):
    """torch.export of `module` in eval mode; ModelLoadError if it cannot be exported.

    Thread-safe: torch.export is not, so threads exporting at once take turns."""
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"import_torch takes a torch.nn.Module, not {type(module).__name__}")
    what = f"PyTorch module {type(module).__name__}"
    if isinstance(example_args, torch.Tensor):
        example_args = (example_args,)
    try:
        with _TRACING_LOCK, warnings.catch_warnings():
            # torch's own deprecation notices, not the user's business
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.export.export(
                module, tuple(example_args), dynamic_shapes=dynamic_shapes, strict=False
            )
    except Exception as error:  # torch.export raises many kinds; all mean "cannot trace"
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"torch.export cannot export {what}: {message}") from None
    return program, what


def _variance_and_mean(x, dim=None, *, correction=None, keepdim=False):
    """aten.var_mean.correction in the precision PyTorch's kernels use: two
    passes (the mean, then the squared deviations from it) in the input's
    dtype, f32 for f16/bf16."""
    torch = _torch()
    dims = list(range(x.ndim)) if not dim else [d % x.ndim for d in dim]
    accumulated = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    mean = accumulated.mean(dims, keepdim=True)
    deviation = accumulated - mean
    count = 1
    for d in dims:
        count = count * x.shape[d]
    divisor = torch.sym_max(count - (1 if correction is None else correction), 0)
    variance = (deviation * deviation).sum(dims, keepdim=keepdim) / divisor
    if not keepdim:
        mean = mean.squeeze(dims)
    return variance.to(x.dtype), mean.to(x.dtype)


@functools.cache
def _decomposition_table() -> dict:
    """torch-mlir's FX decompositions, variances computed as PyTorch computes
    them: torch-mlir lowers aten.var_mean and aten.var through an f64 copy
    of the input (a layer norm of 512 x 1024 took 1.6x the time of one in
    f32). A copy: torch-mlir's table is its own cached dict."""
    torch = _torch()
    from torch_mlir.extras.fx_decomp_util import get_decomposition_table

    aten = torch.ops.aten
    table = dict(get_decomposition_table())
    table[aten.var_mean.correction] = _variance_and_mean
    table[aten.var.correction] = lambda *args, **kwargs: _variance_and_mean(*args, **kwargs)[0]
    return table


def import_to_torch_mlir(program, what: str):
    """The exported program as a raw torch-mlir module (ATen ops, decomposed).

    Serialized with `export` (the decompositions trace the program again)."""
    from torch_mlir import fx

    try:
        with _TRACING_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return fx.export_and_import(program, output_type="raw", decomposition_table=_decomposition_table())
    except NotImplementedError as error:
        # The FX importer raises this for targets and types it cannot map.
        raise UnsupportedOpError(
            [UnsupportedOp(f"FX importer: {str(error).splitlines()[0]}", 1)], context=what
        ) from None


def op_counts(torch_module) -> Counter:
    """How many ops of each kind a torch-mlir module holds, its constants aside."""
    from torch_mlir import ir

    counts: Counter = Counter()
    for op in handover.walk_ops(torch_module.operation):
        if op.name == "torch.operator":  # an op torch-mlir has no definition for
            counts[ir.StringAttr(op.attributes["name"]).value] += 1
        elif op.name.startswith(("torch.aten.", "torch.prims.")):
            counts[op.name] += 1
    return counts


def import_torch(module, example_args, *, dynamic_shapes=None, level: str = "linalg"):
    """Imports a `torch.nn.Module` into MLIR via torch.export and torch-mlir.

    `example_args` is a tuple of example inputs; `dynamic_shapes` is passed to
    `torch.export.export` (use `torch.export.Dim` for a dynamic batch: it stays
    `?` in the IR). Returns an `mlir.ir.Module` in `nnforge.context()`,
    verified, at `level` ("tosa", "linalg" or "nnf"), or text for "torch".

    Thread-safe: torch.export is not, so threads importing at once take
    turns for the export and the FX import; torch-mlir's lowering, in a child
    process each, runs concurrently.

    Raises ModelLoadError when the module cannot be exported,
    UnsupportedOpError naming each op torch-mlir cannot lower with its count
    and source lines, CompileError for other lowering failures.
    """
    check_level(level)
    start = time.perf_counter()
    program, what = export(module, example_args, dynamic_shapes)
    log.info("torch.export: %.2f s", time.perf_counter() - start)

    start = time.perf_counter()
    torch_module = import_to_torch_mlir(program, what)
    log.info("FX -> torch-mlir import: %.2f s", time.perf_counter() - start)

    text = handover.lower_with_torch_mlir(
        torch_module, "fx", TORCH_MLIR_LEVEL[level], location_describer(), what
    )
    return handover.finish(text, level, what)
