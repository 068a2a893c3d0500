"""The MPI library distributed models call: MPICH, from the `mpich` wheel
(`pip install 'nnforge[distributed]'`) or named by NNFORGE_MPI_LIBRARY.

ctypes only (the runtime side). MLIR's lowering of the `mpi` dialect uses
MPICH's ABI (its handle constants): Open MPI cannot run the code.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from nnforge.errors import ModelLoadError

# The shared library's soname (MPICH's ABI), what linked models need.
SONAME = "libmpi.so.12"
LIBRARY_VARIABLE = "NNFORGE_MPI_LIBRARY"
INSTALL_HINT = "install MPICH with `pip install 'nnforge[distributed]'` (or name libmpi.so.12 in NNFORGE_MPI_LIBRARY)"


class MPIMissingError(ModelLoadError):
    """No MPI library (or launcher) to run a model split over several ranks."""


class JobSizeError(ModelLoadError):
    """A model split over N ranks loaded in an MPI job of another size.

    Every rank raises it alike, so no rank waits for another in a collective:
    the job ends through MPI_Finalize rather than MPI_Abort, which lets each
    rank's message reach the launcher's output before any rank exits.
    """


def _prefixes() -> list[Path]:
    """Where the `mpich` wheel may have installed: this environment, then the user's."""
    prefixes = [Path(sys.prefix)]
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        files = distribution("mpich").files or []
        for file in files:
            if file.name == SONAME:
                prefixes.insert(0, Path(file.locate()).resolve().parent.parent)
                break
    except (ImportError, PackageNotFoundError):
        pass
    return prefixes


def library_path() -> Path:
    """The path of libmpi.so.12; MPIMissingError saying what to install if there is none."""
    named = os.environ.get(LIBRARY_VARIABLE)
    if named:
        if not Path(named).is_file():
            raise MPIMissingError(f"{LIBRARY_VARIABLE}={named}: no such file")
        return Path(named)
    for prefix in _prefixes():
        candidate = prefix / "lib" / SONAME
        if candidate.is_file():
            return candidate
    raise MPIMissingError(f"running a model on several ranks needs an MPI library ({SONAME}): {INSTALL_HINT}")


def launcher() -> Path:
    """MPICH's `mpiexec` (next to the library); MPIMissingError if there is none."""
    library = library_path()
    for candidate in (library.parent.parent / "bin" / "mpiexec", Path(sys.prefix) / "bin" / "mpiexec"):
        if candidate.is_file():
            return candidate
    found = shutil.which("mpiexec")
    if found is None:
        raise MPIMissingError(f"starting a model on several ranks needs MPICH's mpiexec: {INSTALL_HINT}")
    return Path(found)


@functools.cache
def library() -> ctypes.CDLL:
    """libmpi loaded with its symbols global, so that models linked to it bind to this copy."""
    path = library_path()
    try:
        loaded = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except OSError as error:
        raise MPIMissingError(f"{path} cannot be loaded: {error}") from None
    for name in ("MPI_Init", "MPI_Initialized", "MPI_Finalized", "MPI_Finalize", "MPI_Comm_size",
                 "MPI_Comm_rank", "MPI_Abort"):
        getattr(loaded, name).restype = ctypes.c_int
    return loaded


# MPICH's MPI_COMM_WORLD handle (an int in its ABI), as MLIR's lowering uses it.
COMM_WORLD = 0x44000000


def _flag(function: ctypes._CFuncPtr) -> bool:
    value = ctypes.c_int(0)
    function(ctypes.byref(value))
    return bool(value.value)


def _finalize() -> None:
    mpi = library()
    if _flag(mpi.MPI_Initialized) and not _flag(mpi.MPI_Finalized):
        mpi.MPI_Finalize()


def _abort_on_uncaught(previous: Any) -> Any:
    """An excepthook that reports the exception (`previous`), then aborts the MPI job."""

    def hook(kind: type[BaseException], value: BaseException, traceback: Any) -> None:
        previous(kind, value, traceback)
        sys.stderr.flush()
        if not isinstance(value, JobSizeError):
            library().MPI_Abort(COMM_WORLD, 1)

    return hook


@functools.cache
def initialize() -> tuple[int, int]:
    """Joins the MPI job (MPI_Init unless the program did, MPI_Finalize at
    exit then); returns (this process's rank, the number of ranks).

    An exception no one catches then aborts the whole job (MPI_Abort):
    otherwise this rank would wait in MPI_Finalize for the others while
    they wait in a collective for it, forever. (A rank that exits or is
    killed without finalizing ends the job through MPICH's launcher.) A
    JobSizeError, raised on every rank alike, ends the job through
    MPI_Finalize instead.
    """
    mpi = library()
    if not _flag(mpi.MPI_Initialized):
        if mpi.MPI_Init(None, None) != 0:
            raise ModelLoadError("MPI_Init failed")
        atexit.register(_finalize)
    sys.excepthook = _abort_on_uncaught(sys.excepthook)
    rank, size = ctypes.c_int(0), ctypes.c_int(0)
    mpi.MPI_Comm_rank(COMM_WORLD, ctypes.byref(rank))
    mpi.MPI_Comm_size(COMM_WORLD, ctypes.byref(size))
    return rank.value, size.value
