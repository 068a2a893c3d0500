"""The CUDA target: compiles models to cubins and shared libraries here (no GPU needed).

Running the compiled models needs a GPU and its driver; without one those
tests are skipped. The kernel schedules themselves (tiling, shared-memory
staging) are checked on the CPU: unmapped, their foralls run sequentially,
which is what the barrier-separated phases of the kernels compute.
"""

from __future__ import annotations

import ctypes
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mlir import ir  # noqa: E402

import nnforge  # noqa: E402
from nnforge import pipelines  # noqa: E402
from nnforge.compiler import import_model  # noqa: E402
from nnforge.entry import entry_function, signature_of  # noqa: E402
from nnforge.errors import CompileError  # noqa: E402
from nnforge.runtime import CUDA_RUNTIME  # noqa: E402
from nnforge.stages import StageRunner  # noqa: E402
from nnforge.targets.cpu.model import CompiledModel, build_library  # noqa: E402
from nnforge.targets.cuda import lowering  # noqa: E402
from nnforge.targets.cuda.library import TARGET_SYMBOL  # noqa: E402

EM_CUDA = 190


def _gpu_missing_reason() -> str | None:
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as error:
        return f"no CUDA driver: {error}"
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return "the CUDA driver sees no GPU"
    return None


NO_GPU = _gpu_missing_reason()


class Matmul(torch.nn.Module):
    def forward(self, a, b):
        return a @ b


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.first = torch.nn.Linear(128, 256)
        self.second = torch.nn.Linear(256, 64)

    def forward(self, x):
        return self.second(torch.nn.functional.gelu(self.first(x)))


class Conv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Linear(8, 10)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.head(x.mean(dim=(2, 3)))


class Softmax(torch.nn.Module):
    def forward(self, x):
        return torch.softmax(x, -1)


def _models():
    torch.manual_seed(0)
    return {
        # 128x64 @ 64x256 takes the shared-memory matmul schedule (k-steps of 32); 8x64 does not.
        "matmul": (Matmul(), (torch.randn(128, 64), torch.randn(64, 256))),
        "matmul_small": (Matmul(), (torch.randn(8, 64), torch.randn(64, 40))),
        "batch_matmul": (Matmul(), (torch.randn(3, 64, 32), torch.randn(3, 32, 128))),
        "matmul_k48": (Matmul(), (torch.randn(64, 48), torch.randn(48, 64))),  # k-steps of 16
        "mlp": (MLP(), (torch.randn(64, 128),)),
        "conv2d": (Conv(), (torch.randn(1, 3, 16, 16),)),
        "softmax": (Softmax(), (torch.randn(8, 100),)),
        "layer_norm": (torch.nn.LayerNorm(64), (torch.randn(4, 10, 64),)),
        "cnn": (SmallCNN(), (torch.randn(2, 3, 16, 16),)),
        "transformer": (
            torch.nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True).eval(),
            (torch.randn(2, 16, 64),),
        ),
    }


MODELS = _models()
COMPILED = ["matmul", "batch_matmul", "mlp", "conv2d", "softmax", "layer_norm", "transformer"]


def _expected(name):
    model, inputs = MODELS[name]
    with torch.no_grad():
        return model(*inputs).numpy()


def _emulate_on_cpu(name) -> CompiledModel:
    """The model with the CUDA target's schedules, unmapped, compiled for the CPU."""
    model, inputs = MODELS[name]
    module, level, _ = import_model(model, inputs)
    runner = StageRunner()
    with module.context:
        function = entry_function(module)
        signature = signature_of(function)
        function.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        for stage, pipeline in pipelines.stages(level, "cuda"):
            runner.run(module, stage, pipeline)
        runner.run(module, "bufferize", pipelines.CUDA_BUFFERIZE)
        lowering.insert_matmul_schedule(module, entry_function(module), on_gpu=False)
        runner.run(module, "matmul", "transform-interpreter,canonicalize")
        lowering.remove_schedule(module)
        runner.run(module, "generalize", pipelines.CUDA_GENERALIZE)
        lowering.insert_generic_schedule(module, entry_function(module), on_gpu=False)
        runner.run(module, "generic", "transform-interpreter,canonicalize")
        lowering.remove_schedule(module)
        runner.run(module, "llvm", f"convert-linalg-to-loops,scf-forall-to-for,{pipelines.WIDEN_BOOLS},{pipelines.LOOPS_TO_LLVM}")
    return CompiledModel(build_library(module, in_process=True), signature, runner.times, threads=1)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_schedules_compute_the_model_on_cpu(name):
    _, inputs = MODELS[name]
    result = _emulate_on_cpu(name)(*[i.numpy() for i in inputs])
    np.testing.assert_allclose(result, _expected(name), rtol=1e-4, atol=1e-4)


def _elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF", "not an ELF file"
    return struct.unpack_from("<H", data, 18)[0]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """name -> (lowered module, signature, saved library path), compiled once."""
    results = {}
    for name in COMPILED:
        model, inputs = MODELS[name]
        compiled_model = nnforge.compile(model, inputs, target="cuda")
        path = compiled_model.save(tmp_path_factory.mktemp(name) / "model.so")
        results[name] = (compiled_model.module, compiled_model.signature, path)
    return results


@pytest.mark.parametrize("name", COMPILED)
def test_compiles_to_cubin_and_library(compiled, name):
    module, signature, path = compiled[name]
    objects = lowering.kernel_objects(module)
    assert objects, "no kernels"
    for kernel, data in objects:
        assert _elf_machine(data) == EM_CUDA, f"{kernel} is not a CUDA ELF"
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True,
                             text=True, check=True).stdout.split()
    assert f"_mlir_ciface_{signature.entry}" in symbols
    assert "nnforge_signature" in symbols and TARGET_SYMBOL in symbols
    needed = subprocess.run(["readelf", "-d", str(path.parent / CUDA_RUNTIME)],
                            capture_output=True, text=True, check=True).stdout
    assert "libcuda.so.1" in needed and "libLLVM.so" not in needed


def test_matmul_uses_shared_memory(tmp_path):
    model, inputs = MODELS["matmul"]
    nnforge.compile(model, inputs, target="cuda", dump_ir=tmp_path)
    ptx = (tmp_path / "kernels.ptx").read_text()
    assert ".shared" in ptx and "bar.sync" in ptx


def test_reductions_accumulate_in_registers(tmp_path):
    model, inputs = MODELS["layer_norm"]
    nnforge.compile(model, inputs, target="cuda", dump_ir=tmp_path)
    assert "#gpu.address_space<private>" in (tmp_path / "07-gpu-map-generic.mlir").read_text()
    assert ".local" not in (tmp_path / "kernels.ptx").read_text()  # LLVM made the copies registers


def _shared_memory_kernels(module_text: str) -> int:
    kernel_modules = module_text.split("gpu.module @")[1:]
    return sum("#gpu.address_space<workgroup>" in module for module in kernel_modules)


def test_batch_matmuls_and_linear_layers_take_the_shared_memory_schedule(tmp_path):
    # Batch-first attention: the in-projection is a batch matmul by broadcast
    # weights (one matmul once unbroadcast), the heads' products batch
    # matmuls, the feed-forward layers matmuls: all six take the schedule.
    layer = torch.nn.TransformerEncoderLayer(128, 2, 128, dropout=0.0, batch_first=True).eval()
    nnforge.compile(layer, (torch.randn(4, 64, 128),), target="cuda", dump_ir=tmp_path)
    outlined = (tmp_path / "08-gpu-outline.mlir").read_text()
    assert _shared_memory_kernels(outlined) == 6
    fused = (tmp_path / "02-linalg-fusion.mlir").read_text()
    assert "tensor<64x128x384xf32>" not in fused  # the weights, once per batch (sequence position)


_LAUNCH = """
func.func @double(%buffer: memref<256xf32>) {
  %c1 = arith.constant 1 : index
  %c256 = arith.constant 256 : index
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c256, %sy = %c1, %sz = %c1) {
    %v = memref.load %buffer[%tx] : memref<256xf32>
    %d = arith.addf %v, %v : f32
    memref.store %d, %buffer[%tx] : memref<256xf32>
    gpu.terminator
  }
  return
}
"""


def test_nnforge_opt_runs_the_named_cuda_stages(tmp_path):
    source = tmp_path / "launch.mlir"
    source.write_text(_LAUNCH)
    pipeline = pipelines.wrap(f"{pipelines.CUDA_OUTLINE},{pipelines.cuda_to_nvvm('sm_90', 'isa')}")
    result = subprocess.run([str(nnforge.tool_path("nnforge-opt")), str(source), f"--pass-pipeline={pipeline}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "gpu.binary @double_kernel" in result.stdout and ".target sm_90" in result.stdout
    assert "llvm.call @mgpuStreamCreate" in result.stdout  # the host side, lowered


def test_unknown_chip_is_an_error_not_an_abort():
    with pytest.raises(ValueError, match="unknown CUDA chip 'sm_91'"):
        pipelines.cuda_stages("sm_91")
    model, inputs = MODELS["matmul"]
    with pytest.raises(CompileError, match="unknown CUDA chip 'sm_91'"):
        nnforge.compile(model, inputs, target="cuda", chip="sm_91")


@pytest.mark.skipif(NO_GPU is None, reason="a GPU is present")
def test_running_without_a_gpu_is_a_clear_error(compiled):
    _, _, path = compiled["matmul"]
    with pytest.raises(nnforge.ModelLoadError, match="compiled for CUDA"):
        nnforge.load(path)


@pytest.mark.skipif(NO_GPU is not None, reason=NO_GPU or "")
@pytest.mark.parametrize("name", COMPILED)
def test_runs_on_gpu(compiled, name):
    _, _, path = compiled[name]
    _, inputs = MODELS[name]
    result = nnforge.load(path)(*[i.numpy() for i in inputs])
    np.testing.assert_allclose(result, _expected(name), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(NO_GPU is None, reason="a GPU is present")
def test_loading_without_driver_raises(compiled):
    _, _, path = compiled["matmul"]
    # In a child process: whatever happens there cannot take the test run down.
    code = (
        "import nnforge, sys\n"
        "try:\n    nnforge.load(sys.argv[1])\n"
        "except nnforge.errors.NNForgeError as error:\n    print('raised', error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "raised" in result.stdout and "libcuda.so.1" in result.stdout


INDEX_SWITCH = Path(__file__).parent / "index_switch.mlir"
# What index_switch.mlir's first result is for each index; its second is x * 10.
SWITCH_X = np.array([1.0, -2.0, 3.5, 0.25], np.float32)
SWITCHED = {0: SWITCH_X * 2, 3: SWITCH_X + 1, 1: SWITCH_X - 1, 7: SWITCH_X - 1}


def _check_switch(run) -> None:
    for which, expected in SWITCHED.items():
        switched, later = run(np.array(which, np.int64), SWITCH_X)
        np.testing.assert_array_equal(switched, expected)
        np.testing.assert_array_equal(later, SWITCH_X * 10)


def test_index_switch_keeps_its_result_through_cuda_bufferization():
    # The CUDA target's bufferization, then plain loops on the CPU: upstream's
    # analysis alone let the later op overwrite the switch's result.
    module = ir.Module.parse(INDEX_SWITCH.read_text(), nnforge.context())
    runner = StageRunner()
    with module.context:
        function = entry_function(module)
        signature = signature_of(function)
        function.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        for stage, pipeline in pipelines.stages("linalg", "cuda"):
            runner.run(module, stage, pipeline)
        runner.run(module, "bufferize", pipelines.CUDA_BUFFERIZE)
        assert "scf.index_switch" not in str(module)
        runner.run(module, "llvm", f"convert-linalg-to-loops,{pipelines.WIDEN_BOOLS},{pipelines.LOOPS_TO_LLVM}")
    _check_switch(CompiledModel(build_library(module, in_process=True), signature, runner.times, threads=1))


def test_control_flow_on_the_host_is_refused_by_name():
    # The CUDA target maps linalg ops into kernels only: the conditional
    # (the switch, as scf.if after bufferization) is named, not miscompiled.
    with pytest.raises(CompileError, match="could not map these ops into kernels: .*scf.if"):
        nnforge.compile(INDEX_SWITCH, target="cuda")
