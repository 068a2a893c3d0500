"""Named pass pipelines, as strings for `PassManager.parse` and `nnforge-opt`.

Each constant takes a module from one level to the next; `stages(level)`
lists the (name, pipeline) steps from an import level to the LLVM dialect.
Wrap a pipeline with `wrap()` for `PassManager.parse` or pass it as
`nnforge-opt --pass-pipeline='builtin.module(...)'`.
"""

from __future__ import annotations

# nnf ops -> linalg on tensors (plus arith/math/tensor).
NNF_TO_LINALG = "convert-nnf-to-linalg,canonicalize,cse"

# TOSA -> linalg on tensors, the way upstream's tosa-to-linalg pipeline does.
TOSA_TO_LINALG = (
    "func.func(tosa-optional-decompositions),canonicalize,"
    "func.func(tosa-infer-shapes,tosa-make-broadcastable,tosa-to-linalg-named,"
    "tosa-to-linalg),tosa-to-arith,tosa-to-tensor,canonicalize,cse"
)

# Multiplies every batch by a broadcast matrix as one matmul (no copy of the
# weights per batch), transposes constant weights once, at compile time, then
# fuses elementwise producers into their consumers on tensors, so that fewer
# intermediates reach memory (never at the cost of recomputing a producer per
# consumer iteration: see nnf-fuse-elementwise).
LINALG_FUSION = (
    "nnf-unbroadcast-batch-matmul,nnf-fold-constant-transposes,linalg-fold-unit-extent-dims,"
    "nnf-fuse-elementwise,canonicalize,cse"
)
# The same for the CUDA target, whose kernel schedules take matmuls and batch
# matmuls as named ops: reshapes are not folded into them (which would make
# them generics with the rows split over several loops).
LINALG_FUSION_CUDA = LINALG_FUSION.replace(
    "nnf-fuse-elementwise", "nnf-fuse-elementwise{propagate-reshapes=false}"
)

# Groups each contraction with its epilogue, and reductions over rows with
# the elementwise ops around them, into nnf.dispatch regions that code
# generation tiles as one loop nest (NCHW convolutions first become im2col
# contractions, so that their epilogues join them). The optimized CPU path's
# step between fusion and code generation.
DISPATCH_REGIONS = "func.func(nnf-conv-to-im2col),nnf-form-dispatch-regions,canonicalize,cse"

# Bufferization, with identity-layout function boundaries (arguments carry no
# dynamic strides) and results owned by the caller. Loops may yield new
# buffers (recurrences such as ONNX Scan/RNN carry state that is not updated
# in place).
BUFFERIZE = (
    "one-shot-bufferize{bufferize-function-boundaries allow-return-allocs-from-loops "
    "function-boundary-type-conversion=identity-layout-map},"
    "canonicalize,buffer-deallocation-pipeline,convert-bufferization-to-memref"
)

# Boolean buffers stored a byte per element (numpy's layout): MLIR's
# memref-to-LLVM lowering cannot load or store i1, and LLVM packs vectors of
# i1 into bits. Runs on loops and vector transfers, before they go to LLVM.
WIDEN_BOOLS = "nnf-widen-bool-memrefs"

# exp/log/tanh/erf as polynomials (FMAs) rather than a libm call per
# element, and integer powers as multiplications (LLVM's powi takes no
# vector of exponents): vectorized code stays vectorized.
APPROXIMATE_MATH = "nnf-approximate-math,math-expand-ops{ops=fpowi}"

# What the frameworks define and MLIR leaves undefined or fatal, given the
# frameworks' meaning before the lowering to LLVM: shifts by the bit width
# or more shift every bit out (arith: poison); failed run-time checks
# (torch-mlir's cf.assert: gather bounds, dynamic shapes) return an error to
# the caller (upstream: abort the process).
DEFINED_SEMANTICS = "nnf-saturate-shifts,nnf-assert-to-runtime-error"

# Memrefs -> LLVM dialect, allocating through nnforge's runtime
# (_mlir_memref_to_llvm_alloc/_free in cpp/runtime/buffer_cache.c), which
# reuses the buffers of one call in the next instead of malloc/free.
MEMREF_TO_LLVM = "finalize-memref-to-llvm{use-generic-functions=true}"

# Loops and memrefs -> LLVM dialect.
LOOPS_TO_LLVM = (
    f"{DEFINED_SEMANTICS},expand-strided-metadata,lower-affine,convert-scf-to-cf,"
    f"convert-math-to-llvm,convert-math-to-libm,{MEMREF_TO_LLVM},"
    "convert-to-llvm,reconcile-unrealized-casts"
)


def parallel_loops_to_llvm(threads: int) -> str:
    """LOOPS_TO_LLVM with `scf.parallel` loops run by OpenMP threads.

    `threads`: how many (0: the OpenMP runtime's default, all cores or
    OMP_NUM_THREADS). Memrefs go to LLVM before the remaining loops become
    branches, as the allocation scopes of parallel loop bodies need.
    """
    return (
        f"{DEFINED_SEMANTICS},expand-strided-metadata,lower-affine,"
        f"convert-scf-to-openmp{{num-threads={threads}}},"
        f"{MEMREF_TO_LLVM},convert-scf-to-cf,convert-math-to-llvm,convert-math-to-libm,"
        "convert-arith-to-llvm,convert-openmp-to-llvm,convert-to-llvm,reconcile-unrealized-casts"
    )


# linalg on tensors -> LLVM dialect, straightforwardly: one scalar loop nest
# per linalg op (the naive baseline).
LINALG_TO_LLVM_NAIVE = f"{BUFFERIZE},convert-linalg-to-loops,{WIDEN_BOOLS},{LOOPS_TO_LLVM}"

# linalg/scf on memrefs: what the importers return for models with ops only
# torch-mlir's TMTensor dialect expresses (sort, top-k, scan, scatter), which
# torch-mlir bufferizes and lowers to loops itself.
BUFFERS_LEVEL = "linalg-on-buffers"

# The levels a module can start from (what the importers return).
LEVELS = ("nnf", "tosa", "linalg", BUFFERS_LEVEL)


def stages(level: str, target: str = "cpu") -> list[tuple[str, str]]:
    """The (stage name, pipeline) steps from `level` to the LLVM dialect on
    the CPU; for target "cuda", to fused linalg on tensors."""
    if level not in LEVELS:
        raise ValueError(f"no pipeline from level {level!r}: expected one of {', '.join(LEVELS)}")
    if level == BUFFERS_LEVEL:
        if target == "cuda":
            raise ValueError("the CUDA pipeline starts from linalg on tensors, not buffers")
        # Nothing to fuse or raise on buffers (and folding unit dimensions
        # of strided memrefs makes invalid collapse_shape ops).
        return [("linalg-to-llvm", LINALG_TO_LLVM_NAIVE)]
    steps = []
    if level == "tosa":
        steps.append(("tosa-to-linalg", TOSA_TO_LINALG))
    # Any level may hold nnf ops (the nnf level holds linalg too).
    steps.append(("nnf-to-linalg", NNF_TO_LINALG))
    if target == "cuda":
        return [*steps, ("linalg-fusion", LINALG_FUSION_CUDA)]
    return [*steps, ("linalg-fusion", LINALG_FUSION), ("linalg-to-llvm", LINALG_TO_LLVM_NAIVE)]


def wrap(pipeline: str) -> str:
    """A textual pipeline anchored on the module, for `PassManager.parse`."""
    return f"builtin.module({pipeline})"
