"""The CPU target: lowers with the optimized code generation (or the naive
pipeline, or the affine generator), sized by the CPU's description, and
compiles the LLVM dialect (LLVM -O3, a thread per core) into a shared
library, for this machine's CPU and features or for a named CPU."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

from mlir import ir

from nnforge import pipelines, weights
from nnforge.entry import embed_string
from nnforge.errors import ProfileError
from nnforge.externalize import externalize_weights
from nnforge.profiling import regions
from nnforge.profiling.regions import RegionMap
from nnforge.runtime import SIGNATURE_SYMBOL, Signature
from nnforge.stages import StageRunner, check_only_llvm
from nnforge.targets.cpu import affine, openmp_regions
from nnforge.targets.cpu.codegen.lowering import lower_to_llvm
from nnforge.targets.cpu.host import CpuDescription, ScheduleSizes
from nnforge.targets.cpu.model import CompiledModel, CrossCompiledModel, ModelWeights, ProfiledModel, build_library
from nnforge.targets.interface import Target

log = logging.getLogger("nnforge.compiler")
# The attribute of the log record of a fallback to the naive lowering that
# holds its cause (what the benchmark counts: benchmarks/backends.py).
NAIVE_LOWERING = "nnforge_naive_lowering"

# The `optimize` value choosing the affine generator.
AFFINE = "affine"


class CpuTarget(Target):
    """A CPU: this machine's, or a named one to cross-compile for (`cpu`).

    `optimize=False` keeps the naive lowering (scalar loops, one thread);
    `optimize="affine"` lowers with the polyhedral generator
    (`nnforge.targets.cpu.affine`); `threads`: how many threads the
    optimized (or affine) code uses (None: PyTorch's
    count where torch is imported, else all cores or OMP_NUM_THREADS; 1:
    plain sequential code, no OpenMP runtime). `profile`: build with timers
    around each dispatch region (`nnf-profile-dispatch-regions`), as a
    `ProfiledModel`; for this machine's CPU only.

    Large constants leave the module once it is bufferized: the entry
    function takes them as arguments, bound to a weights file
    (`nnforge.externalize`), so that LLVM never copies them.
    """

    name = "cpu"

    def __init__(
        self, cpu: CpuDescription, optimize: bool | str = True, threads: int | None = None, profile: bool = False
    ):
        if profile and cpu.llvm_features is not None:
            raise ProfileError(f"a profile runs the model on this machine: compile for target='cpu', "
                               f"not for the named CPU {cpu.name}")
        self.cpu = cpu
        self.sizing = ScheduleSizes.for_cpu(cpu)
        self.optimize = optimize
        # 0: as many as the OpenMP runtime decides; the naive lowering is sequential.
        self.threads = (threads if threads is not None else 0) if optimize else 1
        self.profile = profile
        # What the timers of a profiled build time, read while lowering.
        self._regions: RegionMap | None = None
        self._weights: ModelWeights | None = None

    def _externalize(self, module: ir.Module, runner: StageRunner) -> None:
        """Moves the bufferized module's large constants into a weights file
        (stage "weights")."""
        folder = tempfile.TemporaryDirectory(prefix="nnforge-weights-")
        with runner.stage("weights"):
            manifest = externalize_weights(module, Path(folder.name) / f"model{weights.SUFFIX}")
        self._weights = ModelWeights(folder, manifest) if manifest is not None else None

    def lower(self, module: ir.Module, level: str, runner: StageRunner) -> ir.Module:
        if self.optimize == AFFINE:
            module = affine.lower_to_llvm(module, level, runner, self.sizing, self.threads,
                                          instrument=self._instrument if self.profile else None,
                                          on_buffers=self._externalize)
        elif self.optimize:
            module = self._lower_optimized_or_naive(module, level, runner)
        else:
            self._lower_naive(module, level, runner)
        # OpenMP ops are translated to LLVM IR (runtime calls) alongside the LLVM dialect.
        openmp_regions.finish(module)
        check_only_llvm(module, also_allowed=openmp_regions.OPENMP_OPS)
        return module

    def build(
        self, module: ir.Module, signature: Signature, runner: StageRunner
    ) -> CompiledModel | CrossCompiledModel | ProfiledModel:
        embed_string(module, SIGNATURE_SYMBOL, signature.to_json())
        if self._weights is not None:
            embed_string(module, weights.MANIFEST_SYMBOL, self._weights.manifest.to_json())
        with runner.stage("llvm"):
            named_cpu = self.cpu.llvm_features is not None
            library = build_library(module, self.cpu, in_process=not named_cpu)
            if named_cpu:
                return CrossCompiledModel(library, signature, runner.times, self.cpu, self._weights)
            if self._regions is not None:
                regions = replace(self._regions, input_names=tuple(spec.name for spec in signature.inputs))
                return ProfiledModel(library, signature, runner.times, self.threads, regions, self._weights)
            return CompiledModel(library, signature, runner.times, self.threads, self._weights)

    def _instrument(self, module: ir.Module, runner: StageRunner) -> None:
        """Puts the timers of a profiled build into `module` (on linalg, its
        dispatch regions formed) and records what they time."""
        self._regions = regions.instrument(module, runner)

    def _lower_naive(self, module: ir.Module, level: str, runner: StageRunner) -> None:
        instrumented = not self.profile
        for name, pipeline in pipelines.stages(level):
            if name in ("bufferize", "linalg-to-llvm") and not instrumented:
                self._instrument(module, runner)  # on linalg, before bufferization
                instrumented = True
            if name == "linalg-to-llvm":
                self._externalize(module, runner)
            runner.run(module, name, pipeline)

    def _lower_optimized_or_naive(self, module: ir.Module, level: str, runner: StageRunner) -> ir.Module:
        """Lowers with the optimized code generation, or, where it fails, the naive one.

        The schedules are heuristics over op shapes; a model they cannot handle
        still compiles (with a warning naming the failure), just more slowly.
        A model that arrives on buffers (torch-mlir bufferizes the models
        holding its sort, scatter or scan ops: some backward graphs) has only
        the naive lowering: the schedules take linalg on tensors.
        """
        if level == pipelines.BUFFERS_LEVEL:
            _warn_naive("optimized code generation does not apply",
                        "the model arrives on buffers (torch-mlir bufferized it for its sort, scatter or scan ops)")
            self._lower_naive(module, level, runner)
            return module
        snapshot = _copy(module)
        try:
            lower_to_llvm(module, level, runner, self.sizing, self.threads,
                          instrument=self._instrument if self.profile else None, on_buffers=self._externalize)
            return module
        except Exception as error:  # a schedule bug must not cost the user the model
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            _warn_naive("optimized code generation failed", f"{type(error).__name__}: {reason}")
        self._lower_naive(snapshot, level, runner)
        return snapshot


def _warn_naive(what: str, cause: str) -> None:
    """Logs a fallback to the naive lowering, its cause in the record's
    NAIVE_LOWERING attribute."""
    log.warning("%s (%s); using the naive lowering", what, cause, extra={NAIVE_LOWERING: cause})


def _copy(module: ir.Module) -> ir.Module:
    """A copy of `module` in its context. Its attributes are shared, not
    copied: constants (weights) cost nothing (a bytecode round trip copied
    them twice)."""
    with module.context, module.operation.location:
        copy = ir.Module.create()
        attributes = module.operation.attributes
        for name in [attributes[index].name for index in range(len(attributes))]:
            copy.operation.attributes[name] = attributes[name]
        for op in module.body.operations:
            copy.body.append(op.operation.clone())
    return copy
