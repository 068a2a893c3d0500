"""Named pass pipelines, as strings for `PassManager.parse` and `nnforge-opt`.

Each constant takes a module from one level to the next; `stages(level)`
lists the (name, pipeline) steps from an import level to the LLVM dialect,
`cuda_stages(chip)` those of the CUDA target after fusion.
Wrap a pipeline with `wrap()` for `PassManager.parse` or pass it as
`nnforge-opt --pass-pipeline='builtin.module(...)'`.
"""

from __future__ import annotations

from nnforge.errors import ArgumentError

# nnf ops -> linalg on tensors (plus arith/math/tensor). Softmax chains, as
# the frontends expand them, are raised to nnf.softmax first, so that every
# softmax lowers nnforge's way (its row maximum ignores NaN, which is cheaper
# and gives the same result).
NNF_TO_LINALG = "nnf-raise{ops=softmax},convert-nnf-to-linalg,canonicalize,cse"

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


def dispatch_regions(
    copy_arguments: bool, row_tiles: tuple[int, int], convolution_panel: tuple[int, int], direct_min_width: int
) -> str:
    """The optimized CPU path's step between fusion and code generation.

    Stores large constant weights of contractions as column panels (each
    register tile's operand contiguous) and lets the epilogue follow the
    split output; merges the loops of contractions and reductions that
    propagated reshapes split; rewrites NCHW convolutions as im2col
    contractions (narrow outputs transposed, channels innermost, their
    filters transposed and packed here too), and NHWC ones with channels
    innermost, except those computed from the input directly (NCHW ones
    among them become NHWC between transposing copies, the copy back fused
    into the ops reading it, reshapes left where they are); groups each
    contraction with its epilogue, and reductions over rows with the
    elementwise ops around them, into nnf.dispatch regions that code
    generation tiles as one loop nest; contraction operands whose rows are a
    multiple of 4 KiB apart get a padded row stride (else the rows of a tile
    evict each other from L1), function arguments too if `copy_arguments`
    (not where the contraction schedules copy the panels they read anyway).
    `row_tiles`: the fewest and most rows of a register tile that keep the
    FMA pipes busy; a convolution computed transposed whose output rows
    divide into such tiles copies its windows a row at a time.
    `convolution_panel`: output channels per panel of the constant filters
    of convolutions computed from the input directly (0: not packed), and
    the bytes of the smallest filter packed. `direct_min_width`: pixels per
    output row from which an NCHW convolution with unit strides is computed
    from its input directly.
    """
    return (
        "nnf-pack-weights,nnf-fuse-elementwise,nnf-collapse-reduction-dims,canonicalize,"
        "func.func(nnf-conv-to-im2col{"
        f"direct-min-width={direct_min_width} row-tile-min={row_tiles[0]} row-tile-max={row_tiles[1]}}}),"
        "nnf-fold-constant-transposes,nnf-fuse-elementwise{propagate-reshapes=false},"
        f"nnf-pack-weights{{convolution-panel={convolution_panel[0]} convolution-min-bytes={convolution_panel[1]}}},"
        "nnf-form-dispatch-regions,"
        f"nnf-pad-leading-dimensions{{copy-arguments={str(copy_arguments).lower()}}},canonicalize,cse"
    )


# Timers around each dispatch region and each op computed outside one, and
# around the whole call, counting into the module's own counters: the
# instrumented build of `nnforge profile`, on linalg after `dispatch_regions`
# (or, for the naive lowering, before bufferization).
PROFILE_REGIONS = "nnf-profile-dispatch-regions"

# Bufferization, with identity-layout function boundaries (arguments carry no
# dynamic strides) and results owned by the caller. Loops may yield new
# buffers (recurrences such as ONNX Scan/RNN carry state that is not updated
# in place). Buffers are freed right after their last use (upstream frees
# them where their block ends), so that later ones reuse their memory.
# Switches with tensor results become chains of scf.if first: upstream's
# analysis misses the aliasing of a switch's results with its cases' yields
# and computes wrong results (nnf-index-switch-to-if).
INDEX_SWITCH_TO_IF = "nnf-index-switch-to-if"
BUFFERIZE = (
    f"{INDEX_SWITCH_TO_IF},"
    "one-shot-bufferize{bufferize-function-boundaries allow-return-allocs-from-loops "
    "function-boundary-type-conversion=identity-layout-map},"
    "canonicalize,buffer-deallocation-pipeline,convert-bufferization-to-memref,nnf-deallocate-after-last-use"
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

# Strided-metadata expansion of views into plain pointer arithmetic; a
# reshape splitting a dimension into several of unknown size is a
# reinterpret cast first (expand-strided-metadata asserts on it).
EXPAND_STRIDED_METADATA = "nnf-expand-shapes-as-casts,expand-strided-metadata"

# Memrefs -> LLVM dialect, allocating through nnforge's runtime
# (_mlir_memref_to_llvm_alloc/_free in cpp/runtime/buffer_cache.c), which
# reuses the buffers of one call in the next instead of malloc/free.
MEMREF_TO_LLVM = "finalize-memref-to-llvm{use-generic-functions=true}"

# Loops and memrefs -> LLVM dialect.
LOOPS_TO_LLVM = (
    f"{DEFINED_SEMANTICS},{EXPAND_STRIDED_METADATA},lower-affine,convert-scf-to-cf,"
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
        f"{DEFINED_SEMANTICS},{EXPAND_STRIDED_METADATA},lower-affine,"
        f"convert-scf-to-openmp{{num-threads={threads}}},"
        f"{MEMREF_TO_LLVM},convert-scf-to-cf,convert-math-to-llvm,convert-math-to-libm,"
        "convert-arith-to-llvm,convert-openmp-to-llvm,convert-to-llvm,reconcile-unrealized-casts"
    )


# linalg on buffers -> LLVM dialect, straightforwardly: one scalar loop nest
# per linalg op (the naive baseline).
BUFFERS_TO_LLVM_NAIVE = f"convert-linalg-to-loops,{WIDEN_BOOLS},{LOOPS_TO_LLVM}"
# The same from linalg on tensors.
LINALG_TO_LLVM_NAIVE = f"{BUFFERIZE},{BUFFERS_TO_LLVM_NAIVE}"

# The affine code generator (`nnforge.compile(..., optimize="affine")`):
# linalg on buffers -> affine loops, then upstream's polyhedral passes in
# this order (docs/affine.md says why):
# - unroll-and-jam by 4 while each nest is still one linalg op (the pass
#   takes the first nest of a function only and checks no dependences;
#   inside one linalg op the only carried dependence is a reduction into
#   the element being written, which jamming keeps in order);
# - with `fuse` (off where nnforge compiles: it gave wrong results on the
#   test models, docs/affine.md), fusion of producer-consumer and sibling nests where the
#   dependence analysis proves it legal, temporaries shrunk to what one
#   fused iteration needs (before vectorization: the pass aborts on vector
#   transfers);
# - store-to-load forwarding and redundant-load elimination (a fused
#   temporary becomes a register);
# - tiling of each nest's outer band by `tile` iterations per loop (a
#   multiple of `vector_lanes`, so that vectors never straddle tiles);
# - loops of one iteration (tile loops over dimensions smaller than a
#   tile: a convolution's batch and channels) replaced by their body;
# - with `parallel`, the outermost dependence-free loop left in each nest
#   as an affine.parallel (threads; reductions stay sequential), before
#   vectorization: vector transfers count as unknown memory effects, after
#   which no loop is provably parallel;
# - super-vectorization of the loop of each nest along which every access
#   is contiguous or invariant (`vector_lanes` lanes, the ends of rows
#   masked);
# - unrolling of the innermost loops by 8, now vector loops or the scalar
#   reduction loops around vector accumulators (LLVM then keeps an
#   accumulator in a register for 8 steps);
# - hoisting of loop-invariant code.
# Loops the importers or the plain lowering made (scf) are left alone.
def affine_loops(vector_lanes: int, tile: int, parallel: bool, fuse: bool = False) -> str:
    """linalg on buffers -> vectorized affine loops (the affine generator's own stage)."""
    passes = [
        "convert-linalg-to-affine-loops",
        "affine-loop-unroll-jam{unroll-jam-factor=4}",
        *(["affine-loop-fusion"] if fuse else []),
        "affine-scalrep",
        f"affine-loop-tile{{tile-size={tile}}}",
        "affine-loop-normalize{promote-single-iter=true}",
        *(["affine-parallelize{max-nested=1}"] if parallel else []),
        f"affine-super-vectorize{{virtual-vector-size={vector_lanes}}}",
        f"affine-loop-unroll{{unroll-factor={AFFINE_UNROLL}}}",
        "affine-loop-invariant-code-motion",
    ]
    return f"func.func({','.join(passes)}),canonicalize,cse"


# How many times the affine generator unrolls innermost loops.
AFFINE_UNROLL = 8


def affine_to_llvm(threads: int) -> str:
    """`affine_loops`' result -> LLVM dialect: affine ops to scf and memref
    ops, 1-D vector transfers (masked at the ends of rows) to LLVM, booleans
    widened, transcendental functions as polynomials; with `threads` other
    than 1 the affine.parallel loops run on OpenMP threads (0: all cores),
    as the optimized path's parallel loops do."""
    loops_to_llvm = LOOPS_TO_LLVM if threads == 1 else parallel_loops_to_llvm(threads)
    return (
        "lower-affine,func.func(convert-vector-to-scf{full-unroll=true}),convert-linalg-to-loops,"
        f"{APPROXIMATE_MATH},{WIDEN_BOOLS},convert-vector-to-llvm,{loops_to_llvm}"
    )


def affine_buffers_to_llvm(vector_lanes: int, tile: int, threads: int, fuse: bool = False) -> str:
    """The affine generator from linalg on buffers to the LLVM dialect."""
    return f"{affine_loops(vector_lanes, tile, threads != 1, fuse)},{affine_to_llvm(threads)}"


# linalg/scf on memrefs: what the importers return for models with ops only
# torch-mlir's TMTensor dialect expresses (sort, top-k, scan, scatter), which
# torch-mlir bufferizes and lowers to loops itself.
BUFFERS_LEVEL = "linalg-on-buffers"

# The levels a module can start from (what the importers return).
LEVELS = ("nnf", "tosa", "linalg", BUFFERS_LEVEL)


def stages(level: str, target: str = "cpu") -> list[tuple[str, str]]:
    """The (stage name, pipeline) steps from `level` to the LLVM dialect on
    the CPU (the CPU target moves large constants out of the module between
    "bufferize" and "linalg-to-llvm": `nnforge.externalize`); for target
    "cuda", to fused linalg on tensors."""
    if level not in LEVELS:
        raise ArgumentError(f"no pipeline from level {level!r}: expected one of {', '.join(LEVELS)}")
    if level == BUFFERS_LEVEL:
        if target == "cuda":
            raise ArgumentError("the CUDA pipeline starts from linalg on tensors, not buffers")
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
    return [
        *steps,
        ("linalg-fusion", LINALG_FUSION),
        ("bufferize", BUFFERIZE),
        ("linalg-to-llvm", BUFFERS_TO_LLVM_NAIVE),
    ]


def wrap(pipeline: str) -> str:
    """A textual pipeline anchored on the module, for `PassManager.parse`."""
    return f"builtin.module({pipeline})"


# The CUDA target: from fused linalg on tensors (`stages(level, "cuda")`) to
# an LLVM host module with the kernels in a gpu.binary. `nnforge.targets.cuda` runs
# these stages with Python steps in between (placing buffers in device
# memory, inserting the transform schedules that "gpu-map-matmul" and
# "gpu-map-generic" interpret).

# The chips we compile for, with the PTX version each needs. The defaults of
# the NVPTX backend (PTX 6.0) abort the process with an LLVM fatal error for
# newer chips, so chip names are checked against this table first.
CUDA_PTX_FEATURES = {
    "sm_75": "+ptx80",
    "sm_80": "+ptx80",
    "sm_86": "+ptx80",
    "sm_87": "+ptx80",
    "sm_89": "+ptx80",
    "sm_90": "+ptx80",
    "sm_90a": "+ptx80",
    "sm_100": "+ptx86",
    "sm_100a": "+ptx86",
    "sm_120": "+ptx87",
    "sm_120a": "+ptx87",
}

CUDA_BUFFERIZE = (
    f"{INDEX_SWITCH_TO_IF},"
    "one-shot-bufferize{bufferize-function-boundaries "
    "function-boundary-type-conversion=identity-layout-map},"
    "canonicalize,cse"
)
CUDA_GENERALIZE = "linalg-generalize-named-ops,canonicalize"
# Per-thread linalg ops (copies, matmul micro-tiles, loop bodies) -> loops
# inside the launches, i1 buffers stored as bytes (as on the CPU), constants
# sunk into the launches (static loop bounds, unrolled by LLVM, instead of
# kernel arguments), then kernels into their own gpu.module (which takes
# the shared-memory globals along: symbol-dce drops the host copies). The
# host side then queues everything on one stream (gpu-async-region): the
# runtime-call lowering needs the async forms of gpu.alloc/memcpy/dealloc.
CUDA_OUTLINE = (
    "convert-linalg-to-loops,nnf-widen-bool-memrefs,canonicalize,cse,"
    "gpu-launch-sink-index-computations,gpu-kernel-outlining,symbol-dce,"
    "func.func(gpu-async-region),canonicalize"
)


def check_cuda_chip(chip: str) -> str:
    """`chip` if there is a pipeline for it, else ArgumentError (never an LLVM abort)."""
    if chip not in CUDA_PTX_FEATURES:
        raise ArgumentError(f"unknown CUDA chip {chip!r}: expected one of {', '.join(CUDA_PTX_FEATURES)}")
    return chip


def cuda_to_nvvm(chip: str, binary_format: str = "bin") -> str:
    """The NVVM lowering: kernels to PTX/cubin (`binary_format` bin|isa|fatbin), host to LLVM."""
    check_cuda_chip(chip)
    if binary_format not in ("bin", "isa", "fatbin"):
        raise ArgumentError(f"unknown binary format {binary_format!r}: expected bin, isa or fatbin")
    return (
        f"gpu-lower-to-nvvm-pipeline{{cubin-chip={chip} cubin-features={CUDA_PTX_FEATURES[chip]} "
        f"cubin-format={binary_format} opt-level=3}}"
    )


def cuda_stages(chip: str = "sm_90") -> list[tuple[str, str]]:
    """The (stage name, pipeline) steps from fused linalg on tensors to the LLVM dialect."""
    return [
        ("gpu-bufferize", CUDA_BUFFERIZE),
        ("gpu-map-matmul", "transform-interpreter,canonicalize"),
        ("gpu-generalize", CUDA_GENERALIZE),
        ("gpu-map-generic", "transform-interpreter,canonicalize,cse"),
        ("gpu-outline", CUDA_OUTLINE),
        ("gpu-to-nvvm", cuda_to_nvvm(chip)),
    ]
