"""The CPU object compiler (cpp/lib/Target/CPU/ObjectFiles.cpp): an
LLVM-dialect module split into partitions compiled on threads of their own,
linked back into one library that behaves as the module does."""

from __future__ import annotations

import ctypes
import gc
import subprocess
from pathlib import Path

import pytest
from mlir import ir

import nnforge
from nnforge.errors import CompileError
from nnforge.targets.cpu.model import link_library
from nnforge.targets.cpu.objects import object_files

# Functions local to the module calling each other across partitions, a
# mutable local global they share (one copy, not one per partition), a
# local constant, and an exported entry point named like a function of libc
# (`step`): the library's calls must bind to its own.
COUNTING = """
llvm.mlir.global internal @calls(0 : i64) : i64
llvm.mlir.global private constant @scale(3 : i64) : i64
llvm.func internal @count() -> i64 {
  %address = llvm.mlir.addressof @calls : !llvm.ptr
  %old = llvm.load %address : !llvm.ptr -> i64
  %one = llvm.mlir.constant(1 : i64) : i64
  %new = llvm.add %old, %one : i64
  llvm.store %new, %address : i64, !llvm.ptr
  llvm.return %new : i64
}
llvm.func internal @scaled(%x: i64) -> i64 {
  %address = llvm.mlir.addressof @scale : !llvm.ptr
  %scale = llvm.load %address : !llvm.ptr -> i64
  %product = llvm.mul %x, %scale : i64
  llvm.return %product : i64
}
llvm.func @step(%x: i64) -> i64 {
  %calls = llvm.call @count() : () -> i64
  %scaled = llvm.call @scaled(%x) : (i64) -> i64
  %sum = llvm.add %scaled, %calls : i64
  llvm.return %sum : i64
}
"""


# A function calling nnforge's runtime (its buffer cache), as models do.
ALLOCATING = """
llvm.func @_mlir_memref_to_llvm_alloc(i64) -> !llvm.ptr
llvm.func @_mlir_memref_to_llvm_free(!llvm.ptr)
llvm.func @scratch(%bytes: i64) -> i64 {
  %buffer = llvm.call @_mlir_memref_to_llvm_alloc(%bytes) : (i64) -> !llvm.ptr
  llvm.store %bytes, %buffer : i64, !llvm.ptr
  %read = llvm.load %buffer : !llvm.ptr -> i64
  llvm.call @_mlir_memref_to_llvm_free(%buffer) : (!llvm.ptr) -> ()
  llvm.return %read : i64
}
"""


def _packed_call(library: ctypes.CDLL, name: str, value: int) -> int:
    """Calls `name` through its packed entry point `_mlir_<name>`."""
    argument, result = ctypes.c_int64(value), ctypes.c_int64()
    pointers = (ctypes.c_void_p * 2)(ctypes.addressof(argument), ctypes.addressof(result))
    getattr(library, f"_mlir_{name}")(pointers)
    return result.value


@pytest.mark.parametrize("threads", [1, 3])
def test_partitions_link_back_into_the_module(tmp_path: Path, threads: int):
    module = ir.Module.parse(COUNTING, nnforge.context())
    objects = object_files(module, tmp_path, threads=threads)
    # One partition per function defined here (_mlir_step included), at most.
    assert len(objects) == (1 if threads == 1 else 4)
    library = ctypes.CDLL(str(link_library(objects, [], tmp_path / "counting.so", in_process=True)))
    assert [_packed_call(library, "step", 5) for _ in range(3)] == [16, 17, 18]


def test_models_in_the_process_share_the_runtime_and_saved_ones_carry_it(tmp_path: Path):
    module = ir.Module.parse(COUNTING + ALLOCATING, nnforge.context())
    objects = object_files(module, tmp_path, threads=2)
    in_process = link_library(objects, [], tmp_path / "in_process.so", in_process=True)
    saved = link_library(objects, [], tmp_path / "saved.so")

    def needs(path: Path) -> str:
        return subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout

    assert "libNNForgeRuntime.so" in needs(in_process)
    assert "libNNForgeRuntime.so" not in needs(saved)
    for library in (in_process, saved):
        assert _packed_call(ctypes.CDLL(str(library)), "scratch", 1 << 20) == 1 << 20


def test_a_module_llvm_cannot_translate_is_a_compile_error_naming_the_op(tmp_path: Path):
    module = ir.Module.parse("func.func @f() { return }", nnforge.context())
    with pytest.raises(CompileError, match="cannot be translated to LLVM IR: .*func.func"):
        object_files(module, tmp_path)


def test_a_collected_model_unloads_its_code():
    torch = pytest.importorskip("torch")

    def mapped(path: Path) -> bool:
        with open("/proc/self/maps") as maps:
            return any(line.rstrip().endswith(str(path)) for line in maps)

    model = nnforge.compile(torch.nn.Linear(8, 4).eval(), (torch.randn(2, 8),), threads=1)
    library = model._library.path
    assert mapped(library)
    del model
    gc.collect()
    assert not mapped(library)
