"""`nnforge.compile`: a model in, native code out, as a callable `CompiledModel`.

A PyTorch module or ONNX model is imported (`nnforge.importers`), lowered
by the named pipelines of `nnforge.pipelines` to the LLVM dialect, and
compiled for the host CPU by MLIR's ExecutionEngine (LLVM -O3, host
features). The code is called through `nnforge.runtime`, the same way a
saved shared library is.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import io
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from mlir import ir, passmanager
from mlir.execution_engine import ExecutionEngine

from nnforge import _process, artifact, codegen, pipelines
from nnforge._native import _native_file
from nnforge._native import context as new_context
from nnforge.errors import ArgumentError, CompileError, ModelLoadError, SaveError
from nnforge.runtime import SIGNATURE_SYMBOL, Executable, Signature, TensorSpec, openmp_runtime

log = logging.getLogger("nnforge.compiler")

TARGETS = ("cpu", "cuda")
# The import levels `compile` lowers from ("torch" is text, outside upstream MLIR).
COMPILED_LEVELS = ("tosa", "linalg", "nnf")


@functools.cache
def _load_torch_mlir_first() -> None:
    """Loads torch-mlir's native libraries, if installed, before LLVM code generation.

    torch-mlir bundles its own LLVM. Once this process has generated code
    with the `mlir` package's LLVM, loading torch-mlir's copy registers LLVM
    command-line options a second time and LLVM aborts the process
    ("Option 'print-inst-addrs' registered more than once"); in the other
    order both coexist. Costs ~0.1 s, once.
    """
    if importlib.util.find_spec("torch_mlir") is not None:
        importlib.import_module("torch_mlir.ir")


def _is_torch_module(model: Any) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(model, torch.nn.Module)


def _is_onnx_model(model: Any) -> bool:
    if isinstance(model, (str, os.PathLike)):
        return Path(model).suffix == ".onnx"
    return type(model).__name__ == "ModelProto"


def _parse_mlir(source: str | bytes, what: str) -> ir.Module:
    context = new_context()
    try:
        return ir.Module.parse(source, context)
    except ir.MLIRError as error:
        raise CompileError(f"{what} does not parse: {error}") from None


def import_model(
    model: Any, example_inputs: Any = None, *, level: str | None = None, dynamic_shapes: Any = None
) -> tuple[ir.Module, str, tuple[list[str], list[str]] | None]:
    """The model as an MLIR module in a fresh nnforge context.

    Returns (module, its level, (input names, output names) when the model
    has them). An
    `mlir.ir.Module` is copied, never modified.
    """
    from nnforge import importers

    if _is_torch_module(model):
        if example_inputs is None:
            raise ModelLoadError("compiling a PyTorch module needs example_inputs")
        level = level or "linalg"
        module = importers.import_torch(model, example_inputs, dynamic_shapes=dynamic_shapes, level=level)
        return module, level, None
    if _is_onnx_model(model):
        level = level or "linalg"
        module = importers.import_onnx(model, level=level)
        return module, level, importers.onnx_io_names(model)
    if isinstance(model, ir.Module):
        module = _parse_mlir(str(model), "the MLIR module")
    elif isinstance(model, (str, os.PathLike)) and Path(model).suffix in (".mlir", ".mlirbc"):
        path = Path(model)
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such file")
        module = _parse_mlir(path.read_bytes(), str(path))
    else:
        raise ModelLoadError(
            "nnforge.compile takes a torch.nn.Module, an ONNX model (.onnx path or "
            f"onnx.ModelProto), an mlir.ir.Module or a .mlir file, not {type(model).__name__}"
        )
    if level is None:
        level = "tosa" if _has_dialect(module, "tosa") else "linalg"
    return module, level, None


def _has_dialect(module: ir.Module, dialect: str) -> bool:
    from nnforge.importers.handover import walk_ops

    return any(op.name.startswith(dialect + ".") for op in walk_ops(module.operation))


def entry_function(module: ir.Module) -> ir.Operation:
    """The function to compile: the only public one with a body, or `main`."""
    functions = [
        op.operation
        for op in module.body.operations
        if op.operation.name == "func.func"
        and len(op.operation.regions[0].blocks) > 0
        and "sym_visibility" not in op.operation.attributes
    ]
    if len(functions) == 1:
        return functions[0]
    named = [f for f in functions if ir.StringAttr(f.attributes["sym_name"]).value == "main"]
    if named:
        return named[0]
    names = [ir.StringAttr(f.attributes["sym_name"]).value for f in functions]
    raise CompileError(
        f"cannot tell which function to compile: public functions {names or 'none'} "
        "(make one `main`, or the others private)"
    )


def _has_identity_layout(memref: ir.MemRefType) -> bool:
    layout = memref.layout
    return isinstance(layout, ir.AffineMapAttr) and ir.AffineMapAttr(layout).value == ir.AffineMap.get_identity(memref.rank)


def _tensor_spec(name: str, type_: ir.Type, where: str) -> TensorSpec:
    # A bufferized module (see nnforge.importers.levels) passes identity-layout
    # memrefs: the same calling convention as tensors after bufferization.
    if isinstance(type_, ir.RankedTensorType):
        shaped = ir.RankedTensorType(type_)
    elif isinstance(type_, ir.MemRefType) and _has_identity_layout(ir.MemRefType(type_)):
        shaped = ir.MemRefType(type_)
    else:
        raise CompileError(
            f"{where} has type {type_}: only ranked tensors and identity-layout memrefs are supported"
        )
    shape = tuple(None if shaped.is_dynamic_dim(i) else shaped.shape[i] for i in range(shaped.rank))
    return TensorSpec(name, str(shaped.element_type), shape)


def signature_of(
    function: ir.Operation, names: tuple[list[str], list[str]] | None = None
) -> Signature:
    """The inputs and outputs of a tensor-level function, named after `names` if given."""
    entry = ir.StringAttr(function.attributes["sym_name"]).value
    function_type = ir.FunctionType(ir.TypeAttr(function.attributes["function_type"]).value)
    input_names, output_names = names or ([], [])
    if len(input_names) != len(function_type.inputs):
        input_names = [f"input{i}" for i in range(len(function_type.inputs))]
    if len(output_names) != len(function_type.results):
        output_names = [f"output{i}" for i in range(len(function_type.results))]
    inputs = tuple(
        _tensor_spec(name, t, f"input {i} of @{entry}")
        for i, (name, t) in enumerate(zip(input_names, function_type.inputs))
    )
    outputs = tuple(
        _tensor_spec(name, t, f"result {i} of @{entry}")
        for i, (name, t) in enumerate(zip(output_names, function_type.results))
    )
    return Signature(entry, inputs, outputs)


def _mlir_string(text: str) -> str:
    """`text` as an MLIR string literal body (hex-escaping all but the plain)."""
    plain = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.:,[]{}")
    return "".join(c if c in plain else "".join(f"\\{b:02X}" for b in c.encode()) for c in text)


def embed_string(module: ir.Module, symbol: str, text: str) -> None:
    """Adds `text` as a NUL-terminated global string `symbol` to an LLVM-dialect module."""
    size = len(text.encode()) + 1
    with module.context:
        holder = ir.Module.parse(
            f'llvm.mlir.global external constant @{symbol}("{_mlir_string(text)}\\00")'
            f" {{addr_space = 0 : i32}} : !llvm.array<{size} x i8>"
        )
        holder.body.operations[0].move_before(module.body.operations[0])


class StageRunner:
    """Runs pipeline stages on a module, verifying first, dumping and timing."""

    def __init__(self, dump_ir: str | os.PathLike | None = None, timing: bool = False):
        dump_ir = dump_ir or os.environ.get("NNFORGE_DUMP_IR")
        self.dump_dir = Path(dump_ir) if dump_ir else None
        self.timing = timing
        self.times: dict[str, float] = {}
        self._count = 0
        if self.dump_dir:
            if self.dump_dir.exists() and not self.dump_dir.is_dir():
                raise SaveError(f"cannot dump IR into {self.dump_dir}: it is a file, not a folder")
            try:
                self.dump_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise SaveError(f"cannot dump IR into {self.dump_dir}: {error.strerror or error}") from None

    def dump(self, module: ir.Module, name: str) -> None:
        if self.dump_dir:
            path = self.dump_dir / f"{self._count:02d}-{name}.mlir"
            try:
                path.write_text(str(module))
            except OSError as error:
                raise SaveError(f"cannot write {path}: {error.strerror or error}") from None
            self._count += 1

    def run(self, module: ir.Module, name: str, pipeline: str) -> None:
        with module.context:
            manager = passmanager.PassManager.parse(pipelines.wrap(pipeline))
            if self.timing:
                manager.enable_timing()
            start = time.perf_counter()
            try:
                manager.run(module.operation)
            except ir.MLIRError as error:
                raise CompileError(f"stage {name} failed: {error}") from None
            self.times[name] = time.perf_counter() - start
        log.info("stage %s: %.3f s", name, self.times[name])
        self.dump(module, name)


def verify(module: ir.Module, what: str) -> None:
    """Raises CompileError unless `module` verifies (never transform unverified IR)."""
    try:
        module.operation.verify()
    except ir.MLIRError as error:
        raise CompileError(f"{what} does not verify: {error}") from None


def _system_library(soname: str) -> str:
    """The path of a system shared library, loaded into this process if it was not."""
    ctypes.CDLL(soname)
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if Path(path).name == soname:
                return path
    raise CompileError(f"{soname} could not be loaded")


def c_compiler() -> str:
    """The C compiler driver that links saved models into shared libraries."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise CompileError("saving a model needs a C compiler driver (cc) to link it")
    return compiler


def runtime_archive() -> list[str]:
    """Linker arguments adding all of nnforge's runtime to a saved model:
    the generated code calls some of it, `nnforge.load` the rest. The
    model's calls bind to its own copy (-Bsymbolic), not to another loaded
    earlier (the JIT's): the failed-check hook and the guarded call must
    share one copy's thread-local state."""
    return [
        "-Wl,-Bsymbolic",
        "-Wl,--whole-archive", str(_native_file("libNNForgeRuntimeStatic.a")), "-Wl,--no-whole-archive",
    ]


def _runtime_libraries(threads: int) -> list[str]:
    """Libraries JIT-compiled code may call: libm (erff, expf, ...), libgcc's
    soft-float conversions (f64/f32 to f16 and bf16), nnforge's runtime
    (`memrefCopy`), and for multi-threaded code the OpenMP runtime.

    They are named explicitly: once torch-mlir (which bundles another LLVM)
    has run in this process, the JIT's search of the process's own symbols
    is not to be relied on, and a fresh process may not have libgcc_s.
    """
    libraries = [
        _system_library("libm.so.6"),
        _system_library("libgcc_s.so.1"),
        str(_native_file("libNNForgeRuntime.so")),
    ]
    if threads != 1:
        libraries.append(str(_openmp_runtime()))
    return libraries


def _openmp_runtime() -> Path:
    try:
        return openmp_runtime()
    except ModelLoadError as error:
        raise CompileError(f"{error} (or compile with threads=1)") from None


class CompiledModel(Executable):
    """A model compiled for the host CPU: call it with numpy arrays or torch tensors.

    `signature` describes its inputs and outputs, `compile_times` the
    seconds spent per stage, `save(path)` writes a shared library that
    `nnforge.load` runs without the compiler.
    """

    def __init__(
        self, engine: ExecutionEngine, signature: Signature, compile_times: dict[str, float], threads: int
    ):
        # The packed wrapper of the C-interface function
        # (`_mlir__mlir_ciface_<entry>`: `raw_lookup` prefixes "_mlir_").
        address = engine.raw_lookup(f"_mlir_ciface_{signature.entry}")
        if not address:
            raise CompileError(f"compiled code has no entry point for @{signature.entry}")
        # The same library the JIT resolves nnforge_check_failed in.
        runtime = ctypes.CDLL(str(_native_file("libNNForgeRuntime.so")))
        super().__init__(address, runtime, signature, keep_alive=engine)
        self.compile_times = compile_times
        self.threads = threads

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the compiled code as a shared library; returns its path."""
        path = artifact.check_destination(path)
        compiler = c_compiler()
        with tempfile.TemporaryDirectory(prefix="nnforge-save-") as scratch:
            objects = Path(scratch) / "model.o"
            self._keep_alive.dump_to_object_file(str(objects))
            linked = Path(scratch) / path.name
            # The OpenMP runtime is needed by name; `nnforge.load` loads it first.
            openmp = [str(_openmp_runtime())] if self.threads != 1 else []
            result = _process.run(
                [compiler, "-shared", "-o", str(linked), str(objects), *runtime_archive(), *openmp, "-lm"],
                f"linking {path}",
            )
            if result.returncode != 0:
                raise CompileError(f"linking {path} failed: {result.stderr.strip()}")
            return artifact.install(linked, path)


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
        from nnforge import gpu

        return gpu.save_cuda_library(self.module, self.signature, path)[0]

    def __call__(self, *inputs: Any) -> Any:
        if self._loaded is None:
            from nnforge.runtime import load

            self._folder = tempfile.TemporaryDirectory(prefix="nnforge-cuda-")
            self._loaded = load(self.save(Path(self._folder.name) / "model.so"))
        return self._loaded(*inputs)


def check_only_llvm(module: ir.Module, also_allowed: tuple[str, ...] = ()) -> None:
    """Raises CompileError naming the ops the lowering left outside the LLVM
    dialect (and the op names in `also_allowed`)."""
    from nnforge.importers.handover import walk_ops

    allowed = ("llvm.", *also_allowed)
    left = sorted({op.name for op in walk_ops(module.operation) if not op.name.startswith(allowed)})
    if left:
        raise CompileError(f"the lowering to LLVM left ops it could not convert: {', '.join(left)}")


def prepare(
    model: Any,
    example_inputs: Any = None,
    *,
    level: str | None = None,
    dynamic_shapes: Any = None,
    runner: StageRunner,
) -> tuple[ir.Module, str, Signature]:
    """Imports `model` and readies it for lowering: (module, level, signature).

    The module is verified, dumped as the first stage, and its entry
    function gets MLIR's C interface (what `nnforge.runtime` calls).
    """
    start = time.perf_counter()
    module, level, names = import_model(
        model, example_inputs, level=level, dynamic_shapes=dynamic_shapes
    )
    runner.times["import"] = time.perf_counter() - start
    verify(module, "the module to compile")
    runner.dump(module, f"input-{level}")
    with module.context:
        function = entry_function(module)
        signature = signature_of(function, names)
        function.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        if _takes_buffers(function):
            level = pipelines.BUFFERS_LEVEL
    return module, level, signature


def _takes_buffers(function: ir.Operation) -> bool:
    """Whether `function` is already bufferized (memrefs at its boundary)."""
    function_type = ir.FunctionType(ir.TypeAttr(function.attributes["function_type"]).value)
    return any(isinstance(t, ir.MemRefType) for t in [*function_type.inputs, *function_type.results])


def _lower_optimized_or_naive(module: ir.Module, level: str, runner: StageRunner, threads: int) -> ir.Module:
    """Lowers with the optimized code generation, or, where it fails, the naive one.

    The schedules are heuristics over op shapes; a model they cannot handle
    still compiles (with a warning naming the failure), just more slowly.
    """
    snapshot = io.BytesIO()
    module.operation.write_bytecode(snapshot)
    try:
        codegen.lower_to_llvm(module, level, runner, threads)
        return module
    except Exception as error:  # a schedule bug must not cost the user the model
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        log.warning("optimized code generation failed (%s: %s); using the naive lowering",
                    type(error).__name__, reason)
    naive = ir.Module.parse(snapshot.getvalue(), module.context)
    for name, pipeline in pipelines.stages(level):
        runner.run(naive, name, pipeline)
    return naive


def compile(
    model: Any,
    example_inputs: Any = None,
    *,
    target: str = "cpu",
    chip: str = "sm_90",
    level: str | None = None,
    dynamic_shapes: Any = None,
    optimize: bool = True,
    threads: int | None = None,
    dump_ir: str | os.PathLike | None = None,
    timing: bool = False,
) -> CompiledModel | CudaModel:
    """Compiles a model for `target` ("cpu" or "cuda") and returns it as a callable.

    `model`: a `torch.nn.Module` (with `example_inputs`, and `dynamic_shapes`
    as for `torch.export`), an ONNX model (path or `onnx.ModelProto`), an
    `mlir.ir.Module` or a `.mlir` file. `level`: where import stops
    ("tosa", "linalg", "nnf"; default "linalg"). `chip`: the CUDA
    architecture for target "cuda". `optimize=False` keeps the naive CPU
    lowering (scalar loops; the baseline the optimized code generation of
    `nnforge.codegen` is measured against). `threads`: how many threads the
    optimized CPU code uses (None: all cores, or OMP_NUM_THREADS; 1: plain
    sequential code, no OpenMP runtime needed). `dump_ir` (or the environment variable
    NNFORGE_DUMP_IR) names a folder receiving the IR after each stage;
    `timing` prints per-pass times to stderr.
    """
    if level is not None and level not in COMPILED_LEVELS:
        raise ArgumentError(f"unknown level {level!r} to compile from: expected one of {', '.join(COMPILED_LEVELS)}")
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r}: expected one of {', '.join(TARGETS)}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise CompileError(f"threads must be a positive integer or None, not {threads!r}")
    # 0: as many as the OpenMP runtime decides; the naive lowering is sequential.
    threads = (threads if threads is not None else 0) if optimize else 1
    if target == "cuda":
        from nnforge import gpu

        gpu.check_chip(chip)
    _load_torch_mlir_first()
    runner = StageRunner(dump_ir, timing)
    module, level, signature = prepare(
        model, example_inputs, level=level, dynamic_shapes=dynamic_shapes, runner=runner
    )
    if target == "cuda" and level == pipelines.BUFFERS_LEVEL:
        raise CompileError(
            "the CUDA pipeline starts from linalg on tensors, and this model comes bufferized: it holds "
            "ops (sort, top-k, cumulative sums, scatter) that torch-mlir lowers to loops on buffers"
        )
    if target == "cuda":
        # Import level to fused linalg, then the GPU mapping and lowering.
        for name, pipeline in pipelines.stages(level, target):
            runner.run(module, name, pipeline)
        gpu.lower_to_cuda(module, runner, chip)
        gpu.check_only_llvm_host(module)
        return CudaModel(module, signature, runner.times)

    if optimize:
        module = _lower_optimized_or_naive(module, level, runner, threads)
    else:
        for name, pipeline in pipelines.stages(level):
            runner.run(module, name, pipeline)
    # OpenMP ops are translated to LLVM IR (runtime calls) alongside the LLVM dialect.
    check_only_llvm(module, also_allowed=("omp.",) if threads != 1 else ())
    embed_string(module, SIGNATURE_SYMBOL, signature.to_json())
    start = time.perf_counter()
    try:
        engine = ExecutionEngine(
            module, opt_level=3, shared_libs=_runtime_libraries(threads), enable_pic=True
        )
    except RuntimeError as error:
        raise CompileError(f"LLVM code generation failed: {error}") from None
    compiled = CompiledModel(engine, signature, runner.times, threads)
    runner.times["llvm"] = time.perf_counter() - start
    return compiled
