"""Child process running torch-mlir's lowering pipelines on one module.

torch-mlir's wheels are built with assertions, and some of its passes abort
the process on inputs they do not handle. The importers therefore run the
pipelines here, in a separate Python process, and read back a JSON report:

    python -m nnforge.importers.torch_mlir_worker IN.mlirbc OUT_DIR --source onnx --level linalg

IN.mlirbc holds the torch-dialect module as torch-mlir bytecode (both sides
use torch-mlir's own MLIR, so bytecode is exact), or for `--source
stablehlo` a StableHLO module as the user gave it (portable artifact,
bytecode or text; see `stablehlo_lowering`). OUT_DIR receives
`report.json` and, on success, `module.mlir`: the lowered module as text,
which is what crosses over to nnforge's (older) MLIR.

This module imports only torch-mlir's IR bindings (and nnforge._process,
nnforge's StableHLO rewrites): no torch, no onnx.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from nnforge._process import die_with_parent
from nnforge.importers import stablehlo_lowering

# Stages per source: (name, pipeline). Each stage runs as one PassManager run,
# so a failure names the stage it happened in.
_ONNX_CONVERSION = "builtin.module(func.func(convert-torch-onnx-to-torch))"
# Renames an ONNX op the conversion failed on, so that the conversion (which
# treats only `torch.operator "onnx.*"` as illegal) passes over it next time.
_SET_ASIDE = "nnforge.unsupported."
_ONNX_STAGES = (("torch-backend", "builtin.module(torch-onnx-to-torch-backend-pipeline)"),)
_FX_STAGES = (
    (
        "torch-backend",
        "builtin.module(func.func(torch-match-quantized-custom-ops),"
        "torchdynamo-export-to-torch-backend-pipeline{ extra-library=})",
    ),
)
_BACKEND_STAGES = {
    "torch": (),
    "tosa": (("tosa", "builtin.module(torch-backend-to-tosa-backend-pipeline)"),),
    "linalg": (
        (
            "linalg",
            "builtin.module(torch-backend-to-linalg-on-tensors-backend-pipeline"
            "{allow-non-finites=true})",
        ),
    ),
}
# Dialects that exist only in torch-mlir: nothing of them may be handed over
# at the tosa and linalg levels.
TORCH_MLIR_ONLY_DIALECTS = ("torch", "torch_c", "tm_tensor")
# torch-mlir expresses sort, top-k, scan (cumsum) and scatter in its TMTensor
# dialect, which upstream MLIR lacks and which has no lowering at the tensor
# level. A linalg-level module holding such ops is bufferized here (the
# whole module, since buffers cannot cross back to tensors) and the TMTensor
# ops become loops: the module is handed over as linalg/scf on memrefs.
_TM_TENSOR_TO_LOOPS = (
    "tm-tensor-to-loops",
    "builtin.module(func.func(tm-tensor-bufferize),"
    "one-shot-bufferize{copy-before-write bufferize-function-boundaries "
    "function-boundary-type-conversion=identity-layout-map},"
    "func.func(tm-tensor-to-loops),canonicalize,cse)",
)

_QUOTED_OP = re.compile(r"'((?:torch|torch_c|tm_tensor|onnx)\.[\w.]+)'")
# A generic `torch.operator` names the op it stands for in its `name` attribute.
_OPERATOR_NAME = re.compile(r'name = "([^"]+)"')


def _walk(operation, visit) -> None:
    for region in operation.regions:
        for block in region.blocks:
            for op in block.operations:
                visit(op.operation)
                _walk(op.operation, visit)


# torch's code of int64 among its dtypes (`torch.aten.to.dtype`'s operand).
_INT64_DTYPE = 4
_UNSIGNED_RESULT = re.compile(r"^!torch\.vtensor<(.*),ui(?:8|16|32)>$")


def _cast_floats_to_unsigned_through_int64(module) -> None:
    """Rewrites each float -> unsigned integer `torch.aten.to.dtype` to go
    through int64. torch-mlir lowers it to `fptosi` into the signed type of
    the same width, which saturates at its maximum (200.0 to uint8 gave
    127); from int64 it truncates, exactly where the value fits, as PyTorch
    and ONNX's Cast convert."""
    from torch_mlir import ir

    casts = []

    def visit(op) -> None:
        if op.name == "torch.aten.to.dtype" and _UNSIGNED_RESULT.match(str(op.results[0].type)):
            source = str(op.operands[0].type)
            if source.endswith((",f16>", ",bf16>", ",f32>", ",f64>")):
                casts.append(op)

    _walk(module.operation, visit)
    for op in casts:
        shape = _UNSIGNED_RESULT.match(str(op.results[0].type)).group(1)
        with ir.InsertionPoint(op), op.location:
            dtype = ir.Operation.create(
                "torch.constant.int", results=[ir.Type.parse("!torch.int")],
                attributes={"value": ir.IntegerAttr.get(ir.IntegerType.get_signless(64), _INT64_DTYPE)},
            )
            wide = ir.Operation.create(
                "torch.aten.to.dtype", results=[ir.Type.parse(f"!torch.vtensor<{shape},si64>")],
                operands=[op.operands[0], dtype.results[0], *list(op.operands)[2:]],
            )
        op.operands[0] = wide.results[0]


def _generic_operators(module) -> list[list[str]]:
    """[kind, location] of every `torch.operator`: in an FX import, the ops
    torch-mlir has no definition for; after the ONNX conversion, the ONNX ops
    it did not convert. The kind is the operator's name."""
    found: list[list[str]] = []

    def visit(op) -> None:
        if op.name == "torch.operator":
            from torch_mlir import ir

            kind = ir.StringAttr(op.attributes["name"]).value
            found.append([kind, str(op.location)])

    _walk(module.operation, visit)
    return found


def _torch_mlir_only_ops(operation) -> list[list[str]]:
    """[kind, location] of the outermost torch-mlir-only ops (not their terminators)."""
    found: list[list[str]] = []
    for region in operation.regions:
        for block in region.blocks:
            for op in block.operations:
                op = op.operation
                if op.name.split(".", 1)[0] in TORCH_MLIR_ONLY_DIALECTS:
                    found.append([op.name, str(op.location)])
                else:
                    found += _torch_mlir_only_ops(op)
    return found


def _ops_named_in(diagnostics: list[dict]) -> list[list[str]]:
    """[kind, location] of every op a failure diagnostic names."""
    named = []
    for diagnostic in diagnostics:
        message = diagnostic["message"]
        match = _QUOTED_OP.search(message)
        if not match or "failed to legalize" not in message:
            continue
        kind = match.group(1)
        if kind == "torch.operator":
            operator = _OPERATOR_NAME.search(message)
            kind = operator.group(1) if operator else kind
        named.append([kind, diagnostic["location"]])
    return named


def _unconvertible_onnx_ops(module, diagnostics: list[dict]) -> list[list[str]]:
    """Every ONNX op torch-mlir's conversion cannot handle, as [kind, location].

    The conversion stops at the first op it cannot legalize and rolls back;
    this sets that op aside and runs it again until the rest converts, so that
    all of them are found. Ops of domains it does not know it leaves as they
    are, without failing: those are the `onnx.*` operators left at the end.
    Raises MLIRError on a failure that names no op.
    """
    from torch_mlir import ir, passmanager

    found: list[list[str]] = []
    while True:
        try:
            passmanager.PassManager.parse(_ONNX_CONVERSION).run(module.operation)
            return found + [op for op in _generic_operators(module) if op[0].startswith("onnx.")]
        except ir.MLIRError as error:
            failures = {tuple(op) for op in _ops_named_in([_as_dict(d) for d in error.error_diagnostics])}
            failing = []

            def visit(op) -> None:
                if op.name == "torch.operator":
                    kind = ir.StringAttr(op.attributes["name"]).value
                    if (kind, str(op.location)) in failures:
                        failing.append((kind, op))

            _walk(module.operation, visit)
            if not failing:
                diagnostics += [_as_dict(d) for d in error.error_diagnostics]
                raise
            for kind, op in failing:
                found.append([kind, str(op.location)])
                op.attributes["name"] = ir.StringAttr.get(_SET_ASIDE + kind)


def _as_dict(diagnostic) -> dict:
    return {
        "message": str(diagnostic.message),
        "location": str(diagnostic.location),
        "notes": [str(note.message) for note in diagnostic.notes],
    }


def _run_stages(module, stages, diagnostics: list[dict]) -> dict | None:
    """Runs each (name, pipeline) stage on `module`; the failure report of the
    first that fails, or None."""
    from torch_mlir import ir, passmanager

    for stage, pipeline in stages:
        try:
            passmanager.PassManager.parse(pipeline).run(module.operation)
        except ir.MLIRError as error:
            diagnostics += [_as_dict(d) for d in error.error_diagnostics]
            if not diagnostics:
                diagnostics.append({"message": str(error), "location": "", "notes": []})
            return {
                "status": "failed",
                "stage": stage,
                "diagnostics": diagnostics,
                "ops": _blamed_ops(module, _ops_named_in(diagnostics)),
            }
    return None


# Ops that only carry values (constants, lists, the casts a partial
# conversion leaves between torch and builtin types) to the ops that use them.
_VALUE_CARRIERS = ("torch.constant.", "torch.prim.ListConstruct", "torch.vtensor.literal", "torch_c.")


def _blamed_ops(module, named: list[list[str]]) -> list[list[str]]:
    """The ops to blame for a failed conversion, as [kind, location].

    torch-mlir's backend-contract check names the first illegal op it meets,
    often a constant whose user did not convert; the users are what the
    report should name then: the torch ops left in the module that are not
    mere value carriers.
    """
    if not named or not all(kind.startswith(_VALUE_CARRIERS) for kind, _ in named):
        return named
    left = [op for op in _torch_mlir_only_ops(module.operation) if not op[0].startswith(_VALUE_CARRIERS)]
    return left or named


def _collect_errors(context, diagnostics: list[dict]) -> None:
    """Appends the errors some passes emit without failing to `diagnostics`
    (failing runs carry theirs in the MLIRError)."""
    from torch_mlir import ir

    def collect(diagnostic) -> bool:
        if diagnostic.severity == ir.DiagnosticSeverity.ERROR:
            diagnostics.append(_as_dict(diagnostic))
        return True

    context.attach_diagnostic_handler(collect)


def lower_stablehlo(source_path: Path, level: str) -> tuple[dict, str | None]:
    """StableHLO to `level` ("stablehlo": as read; "linalg"); returns (report, module text)."""
    from torch_mlir import ir

    context = stablehlo_lowering.new_context()
    diagnostics: list[dict] = []
    _collect_errors(context, diagnostics)
    with context, ir.Location.unknown():
        try:
            module = stablehlo_lowering.read(source_path, context)
        except ir.MLIRError as error:
            diagnostics += [_as_dict(d) for d in error.error_diagnostics]
            return {"status": "failed", "stage": "parse", "diagnostics": diagnostics}, None
        except ValueError as error:  # a portable artifact that does not deserialize
            diagnostics.append({"message": str(error), "location": "", "notes": []})
            return {"status": "failed", "stage": "parse", "diagnostics": diagnostics}, None
        failure = stablehlo_lowering.stages(
            module, level, lambda name, pipeline: _run_stages(module, ((name, pipeline),), diagnostics)
        )
        if failure:
            return failure, None
        text = module.operation.get_asm(enable_debug_info=True)
    return {"status": "ok"}, text


def lower(source_path: Path, source: str, level: str) -> tuple[dict, str | None]:
    """Runs the stages for `source` up to `level`; returns (report, module text)."""
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_d

    if source == "stablehlo":
        return lower_stablehlo(source_path, level)
    context = ir.Context()
    torch_d.register_dialect(context)
    diagnostics: list[dict] = []
    _collect_errors(context, diagnostics)
    with context:
        try:
            module = ir.Module.parse(source_path.read_bytes())
            module.operation.verify()
        except ir.MLIRError as error:
            diagnostics += [_as_dict(d) for d in error.error_diagnostics]
            return {"status": "failed", "stage": "parse", "diagnostics": diagnostics}, None
        if source == "fx":
            unknown = _generic_operators(module)
            if unknown:
                return {"status": "unsupported", "stage": "fx-import", "ops": unknown}, None
        else:
            try:
                unconvertible = _unconvertible_onnx_ops(module, diagnostics)
            except ir.MLIRError:
                return {"status": "failed", "stage": "onnx-to-torch", "diagnostics": diagnostics}, None
            if unconvertible:
                return {"status": "unsupported", "stage": "onnx-to-torch", "ops": unconvertible}, None
        stages = _ONNX_STAGES if source == "onnx" else _FX_STAGES
        failure = _run_stages(module, stages, diagnostics)
        if failure:
            return failure, None
        if level != "torch":
            _cast_floats_to_unsigned_through_int64(module)
            stages = _BACKEND_STAGES[level]
            failure = _run_stages(module, stages, diagnostics)
            if failure:
                return failure, None
        if level != "torch":
            leftovers = _torch_mlir_only_ops(module.operation)
            if level == "linalg" and leftovers and all(op.startswith("tm_tensor.") for op, _ in leftovers):
                stages = (_TM_TENSOR_TO_LOOPS,)
                failure = _run_stages(module, stages, diagnostics)
                if failure:
                    return failure, None
                leftovers = _torch_mlir_only_ops(module.operation)
            if leftovers:
                return {"status": "unsupported", "stage": stages[-1][0], "ops": leftovers}, None
        text = module.operation.get_asm(enable_debug_info=True)
    return {"status": "ok"}, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--source", choices=("onnx", "fx", "stablehlo"), required=True)
    parser.add_argument("--level", choices=(*_BACKEND_STAGES, "stablehlo"), required=True)
    args = parser.parse_args(argv)
    die_with_parent()
    report, text = lower(args.input, args.source, args.level)
    if text is not None:
        (args.output_dir / "module.mlir").write_text(text)
    (args.output_dir / "report.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
