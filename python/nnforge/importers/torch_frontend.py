"""PyTorch modules -> MLIR, through torch.export and torch-mlir's FX importer."""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
import unittest.mock
import warnings
from collections import Counter
from typing import Any

from nnforge.errors import ModelLoadError, UnsupportedOp, UnsupportedOpError
from nnforge.importers import handover, weight_arguments
from nnforge.importers.levels import TORCH_MLIR_LEVEL, check_level

log = logging.getLogger("nnforge.importers")

_FRAME = re.compile(r'"([^"]+)":(\d+):\d+')
# torch.export and the decompositions torch-mlir's FX importer runs install
# process-wide dispatch modes: two threads tracing at once fail ("... slot
# already set"). Tracing is serialized behind this lock (re-entrant: a
# module's forward may itself compile).
TRACING_LOCK = threading.RLock()


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


def _traced(module, example_args, trace) -> tuple[Any, str]:
    """`trace(module, args)` in eval mode, serialized with every other trace;
    ModelLoadError if `module` is no module or cannot be traced."""
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"import_torch takes a torch.nn.Module, not {type(module).__name__}")
    what = f"PyTorch module {type(module).__name__}"
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.is_meta:
            raise ModelLoadError(f"{what}: its {name} is on the meta device and holds no values to compile "
                                 "(load its weights first, e.g. with load_state_dict(..., assign=True))")
    if isinstance(example_args, torch.Tensor):
        example_args = (example_args,)
    try:
        with TRACING_LOCK, warnings.catch_warnings():
            # torch's own deprecation notices, not the user's business
            warnings.simplefilter("ignore", FutureWarning)
            program = trace(module, tuple(example_args))
    except Exception as error:  # torch.export raises many kinds; all mean "cannot trace"
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"torch.export cannot export {what}: {message}") from None
    return program, what


def export(module, example_args: tuple, dynamic_shapes: Any = None):
    """torch.export of `module` (its training IR, before decompositions) and
    its description; ModelLoadError if it cannot be exported.

    Thread-safe: torch.export is not, so threads exporting at once take turns."""
    torch = _torch()
    return _traced(
        module, example_args,
        lambda module, args: torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False),
    )


def export_decomposed(module, example_args: tuple, dynamic_shapes: Any = None):
    """`module` exported straight to the ATen ops torch-mlir imports, in one
    trace, and its description.

    The program equals what `export` followed by
    `run_decompositions(decomposition_table())` gives, without tracing the
    module's forward and then the exported graph again: torch.export's
    non-strict trace at the ATen level (`_export(pre_dispatch=False)`, which
    torch.export runs for its non-training IR) with the decompositions that
    `run_decompositions` would apply (composite ops through
    `_override_composite_implicit_decomp`, the others in the trace's
    decomposition table). Both are process-wide while the trace runs, as in
    `run_decompositions`; `TRACING_LOCK` serializes nnforge's traces.

    Raises ModelLoadError if the module cannot be exported or updates its
    state (see `refuse_state_updates`)."""
    from torch.export import _trace
    from torch.export.exported_program import (
        _override_composite_implicit_decomp,
        _split_decomp_table_to_cia_and_python_decomp,
    )

    def trace(module, args):
        composite, table = _split_decomp_table_to_cia_and_python_decomp(dict(decomposition_table()))
        to_aten = functools.partial(_trace._export_to_aten_ir, decomp_table=table)
        with _override_composite_implicit_decomp(composite), \
                unittest.mock.patch.object(_trace, "_export_to_aten_ir", to_aten):
            return _trace._export(module, args, dynamic_shapes=dynamic_shapes, strict=False, pre_dispatch=False)

    program, what = _traced(module, example_args, trace)
    # Functional once decomposed: what it updates shows in its signature.
    refuse_state_updates(program, what)
    return program, what


def refuse_state_updates(program, what: str) -> None:
    """Raises ModelLoadError if the exported program updates the module's state.

    A module in training mode (BatchNorm's running statistics) or one writing
    into its inputs would compile to a model returning the new values as
    extra outputs, which nothing writes back; nnforge.compile computes a
    model's outputs only, so such modules are refused with the reason.
    """
    signature = program.graph_signature
    buffers = sorted(set(signature.buffers_to_mutate.values()))
    inputs = sorted(set(signature.user_inputs_to_mutate.values()))
    if not buffers and not inputs:
        return
    updated = []
    if buffers:
        updated.append(f"its buffers {', '.join(buffers)}")
    if inputs:
        updated.append(f"its inputs {', '.join(inputs)}")
    raise ModelLoadError(
        f"{what} updates {' and '.join(updated)} when it runs (a module in training mode, "
        "e.g. BatchNorm's running statistics, or an in-place operation on an input); a model "
        "nnforge.compile builds returns what forward returns and updates nothing: call "
        "module.eval() to compile it for inference, or train it with "
        'torch.compile(module, backend="nnforge")'
    )


def _variance_and_mean(x, dim=None, *, correction=None, keepdim=False):
    """aten.var_mean.correction in two passes (the mean, then the sum of the
    squared deviations from it) in the input's dtype, f32 for f16/bf16.
    PyTorch's CPU kernel accumulates in f64 (Welford); two passes in f32
    keep the cancellation of a one-pass E[x²] - E[x]² away without an f64
    copy of the input. Training-mode batch norm, whose statistics must
    match PyTorch's closely over long runs, computes them in f64 itself
    (integrations/batch_norm.py)."""
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
def decomposition_table() -> dict:
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


@functools.cache
def _weight_arguments_class() -> type:
    """The FX importer hooks passing large tensors as arguments (defined on
    first use: torch-mlir is imported lazily)."""
    from torch_mlir import ir
    from torch_mlir.extras.fx_importer import FxImporterHooks

    class WeightArguments(FxImporterHooks):
        """Imports each tensor literal (parameter, buffer, constant) of at
        least `weight_arguments.MIN_BYTES` as a new argument of the entry
        function, appended after the inputs, instead of a
        `torch.vtensor.literal`: its bytes never enter the module, and
        `arrays` holds them (views of the tensors, in argument order) for
        `weight_arguments.bind` to make them constants again in nnforge's
        module. torch-mlir's own literal import goes through Python lists
        (`tensor.tolist()`): seconds and gigabytes per gigabyte of weights."""

        def __init__(self, function_name: str):
            self.function_name = function_name
            self.arrays: list = []
            self._arguments: dict[tuple, object] = {}

        def resolve_literal(self, gni, literal, info):
            torch = _torch()
            if not isinstance(literal, torch.Tensor) or literal.nbytes < weight_arguments.MIN_BYTES:
                return None
            block = gni._b
            owner = block.owner
            if "sym_name" not in owner.attributes or ir.StringAttr(owner.attributes["sym_name"]).value != self.function_name:
                return None  # a nested graph's literal (higher-order ops): left as it is
            key = (literal.untyped_storage().data_ptr(), literal.storage_offset(), tuple(literal.shape),
                   tuple(literal.stride()), literal.dtype)
            if key not in self._arguments:
                array = _tensor_bytes(literal)
                if array is None:
                    return None
                self.arrays.append(array)
                self._arguments[key] = block.add_argument(
                    gni._cc.tensor_to_vtensor_type(literal), ir.Location.unknown(gni._c)
                )
            return self._arguments[key]

        def finish(self, module) -> None:
            """Gives the entry function the type its arguments now have."""
            with module.context:
                for op in module.body.operations:
                    op = op.operation
                    if op.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == self.function_name:
                        function_type = ir.FunctionType(ir.TypeAttr(op.attributes["function_type"]).value)
                        arguments = [argument.type for argument in op.regions[0].blocks[0].arguments]
                        op.attributes["function_type"] = ir.TypeAttr.get(
                            ir.FunctionType.get(arguments, function_type.results)
                        )

    return WeightArguments


def _tensor_bytes(tensor):
    """A tensor's bytes as a contiguous numpy array (a view where it is
    contiguous already), or None for a dtype numpy cannot hold."""
    torch = _torch()
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.int16)
    try:
        return tensor.numpy()
    except (TypeError, RuntimeError):
        return None


def import_to_torch_mlir(program, what: str, weights_as_arguments: bool = False):
    """A program from `export_decomposed` as a raw torch-mlir module, and the
    arrays of the tensors it takes as arguments after its inputs (with
    `weights_as_arguments`: the large ones; else none)."""
    from torch_mlir import fx

    hooks = _weight_arguments_class()("main") if weights_as_arguments else None
    try:
        with TRACING_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = fx.export_and_import(
                program, output_type="raw", decomposition_table={}, hooks=hooks, func_name="main"
            )
            if hooks is None:
                return module, []
            hooks.finish(module)
            return module, hooks.arrays
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

    Raises ModelLoadError when the module cannot be exported or updates its
    state when it runs (buffers, as BatchNorm does in training mode, or its
    inputs),
    UnsupportedOpError naming each op torch-mlir cannot lower with its count
    and source lines, CompileError for other lowering failures.
    """
    check_level(level)
    start = time.perf_counter()
    program, what = export_decomposed(module, example_args, dynamic_shapes)
    log.info("torch.export to ATen, decomposed: %.2f s", time.perf_counter() - start)

    start = time.perf_counter()
    # At the levels nnforge's MLIR receives (not tosa: TOSA's lowerings want
    # constant weights), weights travel beside the module, not in it.
    torch_module, arrays = import_to_torch_mlir(program, what, weights_as_arguments=level in ("linalg", "nnf"))
    log.info("FX -> torch-mlir import: %.2f s", time.perf_counter() - start)

    text = handover.lower_with_torch_mlir(
        torch_module, "fx", TORCH_MLIR_LEVEL[level], location_describer(), what
    )
    del torch_module
    return handover.finish(text, level, what, arrays)


def import_fx_graph(graph_module, what: str, level: str = "linalg"):
    """Imports a stateless, functional ATen FX graph (AOTAutograd's forward or
    backward graph: tensors in, tensors out, static shapes) into MLIR at
    `level`, through torch-mlir's `stateless_fx_import` and the same
    lowering as `import_torch`.

    Raises UnsupportedOpError naming each op torch-mlir cannot import or
    lower, CompileError for other lowering failures.
    """
    check_level(level)
    from torch_mlir import fx

    start = time.perf_counter()
    try:
        with TRACING_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch_module = fx.stateless_fx_import(graph_module, output_type="raw")
    except NotImplementedError as error:
        raise UnsupportedOpError(
            [UnsupportedOp(f"FX importer: {str(error).splitlines()[0]}", 1)], context=what
        ) from None
    log.info("FX graph -> torch-mlir import: %.2f s", time.perf_counter() - start)
    text = handover.lower_with_torch_mlir(
        torch_module, "fx", TORCH_MLIR_LEVEL[level], location_describer(), what
    )
    return handover.finish(text, level, what)
