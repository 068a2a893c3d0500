"""Linking compiled code: the C compiler driver, nnforge's runtime, system libraries."""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

from nnforge._native import _native_file
from nnforge.errors import CompileError


def system_library(soname: str) -> str:
    """The path of a system shared library, loaded into this process if it was not."""
    ctypes.CDLL(soname)
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if Path(path).name == soname:
                return path
    raise CompileError(f"{soname} could not be loaded")


def c_compiler() -> str:
    """The C compiler driver that links saved models into shared libraries."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise CompileError("saving a model needs a C compiler driver (cc) to link it")
    return compiler


def runtime_archive() -> list[str]:
    """Linker arguments adding all of nnforge's runtime to a saved model:
    the generated code calls some of it, `nnforge.load` the rest. The
    model's calls bind to its own copy (-Bsymbolic), not to another loaded
    earlier (the JIT's): the failed-check hook and the guarded call must
    share one copy's thread-local state."""
    return [
        "-Wl,-Bsymbolic",
        "-Wl,--whole-archive", str(_native_file("libNNForgeRuntimeStatic.a")), "-Wl,--no-whole-archive",
    ]
