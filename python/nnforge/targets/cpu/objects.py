"""LLVM-dialect modules to object files for a CPU, by nnforge's C++ library
(cpp/lib/Target/CPU/ObjectFiles.cpp): translated to LLVM IR in this
process, given the packed entry points `runtime.Executable` calls, split
into partitions of its functions, and the partitions optimized (-O3) and
compiled by a thread per core."""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

from mlir import ir

from nnforge._native import MlirOperation, _library, operation_handle
from nnforge.errors import CompileError
from nnforge.targets.cpu.host import CpuDescription

# Room for the message of a failed compilation.
_MESSAGE_BYTES = 4096


@functools.cache
def _compile_function():
    function = _library().nnforgeCompileObjectFiles
    function.argtypes = [MlirOperation, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_char_p, ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


def object_files(
    module: ir.Module, folder: Path, cpu: CpuDescription | None = None, threads: int | None = None
) -> list[Path]:
    """The object files of `module` (LLVM dialect, verified), written into
    `folder`, for `cpu` (None, or a description without LLVM features: this
    machine's CPU and features), by `threads` threads (None: one per core
    this process may run on); CompileError if LLVM fails."""
    if threads is None:
        threads = len(os.sched_getaffinity(0))
    named = cpu is not None and cpu.llvm_features is not None
    name, features = (cpu.name, cpu.llvm_features) if named else ("", "")
    message = ctypes.create_string_buffer(_MESSAGE_BYTES)
    count = _compile_function()(
        operation_handle(module.operation), name.encode(), features.encode(), threads,
        str(folder / "model.part").encode(), message, _MESSAGE_BYTES,
    )
    if count == 0:
        raise CompileError(f"LLVM code generation failed: {message.value.decode(errors='replace')}")
    return [folder / f"model.part{index}.o" for index in range(count)]
