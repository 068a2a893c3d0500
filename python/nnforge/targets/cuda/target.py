"""The CUDA target: fused linalg on tensors -> kernels and host code (see
`lowering`), run from a shared library (see `library`)."""

from __future__ import annotations

from mlir import ir

from nnforge import pipelines
from nnforge.errors import CompileError
from nnforge.runtime import Signature
from nnforge.stages import StageRunner, check_only_llvm
from nnforge.targets.cuda.lowering import check_chip, lower_to_cuda
from nnforge.targets.cuda.model import CudaModel
from nnforge.targets.interface import Target


class CudaTarget(Target):
    """An NVIDIA GPU of architecture `chip` (sm_90: H100)."""

    name = "cuda"

    def __init__(self, chip: str = "sm_90"):
        self.chip = check_chip(chip)

    def lower(self, module: ir.Module, level: str, runner: StageRunner) -> ir.Module:
        if level == pipelines.BUFFERS_LEVEL:
            raise CompileError(
                "the CUDA pipeline starts from linalg on tensors, and this model comes bufferized: it holds "
                "ops (sort, top-k, cumulative sums, scatter) that torch-mlir lowers to loops on buffers"
            )
        # Import level to fused linalg, then the GPU mapping and lowering.
        for name, pipeline in pipelines.stages(level, self.name):
            runner.run(module, name, pipeline)
        lower_to_cuda(module, runner, self.chip)
        # Kernels stay as `gpu.binary`, launched by `gpu.launch_func`.
        check_only_llvm(module, also_allowed=("gpu.binary", "gpu.launch_func"))
        return module

    def build(self, module: ir.Module, signature: Signature, runner: StageRunner) -> CudaModel:
        return CudaModel(module, signature, runner.times)
