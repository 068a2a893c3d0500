"""`nnforge.compile`: a model in, native code out, as a callable model.

A PyTorch module or ONNX model is imported (`nnforge.importers`), verified
and given a C interface here; the target (`nnforge.targets`) lowers it to
the LLVM dialect through the named pipelines of `nnforge.pipelines` and its
own code generation, and builds the callable model. The code is called
through `nnforge.runtime`, the same way a saved shared library is.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from mlir import ir

from nnforge import isolation, pipelines, targets
from nnforge._native import context as new_context
from nnforge.entry import entry_function, mark_inputs_read_only, signature_of, takes_buffers, with_unsigned_types
from nnforge.errors import ArgumentError, CompileError, ModelLoadError
from nnforge.importers import jax_frontend, nnef_frontend, onnx_frontend, stablehlo_frontend
from nnforge.runtime import Signature
from nnforge.stages import StageRunner, verify
from nnforge.targets.interface import Model, Target

# The import levels `compile` lowers from ("torch" is text, outside upstream MLIR).
COMPILED_LEVELS = ("tosa", "linalg", "nnf")
# What `optimize` takes besides True and False: the affine (polyhedral) generator.
OPTIMIZE_GENERATORS = ("affine",)


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
    # A torch module means torch is imported already: importing it here
    # (seconds) for a model of another kind would be wasted.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _is_onnx_model(model: Any) -> bool:
    if isinstance(model, (str, os.PathLike)):
        return Path(model).suffix == ".onnx"
    return type(model).__name__ == "ModelProto"


def _check_parse_in_child(path: Path, what: str) -> None:
    """Parses the file at `path` with nnforge-opt in a child process first:
    upstream parsers abort on some malformed text (`dimensions = [nan]` in
    linalg.broadcast), which in-process would end the caller's process.
    Raises CompileError if the parser or a verifier crashes (nnforge-opt
    reports it and exits 1); parse errors are left to the in-process parse,
    which words them."""
    from nnforge import _process
    from nnforge._native import tool_path

    try:
        child = _process.run([str(tool_path("nnforge-opt")), str(path), "-o", os.devnull], f"parsing {what}")
    except CompileError as error:
        raise CompileError(f"{what} does not parse: {error}") from None
    crash = _process.tool_crash(child.stderr)
    if crash:
        raise CompileError(f"{what} does not parse: {crash}")


def _parse_module_copy(model: ir.Module) -> ir.Module:
    """A copy of a caller's module in a fresh nnforge context, parsed (and
    verified) in a child process first: a module built or edited through the
    Python bindings was never verified, and upstream verifiers abort on some
    ops (a convolution's dilation of 2**63 - 1). Printed as it is, without
    the printer's own (in-process) verification."""
    text = model.operation.get_asm(assume_verified=True)
    with tempfile.TemporaryDirectory(prefix="nnforge-module-") as folder:
        path = Path(folder) / "module.mlir"
        path.write_text(text)
        _check_parse_in_child(path, "the MLIR module")
    return _parse_mlir(text, "the MLIR module")


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
    if nnef_frontend.is_nnef(model):
        level = level or "linalg"
        module = importers.import_nnef(model, level=level)
        return module, level, nnef_frontend.io_names(model)
    if stablehlo_frontend.is_exported(model) or _is_stablehlo_file(model):
        level = level or "linalg"
        if level not in ("tosa", "linalg", "nnf"):
            raise ArgumentError(f"level {level} does not apply to StableHLO models (tosa, linalg, nnf)")
        module = importers.import_stablehlo(model, level=level)
        with module.context:
            names = stablehlo_frontend.io_names(entry_function(module))
        return module, level, names
    if isinstance(model, ir.Module):
        module = _parse_module_copy(model)
    elif isinstance(model, (str, os.PathLike)) and Path(model).suffix in (".mlir", ".mlirbc"):
        path = Path(model)
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such file")
        _check_parse_in_child(path, str(path))
        module = _parse_mlir(path.read_bytes(), str(path))
    else:
        raise ModelLoadError(
            "nnforge.compile takes a torch.nn.Module, an ONNX model (.onnx path or "
            "onnx.ModelProto), an NNEF model (.nnef), a jax.jit-wrapped function or jax.export.Exported, an "
            f"mlir.ir.Module or a .mlir/.mlirbc file (StableHLO too), not {type(model).__name__}"
        )
    if level is None:
        level = "tosa" if _has_dialect(module, "tosa") else "linalg"
    return module, level, None


def _is_stablehlo_file(model: Any) -> bool:
    """Whether `model` names a .mlir/.mlirbc file holding StableHLO."""
    if not isinstance(model, (str, os.PathLike)) or Path(model).suffix not in stablehlo_frontend.SUFFIXES:
        return False
    path = Path(model)
    return path.is_file() and stablehlo_frontend.looks_like_stablehlo(path.read_bytes())


def _is_user_ir(model: Any) -> bool:
    """Whether `model` is MLIR that none of nnforge's importers produced: an
    `mlir.ir.Module`, or a .mlir/.mlirbc file that is not StableHLO."""
    if isinstance(model, ir.Module):
        return True
    return (isinstance(model, (str, os.PathLike)) and Path(model).suffix in (".mlir", ".mlirbc")
            and not _is_stablehlo_file(model))


def _has_dialect(module: ir.Module, dialect: str) -> bool:
    from nnforge.importers.handover import walk_ops

    return any(op.name.startswith(dialect + ".") for op in walk_ops(module.operation))


def _check_dim_indices(module: ir.Module) -> None:
    """CompileError for a tensor.dim/memref.dim whose constant index is not
    a dimension of its operand: valid IR that upstream's folders assert on
    (in this process)."""
    from nnforge.importers.handover import walk_ops

    for op in walk_ops(module.operation):
        if op.name not in ("tensor.dim", "memref.dim") or len(op.operands) != 2:
            continue
        owner = op.operands[1].owner
        if not isinstance(owner, ir.Operation) and hasattr(owner, "operation"):
            owner = owner.operation
        if not isinstance(owner, ir.Operation) or owner.name != "arith.constant":
            continue
        try:
            shaped = ir.ShapedType(op.operands[0].type)
            index = ir.IntegerAttr(owner.attributes["value"]).value
        except (ValueError, KeyError):
            continue
        if not shaped.has_rank:
            continue
        rank = shaped.rank
        if not 0 <= index < rank:
            raise CompileError(f"{op.name} at {op.location} takes dimension {index} of a rank-{rank} value: "
                               "out of range")


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
    with runner.stage("import"):
        module, level, names = import_model(model, example_inputs, level=level, dynamic_shapes=dynamic_shapes)
    verify(module, "the module to compile")
    _check_dim_indices(module)
    runner.dump(module, f"input-{level}")
    with module.context:
        function = entry_function(module)
        signature = signature_of(function, names)
        if _is_onnx_model(model):
            signature = with_unsigned_types(signature, *onnx_frontend.unsigned_io_types(model))
        function.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        mark_inputs_read_only(function)
        if takes_buffers(function):
            level = pipelines.BUFFERS_LEVEL
    return module, level, signature


def compile(
    model: Any,
    example_inputs: Any = None,
    *,
    target: str = "cpu",
    chip: str = "sm_90",
    level: str | None = None,
    dynamic_shapes: Any = None,
    optimize: bool | str = True,
    threads: int | None = None,
    dump_ir: str | os.PathLike | None = None,
    timing: bool = False,
    verbose: bool | None = None,
    ranks: int = 1,
    sharding: Any = "auto",
) -> Model:
    """Compiles a model for `target` and returns it as a callable.

    `target`: "cpu" (this machine), "cpu:<name>" (a CPU named as LLVM names
    it, e.g. "cpu:znver4", "cpu:skylake-avx512", "cpu:x86-64-v3": code
    sized and generated for it, in a shared library) or "cuda".

    `model`: a `torch.nn.Module` (with `example_inputs`, and `dynamic_shapes`
    as for `torch.export`), an ONNX model (path or `onnx.ModelProto`), a
    `jax.jit`-wrapped function (with `example_inputs`: its positional
    arguments, arrays or `jax.ShapeDtypeStruct`s, symbolic dimensions
    included) or a `jax.export.Exported` (both give a `JaxModel`, called with
    the function's pytrees), an `mlir.ir.Module` or a `.mlir`/`.mlirbc` file
    (StableHLO too). `level`: where import stops
    ("tosa", "linalg", "nnf"; default "linalg"). `chip`: the CUDA
    architecture for target "cuda". `optimize=False` keeps the naive CPU
    lowering (scalar loops; the baseline the optimized code generation of
    `nnforge.targets.cpu.codegen` is measured against); `optimize="affine"`
    generates the CPU code with MLIR's affine (polyhedral) passes instead of
    nnforge's schedules (`nnforge.targets.cpu.affine`, docs/affine.md).
    `threads`: how many threads the optimized CPU code uses (None:
    PyTorch's count where torch is imported, else all cores or OMP_NUM_THREADS; 1: plain sequential code, no OpenMP
    runtime needed; see docs/performance.md). `dump_ir` (or the environment variable
    NNFORGE_DUMP_IR) names a folder receiving the IR after each stage;
    `timing` prints per-pass times to stderr. A compilation running longer
    than two seconds reports its stages on stderr as they happen when stderr
    is an interactive terminal (`verbose=None`), always (`True`) or never
    (`False`). A model compiled for this machine's CPU has
    `profile(*inputs)`: it is built again with timers around each dispatch
    region and tells where the time of a call goes (docs/profiling.md).

    `ranks`: how many MPI ranks (processes, on one machine or several) the
    model is split over (tensor parallelism; `nnforge.distributed`, needs
    `pip install 'nnforge[distributed]'`): a PyTorch module on target "cpu".
    `sharding`: which parameters are split, "auto" (consecutive linear
    layers Megatron-style, the first by output features, the second by
    input features) or {parameter name: axis}. The result runs inside an
    MPI job of `ranks` processes (`mpiexec -n N python app.py`; `nnforge run
    --ranks N model.so`); see docs/distributed.md.
    """
    if not isinstance(ranks, int) or isinstance(ranks, bool) or ranks < 1:
        raise ArgumentError(f"ranks must be a positive integer, not {ranks!r}")
    # The target's options are checked before the (slow) import.
    chosen = _checked_target(target, level, optimize=optimize, threads=threads, chip=chip)
    if ranks > 1:
        return _compile_sharded(model, example_inputs, ranks, sharding, target, chosen,
                                StageRunner(dump_ir, timing, verbose))
    exported = None
    if jax_frontend.is_jax_function(model) or stablehlo_frontend.is_exported(model):
        model = exported = jax_frontend.export(model, example_inputs)
    built = _build(chosen, model, example_inputs, level=level, dynamic_shapes=dynamic_shapes, verbose=verbose,
                   dump_ir=dump_ir, timing=timing)
    if hasattr(built, "instrumented"):
        built.instrumented = functools.partial(
            compile_profiled, model, example_inputs, target=target, level=level, dynamic_shapes=dynamic_shapes,
            optimize=optimize, threads=threads, verbose=verbose,
        )
        built.description = _describe(model)
    return jax_frontend.JaxModel(built, exported) if exported is not None else built


def compile_profiled(
    model: Any,
    example_inputs: Any = None,
    *,
    target: str = "cpu",
    level: str | None = None,
    dynamic_shapes: Any = None,
    optimize: bool | str = True,
    threads: int | None = None,
    verbose: bool | None = None,
) -> Model:
    """`compile` with timers around each dispatch region, for this machine's
    CPU: a `ProfiledModel`, whose `measure` says where the time goes (what
    `nnforge profile` and a compiled model's `profile` run). ProfileError for
    a target without timers (cuda, a named CPU)."""
    chosen = _checked_target(target, level, optimize=optimize, threads=threads, chip="sm_90", profile=True)
    profiled = _build(chosen, model, example_inputs, level=level, dynamic_shapes=dynamic_shapes, verbose=verbose)
    profiled.description = _describe(model)
    return profiled


def _checked_target(target: str, level: str | None, **options: Any) -> Target:
    """The target `compile` builds for, its options and `level` checked."""
    if level is not None and level not in COMPILED_LEVELS:
        raise ArgumentError(f"unknown level {level!r} to compile from: expected one of {', '.join(COMPILED_LEVELS)}")
    optimize = options.get("optimize")
    if not isinstance(optimize, bool) and optimize not in OPTIMIZE_GENERATORS:
        raise ArgumentError(f"optimize takes True, False or 'affine' (the affine generator), not {optimize!r}")
    threads = options.get("threads")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise CompileError(f"threads must be a positive integer or None, not {threads!r}")
    return targets.target(target, **options)


def _build(
    chosen: Target,
    model: Any,
    example_inputs: Any,
    *,
    level: str | None,
    dynamic_shapes: Any,
    verbose: bool | None,
    dump_ir: str | os.PathLike | None = None,
    timing: bool = False,
) -> Model:
    """Imports `model` and builds it for the target `chosen`: MLIR that no
    importer of nnforge's produced is built in a child process first
    (`nnforge.isolation`)."""
    _load_torch_mlir_first()
    with StageRunner(dump_ir, timing, verbose) as runner:
        module, level, signature = prepare(
            model, example_inputs, level=level, dynamic_shapes=dynamic_shapes, runner=runner
        )
        if _is_user_ir(model):
            with runner.stage("trial build"):
                what = str(model) if isinstance(model, (str, os.PathLike)) else "the MLIR module"
                isolation.trial_build(chosen, module, level, signature, what)
        module = chosen.lower(module, level, runner)
        return chosen.build(module, signature, runner)


def _describe(model: Any) -> str:
    """A model's name in profiles: its file's name, a jax function's, or its class's."""
    if isinstance(model, (str, os.PathLike)):
        return Path(model).name
    return getattr(model, "fun_name", None) or type(model).__name__


def _compile_sharded(
    model: Any, example_inputs: Any, ranks: int, sharding: Any, target: str, chosen: Target,
    runner: StageRunner,
) -> Model:
    """`compile` for `ranks` > 1: a PyTorch module split over the ranks (`nnforge.distributed`)."""
    from nnforge.distributed.build import ShardedCompile

    if not _is_torch_module(model):
        raise CompileError(f"compiling for several ranks takes a torch.nn.Module, not {type(model).__name__}")
    job = ShardedCompile(model, example_inputs, ranks, sharding, target)
    _load_torch_mlir_first()
    with runner:
        module, _, signature = prepare(job.wrapper, job.arguments, level="linalg", runner=runner)
        return job.finish(module, signature, chosen, runner)
