//===- Passes.td - nnforge passes --------------------------*- tablegen -*-===//

#ifndef NNFORGE_PASSES
#define NNFORGE_PASSES

include "mlir/Pass/PassBase.td"

def ConvertNNFToLinalg : Pass<"convert-nnf-to-linalg"> {
  let summary = "Lower every nnf op to linalg on tensors";
  let description = [{
    Rewrites each `nnf` op into linalg named and generic ops on tensors, with
    arith, math and tensor ops, matching PyTorch's definition of the op.
    f16 and bf16 ops compute in f32 and round the result once. Afterwards the
    module holds upstream dialects only, so upstream bufferization and
    lowering passes take it to LLVM.
  }];
  let dependentDialects = [
    "::mlir::affine::AffineDialect",
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

def NNFRaise : Pass<"nnf-raise", "::mlir::ModuleOp"> {
  let summary = "Raise linalg on tensors (as torch-mlir emits it) to nnf ops";
  let description = [{
    Recognizes the linalg-on-tensors forms that torch-mlir's
    `torch-backend-to-linalg-on-tensors-backend-pipeline` emits for common
    layers and replaces them with `nnf` ops, leaving everything it does not
    recognize in upstream dialects:

    - `linalg.matmul` (or a `linalg.batch_matmul` whose right operand is a
      batch broadcast) of `x` by `linalg.transpose(W)` with a zero-filled
      accumulator, plus an optional bias add along the last dimension (or a
      bias broadcast as the accumulator), becomes `nnf.linear %x, %W[, %b]`.
      A matmul whose right operand is not a transposed `[N, K]` weight is left
      alone (no transpose is inserted).
    - `linalg.conv_2d_nchw_fchw` with an optional zero `tensor.pad` of the
      spatial dimensions and an accumulator that is a zero fill or a bias
      broadcast along the channels becomes `nnf.conv2d`.
    - `linalg.softmax`, and the max / subtract / exp / sum / divide chain,
      become `nnf.softmax`.
    - Elementwise generics computing relu, sigmoid, tanh, erf gelu, tanh gelu
      and silu (`x * sigmoid(x)`) become `nnf.activation`, which is folded
      into a producing `nnf.linear` / `nnf.conv2d` that has no other user.

    A pattern fires only when the indexing maps, iterator types, body ops,
    constants and uses match exactly, so the result computes the same values.
    `ops` limits the raising to some kinds (`linear`, `conv2d`, `softmax`,
    `activation`): every compile raises softmax, before lowering nnf ops to
    linalg, so that each softmax lowers nnforge's way.
  }];
  let options = [
    ListOption<"ops", "ops", "std::string",
               "raise only these kinds (linear, conv2d, softmax, activation); all if empty">,
  ];
  let dependentDialects = [
    "::nnforge::nnf::NNFDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

def NNFWidenBoolMemrefs : Pass<"nnf-widen-bool-memrefs", "::mlir::ModuleOp"> {
  let summary = "Store boolean (i1) and other sub-byte integer memrefs as i8 memrefs";
  let description = [{
    MLIR's memref-to-LLVM lowering cannot load or store integer elements
    narrower than a byte (it asserts that they are at least 8 bits wide), so
    this pass rewrites every memref of `i1`, `i2`, ... `i7` into the memref of
    `i8` with the same shape, layout and memory space, after bufferization and
    before `expand-strided-metadata` / `finalize-memref-to-llvm`. Its name
    says "bool" for the common case; it widens every signless sub-byte integer:

    - `memref.load` of `iN` becomes a load of `i8` followed by `arith.trunci`;
      `memref.store` of `iN` stores the `arith.extui` of the value (so `true`
      is stored as 1). Vector loads, stores and transfers of `iN` lanes read
      and write `i8` lanes the same way.
    - `memref.global` of `iN` becomes an `i8` global with its initial value
      zero-extended; `memref.get_global` is retyped.
    - Function signatures, calls and returns, and `scf` ops, are converted
      structurally, so function arguments and results of `i1` memrefs become
      `i8` memrefs: one byte per element, the layout of a numpy bool array.
    - Any other op without regions (alloc, dealloc, subview, cast, copy,
      reshapes, metadata extraction...) is recreated with the converted types.
    - Memrefs of signed or unsigned sub-byte integers (`si4`, `ui3`) cannot
      be widened (arith cannot extend them): the pass reports the first op
      carrying one and fails, instead of letting the LLVM lowering abort.

    Example:

    ```mlir
    %m = memref.alloc() : memref<4xi3>
    memref.store %v, %m[%i] : memref<4xi3>
    ```

    becomes

    ```mlir
    %m = memref.alloc() : memref<4xi8>
    %byte = arith.extui %v : i3 to i8
    memref.store %byte, %m[%i] : memref<4xi8>
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::memref::MemRefDialect",
  ];
}

def NNFFoldConstantTransposes
    : Pass<"nnf-fold-constant-transposes", "::mlir::ModuleOp"> {
  let summary = "Transpose constant tensors at compile time";
  let description = [{
    Replaces each `linalg.transpose` of an `arith.constant` (dense or
    `dense_resource` elements, as the importers produce for weights) with
    the transposed constant, so that weights stored `[N, K]` and used as
    `[K, N]` are transposed once, when compiling, rather than on every run.
    Upstream's constant folding of linalg ops handles only inline dense
    elements, not the resource blobs importers use for large weights.
    Results of 64 KiB or more are `dense_resource` blobs (`nnf_transposed*`)
    that this pass and `nnf-pack-weights` free once no op of the module
    uses them (inline dense elements live as long as the context); smaller
    ones are inline dense elements. Where every other use of the constant
    transposed reads one element (`tensor.extract`, as an embedding lookup
    does), those reads read the transposed constant instead, so that a
    table that is also a transposed operand (an embedding tied to the
    output projection) is stored once. A constant transposed from a
    `dense_resource` weight that stays in memory anyway (not one of
    nnforge's own blobs) records it (discardable attributes
    `nnf.transpose_source` and `nnf.transpose_permutation`), so that
    `nnf-pack-weights` can free the transposed copy before it packs.

    Example:

    ```mlir
    %w = arith.constant dense_resource<weight> : tensor<4x8xf32>
    %t = linalg.transpose ins(%w : tensor<4x8xf32>) outs(%e : tensor<8x4xf32>) permutation = [1, 0]
    // becomes
    %t = arith.constant dense<...> : tensor<8x4xf32>
    ```
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

def NNFUnbroadcastBatchMatmul : Pass<"nnf-unbroadcast-batch-matmul"> {
  let summary = "Rewrite a batch matmul by one broadcast matrix as a matmul";
  let description = [{
    Replaces a `linalg.batch_matmul` whose right operand is a single `[K, N]`
    matrix broadcast along the batch (a `linalg.broadcast` or an equivalent
    generic) by one `linalg.matmul` of the left operand's rows collapsed to
    `[B*M, K]`, its result expanded back to `[B, M, N]`. torch-mlir emits the
    broadcast form for a linear layer on a 3-D input whose rows are not
    contiguous (a transformer's in-projection after a batch-first
    transpose): B copies of the weights would be written to memory on every
    call (400 MB for a 512x1536 weight over 128 batches). Static batch and
    row sizes only.

    Example:

    ```mlir
    %wb = linalg.broadcast ins(%w : tensor<8x16xf32>) outs(%e : tensor<4x8x16xf32>) dimensions = [0]
    %r = linalg.batch_matmul ins(%x, %wb : tensor<4x2x8xf32>, tensor<4x8x16xf32>) outs(%acc : tensor<4x2x16xf32>) -> tensor<4x2x16xf32>
    // becomes
    %rows = tensor.collapse_shape %x [[0, 1], [2]] : tensor<4x2x8xf32> into tensor<8x8xf32>
    %flat = tensor.collapse_shape %acc [[0, 1], [2]] : tensor<4x2x16xf32> into tensor<8x16xf32>
    %m = linalg.matmul ins(%rows, %w : tensor<8x8xf32>, tensor<8x16xf32>) outs(%flat : tensor<8x16xf32>) -> tensor<8x16xf32>
    %r = tensor.expand_shape %m [[0, 1], [2]] output_shape [4, 2, 16] : tensor<8x16xf32> into tensor<4x2x16xf32>
    ```
  }];
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
}

def NNFFuseElementwise : Pass<"nnf-fuse-elementwise"> {
  let summary = "Fuse elementwise producers into consumers without recomputation";
  let description = [{
    Upstream's `linalg-fuse-elementwise-ops`, with a different rule for
    when to fuse. Upstream fuses an elementwise producer into any consumer
    that reads it through a projected permutation and has that value as its
    only use. That rule recomputes the producer once per consumer iteration
    that reads the same element: a GELU fused into the matmul that follows
    it is evaluated once per output column, and the matmul is no longer a
    contraction that code generation recognizes. This pass fuses a producer
    only where the consumer reads each produced element once (the consumer
    indexes it by a permutation of all its loops), and then also when the
    producer has other uses, provided it is cheap to compute twice (at most
    two arith ops, e.g. an `extf`): torch-mlir's layer norm widens its input
    to f64 for two reductions, which otherwise goes to memory.
    Reshape propagation and constant folding are upstream's, as in
    `linalg-fuse-elementwise-ops`.

    Example:

    ```mlir
    // %g = gelu(%h) (elementwise), then %y = %g x W (a contraction reading
    // %g[m, k] in loops (m, n, k)): not fused, %y stays a matmul.
    // %w = extf(%x), used by two reductions over rows: fused into both,
    // the f64 tensor is never materialized.
    ```
  }];
  let dependentDialects = [
    "::mlir::affine::AffineDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect",
  ];
  let options = [
    Option<"propagateReshapes", "propagate-reshapes", "bool", /*default=*/"true",
           "Fold reshapes into the linalg ops around them by expanding their "
           "loops (off: matmuls stay named matmuls, as the CUDA target's "
           "schedules want them)">,
  ];
}

def NNFApproximateMath : Pass<"nnf-approximate-math"> {
  let summary = "Replace exp, log, tanh and erf by polynomial approximations";
  let description = [{
    Rewrites `math.exp`, `math.expm1`, `math.log`, `math.log1p`, `math.log2`,
    `math.tanh`, `math.erf` and `math.erfc` on f32 (scalars and vectors) into
    polynomial approximations: range reduction and a polynomial evaluated
    with `math.fma`, plus bit manipulation of the exponent. `math-to-llvm`
    would otherwise call libm once per element, which no vectorization
    survives. f16 and bf16 operands are computed in f32. All but exp are
    upstream MLIR's approximations, which upstream registers only as a test
    pass (`test-math-polynomial-approximation`), limited to the functions
    whose approximations hold over the whole f32 range, infinities and NaN
    included (measured: at most 4 ulp from PyTorch's results); the
    logarithms treat subnormal inputs as the smallest normal number.

    exp (softmax's cost) is nnforge's own, 15 vector operations where
    upstream's takes 21: one FMA with 1.5 * 2^23 + 126 both rounds x / ln 2
    to n and holds the exponent bits of 2^(n - 1) in its low mantissa bits,
    where upstream clamps n again and converts it to an integer. At most 2
    ulp from exp over the normal range; +inf above ln(FLT_MAX), NaN kept;
    results below 1.7e-38 (the bottom of the normal range and the
    subnormals) are 0.

    Example:

    ```mlir
    %e = math.exp %x : vector<16xf32>
    // becomes arith/math ops: a clamp of %x, n = round(x / ln 2),
    // a degree-6 polynomial in x - n ln 2 (math.fma), 2^(n - 1) built from
    // bits, the product doubled
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::math::MathDialect",
    "::mlir::vector::VectorDialect",
  ];
}

def NNFPairwiseVectorReductions : Pass<"nnf-pairwise-vector-reductions"> {
  let summary = "Reduce float min/max vector reductions as trees";
  let description = [{
    Rewrites each `vector.reduction` of kind `maxnumf`, `minnumf`,
    `maximumf` or `minimumf` over a 1-D vector of an even number (at least
    4) of lanes into the elementwise combination of its two halves followed
    by the reduction of that half-width vector, repeatedly, down to two
    lanes. The result is the same (these combinations are associative and
    commutative, NaN included). LLVM expands such reductions lane by lane
    unless it may assume that no lane is NaN: 64 lanes were 64 dependent
    scalar steps; as a tree they are six vector steps.

    Example:

    ```mlir
    %m = vector.reduction <maxnumf>, %v : vector<8xf32> into f32
    // becomes
    %lo = vector.extract_strided_slice %v {offsets = [0], sizes = [4], strides = [1]} : vector<8xf32> to vector<4xf32>
    %hi = vector.extract_strided_slice %v {offsets = [4], sizes = [4], strides = [1]} : vector<8xf32> to vector<4xf32>
    %h = arith.maxnumf %lo, %hi : vector<4xf32>
    // ... and so on down to vector<2xf32>
    %m = vector.reduction <maxnumf>, %q : vector<2xf32> into f32
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::vector::VectorDialect",
  ];
}

def NNFDeallocateAfterLastUse : Pass<"nnf-deallocate-after-last-use"> {
  let summary = "Free each buffer right after its last use";
  let description = [{
    Moves each `memref.dealloc` up to right after the last op of its block
    that uses the buffer: directly, through a view or cast (any memref
    result of a user counts as an alias), or inside a nested region (the op
    holding that region counts). Ownership-based buffer deallocation frees
    buffers at the end of the block that allocated them, so every
    intermediate of a model stays allocated until the function returns;
    freed once dead, a buffer goes back to nnforge's buffer cache during the
    call, and a later intermediate of the same size reuses memory that is
    still in the CPU's caches. A dealloc stays where it is if its buffer is
    defined in another block, or an alias is yielded or returned from a
    region (any terminator) or read as a pointer
    (`memref.extract_aligned_pointer_as_index`).

    Example:

    ```mlir
    %a = memref.alloc() : memref<64xf32>
    linalg.fill ins(%zero : f32) outs(%a : memref<64xf32>)
    memref.copy %a, %b : memref<64xf32> to memref<64xf32>
    %c = memref.alloc() : memref<64xf32>
    // ... %c used, %a not
    memref.dealloc %a : memref<64xf32>
    // becomes
    memref.copy %a, %b : memref<64xf32> to memref<64xf32>
    memref.dealloc %a : memref<64xf32>
    %c = memref.alloc() : memref<64xf32>
    ```
  }];
}

def NNFExpandShapesAsCasts : Pass<"nnf-expand-shapes-as-casts"> {
  let summary = "Expand memref dimensions into several of unknown size as reinterpret casts";
  let description = [{
    Rewrites each `memref.expand_shape` with a reassociation group of two or
    more dynamic sizes as a `memref.reinterpret_cast` of its source's base
    buffer. Upstream's `expand-strided-metadata` asserts that a group has at
    most one dynamic size (it derives that size from the source's), so such
    reshapes (splitting a dimension into a symbolic batch and sequence
    length) aborted the lowering; the op's `output_shape` operands give the
    sizes. The cast keeps the source's offset; in each group the innermost
    dimension takes the source dimension's stride and each outer one the
    stride of the next times its size. Run it before
    `expand-strided-metadata`; other expansions are left to that pass.

    Example:

    ```mlir
    %e = memref.expand_shape %x [[0, 1], [2]] output_shape [%a, %b, 4]
        : memref<?x4xf32> into memref<?x?x4xf32>
    // becomes
    %base, %offset, %sizes:2, %strides:2 = memref.extract_strided_metadata %x
        : memref<?x4xf32> -> memref<f32>, index, index, index, index, index
    %c4 = arith.constant 4 : index
    %s0 = arith.muli %b, %c4 : index
    %e = memref.reinterpret_cast %base to offset: [0], sizes: [%a, %b, 4],
        strides: [%s0, 4, 1] : memref<f32> to memref<?x?x4xf32>
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::memref::MemRefDialect",
  ];
}

def NNFIndexSwitchToIf : Pass<"nnf-index-switch-to-if"> {
  let summary = "Rewrite scf.index_switch with tensor results as a chain of scf.if";
  let description = [{
    Replaces each `scf.index_switch` with a tensor result by nested
    `scf.if` ops: `%arg == case 0` runs the first case's region, else
    `%arg == case 1` the second's, ..., else the default region. A switch
    with no cases becomes its default region's body. Switches without
    tensor results are left alone (they lower to `cf.switch`).

    Upstream's one-shot bufferization (MLIR 22) does not treat a switch's
    tensor results as aliases of the values its cases yield: when a case
    writes into a buffer that a later op writes in place too (a
    `tensor.empty` shared after CSE), the later op overwrites the switch's
    result and the function computes wrong values without an error. The
    same regions under `scf.if` are analyzed correctly. Run it before
    `one-shot-bufferize`.

    Example:

    ```mlir
    %r = scf.index_switch %i -> tensor<4xf32>
    case 2 { scf.yield %a : tensor<4xf32> }
    case 5 { scf.yield %b : tensor<4xf32> }
    default { scf.yield %c : tensor<4xf32> }
    // becomes
    %c2 = arith.constant 2 : index
    %is2 = arith.cmpi eq, %i, %c2 : index
    %r = scf.if %is2 -> (tensor<4xf32>) {
      scf.yield %a : tensor<4xf32>
    } else {
      %c5 = arith.constant 5 : index
      %is5 = arith.cmpi eq, %i, %c5 : index
      %r5 = scf.if %is5 -> (tensor<4xf32>) {
        scf.yield %b : tensor<4xf32>
      } else {
        scf.yield %c : tensor<4xf32>
      }
      scf.yield %r5 : tensor<4xf32>
    }
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::scf::SCFDialect",
  ];
}

def NNFSaturateShifts : Pass<"nnf-saturate-shifts"> {
  let summary = "Define integer shifts by the bit width or more";
  let description = [{
    `arith.shli`, `arith.shrui` and `arith.shrsi` by an amount of at least
    the operand's bit width (a negative amount counts as a large unsigned
    one) are poison in MLIR, and x86 masks the amount in practice: `x << 33`
    on i32 gives `x << 1`. ONNX's BitShift, numpy and PyTorch define such
    shifts as shifting every bit out. This pass guards each shift whose
    amount is not a constant in range with a select: 0 for left and logical
    right shifts, the sign (`x >> (width - 1)`) for arithmetic right shifts.
    Scalars and vectors alike.

    Example:

    ```mlir
    %y = arith.shli %x, %n : i32
    // becomes
    %s = arith.shli %x, %n : i32
    %c32 = arith.constant 32 : i32
    %in_range = arith.cmpi ult, %n, %c32 : i32
    %c0 = arith.constant 0 : i32
    %y = arith.select %in_range, %s, %c0 : i32
    ```
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

def NNFAssertToRuntimeError
    : Pass<"nnf-assert-to-runtime-error", "::mlir::ModuleOp"> {
  let summary = "Make failed cf.assert return an error to the caller";
  let description = [{
    torch-mlir guards gathers (index within bounds) and dynamic shapes with
    `cf.assert`, which upstream lowers to a call to `abort()`: bad data would
    end the user's process. This pass replaces each `cf.assert` by an
    `scf.if` calling `nnforge_check_failed(message)` in nnforge's runtime
    library when the condition is false. Called through
    `nnforge_guarded_call`, as `nnforge.runtime` calls every model, the
    failure returns to Python as an `nnforge.ExecutionError` carrying the
    message; elsewhere (an OpenMP worker thread, a raw call) it prints the
    message and aborts as before.

    Example:

    ```mlir
    cf.assert %in_bounds, "index must be smaller than dim size"
    // becomes
    scf.if %in_bounds {
    } else {
      %message = llvm.mlir.addressof @nnforge_check_message_0 : !llvm.ptr
      llvm.call @nnforge_check_failed(%message) : (!llvm.ptr) -> ()
    }
    ```
  }];
  let dependentDialects = [
    "::mlir::LLVM::LLVMDialect",
    "::mlir::scf::SCFDialect",
  ];
}

def NNFConvToIm2col : Pass<"nnf-conv-to-im2col"> {
  let summary = "Rewrite NCHW and NHWC convolutions as a window copy and a matmul";
  let description = [{
    Rewrites each `linalg.conv_2d_nchw_fchw` with static shapes and one
    float element type into im2col form: a `linalg.generic` copying the
    input windows into a tensor [N, C, KH, KW, OH, OW] (input map
    `(n, c, oh * sh + kh * dh, ow * sw + kw * dw)`, nothing else in its
    body), that tensor collapsed to [N, C*KH*KW, OH*OW], and a contraction
    generic with the filter collapsed to [F, C*KH*KW]. Upstream's
    `convert_conv2d_to_img2col` builds the same matmul operand, but its copy
    computes indices with floordiv/mod and stays scalar; this copy reads
    rows of the input, so it vectorizes once its unit loops are folded.

    The contraction's vectors run along its innermost output dimension: the
    pixels of a channel. Where those are no multiple of 16 (a 7x7 output:
    49 = 32 + 16 + 1, a column of scalar multiply-adds) but the channels are
    a multiple of 32 and the filter is a constant, the product is computed
    transposed instead, [N, OH, OW, F] from the filter transposed to
    [C*KH*KW, F] (`linalg.transpose` of the constant, for
    `nnf-fold-constant-transposes`), and transposed back: vectors of output
    channels, the pixels in register tiles of 7 rows. Where a number of rows
    from `row-tile-min` to `row-tile-max` (the register tiles that keep the
    FMA pipes busy) divides the output rows, the windows are copied one
    output row at a time instead, [N, OH, C, KH, KW, OW] collapsed to
    [N, OH, C*KH*KW, OW], so that the pixels of a register tile lie side by
    side at each k, one k after another (a 1x1 convolution with unit strides
    reads its input, [N, C, OH*OW], as it is).

    Each `linalg.conv_2d_nhwc_hwcf` (jax's and TensorFlow's layout) with
    static shapes and one float element type is rewritten the same way with
    channels innermost: the windows copied into [N, OH, OW, KH, KW, C]
    (input map `(n, oh * sh + kh * dh, ow * sw + kw * dw, c)`, rows of
    channels), collapsed to [N, OH*OW, KH*KW*C], times the filter collapsed
    to [KH*KW*C, F] into [N, OH*OW, F]: the output channels are the
    vectors, and neither the filter nor the output is transposed. A 1x1
    convolution with unit strides (in either layout) copies nothing. An
    NHWC convolution with unit strides and dilations and a larger window
    stays as it is: the CPU code generation computes it from the input
    directly (each register tile of pixels reads a row of channels per
    filter tap), which costs less than copying the windows. An NCHW
    convolution with unit strides and dilations, a window larger than 1x1,
    output rows of `direct-min-width` pixels or more, output channels a
    multiple of 16 and a constant filter becomes such an NHWC one: its input
    and accumulator copied into NHWC by transposing generics (a zero fill
    is filled again and a broadcast bias broadcast again, in NHWC;
    a constant `tensor.pad` of the input is done after the copy, in NHWC,
    so that the copy can fuse into the op computing the unpadded input),
    its filter transposed to HWCF (`linalg.transpose`, folded), its result
    copied back into NCHW by a transposing generic that elementwise fusion
    merges into the ops reading it.

    Example (a filter computed at run time):

    ```mlir
    %y = linalg.conv_2d_nchw_fchw ins(%x, %w : tensor<1x64x58x58xf32>, tensor<64x64x3x3xf32>)
        outs(%init : tensor<1x64x56x56xf32>) -> tensor<1x64x56x56xf32>
    // becomes
    %windows = linalg.generic ... ins(%x) outs(%e : tensor<1x64x3x3x56x56xf32>)
    %columns = tensor.collapse_shape %windows [[0], [1, 2, 3], [4, 5]]
    %product = linalg.generic ... ins(%w2, %columns) outs(%init2 : tensor<1x64x3136xf32>)
    %y = tensor.expand_shape %product [[0], [1], [2, 3]]
    ```
  }];
  let options = [
    Option<"directMinWidth", "direct-min-width", "int64_t", /*default=*/"8",
           "output pixels per row from which an NCHW convolution with unit "
           "strides is computed directly in NHWC (the CPU code generation "
           "passes its host's: 4 on the Zen 4, whose direct code reads large "
           "filters packed, 8 elsewhere; measured against the im2col "
           "contraction with the filter taps copied on every call, two "
           "threads of a Zen 5, with batch norm and ReLU: 7x7x512 0.77 ms "
           "against 0.62)">,
    Option<"rowTileMin", "row-tile-min", "int64_t", /*default=*/"2",
           "fewest pixels of an output row per register tile for which a "
           "product computed transposed copies its windows a row at a time "
           "(0: never)">,
    Option<"rowTileMax", "row-tile-max", "int64_t", /*default=*/"8",
           "most pixels of an output row per register tile for which a "
           "product computed transposed copies its windows a row at a time "
           "(on 2 threads of the AMD EPYC Zen 4, with 7-pixel rows: ResNet-18 "
           "2.6 % faster, 3x3 512-channel 7x7 convolutions 3 %)">,
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

def NNFCollapseReductionDims : Pass<"nnf-collapse-reduction-dims"> {
  let summary = "Merge adjacent loops of one role in contractions and reductions";
  let description = [{
    In each contraction (`linalg.generic` on tensors with a multiply-add
    body), merges every run of two or more consecutive loops of the same
    role (batch, m, n or k) that each operand reads next to each other, in
    loop order, into one loop (upstream's `collapseOpIterationDims`): the
    operands are collapsed with `tensor.collapse_shape`, the result expanded
    back. In other generics with several reduction loops, runs of reduction
    loops are merged the same way (parallel loops keep their shape: the
    elementwise ops that a row group fuses with a reduction read them as
    they are). Reshapes propagated through a contraction split its loops (a
    multi-head attention's input projection became
    `[1, 128] x [1, 256] -> [1, 3, 256]` over 7 loops); code generation
    tiles one m and one n loop, and the unit loops left in its vectors made
    the contraction lowering unroll them lane by lane; a sum over two loops
    is no row reduction and stayed scalar. Loops that are not adjacent in
    every operand (a weight packed into column panels) stay.

    Example:

    ```mlir
    // loops (d0, d1, d2, d3, d4): m = d0, n = (d1, d2), k = (d3, d4)
    %y = linalg.generic ... ins(%a, %w : tensor<128x4x64xf32>, tensor<4x64x3x256xf32>)
        outs(%acc : tensor<128x3x256xf32>) { mulf, addf }
    // becomes a [128 x 256] x [256 x 768] contraction on collapsed operands,
    // its result expanded back to tensor<128x3x256xf32>
    ```
  }];
  let dependentDialects = [
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

def NNFFormDispatchRegions : Pass<"nnf-form-dispatch-regions"> {
  let summary = "Group roots with their fusable producers into nnf.dispatch";
  let description = [{
    Wraps groups of linalg ops on tensors into `nnf.dispatch` regions that
    code generation compiles as one tiled loop nest. A group grows backwards
    from an anchor, an elementwise op (parallel loops only), which will be
    tiled along its outer loops:

    - contraction groups tile every anchor loop: the anchor's producers join
      down to one contraction (matmul, batch matmul, contraction generic) or
      depthwise NCHW convolution and its zero fill, so a matmul's epilogue
      (bias, activation, residual) runs on each output tile while it is hot;
      a depthwise convolution reads windows, but a tile of its output still
      slices its input, and its destination joins in the output's order, as
      does the `tensor.pad` of its input where nothing else reads the padded
      tensor (each tile is then padded where it is read);
    - row groups tile all anchor loops but the innermost: elementwise ops,
      fills and reductions over the innermost loop join, so a softmax or a
      layer norm runs one row at a time, its intermediates in L1.

    An op joins only if every use of its result is in the group and each
    user reads it through a projected permutation that contains all of the
    user's tiled loops, so that fusing it into the tile loop never computes
    an element twice; the tiled loops of the new member follow from that
    map. A group forms only if it has a root (a contraction or depthwise
    convolution, or a reduction for row groups) and something fused with it, and if its destinations are
    its own: the anchor writes a fresh tensor of static shape, the
    root accumulates into a tensor computed in the group (a zero
    fill, a broadcast bias). A destination shared with code outside would
    make bufferization copy every tile, so models with dynamic shapes keep
    their ops apart. Ops that read results of an im2col contraction through
    `tensor.expand_shape`, and a bias broadcast that initializes one through
    `tensor.collapse_shape`, are first rewritten in the contraction's shape
    (upstream's reshape-by-collapsing folding), so a convolution's bias and
    epilogue join it too; a destination that is a splat constant (a zero
    accumulator as torch-mlir's ONNX importer folds it) becomes a fill of an
    empty tensor, so that it is the group's own.

    Last, a depthwise convolution's region whose only reader is a 1x1
    convolution's region, through the collapse of its rows (`[N, C, H, W]`
    to `[N, C, H*W]`, read along the contraction's innermost output loop),
    is merged into that region: the depthwise ops, the collapse, then the
    contraction's (a MobileNetV2 block's depthwise stage and projection).
    Code generation tiles the merged region in bands of whole rows and
    computes each band of the depthwise result where the contraction reads
    it, so that result never goes to memory whole. Likewise an im2col
    window copy (nnf-conv-to-im2col's, `[N, C, KH, KW, OH, OW]`) whose only
    reader is a contraction region, through the collapse into columns
    (`[N, C*KH*KW, OH*OW]`, read along the contraction's innermost output
    loop), joins that region: each band of output rows copies the windows
    it reads, so the im2col tensor (7.4 MB for ResNet's 7x7 stem) never
    goes to memory whole.

    Example:

    ```mlir
    %mm = linalg.matmul ins(%x, %w : ...) outs(%acc : tensor<64x4096xf32>) -> tensor<64x4096xf32>
    %y = linalg.generic ... ins(%mm, %b : ...) outs(%e : tensor<64x4096xf32>) { ... }
    // becomes
    %y = nnf.dispatch ins(%x, %w, %b : ...) -> tensor<64x4096xf32> {
    ^bb0(...):
      ... fill, matmul, generic ...
      nnf.yield %r : tensor<64x4096xf32>
    }
    ```
  }];
  let dependentDialects = [
    "::nnforge::nnf::NNFDialect",
    "::mlir::arith::ArithDialect",
    "::mlir::bufferization::BufferizationDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

def NNFPeelPoolingPads : Pass<"nnf-peel-pooling-pads"> {
  let summary = "Pool the interior of a padded input without the pad";
  let description = [{
    Rewrites each `linalg.pooling_nchw_max` and `linalg.pooling_nchw_sum`
    (static shapes) whose input is a `tensor.pad` of constant padding of its
    spatial dims: the output is split into the box of outputs whose windows
    lie wholly inside the unpadded input, pooled from a slice of that input,
    and the boxes around it (the rows above and below it, full width, then
    the columns left and right of it, widened into the interior to
    `border-width` columns where it leaves room: a box one column wide is
    pooled element by element), each pooled from a pad of the slice of the
    input its windows read. The results are inserted into the pooling's
    destination. Each box is a pooling of the same kind, strides
    and dilations, so the result is the same for any padding value; only
    the border slices are copied, where the padded tensor was written
    whole before. A pooling with no window wholly inside the input is left
    as it is.

    Example (ResNet's stem pool: 3x3, stride 2, padding 1):

    ```mlir
    %p = tensor.pad %x low[0, 0, 1, 1] high[0, 0, 1, 1] { tensor.yield %ninf : f32 }
        : tensor<1x64x112x112xf32> to tensor<1x64x114x114xf32>
    %y = linalg.pooling_nchw_max {dilations = dense<1> : vector<2xi64>, strides = dense<2> : vector<2xi64>}
        ins(%p, %w : tensor<1x64x114x114xf32>, tensor<3x3xf32>) outs(%init : tensor<1x64x56x56xf32>) -> tensor<1x64x56x56xf32>
    // becomes: outputs [1, 56) x [1, 56) from %x[.., 1:112, 1:112] (no pad);
    // row 0 from a pad of %x[.., 0:2, 0:112]; column 0 of rows [1, 56) from a
    // pad of %x[.., 1:112, 0:2]; each inserted into %init (border-width=1).
    ```
  }];
  let options = [
    Option<"borderWidth", "border-width", "int64_t", /*default=*/"1",
           "output columns of a left or right border box at least (the "
           "vector width of the poolings' code)">,
  ];
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
}

def NNFDeinterleaveStridedReads : Pass<"nnf-deinterleave-strided-reads"> {
  let summary = "Read strided 1-D operands of linalg generics as vector shuffles";
  let description = [{
    A strided convolution or pooling, tiled down to one output row segment
    of L elements, reads its input through the map `d * s`: every s-th
    element. Upstream's vectorizer takes no such map, so the segment would
    stay scalar. This pass reads each such 1-D operand (of a `linalg.generic`
    on tensors with static sizes, L * s at most 64) as one contiguous
    `vector.transfer_read` of L * s elements, keeps every s-th lane with a
    `vector.shuffle`, and gives the generic the L elements as a dense tensor
    read through the identity map. Vectorizing the generic then folds that
    tensor away (the read of a written vector is the vector). Lanes past the
    operand's end read zeros and are dropped by the shuffle.

    Example:

    ```mlir
    %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0 * 2)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
        ins(%row : tensor<31xf32>) outs(%out : tensor<16xf32>) { ... }
    // becomes
    %wide = vector.transfer_read %row[%c0], %zero : tensor<31xf32>, vector<32xf32>
    %even = vector.shuffle %wide, %wide [0, 2, 4, ..., 30] : vector<32xf32>, vector<32xf32>
    %dense = vector.transfer_write %even, %empty[%c0] {in_bounds = [true]} : vector<16xf32>, tensor<16xf32>
    %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
        ins(%dense : tensor<16xf32>) outs(%out : tensor<16xf32>) { ... }
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::tensor::TensorDialect",
    "::mlir::vector::VectorDialect",
  ];
}

def NNFSliceRowsBeforeCollapse : Pass<"nnf-slice-rows-before-collapse"> {
  let summary = "Take slices of whole collapsed rows before the collapse";
  let description = [{
    Rewrites `tensor.extract_slice(tensor.collapse_shape(x))` into
    `tensor.collapse_shape(tensor.extract_slice(x))` where, in every group
    of collapsed dims, the slice is whole rows of the group's inner dims:
    its size a multiple of their product and its offset provably one too (a
    constant, an affine map of such values, or the induction variable of an
    `scf.for` or `scf.forall` whose lower bound and step are). Code
    generation runs it inside a dispatch region tiled along a 1x1
    convolution's collapsed `H*W` dim, so that the producer of its NCHW
    input (a depthwise convolution) can be fused into the tile loop: fusion
    needs the slice of the producer's result itself. Upstream's bubble-up
    patterns take such groups with static offsets only.

    Example:

    ```mlir
    %flat = tensor.collapse_shape %x [[0], [1], [2, 3]] : tensor<1x192x56x56xf32> into tensor<1x192x3136xf32>
    scf.for %i = %c0 to %c3136 step %c224 {
      %tile = tensor.extract_slice %flat[0, 0, %i] [1, 192, 224] [1, 1, 1] : tensor<1x192x3136xf32> to tensor<1x192x224xf32>
    // becomes, in the loop
      %row = affine.apply affine_map<(d0) -> (d0 floordiv 56)>(%i)
      %rows = tensor.extract_slice %x[0, 0, %row, 0] [1, 192, 4, 56] [1, 1, 1, 1] : tensor<1x192x56x56xf32> to tensor<1x192x4x56xf32>
      %tile = tensor.collapse_shape %rows [[0], [1], [2, 3]] : tensor<1x192x4x56xf32> into tensor<1x192x224xf32>
    ```
  }];
  let dependentDialects = ["::mlir::affine::AffineDialect"];
}

def NNFPackWeights : Pass<"nnf-pack-weights"> {
  let summary = "Store large right operands of contractions as column panels";
  let description = [{
    A contraction's code reads its right operand (the `[K, N]` weight of a
    linear layer, the operand indexed by the output's innermost loop n) one
    register tile's columns at a time, a row after another. The rows of a
    large weight are pages apart, and hardware prefetchers stop at page
    boundaries, so a weight streamed from memory stalls on every row. This
    pass stores such constants (of at least `min-bytes`, with N a multiple
    of `panel` and larger) as `[N/panel, .., panel]`: the columns of each
    panel contiguous, row after row. The data is rearranged once, at compile
    time, weight by weight: packed data of 64 KiB or more is a
    `dense_resource` blob (`nnf_packed*`), and the constant it was packed
    from, if nnforge made it (`nnf-fold-constant-transposes`) and no op
    uses it any more, is freed before the next weight is packed. A constant
    that records the weight it was transposed from
    (`nnf.transpose_source`) is packed from that weight, after the
    transposed copy is freed: a weight's transposed copy and its panels
    are never in memory together. Where the
    constant's other uses all read one element (`tensor.extract`), they read
    the panels instead (`[.., n]` is `[n / panel, .., n % panel]`) and the
    constant is stored once. A constant that reaches its contractions through
    a `tensor.collapse_shape` (an im2col'd convolution's filter) is first
    replaced by a constant of the collapsed type. The contraction becomes a `linalg.generic` with one more parallel
    loop, the column within a panel (n then counts panels); its result
    `[.., N/panel, panel]` is collapsed back to `[.., N]`, which
    `nnf-fuse-elementwise` then moves past the contraction's epilogue.

    A right operand computed at run time (a function argument, an op's
    result) is packed too where each of its elements is read at least
    `runtime-min-reuse` times (the loops of the output that the operand
    lacks: a matmul's m): a `linalg.generic` copies it into panels on every
    call, which pays off only where many rows reuse the panels (measured: a
    2048^2 matmul on two threads -5 %, 1024^2 rows no gain).

    With `convolution-panel` set, the constant filters ([KH, KW, C, F]) of
    `convolution-min-bytes` or more of NHWC/HWCF convolutions computed from
    their input directly (unit strides and dilations, static shapes, one
    element type: those nnf-conv-to-im2col leaves) are stored likewise, as
    [F/panel, KH, KW, C, panel]. Their code reads a panel across all output
    rows: contiguous, it is neither copied out of the filter's rows on
    every call nor read from memory in a burst before the computation (3x3
    convolutions of 256 channels on 14x14, on 2 threads of the AMD EPYC
    Zen 4: 12 % less time, the weights in cache or not).
    The convolution becomes a generic with the column within a panel as
    its last loop.

    Example:

    ```mlir
    %w = arith.constant dense<...> : tensor<1024x4096xf32>
    %r = linalg.matmul ins(%x, %w : tensor<64x1024xf32>, tensor<1024x4096xf32>) outs(%acc : tensor<64x4096xf32>) -> tensor<64x4096xf32>
    // becomes
    %p = arith.constant dense<...> : tensor<128x1024x32xf32>
    %acc3 = tensor.expand_shape %acc [[0], [1, 2]] output_shape [64, 128, 32] : tensor<64x4096xf32> into tensor<64x128x32xf32>
    %r3 = linalg.generic {indexing_maps = [affine_map<(m, n, k, c) -> (m, k)>, affine_map<(m, n, k, c) -> (n, k, c)>, affine_map<(m, n, k, c) -> (m, n, c)>],
                          iterator_types = ["parallel", "parallel", "reduction", "parallel"]}
        ins(%x, %p : tensor<64x1024xf32>, tensor<128x1024x32xf32>) outs(%acc3 : tensor<64x128x32xf32>) { ... } -> tensor<64x128x32xf32>
    %r = tensor.collapse_shape %r3 [[0], [1, 2]] : tensor<64x128x32xf32> into tensor<64x4096xf32>
    ```
  }];
  let options = [
    Option<"panel", "panel", "int64_t", /*default=*/"32",
           "columns per panel (the register tile's width)">,
    Option<"minBytes", "min-bytes", "int64_t", /*default=*/"1048576",
           "smallest weight packed (smaller ones stay in L2 between calls)">,
    Option<"runtimeMinReuse", "runtime-min-reuse", "int64_t",
           /*default=*/"2048",
           "operands computed at run time are packed (copied on every call) "
           "where each element is read at least this many times (a "
           "matmul's m); 0 packs them all">,
    Option<"convolutionPanel", "convolution-panel", "int64_t", /*default=*/"0",
           "output channels per panel of the constant filters of "
           "convolutions computed from their input directly (0: filters "
           "are not packed)">,
    Option<"convolutionMinBytes", "convolution-min-bytes", "int64_t",
           /*default=*/"0", "smallest convolution filter packed">,
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

def NNFPackLayoutFreeArguments : Pass<"nnf-pack-layout-free-arguments"> {
  let summary = "Take function arguments whose layout the caller chooses as column panels";
  let description = [{
    A function argument marked `nnf.layout_free` holds data that the
    function's caller lays out once, when the model is built (the
    distributed build's rank weight slices, which reach each rank's program
    as arguments). Where every use of such an argument is the right operand
    of a contraction that `nnf-pack-weights` would pack (of at least
    `min-bytes`, N a multiple of `panel` and larger), the argument is taken
    as the panels themselves, `[N/panel, .., panel]`: its type changes, the
    contractions read the panels as `nnf-pack-weights` rewrites them, and
    `nnf.layout_free` is replaced by `nnf.panels = panel`, which tells the
    caller to store the data so. Nothing is copied when the function runs,
    unlike `nnf-pack-weights` on an argument. Unmarked arguments, and marked
    ones read by anything else, keep their type.

    Example:

    ```mlir
    func.func @f(%x: tensor<64x1024xf32>, %w: tensor<1024x4096xf32> {nnf.layout_free}) -> tensor<64x4096xf32> {
      ...
      %r = linalg.matmul ins(%x, %w : tensor<64x1024xf32>, tensor<1024x4096xf32>) outs(%acc : tensor<64x4096xf32>) -> tensor<64x4096xf32>
    // becomes
    func.func @f(%x: tensor<64x1024xf32>, %w: tensor<128x1024x32xf32> {nnf.panels = 32 : i64}) -> tensor<64x4096xf32> {
      ...
      %r3 = linalg.generic {...} ins(%x, %w : tensor<64x1024xf32>, tensor<128x1024x32xf32>) outs(%acc3 : tensor<64x128x32xf32>) { ... } -> tensor<64x128x32xf32>
      %r = tensor.collapse_shape %r3 [[0], [1, 2]] : tensor<64x128x32xf32> into tensor<64x4096xf32>
    ```
  }];
  let options = [
    Option<"panel", "panel", "int64_t", /*default=*/"32",
           "columns per panel (nnf-pack-weights' default)">,
    Option<"minBytes", "min-bytes", "int64_t", /*default=*/"1048576",
           "smallest argument packed (nnf-pack-weights' default)">,
  ];
  let dependentDialects = [
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

def NNFPadLeadingDimensions : Pass<"nnf-pad-leading-dimensions"> {
  let summary = "Give contraction operands a row stride that avoids cache-set conflicts";
  let description = [{
    A contraction's operand read as vectors along its rows (the `[K, N]`
    right operand of a matmul, the im2col matrix of a convolution) is read
    down its column tiles, one row after another. Where a row is a multiple
    of 4 KiB long (1024 or 2048 f32), the rows of a tile fall into the same
    L1 set and evict each other. This pass stores such operands (of at least
    `min-bytes`) with one cache line (64 bytes) more per row: a slice of a
    wider buffer, which bufferization reads with the padded stride.

    - A constant becomes a padded constant (at compile time) and its slice.
    - A linalg op whose result is the operand and whose destination is a
      `tensor.empty` writes into a slice of a wider `tensor.empty` instead.
    - A function argument is copied into such a slice once, on entry (for a
      contraction in an `nnf.dispatch` region, the region's operand is),
      where the contraction reads each of its elements at least 256 times
      (a matmul's m): with fewer rows, the copy on every call costs more
      than the padding saves (a jax model's weights are arguments). With
      `copy-arguments=false` arguments keep their layout: nnforge's CPU
      schedules copy the panels of such an operand that their register
      tiles read (contiguous, whatever its row stride), and a copy on entry
      would only add to that.
    - Anything else keeps its layout: copying a computed tensor again (a
      reshaped im2col matrix) would cost about what the padding saves.

    Example:

    ```mlir
    %r = linalg.matmul ins(%a, %b : tensor<1024x1024xf32>, tensor<1024x1024xf32>) outs(%acc : tensor<1024x1024xf32>) -> tensor<1024x1024xf32>
    // becomes
    %wide = tensor.empty() : tensor<1024x1040xf32>
    %view = tensor.extract_slice %wide[0, 0] [1024, 1024] [1, 1] : tensor<1024x1040xf32> to tensor<1024x1024xf32>
    %b2 = linalg.copy ins(%b : tensor<1024x1024xf32>) outs(%view : tensor<1024x1024xf32>) -> tensor<1024x1024xf32>
    %r = linalg.matmul ins(%a, %b2 : tensor<1024x1024xf32>, tensor<1024x1024xf32>) outs(%acc : tensor<1024x1024xf32>) -> tensor<1024x1024xf32>
    ```
  }];
  let options = [
    Option<"minBytes", "min-bytes", "int64_t", /*default=*/"2097152",
           "smallest operand padded (smaller ones stay in L2 whatever their stride)">,
    Option<"copyArguments", "copy-arguments", "bool", /*default=*/"true",
           "copy function arguments read often enough into padded rows on entry">,
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

def NNFInlineDispatchRegions : Pass<"nnf-inline-dispatch-regions"> {
  let summary = "Dissolve nnf.dispatch regions into their parent block";
  let description = [{
    Moves the ops of every `nnf.dispatch` region in front of the dispatch,
    its region arguments replaced by its inputs and its results by the
    yielded values, then erases it: once code generation has tiled and fused
    a region, bufferization and the lowering to LLVM see plain loops.

    Example:

    ```mlir
    %y = nnf.dispatch ins(%x : tensor<8xf32>) -> tensor<8xf32> {
    ^bb0(%in: tensor<8xf32>):
      %r = linalg.generic ... ins(%in : tensor<8xf32>) ...
      nnf.yield %r : tensor<8xf32>
    }
    // becomes
    %y = linalg.generic ... ins(%x : tensor<8xf32>) ...
    ```
  }];
}

def NNFOutlineDispatchRegions
    : Pass<"nnf-outline-dispatch-regions", "::mlir::ModuleOp"> {
  let summary = "Move each nnf.dispatch region into a function, identical ones into one";
  let description = [{
    Replaces every `nnf.dispatch` with a `func.call` of a private function
    whose body is the region's (its arguments the region's, `nnf.yield`
    become `func.return`), marked `nnf.dispatch_function`. Regions that are
    equivalent (same ops, attributes and types, locations aside: ResNet's
    repeated blocks) share one function, so that code generation schedules
    it and LLVM compiles it once. Tensor constants holding data (weights)
    become inputs, so that regions differing only in them are equivalent.
    The attributes of the dispatch op (a profiled build's region id) move to
    the call. A region reading a slice (a strided view once bufferized, which
    an argument of the identity layout would copy) stays in place.

    Example:

    ```mlir
    %y = nnf.dispatch ins(%x : tensor<8xf32>) -> tensor<8xf32> {
    ^bb0(%in: tensor<8xf32>):
      %r = linalg.generic ... ins(%in : tensor<8xf32>) ...
      nnf.yield %r : tensor<8xf32>
    }
    %z = nnf.dispatch ins(%y : tensor<8xf32>) -> tensor<8xf32> { (the same ops) }
    // becomes
    %y = func.call @main_dispatch_0(%x) : (tensor<8xf32>) -> tensor<8xf32>
    %z = func.call @main_dispatch_0(%y) : (tensor<8xf32>) -> tensor<8xf32>
    func.func private @main_dispatch_0(%in: tensor<8xf32>) -> tensor<8xf32>
        attributes {nnf.dispatch_function} {
      %r = linalg.generic ... ins(%in : tensor<8xf32>) ...
      return %r : tensor<8xf32>
    }
    ```
  }];
  let dependentDialects = ["::mlir::func::FuncDialect"];
}

def NNFProfileDispatchRegions
    : Pass<"nnf-profile-dispatch-regions", "::mlir::ModuleOp"> {
  let summary = "Time each dispatch region with counters in the module";
  let description = [{
    Instruments a module for profiling (`nnforge profile`): every public
    function with a body, and in it every `nnf.dispatch` region and every op
    that computes outside one (linalg ops, `tensor.pad`, ops holding regions
    such as loops), becomes a profiled region. Each is bracketed by calls to
    nnforge's runtime (cpp/runtime/profile.c): `nnforge_profile_start()`
    before it returns the time, `nnforge_profile_stop(counters, id, start)`
    after it adds the elapsed nanoseconds and one call to the region's pair
    of counters. A function's region runs from its entry to each return,
    so the time outside all other regions is its time less theirs.

    Region ids count from 0 in the order of the functions and of the ops in
    their blocks; each profiled op (or function) carries its id as the
    `nnf.profile_region` attribute, from which a profile maps the counters
    back to the ops (their names and locations). The counters are the
    module's own zeroed global `@nnf_profile_counters` (two `i64` per
    region), so that profiled models loaded side by side count apart; the
    added public function `@nnf_profile_counters_address` returns its
    address to the caller reading them. Run on linalg on tensors after
    `nnf-form-dispatch-regions`: ops stay in place through code generation,
    so each region's loops end up between its two calls. A module profiled
    already is refused.

    Example:

    ```mlir
    func.func @main(%x: tensor<8xf32>) -> tensor<8xf32> {
      %y = nnf.dispatch ins(%x : tensor<8xf32>) -> tensor<8xf32> { ... }
      return %y : tensor<8xf32>
    }
    // becomes
    llvm.mlir.global internal @nnf_profile_counters(dense<0> : tensor<4xi64>) : !llvm.array<4 x i64>
    func.func @main(%x: tensor<8xf32>) -> tensor<8xf32> attributes {nnf.profile_region = 0 : i64} {
      %t0 = llvm.call @nnforge_profile_start() : () -> i64
      %t1 = llvm.call @nnforge_profile_start() : () -> i64
      %y = nnf.dispatch ins(%x : tensor<8xf32>) -> tensor<8xf32> attributes {nnf.profile_region = 1 : i64} { ... }
      %counters = llvm.mlir.addressof @nnf_profile_counters : !llvm.ptr
      %c1 = arith.constant 1 : i64
      llvm.call @nnforge_profile_stop(%counters, %c1, %t1) : (!llvm.ptr, i64, i64) -> ()
      ...
      llvm.call @nnforge_profile_stop(%counters, %c0, %t0) : (!llvm.ptr, i64, i64) -> ()
      return %y : tensor<8xf32>
    }
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::LLVM::LLVMDialect",
  ];
}

def NNFDuplicateSharedInits : Pass<"nnf-duplicate-shared-inits"> {
  let summary = "Give each user of a shared tensor.empty or fill of one its own";
  let description = [{
    torch-mlir's output, CSE'd, shares one `tensor.empty` (or one
    `linalg.fill` of a scalar into one) among the ops that take a tensor of
    that shape as their destination: the transposes of several weights,
    the accumulators of several matmuls. Split over ranks, those users want
    their destinations sharded differently (a column-split projection, a
    replicated one), and `sharding-propagation` aborts on a value whose
    users annotate it with different shardings. This pass clones such an
    op (with its `tensor.empty`) before each user but the first. Runs
    before `sharding-propagation` in the partitioning of models split over
    ranks.

    Example:

    ```mlir
    %e = tensor.empty() : tensor<6x32xf32>
    %a = linalg.fill ins(%zero : f32) outs(%e : tensor<6x32xf32>) -> tensor<6x32xf32>
    %q = linalg.matmul ins(%x, %wq : ...) outs(%a : tensor<6x32xf32>) -> tensor<6x32xf32>
    %o = linalg.matmul ins(%y, %wo : ...) outs(%a : tensor<6x32xf32>) -> tensor<6x32xf32>
    // becomes: %o's destination is a second tensor.empty and linalg.fill
    ```
  }];
}

def NNFBubbleUpExtractSlices : Pass<"nnf-bubble-up-extract-slices"> {
  let summary = "Move tensor.extract_slice ops above their producers";
  let description = [{
    Applies upstream's patterns that compute a slice of a result from slices
    of the operands (`linalg::populateBubbleUpExtractSliceOpPatterns`
    through linalg ops, `tensor::populateBubbleUpExtractSliceOpPatterns`
    through `tensor.expand_shape` / `collapse_shape`; MLIR has them as
    patterns, not as a pass). The linalg pattern needs the producer to have
    no other user: a single-result linalg op whose users are all
    unit-stride slices, taking together no more elements than it computes,
    is first copied once per slice (no work is repeated). A packed
    query/key/value projection (one matmul sliced in thirds) becomes one
    matmul per third over its own slice of the weight, which a split of
    the heads can shard. Runs before `sharding-propagation` in the
    partitioning of models split over ranks.

    Example:

    ```mlir
    %y = linalg.matmul ins(%x, %w : tensor<4x8xf32>, tensor<8x6xf32>) outs(%init : tensor<4x6xf32>) -> tensor<4x6xf32>
    %a = tensor.extract_slice %y[0, 0] [4, 3] [1, 1] : tensor<4x6xf32> to tensor<4x3xf32>
    %b = tensor.extract_slice %y[0, 3] [4, 3] [1, 1] : tensor<4x6xf32> to tensor<4x3xf32>
    // becomes, for %b (and likewise %a):
    %wb = tensor.extract_slice %w[0, 3] [8, 3] [1, 1] : tensor<8x6xf32> to tensor<8x3xf32>
    %ib = tensor.extract_slice %init[0, 3] [4, 3] [1, 1] : tensor<4x6xf32> to tensor<4x3xf32>
    %b = linalg.matmul ins(%x, %wb : tensor<4x8xf32>, tensor<8x3xf32>) outs(%ib : tensor<4x3xf32>) -> tensor<4x3xf32>
    ```
  }];
  let dependentDialects = ["mlir::affine::AffineDialect", "mlir::arith::ArithDialect",
                           "mlir::tensor::TensorDialect"];
}

def NNFEraseUnusedLinalgResults : Pass<"nnf-erase-unused-linalg-results"> {
  let summary = "Drop the unused results of linalg.generic ops";
  let description = [{
    Applies upstream's `linalg::populateEraseUnusedOperandsAndResultsPatterns`
    (which MLIR exposes as patterns, not as a pass): a result of a
    `linalg.generic` that has no uses is dropped with its destination and
    the payload computing it, and duplicated operands are merged.
    torch-mlir lowers a maximum over a dimension (softmax's first step) to
    one generic computing the maximum and its index, and softmax uses only
    the maximum. `sharding-propagation` shards each result of an op after
    its users, so an unused result gets no sharding and `shard-partition`
    cannot partition the op. Runs before `sharding-propagation` in the
    partitioning of models split over ranks.

    Example:

    ```mlir
    %m:2 = linalg.generic {indexing_maps = [(d0, d1) -> (d0, d1), (d0, d1) -> (d0), (d0, d1) -> (d0)],
                           iterator_types = ["parallel", "reduction"]}
        ins(%x : tensor<4x6xf32>) outs(%max, %index : tensor<4xf32>, tensor<4xi64>) {
    ^bb0(%in: f32, %out: f32, %i: i64):
      %j = linalg.index 1 : index
      %k = arith.index_cast %j : index to i64
      %y = arith.maximumf %in, %out : f32
      %greater = arith.cmpf ogt, %in, %out : f32
      %z = arith.select %greater, %k, %i : i64
      linalg.yield %y, %z : f32, i64
    } -> (tensor<4xf32>, tensor<4xi64>)
    // with %m#1 unused, becomes a generic with one result, the maximum
    ```
  }];
}

def NNFPropagateReshapes : Pass<"nnf-propagate-reshapes"> {
  let summary = "Fold reshapes into the linalg ops around them, regrouped views included";
  let description = [{
    Applies upstream's `linalg::populateFoldReshapeOpsByExpansionPatterns`
    (a reshape folded into the linalg op on its other side by expanding the
    op's loops) and `tensor::populateBubbleUpExpandShapePatterns`, folding
    whatever else uses the op (upstream's default wants one use; the op is
    replaced by its expanded form, its other users read a reshape of it, so
    nothing is computed twice). A `tensor.expand_shape` of a
    `tensor.collapse_shape` that no one reshape does is first rewritten as
    an expand_shape to the coarsest shape that refines both sides, then a
    collapse_shape (static shapes; a pair with no common refinement, a size
    of one side that is no product of consecutive sizes of it, stays).

    `torch.nn.MultiheadAttention` computes its heads collapsed with the
    batch: its `[S, B, E]` queries, keys and values viewed as `[S, B * H, D]`
    (torch-mlir: through `[S, B * E]`), its scores and softmax on
    `[B * H, S, S]`. A rank's heads are no block of `B * H` for a batch above
    1; after this pass the ops run on `[.., B, H, ..]` loops and split by
    heads. Runs before `sharding-propagation` in the partitioning of models
    split over ranks.

    Example:

    ```mlir
    %c = tensor.collapse_shape %q [[0], [1, 2]] : tensor<6x2x32xf32> into tensor<6x64xf32>
    %e = tensor.expand_shape %c [[0], [1, 2]] output_shape [6, 8, 8] : tensor<6x64xf32> into tensor<6x8x8xf32>
    // becomes
    %r = tensor.expand_shape %q [[0], [1], [2, 3]] output_shape [6, 2, 4, 8] : tensor<6x2x32xf32> into tensor<6x2x4x8xf32>
    %e = tensor.collapse_shape %r [[0], [1, 2], [3]] : tensor<6x2x4x8xf32> into tensor<6x8x8xf32>
    ```
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect", "::mlir::tensor::TensorDialect"];
}

def NNFUncollapseBatchMatmul : Pass<"nnf-uncollapse-batch-matmul"> {
  let summary = "Compute a batch matmul on collapsed batches over the uncollapsed ones";
  let description = [{
    Replaces a `linalg.batch_matmul` whose operands are `[B1, ..., Bn, M, K]`
    and `[B1, ..., Bn, K, N]` tensors with their batch dimensions collapsed
    into one, and whose result is expanded back to `[B1, ..., Bn, M, N]`, by
    a `linalg.generic` computing the same product on the uncollapsed
    operands, its accumulator filled in the uncollapsed shape (the batch
    matmul's must be a `linalg.fill` of a `tensor.empty`). torch emits the
    collapsed form for `a @ b` on tensors of rank 4 (attention's scores and mixing, `[batch, heads, ...]`); with the heads
    split over ranks, a rank's heads are a block of `batch * heads` only for
    a batch of 1, so the collapsed form cannot be sharded by heads and the
    uncollapsed one can. Static shapes only. Runs before
    `sharding-propagation` in the partitioning of models split over ranks.

    Example:

    ```mlir
    %a = tensor.collapse_shape %q [[0, 1], [2], [3]] : tensor<2x4x6x8xf32> into tensor<8x6x8xf32>
    %b = tensor.collapse_shape %k [[0, 1], [2], [3]] : tensor<2x4x8x6xf32> into tensor<8x8x6xf32>
    %p = linalg.batch_matmul ins(%a, %b : tensor<8x6x8xf32>, tensor<8x8x6xf32>) outs(%acc : tensor<8x6x6xf32>) -> tensor<8x6x6xf32>
    %r = tensor.expand_shape %p [[0, 1], [2], [3]] output_shape [2, 4, 6, 6] : tensor<8x6x6xf32> into tensor<2x4x6x6xf32>
    // becomes (%acc = linalg.fill of %zero)
    %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<2x4x6x6xf32>) -> tensor<2x4x6x6xf32>
    %r = linalg.generic {indexing_maps = [(b, h, m, n, k) -> (b, h, m, k), (b, h, m, n, k) -> (b, h, k, n),
                                          (b, h, m, n, k) -> (b, h, m, n)],
                         iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]}
        ins(%q, %k : tensor<2x4x6x8xf32>, tensor<2x4x8x6xf32>) outs(%init : tensor<2x4x6x6xf32>) {...}
    ```
  }];
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
}

def NNFVerifySharding : Pass<"nnf-verify-sharding", "::mlir::ModuleOp"> {
  let summary = "Report the first value sharding-propagation left unannotated";
  let description = [{
    `shard-partition` expects every tensor operand of an op to come from a
    `shard.shard` and every tensor result to feed one `shard.shard` that is
    not `annotate_for_users`. Where `sharding-propagation` found no sharding for an op
    (the shardings around it disagree, or a reshape's split is no block of
    its other side), the op is left unannotated and `shard-partition` aborts
    on a failed cast. This pass, run between the two, reports the first
    such op as an error naming the operand or result, and fails. It changes
    nothing.

    Example:

    ```mlir
    // error: cannot be partitioned: sharding-propagation found no sharding
    // of its result #0 that agrees with the shardings around it ...
    %e = tensor.expand_shape %w [[0, 1]] output_shape [3, 8]
        : tensor<24xf32> into tensor<3x8xf32>
    ```
  }];
}

def NNFVerifyShardToMPI : Pass<"nnf-verify-shard-to-mpi", "::mlir::ModuleOp"> {
  let summary = "Report shard ops that convert-shard-to-mpi cannot lower";
  let description = [{
    After `shard-partition`, each rank's program holds the collectives that
    the shardings imply. MLIR 22.1.8's `convert-shard-to-mpi` lowers
    `shard.all_reduce` (on element types MPI has a datatype for) and the
    process index queries; any other collective (`all_gather`, `all_slice`,
    `reduce_scatter`, `all_to_all`, `broadcast`, `shift`, `update_halo`, ...)
    fails its legalization, and inside a Python process that failure aborts
    the process. This pass emits an error naming each such op, and fails,
    so that the pipeline stops with a diagnostic before
    `convert-shard-to-mpi` runs. It changes nothing.

    Example:

    ```mlir
    // error: 'shard.all_gather' has no lowering to MPI in this MLIR ...
    %g = shard.all_gather %x on @grid grid_axes = [0] gather_axis = 0
        : tensor<2xf32> -> tensor<4xf32>
    ```
  }];
}

def NNFShardWorldCommunicator
    : Pass<"nnf-shard-world-communicator", "::mlir::ModuleOp"> {
  let summary = "Run collectives on MPI_COMM_WORLD instead of a split of it";
  let description = [{
    `convert-shard-to-mpi` computes, before every collective, a communicator
    split off `MPI_COMM_WORLD` with one constant color for all ranks and the
    rank's grid index as key, and never frees it: every call of the model
    creates one more communicator, and MPICH runs out after a few thousand.
    For a one-dimensional grid whose size is the number of ranks (which the
    loader of nnforge's distributed models checks), that split holds the
    same ranks in the same order as `MPI_COMM_WORLD`; this pass uses the
    world communicator instead. Only splits of `mpi.comm_world` by a
    constant color whose return value is unused are replaced.

    Example:

    ```mlir
    %world = mpi.comm_world : !mpi.comm
    %comm = mpi.comm_split(%world, %c0_i32, %key) : !mpi.comm
    mpi.allreduce(%buf, %buf, MPI_SUM, %comm) : memref<8xf32>, memref<8xf32>
    // becomes
    %world = mpi.comm_world : !mpi.comm
    mpi.allreduce(%buf, %buf, MPI_SUM, %world) : memref<8xf32>, memref<8xf32>
    ```
  }];
}

#endif // NNFORGE_PASSES
