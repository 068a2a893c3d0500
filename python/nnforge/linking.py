"""Turning LLVM-dialect modules into objects and shared libraries: LLVM's
tools, the C compiler driver, nnforge's runtime, system libraries."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlir import ir

from nnforge import _process
from nnforge._native import _native_file, tool_path
from nnforge.errors import CompileError


def c_compiler() -> str:
    """The C compiler driver that links compiled models into shared libraries."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise CompileError("compiling a model needs a C compiler driver (cc, as for building nnforge) to link it")
    return compiler


def runtime_archive() -> list[str]:
    """Linker arguments adding all of nnforge's runtime to a saved model:
    the generated code calls some of it, `nnforge.load` the rest. The
    model's calls bind to its own copy (-Bsymbolic), not to another loaded
    earlier (`shared_runtime`): the failed-check hook and the guarded call must
    share one copy's thread-local state. The OpenMP entry points come in
    only where the code calls them (`nnforge.load` binds an OpenMP runtime
    to models that have them)."""
    return [
        "-Wl,-Bsymbolic",
        "-Wl,--whole-archive", str(_native_file("libNNForgeRuntimeStatic.a")), "-Wl,--no-whole-archive",
        str(_native_file("libNNForgeOpenMPStatic.a")),
    ]


def shared_runtime() -> list[str]:
    """Linker arguments for a model run in this process: the generated code
    calls nnforge's shared runtime (libNNForgeRuntime.so), whose buffer
    cache, failed-check state and OpenMP binding every such model shares.
    The model's calls of its own functions bind to them (-Bsymbolic), not to
    a function of the same name loaded before (Python's `main`, libc's
    `step`)."""
    runtime = _native_file("libNNForgeRuntime.so")
    return ["-Wl,-Bsymbolic", str(runtime), f"-Wl,-rpath,{runtime.parent}"]


def run_tool(command: list[str], what: str) -> None:
    """Runs a tool of the tool chain; CompileError naming `what` if it fails."""
    result = _process.run(command, what)
    if result.returncode != 0:
        raise CompileError(f"{what} failed ({' '.join(command[:1])}): {result.stderr.strip()[:2000]}")


# The system code is compiled for (nnforge runs on x86-64 Linux). A module
# translated without a target triple has no known C library: LLVM then
# expands every memcpy into a loop copying a byte at a time.
TARGET_TRIPLE = "x86_64-unknown-linux-gnu"


def object_file(module: ir.Module, folder: Path, cpu_options: tuple[str, ...] = (), optimize: bool = False) -> Path:
    """The object file of an LLVM-dialect module, written into `folder`:
    `mlir-translate` to LLVM IR, with `optimize` LLVM's -O3 pipeline (`opt`),
    then `llc` -O3, both for TARGET_TRIPLE. `cpu_options` (`-mcpu=...`,
    `-mattr=...`) say which CPU the code is for (default: a generic x86-64)."""
    names = ("model.mlir", "model.ll", "model.opt.ll", "model.o")
    source, llvm_ir, optimized, objects = (folder / name for name in names)
    source.write_text(str(module))
    run_tool([str(tool_path("mlir-translate")), "--mlir-to-llvmir", str(source), "-o", str(llvm_ir)],
             "translating to LLVM IR")
    target = (f"-mtriple={TARGET_TRIPLE}", *cpu_options)
    if optimize:
        run_tool([str(tool_path("opt")), "-O3", *target, "-S", str(llvm_ir), "-o", str(optimized)],
                 "optimizing LLVM IR")
        llvm_ir = optimized
    run_tool([str(tool_path("llc")), "-O3", *target, "-filetype=obj", "-relocation-model=pic",
              str(llvm_ir), "-o", str(objects)], "generating code")
    return objects
