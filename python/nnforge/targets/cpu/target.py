"""The CPU target: lowers with the optimized code generation (or the naive
pipeline), sized by the CPU's description, and compiles the LLVM dialect:
for this machine with MLIR's ExecutionEngine (LLVM -O3, host features), for
a named CPU with LLVM's tools into a shared library."""

from __future__ import annotations

import ctypes
import io
import logging
from dataclasses import replace

from mlir import ir
from mlir.execution_engine import ExecutionEngine

from nnforge import pipelines
from nnforge._native import _native_file
from nnforge.entry import embed_string
from nnforge.errors import CompileError, ProfileError
from nnforge.profiling import regions
from nnforge.profiling.regions import RegionMap
from nnforge.runtime import SIGNATURE_SYMBOL, Signature
from nnforge.stages import StageRunner, check_only_llvm
from nnforge.targets.cpu import openmp_regions
from nnforge.targets.cpu.codegen.lowering import lower_to_llvm
from nnforge.targets.cpu.host import CpuDescription, ScheduleSizes
from nnforge.targets.cpu.model import CompiledModel, CrossCompiledModel, ProfiledModel, runtime_libraries
from nnforge.targets.interface import Target

log = logging.getLogger("nnforge.compiler")


class CpuTarget(Target):
    """A CPU: this machine's, or a named one to cross-compile for (`cpu`).

    `optimize=False` keeps the naive lowering (scalar loops, one thread);
    `threads`: how many threads the optimized code uses (None: PyTorch's
    count where torch is imported, else all cores or OMP_NUM_THREADS; 1:
    plain sequential code, no OpenMP runtime). `profile`: build with timers
    around each dispatch region (`nnf-profile-dispatch-regions`), as a
    `ProfiledModel`; for this machine's CPU only.
    """

    name = "cpu"

    def __init__(
        self, cpu: CpuDescription, optimize: bool = True, threads: int | None = None, profile: bool = False
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

    def lower(self, module: ir.Module, level: str, runner: StageRunner) -> ir.Module:
        if self.optimize:
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
        with runner.stage("llvm"):
            if self.cpu.llvm_features is not None:
                return CrossCompiledModel(module, signature, runner.times, self.cpu, self.threads)
            try:
                engine = ExecutionEngine(module, opt_level=3, shared_libs=runtime_libraries(), enable_pic=True)
            except RuntimeError as error:
                raise CompileError(f"LLVM code generation failed: {error}") from None
            if self.threads != 1:
                openmp_regions.register_entry_points(engine, ctypes.CDLL(str(_native_file("libNNForgeRuntime.so"))))
            if self._regions is not None:
                regions = replace(self._regions, input_names=tuple(spec.name for spec in signature.inputs))
                return ProfiledModel(engine, signature, runner.times, self.threads, regions)
            return CompiledModel(engine, signature, runner.times, self.threads)

    def _instrument(self, module: ir.Module, runner: StageRunner) -> None:
        """Puts the timers of a profiled build into `module` (on linalg, its
        dispatch regions formed) and records what they time."""
        self._regions = regions.instrument(module, runner)

    def _lower_naive(self, module: ir.Module, level: str, runner: StageRunner) -> None:
        steps = pipelines.stages(level)
        for name, pipeline in steps[:-1]:
            runner.run(module, name, pipeline)
        if self.profile:
            self._instrument(module, runner)
        runner.run(module, *steps[-1])

    def _lower_optimized_or_naive(self, module: ir.Module, level: str, runner: StageRunner) -> ir.Module:
        """Lowers with the optimized code generation, or, where it fails, the naive one.

        The schedules are heuristics over op shapes; a model they cannot handle
        still compiles (with a warning naming the failure), just more slowly.
        """
        snapshot = io.BytesIO()
        module.operation.write_bytecode(snapshot)
        try:
            lower_to_llvm(module, level, runner, self.sizing, self.threads,
                          instrument=self._instrument if self.profile else None)
            return module
        except Exception as error:  # a schedule bug must not cost the user the model
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            log.warning("optimized code generation failed (%s: %s); using the naive lowering",
                        type(error).__name__, reason)
        naive = ir.Module.parse(snapshot.getvalue(), module.context)
        self._lower_naive(naive, level, runner)
        return naive

