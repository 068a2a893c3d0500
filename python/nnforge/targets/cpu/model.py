"""Models compiled for the CPU: the LLVM dialect compiled in this process
(`objects`) and linked with nnforge's runtime into a shared library; for
this machine loaded at once, for a named CPU when called."""

from __future__ import annotations

import _ctypes
import ctypes
import os
import platform
import shutil
import sys
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlir import ir

from nnforge import artifact, weights
from nnforge._native import _native_file
from nnforge.errors import CompileError, ModelLoadError, ProfileError, SaveError
from nnforge.linking import c_compiler, run_tool, runtime_archive, shared_runtime
from nnforge.profiling.html import write_page
from nnforge.profiling.regions import COUNTERS_FUNCTION, RegionMap
from nnforge.profiling.report import Profile
from nnforge.runtime import Executable, Signature, load, numpy_dtype
from nnforge.targets.cpu.host import CpuDescription
from nnforge.targets.cpu.objects import object_files


@dataclass
class ModelWeights:
    """The weights file a compilation wrote (`nnforge.externalize`), in a
    temporary folder that lives as long as this object."""

    folder: tempfile.TemporaryDirectory
    manifest: weights.Manifest

    @property
    def path(self) -> Path:
        return Path(self.folder.name) / f"model{weights.SUFFIX}"

    def mapped(self) -> weights.MappedWeights:
        """The file mapped into memory (written just now: not verified again)."""
        return weights.MappedWeights(self.path, self.manifest, numpy_dtype, verify=False)

    def save_beside(self, library: Path) -> None:
        """Copies the file next to the saved `library` (`model.so` -> `model.weights`)."""
        destination = weights.path_for(library)
        try:
            destination.unlink(missing_ok=True)
            try:
                os.link(self.path, destination)  # same file system: no copy
            except OSError:
                shutil.copyfile(self.path, destination)
        except OSError as error:
            raise SaveError(f"cannot save the model's weights as {destination}: {error.strerror or error}") from None


def _check_library_name(path: Path, model_weights: ModelWeights | None) -> None:
    if model_weights is not None and weights.path_for(path) == path:
        raise SaveError(
            f"cannot save the model as {path}: its weights go to a file named like it with the suffix "
            f"{weights.SUFFIX} (name the library e.g. {path.with_suffix('.so')})"
        )


@dataclass
class Library:
    """A model's object files and the shared library linked from them, in a
    temporary folder that lives as long as this object."""

    folder: tempfile.TemporaryDirectory
    objects: list[Path]
    path: Path


def build_library(module: ir.Module, cpu: CpuDescription | None = None, in_process: bool = False) -> Library:
    """`module` (LLVM dialect) compiled for `cpu` (None: this machine's) and
    linked into a shared library: `in_process`, to nnforge's shared runtime
    (to run in this process); else with a copy of the runtime of its own
    (a library to save)."""
    folder = tempfile.TemporaryDirectory(prefix="nnforge-cpu-")
    scratch = Path(folder.name)
    objects = object_files(module, scratch, cpu)
    return Library(folder, objects, link_library(objects, [], scratch / "model.so", in_process=in_process))


class CompiledModel(Executable):
    """A model compiled for the host CPU: call it with numpy arrays or torch tensors.

    `signature` describes its inputs and outputs, `compile_times` the
    seconds spent per stage, `save(path)` writes a shared library that
    `nnforge.load` runs without the compiler.
    """

    def __init__(
        self,
        library: Library,
        signature: Signature,
        compile_times: dict[str, float],
        threads: int,
        model_weights: ModelWeights | None = None,
    ):
        try:
            self._loaded = ctypes.CDLL(str(library.path))
        except OSError as error:
            raise CompileError(f"the compiled code cannot be loaded: {error}") from None
        # The code goes with the model (ctypes never unloads a library): a
        # process compiling many models does not keep them all mapped.
        weakref.finalize(self, _ctypes.dlclose, self._loaded._handle)
        # The packed wrapper of the C-interface function.
        entry = getattr(self._loaded, f"_mlir__mlir_ciface_{signature.entry}", None)
        if entry is None:
            raise CompileError(f"compiled code has no entry point for @{signature.entry}")
        mapped = model_weights.mapped().arrays if model_weights is not None else []
        # The runtime the library is linked to (`linking.shared_runtime`).
        runtime = ctypes.CDLL(str(_native_file("libNNForgeRuntime.so")))
        address = ctypes.cast(entry, ctypes.c_void_p).value
        try:
            super().__init__(address, runtime, signature, keep_alive=library, parallel=threads != 1, weights=mapped)
        except ModelLoadError as error:  # no OpenMP runtime to run the parallel loops on
            raise CompileError(f"{error} (or compile with threads=1)") from None
        self._library = library
        self.compile_times = compile_times
        self.threads = threads
        self._model_weights = model_weights
        # Set by `nnforge.compile`: builds the model again with timers (what
        # `profile` runs), and names the model in profiles.
        self.instrumented: Callable[[], ProfiledModel] | None = None
        self.description = "model"
        self._profiled: ProfiledModel | None = None

    def profile(self, *inputs: Any, runs: int = 10, html: str | os.PathLike | None = None) -> Profile:
        """Where the time of a call on `inputs` goes: the model is built again
        (once) with timers around each dispatch region, then called `runs`
        times after a first call that is not counted. Returns the
        `nnforge.profiling.report.Profile` (print it for the top regions);
        `html` names a page to write the model's graph to, each region
        colored by its share of the time."""
        if self.instrumented is None:
            raise ProfileError("only a model nnforge.compile returned in this process can be profiled "
                               "(it builds the model again with timers)")
        if self._profiled is None:
            self._profiled = self.instrumented()
        return self._profiled.profile(*inputs, runs=runs, html=html)

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the compiled code as a shared library, and its weights (if
        any) into a file beside it (`model.so` -> `model.weights`); returns
        the library's path."""
        path = artifact.check_destination(path)
        _check_library_name(path, self._model_weights)
        # Linked again, with a copy of nnforge's runtime: loaded without nnforge.
        link_library(self._library.objects, [], path)
        if self._model_weights is not None:
            self._model_weights.save_beside(path)
        return path


class ProfiledModel(CompiledModel):
    """A model built with timers around each region (`nnf-profile-dispatch-regions`):
    `regions` says what each counter times, `measure` runs it and reads them."""

    def __init__(
        self, library: Library, signature: Signature, compile_times: dict[str, float], threads: int,
        regions: RegionMap, model_weights: ModelWeights | None = None,
    ):
        super().__init__(library, signature, compile_times, threads, model_weights)
        self.regions = regions
        # The module's `nnf_profile_counters_address()`, through its packed
        # wrapper: one argument, the slot receiving the result.
        counters = getattr(self._loaded, f"_mlir_{COUNTERS_FUNCTION}", None)
        if counters is None:
            raise CompileError(f"the profiled build has no @{COUNTERS_FUNCTION}")
        slot = ctypes.c_void_p()
        arguments = (ctypes.c_void_p * 1)(ctypes.addressof(slot))
        ctypes.CFUNCTYPE(None, ctypes.c_void_p)(ctypes.cast(counters, ctypes.c_void_p).value)(arguments)
        count = 2 * (1 + max([regions.function.id, *(region.id for region in regions.regions)]))
        self._counters = (ctypes.c_int64 * count).from_address(slot.value)

    def profile(self, *inputs: Any, runs: int = 10, html: str | os.PathLike | None = None) -> Profile:
        """`CompiledModel.profile`, this build being the one with timers."""
        measured = self.measure(inputs, runs)
        if html is not None:
            write_page(measured, html)
        return measured

    def measure(self, inputs: Sequence[Any], runs: int = 10) -> Profile:
        """Calls the model on `inputs` once, then `runs` times counted."""
        if not isinstance(runs, int) or isinstance(runs, bool) or runs < 1:
            raise ProfileError(f"runs must be a positive integer, not {runs!r}")
        self(*inputs)  # not counted: first-touch of buffers, threads starting
        ctypes.memset(self._counters, 0, ctypes.sizeof(self._counters))
        for _ in range(runs):
            self(*inputs)
        return Profile.from_counters(
            self.regions, list(self._counters), runs, self.description, _machine(self.threads)
        )


def _machine(threads: int) -> str:
    """This machine's CPU model and the threads a model runs on, for a profile."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    if threads == 0:  # the OpenMP runtime's default: PyTorch's count where torch is loaded
        torch = sys.modules.get("torch")
        default = os.environ.get("OMP_NUM_THREADS", "").split(",")[0]
        threads = torch.get_num_threads() if hasattr(torch, "get_num_threads") else (
            int(default) if default.isdigit() else os.cpu_count() or 1)
    return f"{cpu}, {threads} thread{'s' if threads != 1 else ''}"


class CrossCompiledModel:
    """A model compiled for a named CPU (`target="cpu:<name>"`).

    Its code is generated for that CPU's name and LLVM features alone (none
    of this machine's). Calling the model loads the library: only where that
    CPU's instructions run.
    """

    def __init__(
        self, library: Library, signature: Signature, compile_times: dict[str, float], cpu: CpuDescription,
        model_weights: ModelWeights | None = None,
    ):
        self.signature = signature
        self.compile_times = compile_times
        self.cpu = cpu
        self._library = library
        self._model_weights = model_weights
        if model_weights is not None:
            model_weights.save_beside(library.path)
        self._loaded: Executable | None = None

    def profile(self, *inputs: Any, **_: Any) -> Profile:
        """Not available: a profile runs the model on this machine."""
        raise ProfileError(f"a model compiled for the named CPU {self.cpu.name} is not profiled: "
                           "profile it compiled for target='cpu' (this machine)")

    def __call__(self, *inputs: Any) -> Any:
        if self._loaded is None:
            self._loaded = load(self._library.path)
        return self._loaded(*inputs)

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the shared library, and its weights (if any) into a file
        beside it; returns the library's path."""
        path = artifact.check_destination(path)
        _check_library_name(path, self._model_weights)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self._library.path, path)
        except OSError as error:
            raise SaveError(f"cannot save the model as {path}: {error.strerror or error}") from None
        if self._model_weights is not None:
            self._model_weights.save_beside(path)
        return path


def link_library(
    objects: list[Path], sources: list[Path], path: Path, libraries: tuple[str, ...] = (), in_process: bool = False
) -> Path:
    """Links `objects` (and C or assembly `sources`) with nnforge's runtime
    (and the shared `libraries`) into the sealed shared library `path`;
    returns `path`. `in_process`: bound to the runtime of this process
    (`linking.shared_runtime`), else with a copy of its own."""
    linked = objects[0].parent / f"linked-{path.name}"
    # --no-undefined: a call the runtime lacks (an OpenMP entry point
    # nnforge does not implement) fails here, not when loading.
    run_tool(
        [c_compiler(), "-shared", "-fPIC", "-Wl,--no-undefined", "-o", str(linked), *map(str, objects),
         *map(str, sources), *(shared_runtime() if in_process else runtime_archive()), *libraries, "-lm"],
        f"linking {path}",
    )
    return artifact.install(linked, path)
