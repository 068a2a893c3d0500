"""The bridge to nnforge's C++ library: contexts with `nnf` and our passes.

The library is linked against the `mlir` package's own MLIR instance
(`libMLIRPythonCAPI.so`), so the dialect and passes it registers are the ones
`mlir.ir` and `mlir.passmanager` see.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.resources
from pathlib import Path

from mlir import ir


class _MlirContext(ctypes.Structure):
    """`MlirContext` of the MLIR C API: a struct holding one pointer."""

    _fields_ = [("ptr", ctypes.c_void_p)]


class MlirOperation(ctypes.Structure):
    """`MlirOperation` of the MLIR C API: a struct holding one pointer."""

    _fields_ = [("ptr", ctypes.c_void_p)]


def _native_file(name: str) -> Path:
    # Through importlib.resources, so that an editable install (Python files
    # in the checkout, binaries in site-packages) finds them too.
    path = Path(str(importlib.resources.files("nnforge") / "_lib" / name))
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: nnforge's C++ part is not built; "
            "reinstall with `pip install .` from the source tree"
        )
    return path


@functools.cache
def _library() -> ctypes.CDLL:
    library = ctypes.CDLL(str(_native_file("libNNForgePython.so")))
    library.nnforgeRegisterDialects.argtypes = [_MlirContext]
    library.nnforgeRegisterDialects.restype = None
    library.nnforgeRegisterPasses.argtypes = []
    library.nnforgeRegisterPasses.restype = None
    library.nnforgeRegisterPasses()
    return library


def _capsule_pointer(capsule: object, name: bytes) -> int:
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, name)


def operation_handle(operation: ir.Operation) -> MlirOperation:
    """The C API handle of `operation` (valid while the operation lives)."""
    return MlirOperation(_capsule_pointer(operation._CAPIPtr, b"mlir.ir.Operation._CAPIPtr"))


def register(context: ir.Context) -> ir.Context:
    """Adds the `nnf` dialect to `context` (and our passes to the registry)."""
    pointer = _capsule_pointer(context._CAPIPtr, b"mlir.ir.Context._CAPIPtr")
    _library().nnforgeRegisterDialects(_MlirContext(pointer))
    return context


def context() -> ir.Context:
    """A new `mlir.ir.Context` with all upstream dialects and `nnf` registered.

    nnforge's passes are registered too, so `mlir.passmanager.PassManager.parse`
    accepts them mixed with upstream passes.
    """
    return register(ir.Context())


def plugin_path() -> Path:
    """The plugin for the wheel's `mlir-opt`.

    Use as `mlir-opt --load-dialect-plugin=P --load-pass-plugin=P`.
    """
    return _native_file("libNNForgePlugin.so")


def tool_path(name: str) -> Path:
    """The path of an MLIR/LLVM tool: `nnforge-opt`, or one of the wheels'.

    The wheels install no console scripts, so tools are found in the packages.
    """
    if name == "nnforge-opt":
        return _native_file("nnforge-opt")
    import llvm
    import mlir

    for package in (mlir, llvm):
        for root in package.__path__:
            candidate = Path(root) / "bin" / name
            if candidate.exists():
                return candidate
    raise FileNotFoundError(f"no tool named {name!r} in the mlir and llvm wheels")
