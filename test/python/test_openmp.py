"""Parallel loops on the OpenMP runtime the process has (nnforge.openmp,
cpp/runtime/openmp.c): PyTorch's where torch is imported, one pool of
workers for both and PyTorch's thread count; libiomp5 otherwise; and the
entry points themselves, driven as LLVM's OpenMP lowering calls them.

Nothing here is timed: the worker threads of the process are counted
(/proc/self/task), and which runtime nnforge's runtime is bound to is read
from it (nnforge_openmp_bound).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nnforge
from nnforge import openmp
from nnforge._native import _native_file
from nnforge.errors import CompileError
from nnforge.linking import c_compiler
from nnforge.targets.cpu import openmp_regions

HERE = Path(__file__).parent


class _Parallel(torch.nn.Module):
    """Ops large enough for the optimized code to share among threads."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(torch.tanh(x) * 2, dim=-1)


def _torch_openmp_library() -> str:
    """The path of the OpenMP runtime torch's native code is linked with."""
    torch.softmax(torch.randn(64, 64), -1)
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "omp" in line.split()[-1].rsplit("/", 1)[-1]}
    ours = {str(openmp.openmp_runtime_path())}
    found = sorted(path for path in paths - ours if "libgomp" in path or "libiomp" in path or "libomp" in path)
    assert found, paths
    return found[0]


@pytest.mark.parametrize("runtime", ["pytorch", "libiomp5", "none"])
def test_entry_points_run_regions_schedules_barriers_and_failed_checks(runtime: str, tmp_path: Path) -> None:
    """A C driver calls the __kmpc_* entry points as translated code does:
    every iteration of a static loop runs once for 1-5 threads and 0-13
    iterations, barriers wait for a late thread, a check failing on any
    thread returns its message without leaving the others at a barrier,
    nested regions run, and unsupported argument counts and schedules are
    refused with a message. Unbound, regions run on the calling thread."""
    driver = tmp_path / "driver"
    subprocess.run(
        [c_compiler(), "-O1", "-o", str(driver), str(HERE / "openmp_driver.c"),
         str(_native_file("libNNForgeOpenMPStatic.a")), str(_native_file("libNNForgeRuntimeStatic.a")),
         "-ldl", "-lpthread"],
        check=True,
    )
    library = {"pytorch": _torch_openmp_library, "libiomp5": lambda: str(openmp.openmp_runtime_path()),
               "none": lambda: None}[runtime]()
    result = subprocess.run([str(driver), *([library] if library else [])],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stdout + result.stderr


# What the scripts below share: the worker threads of this process, the
# OpenMP runtime a loaded model's copy of nnforge's runtime is bound to.
_PROBES = """
import ctypes, os, sys
import numpy as np
import nnforge

def threads():
    return len(os.listdir("/proc/self/task"))

def bound(model):
    function = model._keep_alive.nnforge_openmp_bound
    function.restype = ctypes.c_void_p
    return function()

def gomp_parallel(path):
    library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
    return ctypes.cast(library.GOMP_parallel, ctypes.c_void_p).value

def mapped(name):
    with open("/proc/self/maps") as maps:
        return any(line.split()[-1].endswith(name) for line in maps)
"""


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(a model saved with threads=None, the same with threads=3, input and expected output)."""
    folder = tmp_path_factory.mktemp("openmp")
    module, x = _Parallel().eval(), torch.randn(512, 1024)
    default = nnforge.compile(module, (x,)).save(folder / "default.so")
    three = nnforge.compile(module, (x,), threads=3).save(folder / "three.so")
    np.savez(folder / "data.npz", x=x.numpy(), y=module(x).numpy())
    return default, three, folder / "data.npz"


def _run(script: str) -> None:
    result = subprocess.run([sys.executable, "-c", _PROBES + script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_in_a_pytorch_process_models_run_on_pytorchs_workers_and_thread_count(saved_models) -> None:
    """torch imported first: nnforge's loops run on PyTorch's OpenMP runtime
    (no second runtime is loaded, no worker beyond PyTorch's own), with
    torch.get_num_threads() threads, following torch.set_num_threads, unless
    compiled with threads=; also from another Python thread."""
    default, three, data = saved_models
    _run(f"""
import threading
import torch
arrays = np.load({str(data)!r})
x, y = arrays["x"], arrays["y"]
model = nnforge.load({str(default)!r})
assert bound(model) == gomp_parallel(torch._C.__file__), "not bound to PyTorch's OpenMP runtime"
torch.set_num_threads(2)
torch.softmax(torch.from_numpy(x), -1)  # PyTorch's pool: one worker
start = threads()
for _ in range(3):
    np.testing.assert_allclose(model(x), y, rtol=1e-5, atol=1e-6)
assert threads() == start, ("a second pool", start, threads())
assert not mapped({openmp.OPENMP_RUNTIME!r}) and "KMP_BLOCKTIME" not in os.environ
np.testing.assert_allclose(nnforge.load({str(three)!r})(x), y, rtol=1e-5, atol=1e-6)
assert threads() == start + 1, ("threads=3: PyTorch's pool grows to 2 workers", start, threads())
torch.set_num_threads(4)
start = threads()
np.testing.assert_allclose(model(x), y, rtol=1e-5, atol=1e-6)
assert threads() == start + 1, ("torch.set_num_threads(4): 3 workers", start, threads())
results = []
worker = threading.Thread(target=lambda: results.append(model(x)))
worker.start(); worker.join()
np.testing.assert_allclose(results[0], y, rtol=1e-5, atol=1e-6)
""")


def test_without_torch_models_run_on_libiomp5_and_move_to_pytorchs_runtime_once_imported(saved_models) -> None:
    """A saved model runs multi-threaded with numpy alone (libiomp5, loaded
    privately, no environment variable set); once torch is imported, the
    same model moves to PyTorch's runtime."""
    default, three, data = saved_models
    _run(f"""
arrays = np.load({str(data)!r})
x, y = arrays["x"], arrays["y"]
environment = dict(os.environ)
start = threads()
model = nnforge.load({str(three)!r})
np.testing.assert_allclose(model(x), y, rtol=1e-5, atol=1e-6)
assert "torch" not in sys.modules
iomp = {str(openmp.openmp_runtime_path())!r}
assert mapped({openmp.OPENMP_RUNTIME!r}) and bound(model) == gomp_parallel(iomp)
assert threads() >= start + 2, (start, threads())
assert dict(os.environ) == environment
import torch
np.testing.assert_allclose(model(x), y, rtol=1e-5, atol=1e-6)
assert bound(model) == gomp_parallel(torch._C.__file__), "still on libiomp5 after torch was imported"
""")



@pytest.mark.parametrize("first", ["onnxruntime", "torch"])
def test_an_onnxruntime_session_in_the_process_leaves_nnforge_on_pytorchs_runtime(saved_models, first: str) -> None:
    """onnxruntime (imported before or after torch) and a session of it run
    between nnforge's and PyTorch's calls: results unchanged, nnforge still
    bound to PyTorch's OpenMP runtime, no other OpenMP runtime mapped (the
    onnxruntime wheel has its own thread pool), and no threads added after
    the first calls of each."""
    default, _, data = saved_models
    onnx_path = default.parent / "parallel.onnx"
    if not onnx_path.exists():
        torch.onnx.export(_Parallel().eval(), (torch.randn(512, 1024),), str(onnx_path), input_names=["x"],
                          dynamo=False)
    second = "torch" if first == "onnxruntime" else "onnxruntime"
    _run(f"""
import {first}
import {second}
arrays = np.load({str(data)!r})
x, y = arrays["x"], arrays["y"]
torch.set_num_threads(2)
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = 2
session = onnxruntime.InferenceSession({str(onnx_path)!r}, options, providers=["CPUExecutionProvider"])
model = nnforge.load({str(default)!r})
module = lambda t: torch.softmax(torch.tanh(t) * 2, dim=-1)
def round():
    np.testing.assert_allclose(model(x), y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(session.run(None, {{"x": x}})[0], y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), y, rtol=1e-5, atol=1e-6)
round()
start = threads()
for _ in range(5):
    round()
assert threads() == start, ("threads added", start, threads())
assert bound(model) == gomp_parallel(torch._C.__file__), "not bound to PyTorch's OpenMP runtime"
with open("/proc/self/maps") as maps:
    runtimes = {{line.split()[-1].rsplit("/", 1)[-1] for line in maps
                 if any(n in line.split()[-1].rsplit("/", 1)[-1] for n in ("libgomp", "libiomp", "libomp"))}}
assert len(runtimes) == 1 and next(iter(runtimes)).startswith("libgomp"), runtimes
""")

def test_sequential_models_need_no_openmp_runtime(tmp_path: Path) -> None:
    import ctypes

    module, x = _Parallel().eval(), torch.randn(512, 1024)
    sequential = nnforge.compile(module, (x,), threads=1)
    assert sequential._openmp is None
    library = ctypes.CDLL(str(sequential.save(tmp_path / "sequential.so")))
    assert not hasattr(library, openmp.BIND_SYMBOL) and not hasattr(library, "nnforge_kmpc_fork_call")
    assert nnforge.load(tmp_path / "sequential.so")._openmp is None


_REGION = """
llvm.func @f(%n: i64, %x: !llvm.ptr) {
  %zero = llvm.mlir.constant(0 : i64) : i64
  %one = llvm.mlir.constant(1 : i64) : i64
  omp.parallel {
    omp.wsloop {
      omp.loop_nest (%i) : i64 = (%zero) to (%n) step (%one) {
        omp.yield
      }
    }
    omp.terminator
  }
  llvm.return
}
"""


def test_regions_drop_the_barrier_before_their_end_and_unsupported_constructs_are_refused() -> None:
    from mlir import ir

    from nnforge._native import context

    module = ir.Module.parse(_REGION, context())
    openmp_regions.finish(module)
    assert "omp.wsloop nowait" in str(module)
    for construct in ("omp.wsloop schedule(dynamic)", "omp.wsloop schedule(static = %one : i64)"):
        module = ir.Module.parse(_REGION.replace("omp.wsloop", construct), context())
        with pytest.raises(CompileError, match="OpenMP construct nnforge's runtime does not run: omp.wsloop"):
            openmp_regions.finish(module)
    module = ir.Module.parse(_REGION.replace("omp.parallel", "omp.parallel proc_bind(close)"), context())
    with pytest.raises(CompileError, match="omp.parallel with attributes proc_bind_kind"):
        openmp_regions.finish(module)
