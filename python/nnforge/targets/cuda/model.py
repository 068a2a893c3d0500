"""A model compiled for an NVIDIA GPU, run from the shared library it saves."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from mlir import ir

from nnforge.errors import ProfileError
from nnforge.runtime import Executable, Signature, load
from nnforge.targets.cuda.library import save_cuda_library

CUDA_PROFILE_UNAVAILABLE = (
    "profiling is not available for CUDA models: nnforge times dispatch regions on the CPU only "
    "(time the kernels of a CUDA model with NVIDIA Nsight Systems: nsys profile)"
)


class CudaModel:
    """A model compiled for an NVIDIA GPU: host code with the kernels' cubins embedded.

    MLIR's CUDA runtime needs the driver even to load such code, so the model
    runs from a saved library: `save(path)` writes it (plus the small CUDA
    runtime wrappers next to it), `nnforge.load(path)` runs it where a GPU
    is. Calling the model does both in a temporary folder.
    """

    def __init__(self, module: ir.Module, signature: Signature, compile_times: dict[str, float]):
        self.module = module
        self.signature = signature
        self.compile_times = compile_times
        self._loaded: Executable | None = None
        self._folder: tempfile.TemporaryDirectory | None = None

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the shared library (and libmlir_cuda_runtime.so beside it); returns its path."""
        return save_cuda_library(self.module, self.signature, path)[0]

    def profile(self, *inputs: Any, **_: Any) -> Any:
        """Not available for CUDA models: raises ProfileError."""
        raise ProfileError(CUDA_PROFILE_UNAVAILABLE)

    def __call__(self, *inputs: Any) -> Any:
        if self._loaded is None:
            self._folder = tempfile.TemporaryDirectory(prefix="nnforge-cuda-")
            self._loaded = load(self.save(Path(self._folder.name) / "model.so"))
        return self._loaded(*inputs)
