"""The targets `nnforge.compile` generates code for, one package each.

`target(spec, ...)` sets one up from the `target=` argument of
`nnforge.compile` ("cpu", "cuda") and the options that concern it. Every target implements `nnforge.targets.interface.Target`;
what they share (stage runner, entry point, linking) sits below them, in
`nnforge.stages`, `nnforge.entry` and `nnforge.linking`.
"""

from __future__ import annotations

from nnforge.errors import CompileError
from nnforge.targets.interface import Target

TARGETS = ("cpu", "cuda")


def target(spec: str, *, optimize: bool = True, threads: int | None = None, chip: str = "sm_90") -> Target:
    """The target `spec` names, set up with the options of `nnforge.compile` it takes."""
    name, _, variant = str(spec).partition(":")
    if name == "cpu" and not variant:
        from nnforge.targets.cpu.target import CpuTarget

        return CpuTarget(optimize=optimize, threads=threads)
    if name == "cuda" and not variant:
        from nnforge.targets.cuda.target import CudaTarget

        return CudaTarget(chip)
    raise CompileError(f"unknown target {spec!r}: expected one of {', '.join(TARGETS)}")
