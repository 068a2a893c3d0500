"""What a benchmark ran on: the CPU, its ISA extensions and cores, the software versions, and the
environment variables that change how thread pools behave (the benchmark sets none)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

# ISA extensions that decide which kernels the backends can use.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
# Distributions whose versions are recorded ("xtc-mlir-python-bindings" is MLIR's).
PACKAGES = {"nnforge": "nnforge", "torch": "torch", "onnxruntime": "onnxruntime", "onnx": "onnx",
            "mlir": "xtc-mlir-python-bindings", "torch-mlir": "torch-mlir", "numpy": "numpy",
            "intel-openmp": "intel-openmp"}
# Environment variables that tune OpenMP runtimes or thread pools: a benchmark
# of the backends' defaults runs without any of them.
THREAD_VARIABLE_PREFIXES = ("OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "ORT_", "TORCHINDUCTOR_")
# OpenBLAS's kernel choice and cache size, which some environments set for
# the machine: OpenBLAS reads them when it loads and, forcing an older core's
# kernel (CORETYPE) or a smaller blocking (L2_SIZE), runs slower than its own
# choice from the CPU. Only numpy's OpenBLAS reads them; the benchmark runs
# numpy's sgemm (the BLAS ceiling) without them rather than refusing them.
OPENBLAS_KERNEL_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def thread_variables() -> dict[str, str]:
    """The environment variables set here that tune thread pools."""
    return {name: value for name, value in os.environ.items() if name.startswith(THREAD_VARIABLE_PREFIXES)}


def blas_environment() -> dict[str, str]:
    """This process's environment without OPENBLAS_KERNEL_VARIABLES: for the
    process that times OpenBLAS at its own choice of kernel."""
    return {name: value for name, value in os.environ.items() if name not in OPENBLAS_KERNEL_VARIABLES}


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _cpu_name(cpuinfo: dict[str, str]) -> str:
    """The CPU's model name, with LLVM's name of its microarchitecture and its family and model numbers:
    a virtual machine may report only "AMD EPYC", the same for a Zen 3, 4 or 5."""
    from nnforge.targets.cpu.host import host_cpu

    name = cpuinfo.get("model name", platform.processor() or platform.machine())
    numbers = ", ".join(f"{field} {cpuinfo[field]}" for field in ("cpu family", "model") if field in cpuinfo)
    return f"{name} ({', '.join(filter(None, [host_cpu().name, numbers]))})"


def describe() -> dict:
    """The machine and software, as recorded with every result."""
    cpuinfo = _cpuinfo()
    flags = set(cpuinfo.get("flags", "").split())
    versions = {}
    for name, distribution in PACKAGES.items():
        try:
            versions[name] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": _cpu_name(cpuinfo),
        "isa": [flag for flag in ISA_FLAGS if flag in flags],
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cores_per_socket": int(cpuinfo["cpu cores"]) if "cpu cores" in cpuinfo else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "thread_variables": thread_variables(),
    }
