"""Frontends: PyTorch, ONNX, StableHLO (jax) and NNEF models -> MLIR at the
torch, tosa, stablehlo, linalg or nnf level.

See `nnforge.importers.levels` for what each level holds.
"""

from __future__ import annotations

# The importers bring torch-mlir (with an LLVM of its own) into the process.
# MLIR's JIT must be loaded before it, or the JIT cannot resolve symbols of
# the code it compiles later ("JIT session error: Symbols not found").
import mlir.execution_engine  # noqa: F401

from nnforge.importers.handover import RAISED_OPS_ATTRIBUTE
from nnforge.importers.levels import LEVELS
from nnforge.importers.nnef_frontend import import_nnef
from nnforge.importers.onnx_frontend import import_onnx, onnx_io_names
from nnforge.importers.stablehlo_frontend import import_stablehlo
from nnforge.importers.torch_frontend import import_torch


def raised_op_count(module) -> int:
    """How many ops `nnf-raise` raised in a module imported at level "nnf"."""
    from mlir import ir

    return ir.IntegerAttr(module.operation.attributes[RAISED_OPS_ATTRIBUTE]).value


__all__ = [
    "LEVELS", "import_nnef", "import_onnx", "import_stablehlo", "import_torch", "onnx_io_names", "raised_op_count"
]
