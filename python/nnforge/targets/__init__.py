"""The targets `nnforge.compile` generates code for, one package each.

`target(spec, ...)` sets one up from the `target=` argument of
`nnforge.compile` ("cpu": this machine; "cpu:<name>": a CPU of
`cpu.host.KNOWN_CPUS`, e.g. "cpu:znver4", "cpu:x86-64-v3"; "cuda") and the
options that concern it. Every target implements `nnforge.targets.interface.Target`;
what they share (stage runner, entry point, linking) sits below them, in
`nnforge.stages`, `nnforge.entry` and `nnforge.linking`.
"""

from __future__ import annotations

from nnforge.errors import ArgumentError, CompileError, ProfileError
from nnforge.targets.interface import Target

TARGETS = ("cpu", "cpu:<name>", "cuda")


def target(
    spec: str, *, optimize: bool | str = True, threads: int | None = None, chip: str = "sm_90", profile: bool = False
) -> Target:
    """The target `spec` names, set up with the options of `nnforge.compile` it
    takes; `profile`: for a build with timers (`nnforge profile`)."""
    name, _, variant = str(spec).partition(":")
    if name == "cpu":
        from nnforge.targets.cpu.host import host_cpu, named_cpu
        from nnforge.targets.cpu.target import CpuTarget

        cpu = named_cpu(variant) if ":" in str(spec) else host_cpu()
        return CpuTarget(cpu, optimize=optimize, threads=threads, profile=profile)
    if name == "cuda" and not variant:
        from nnforge.targets.cuda.model import CUDA_PROFILE_UNAVAILABLE
        from nnforge.targets.cuda.target import CudaTarget

        if profile:
            raise ProfileError(CUDA_PROFILE_UNAVAILABLE)
        if optimize == "affine":
            raise ArgumentError("optimize='affine' is a CPU code generator: target='cuda' has its own")

        return CudaTarget(chip)
    raise CompileError(f"unknown target {spec!r}: expected one of {', '.join(TARGETS)}")
