"""StableHLO -> linalg in torch-mlir's MLIR (run by `torch_mlir_worker`).

torch-mlir's Python package carries the StableHLO dialect and its passes
(registered explicitly). A module is read as a portable artifact (VHLO
bytecode, what `jax.export` serializes), as MLIR bytecode or as text; jax's
CHLO ops, wrapped as `stablehlo.composite`, are inlined and expanded into
StableHLO; the ops the upstream conversion leaves alone are rewritten
(`stablehlo_rewrites`); then `stablehlo-legalize-to-linalg` converts the
rest, and every op not of an upstream dialect that is left is reported.
At the tosa level, `stablehlo_tosa` rewrites the normalized module instead.

This module imports only torch-mlir's IR bindings (and nnforge's rewrites).
"""

from __future__ import annotations

from pathlib import Path

from nnforge.importers import stablehlo_loops, stablehlo_rewrites

# MLIR bytecode starts with this; a StableHLO portable artifact is VHLO
# bytecode whose producer (the string after the version) names StableHLO.
BYTECODE_MAGIC = b"ML\xefR"
PORTABLE_ARTIFACT_PRODUCER = b"StableHLO"

# Unwraps jax's CHLO composites and expands CHLO ops into StableHLO.
_NORMALIZE = (
    "builtin.module(func.func(stablehlo-legalize-composite-to-call),inline,"
    "func.func(chlo-legalize-to-stablehlo),canonicalize)"
)
# After the rewrites: StableHLO -> linalg on tensors (with arith, math,
# tensor, scf); then, after the late rewrites, unsigned integers as signless
# ones and the rewrites' helper functions inlined.
_TO_LINALG = "builtin.module(stablehlo-legalize-to-linalg)"
_FINISH = "builtin.module(stablehlo-convert-to-signless,inline,canonicalize,cse,symbol-dce)"
# Folds the reshapes, transposes and constants of the TOSA rewrites.
_TOSA_CLEANUP = "builtin.module(canonicalize,cse)"
# The dialects whose ops nnforge's MLIR (upstream 22) can take from the conversion.
UPSTREAM_DIALECTS = frozenset(
    {"builtin", "func", "arith", "math", "tensor", "linalg", "scf", "cf", "bufferization", "complex"}
)
# What is left at the tosa level.
TOSA_DIALECTS = frozenset({"builtin", "func", "tosa"})


def is_portable_artifact(data: bytes) -> bool:
    """Whether `data` is a StableHLO portable artifact (not plain MLIR bytecode)."""
    if not data.startswith(BYTECODE_MAGIC):
        return False
    # After the magic: the version, a varint whose first byte's trailing
    # zeros count its further bytes (MLIR's encoding), then the producer.
    first = data[len(BYTECODE_MAGIC):len(BYTECODE_MAGIC) + 1]
    if not first:
        return False
    width = 9 if first[0] == 0 else ((first[0] & -first[0]).bit_length())
    start = len(BYTECODE_MAGIC) + width
    return data[start:start + len(PORTABLE_ARTIFACT_PRODUCER)] == PORTABLE_ARTIFACT_PRODUCER


def new_context():
    """A torch-mlir context with the StableHLO dialects and passes registered."""
    from torch_mlir import ir
    from torch_mlir._mlir_libs import _stablehlo

    _stablehlo.register_stablehlo_passes()
    context = ir.Context()
    _stablehlo.register_dialect(context)
    return context


def read(path: Path, context):
    """The module in `path` (portable artifact, bytecode or text), verified."""
    from torch_mlir import ir
    from torch_mlir._mlir_libs import _stablehlo

    data = path.read_bytes()
    if is_portable_artifact(data):
        module = _stablehlo.deserialize_portable_artifact(context, data)
    else:
        module = ir.Module.parse(data, context)
    module.operation.verify()
    return module


def _kind(op) -> str:
    """How a leftover op is named to the user: custom calls with their target."""
    if op.name == "stablehlo.custom_call":
        return f"stablehlo.custom_call @{stablehlo_rewrites.custom_call_target(op)}"
    return op.name


def foreign_ops(module, dialects: frozenset[str] = UPSTREAM_DIALECTS) -> list[list[str]]:
    """[kind, location] of each op not of `dialects`, outermost first."""
    found: list[list[str]] = []

    def visit(operation) -> None:
        for region in operation.regions:
            for block in region.blocks:
                for op in block.operations:
                    op = op.operation
                    if op.name.split(".", 1)[0] in dialects:
                        visit(op)
                    else:
                        found.append([_kind(op), str(op.location)])

    visit(module.operation)
    return found


def _to_tosa(module, run_stage) -> dict | None:
    """The tosa level's stages (see `stages`)."""
    from nnforge.importers import stablehlo_tosa

    failure = run_stage("stablehlo-normalize", _NORMALIZE)
    if failure:
        return failure
    refused = stablehlo_tosa.convert(module)
    if refused:
        return {"status": "unsupported", "stage": "stablehlo-to-tosa", "ops": refused}
    failure = run_stage("tosa-cleanup", _TOSA_CLEANUP)
    if failure:
        return failure
    left = foreign_ops(module, TOSA_DIALECTS)
    return {"status": "unsupported", "stage": "stablehlo-to-tosa", "ops": left} if left else None


def stages(module, level: str, run_stage) -> dict | None:
    """Lowers `module` to `level` ("stablehlo", "tosa" or "linalg") in place.

    `run_stage(name, pipeline)` runs a pass pipeline and returns a failure
    report or None. Returns the failure or unsupported-ops report, or None.
    """
    if level == "stablehlo":
        return None
    if level == "tosa":
        return _to_tosa(module, run_stage)
    steps = (
        ("stablehlo-normalize", _NORMALIZE),
        ("stablehlo-rewrites", stablehlo_rewrites.rewrite),
        ("stablehlo-to-linalg", _TO_LINALG),
        ("stablehlo-late-rewrites", stablehlo_rewrites.rewrite_leftovers),
        ("linalg-signless", _FINISH),
    )
    for name, step in steps:
        if isinstance(step, str):
            failure = run_stage(name, step)
            if failure:
                return failure
            continue
        try:
            step(module)
        except stablehlo_loops.UnsupportedForm as unsupported:
            return {"status": "unsupported", "stage": name, "ops": [[unsupported.kind, unsupported.location]]}
    left = foreign_ops(module)
    if left:
        return {"status": "unsupported", "stage": "stablehlo-to-linalg", "ops": left}
    return None
