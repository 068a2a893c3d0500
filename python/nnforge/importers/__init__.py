"""Frontends: PyTorch, ONNX, StableHLO (jax) and NNEF models -> MLIR at the
torch, tosa, stablehlo, linalg or nnf level.

See `nnforge.importers.levels` for what each level holds. The names below
are imported on first use: torch-mlir's child process
(`torch_mlir_worker`) starts without the frontends, numpy or nnforge's MLIR.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_EXPORTS = {
    "LEVELS": "nnforge.importers.levels",
    "import_nnef": "nnforge.importers.nnef_frontend",
    "import_onnx": "nnforge.importers.onnx_frontend",
    "onnx_io_names": "nnforge.importers.onnx_frontend",
    "import_stablehlo": "nnforge.importers.stablehlo_frontend",
    "import_torch": "nnforge.importers.torch_frontend",
    "raised_op_count": "nnforge.importers.handover",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nnforge.importers' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
