"""The interface between `nnforge.compile` and a target.

`nnforge.compile` imports a model into MLIR, verifies it, finds its entry
function and signature, then hands it to the target that its `target=`
argument names: `lower` takes the module from its import level to the LLVM
dialect through the target's own stages; `build` turns the result into a
callable `Model` (code in a shared library) that can be saved
for `nnforge.load`.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any, Protocol

from mlir import ir

from nnforge.runtime import Signature
from nnforge.stages import StageRunner


class Model(Protocol):
    """What `nnforge.compile` returns, whatever the target."""

    signature: Signature
    compile_times: dict[str, float]

    def __call__(self, *inputs: Any) -> Any: ...

    def save(self, path: str | os.PathLike) -> Path: ...

    def profile(self, *inputs: Any, runs: int = 10, html: str | os.PathLike | None = None) -> Any:
        """Where the time of a call goes, region by region (`nnforge.profiling`);
        ProfileError where the target has no timers."""


class Target(abc.ABC):
    """A kind of machine to compile for, set up with the options of one compilation."""

    name: str

    @abc.abstractmethod
    def lower(self, module: ir.Module, level: str, runner: StageRunner) -> ir.Module:
        """Lowers `module`, at import `level`, to the LLVM dialect, running
        each stage through `runner`; returns the lowered module (`module`
        itself, or a new one)."""

    @abc.abstractmethod
    def build(self, module: ir.Module, signature: Signature, runner: StageRunner) -> Model:
        """Turns a module `lower` returned into a callable model."""
