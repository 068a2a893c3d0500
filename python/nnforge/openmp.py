"""Which OpenMP runtime runs the parallel loops of compiled CPU code.

Multi-threaded code calls the `__kmpc_*` entry points of MLIR's OpenMP
lowering, which nnforge's own runtime implements (cpp/runtime/openmp.c) on
the GOMP ABI of a runtime bound here, per copy of that runtime (the one
models run in the compiling process share, each saved model's):

- where torch is imported, the OpenMP runtime PyTorch runs on (libgomp in
  its CPU wheels): one pool of workers for both, and nnforge's loops use
  PyTorch's thread count (`torch.get_num_threads()`, also after
  `torch.set_num_threads`) unless compiled with `threads=`;
- otherwise libiomp5 (the intel-openmp package), loaded privately
  (RTLD_LOCAL): its symbols never serve other libraries.

Executables check the choice on each call (a dictionary lookup), so that a
model that ran before torch was imported moves to PyTorch's pool after.
Numpy and ctypes only: no compiler import.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nnforge.errors import ModelLoadError

# The OpenMP runtime used where PyTorch's is not there.
OPENMP_RUNTIME = "libiomp5.so"
# The exported function of nnforge's runtime that binds an OpenMP runtime;
# a saved model has it when its code has parallel loops.
BIND_SYMBOL = "nnforge_openmp_bind"
# libiomp5's workers spin this long (ms) after a region before they sleep
# (its default: 200), so that they do not hold cores other work needs.
IOMP_BLOCKTIME_MS = 1


@dataclass(frozen=True)
class OpenMPRuntime:
    """An OpenMP runtime's GOMP ABI: the functions nnforge's runtime calls."""

    name: str
    parallel: int  # GOMP_parallel
    thread_num: int  # omp_get_thread_num
    num_threads: int  # omp_get_num_threads
    # Run once on each thread before its first region there.
    prepare_thread: Callable[[], object]


def _function_address(library: ctypes.CDLL, name: str) -> int | None:
    try:
        return ctypes.cast(getattr(library, name), ctypes.c_void_p).value
    except AttributeError:
        return None


def _gomp_functions(library: ctypes.CDLL) -> tuple[int, int, int] | None:
    """(GOMP_parallel, omp_get_thread_num, omp_get_num_threads) as `library` resolves them."""
    addresses = [_function_address(library, name)
                 for name in ("GOMP_parallel", "omp_get_thread_num", "omp_get_num_threads")]
    return None if None in addresses else tuple(addresses)  # type: ignore[return-value]


@functools.cache
def _torch_runtime() -> OpenMPRuntime | None:
    """The OpenMP runtime torch's native code calls, or None (a build without OpenMP)."""
    torch = sys.modules["torch"]
    # dlsym through torch's extension module searches it and its
    # dependencies: finds the runtime libtorch_cpu itself binds to.
    extension = ctypes.CDLL(torch._C.__file__, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
    functions = _gomp_functions(extension)
    if functions is None:
        return None
    # torch.get_num_threads sets the calling thread's OpenMP thread count
    # to PyTorch's the first time, as PyTorch's own ops do on each thread.
    return OpenMPRuntime("PyTorch's", *functions, prepare_thread=torch.get_num_threads)


def openmp_runtime_path() -> Path:
    """Where intel-openmp's libiomp5 is (ModelLoadError if not installed)."""
    from importlib import metadata

    try:
        files = metadata.distribution("intel-openmp").files or []
        found = next(f for f in files if f.name == OPENMP_RUNTIME)
    except (metadata.PackageNotFoundError, StopIteration):
        raise ModelLoadError(
            f"multi-threaded models need the OpenMP runtime {OPENMP_RUNTIME}: pip install intel-openmp"
        ) from None
    return Path(found.locate()).resolve()


@functools.cache
def _iomp_runtime() -> OpenMPRuntime:
    path = openmp_runtime_path()
    library = ctypes.CDLL(str(path), mode=os.RTLD_LOCAL)
    functions = _gomp_functions(library)
    if functions is None:
        raise ModelLoadError(f"{path} lacks the GOMP entry points (GOMP_parallel, omp_get_thread_num)")
    set_blocktime = library.kmp_set_blocktime
    set_blocktime.argtypes, set_blocktime.restype = [ctypes.c_int], None
    return OpenMPRuntime(str(path), *functions, prepare_thread=lambda: set_blocktime(IOMP_BLOCKTIME_MS))


def current_runtime() -> OpenMPRuntime:
    """PyTorch's OpenMP runtime where torch is imported (and has one), else libiomp5."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "_C"):
        runtime = _torch_runtime()
        if runtime is not None:
            return runtime
    return _iomp_runtime()


class Binding:
    """Keeps one copy of nnforge's runtime bound to `current_runtime()`."""

    _prepared = threading.local()  # .runtimes: those prepared on this thread

    def __init__(self, runtime_library: ctypes.CDLL):
        self._bind = getattr(runtime_library, BIND_SYMBOL)
        self._bind.argtypes = [ctypes.c_void_p] * 3
        self._bind.restype = ctypes.c_int
        self._bound: OpenMPRuntime | None = None
        self.update()

    def update(self) -> None:
        """Rebinds if the choice changed; prepares the calling thread."""
        runtime = current_runtime()
        if runtime is not self._bound:
            if self._bind(runtime.parallel, runtime.thread_num, runtime.num_threads) != 0:
                raise ModelLoadError("nnforge's runtime cannot bind another OpenMP runtime")
            self._bound = runtime
        prepared = getattr(Binding._prepared, "runtimes", None)
        if prepared is None:
            prepared = Binding._prepared.runtimes = set()
        if runtime.name not in prepared:
            runtime.prepare_thread()
            prepared.add(runtime.name)
