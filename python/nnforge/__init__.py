"""nnforge: a neural-network compiler on upstream MLIR, driven from Python.

The public names below are imported on first use, so that `import nnforge`
stays cheap and loading a compiled model never pulls in the compiler.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "context": "nnforge._native",
    "plugin_path": "nnforge._native",
    "tool_path": "nnforge._native",
    "NNForgeError": "nnforge.errors",
    "UnsupportedOpError": "nnforge.errors",
    "ModelLoadError": "nnforge.errors",
    "CompileError": "nnforge.errors",
    "InputError": "nnforge.errors",
    "ExecutionError": "nnforge.errors",
    "ArgumentError": "nnforge.errors",
    "SaveError": "nnforge.errors",
    "import_torch": "nnforge.importers",
    "import_onnx": "nnforge.importers",
    "import_stablehlo": "nnforge.importers",
    "import_nnef": "nnforge.importers",
    "compile": "nnforge.compiler",
    "export": "nnforge.exporters",
    "CompiledModel": "nnforge.targets.cpu.model",
    "JaxModel": "nnforge.importers.jax_frontend",
    "load": "nnforge.runtime",
}
_SUBMODULES = {
    "dialects",
    "pipelines",
    "importers",
    "exporters",
    "compiler",
    "targets",
    "runtime",
    "onnx_backend",
    "integrations",
}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"nnforge.{name}")
    else:
        raise AttributeError(f"module 'nnforge' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
