"""A model compiled for CUDA as a shared library: host code plus the kernels'
cubins, linked with nnforge's runtime and MLIR's CUDA runtime wrappers."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from mlir import ir

from nnforge import artifact, elf
from nnforge._native import _native_file
from nnforge.entry import embed_string
from nnforge.errors import CompileError, SaveError
from nnforge.linking import c_compiler, object_file, run_tool, runtime_archive
from nnforge.runtime import CUDA_RUNTIME, SIGNATURE_SYMBOL, Signature, packed_entry_source

# Where a saved CUDA model says which target it was compiled for.
TARGET_SYMBOL = "nnforge_target"
# nnforge's versions of some of MLIR's CUDA wrappers (device memory from the
# driver's caching pool, a quiet kernel unload at exit), linked in ahead of
# libmlir_cuda_runtime.so.
CUDA_RUNTIME_ARCHIVE = "libNNForgeCudaRuntimeStatic.a"


def cuda_runtime_library() -> Path:
    """MLIR's CUDA runtime wrappers (`mgpu*`), as shipped in the mlir wheel."""
    import mlir

    for root in mlir.__path__:
        library = Path(root) / "lib" / CUDA_RUNTIME
        if library.exists():
            return library
    raise CompileError(f"{CUDA_RUNTIME} is missing from the mlir package")


def save_cuda_library(module: ir.Module, signature: Signature, path: str | os.PathLike) -> list[Path]:
    """Writes `module` (LLVM dialect + gpu.binary, from `lower_to_cuda`) as a shared library.

    Next to it goes a copy of the CUDA runtime wrappers without their
    (unused) dependency on libLLVM.so, found through the library's
    `$ORIGIN` run path: deploying needs these two files, numpy and the
    driver's libcuda.so.1. The signature is embedded as for the CPU target,
    plus `nnforge_target` = "cuda". Returns the files written.

    Code generation runs in child processes (mlir-translate, llc): the
    ExecutionEngine cannot even be created without libcuda.so.1.
    """
    path = artifact.check_destination(path)
    compiler = c_compiler()
    with module.context:
        copy = ir.Module.parse(str(module))
        embed_string(copy, SIGNATURE_SYMBOL, signature.to_json())
        embed_string(copy, TARGET_SYMBOL, "cuda")
    runtime = path.parent / CUDA_RUNTIME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cuda_runtime_library(), runtime)
    except OSError as error:
        raise SaveError(f"cannot write {runtime}: {error.strerror or error}") from None
    try:
        elf.remove_needed(runtime, "libLLVM.so")
    except elf.ElfError as error:
        raise CompileError(str(error)) from None
    with tempfile.TemporaryDirectory(prefix="nnforge-cuda-") as scratch:
        objects = object_file(copy, Path(scratch))
        entry = Path(scratch) / "entry.c"
        entry.write_text(packed_entry_source(signature))
        linked = Path(scratch) / path.name
        run_tool([compiler, "-shared", "-fPIC", "-o", str(linked), str(objects), str(entry),
                  *runtime_archive(), str(_native_file(CUDA_RUNTIME_ARCHIVE)), f"-L{path.parent}",
                  "-l:" + CUDA_RUNTIME, "-Wl,--allow-shlib-undefined", "-Wl,-rpath,$ORIGIN"],
                 f"linking {path}")
        artifact.install(linked, path)
    return [path, runtime]
