"""A model compiled for the CPU: its code in MLIR's JIT engine, callable,
and saved as a shared library on request."""

from __future__ import annotations

import ctypes
import os
import tempfile
from pathlib import Path

from mlir.execution_engine import ExecutionEngine

from nnforge import _process, artifact
from nnforge._native import _native_file
from nnforge.errors import CompileError, ModelLoadError
from nnforge.linking import c_compiler, runtime_archive, system_library
from nnforge.runtime import Executable, Signature, openmp_runtime


def runtime_libraries(threads: int) -> list[str]:
    """Libraries JIT-compiled code may call: libm (erff, expf, ...), libgcc's
    soft-float conversions (f64/f32 to f16 and bf16), nnforge's runtime
    (`memrefCopy`), and for multi-threaded code the OpenMP runtime.

    They are named explicitly: once torch-mlir (which bundles another LLVM)
    has run in this process, the JIT's search of the process's own symbols
    is not to be relied on, and a fresh process may not have libgcc_s.
    """
    libraries = [
        system_library("libm.so.6"),
        system_library("libgcc_s.so.1"),
        str(_native_file("libNNForgeRuntime.so")),
    ]
    if threads != 1:
        libraries.append(str(_openmp_runtime()))
    return libraries


def _openmp_runtime() -> Path:
    try:
        return openmp_runtime()
    except ModelLoadError as error:
        raise CompileError(f"{error} (or compile with threads=1)") from None


class CompiledModel(Executable):
    """A model compiled for the host CPU: call it with numpy arrays or torch tensors.

    `signature` describes its inputs and outputs, `compile_times` the
    seconds spent per stage, `save(path)` writes a shared library that
    `nnforge.load` runs without the compiler.
    """

    def __init__(
        self, engine: ExecutionEngine, signature: Signature, compile_times: dict[str, float], threads: int
    ):
        # The packed wrapper of the C-interface function
        # (`_mlir__mlir_ciface_<entry>`: `raw_lookup` prefixes "_mlir_").
        address = engine.raw_lookup(f"_mlir_ciface_{signature.entry}")
        if not address:
            raise CompileError(f"compiled code has no entry point for @{signature.entry}")
        # The same library the JIT resolves nnforge_check_failed in.
        runtime = ctypes.CDLL(str(_native_file("libNNForgeRuntime.so")))
        super().__init__(address, runtime, signature, keep_alive=engine)
        self.compile_times = compile_times
        self.threads = threads

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the compiled code as a shared library; returns its path."""
        path = artifact.check_destination(path)
        compiler = c_compiler()
        with tempfile.TemporaryDirectory(prefix="nnforge-save-") as scratch:
            objects = Path(scratch) / "model.o"
            self._keep_alive.dump_to_object_file(str(objects))
            linked = Path(scratch) / path.name
            # The OpenMP runtime is needed by name; `nnforge.load` loads it first.
            openmp = [str(_openmp_runtime())] if self.threads != 1 else []
            result = _process.run(
                [compiler, "-shared", "-o", str(linked), str(objects), *runtime_archive(), *openmp, "-lm"],
                f"linking {path}",
            )
            if result.returncode != 0:
                raise CompileError(f"linking {path} failed: {result.stderr.strip()}")
            return artifact.install(linked, path)
