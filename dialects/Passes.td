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
  }];
  let dependentDialects = [
    "::nnforge::nnf::NNFDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

def NNFWidenBoolMemrefs : Pass<"nnf-widen-bool-memrefs", "::mlir::ModuleOp"> {
  let summary = "Store boolean (i1) memrefs as i8 memrefs";
  let description = [{
    MLIR's memref-to-LLVM lowering cannot load or store `i1` elements (it
    asserts that integer elements are at least a byte wide), so this pass
    rewrites every memref of `i1` into the memref of `i8` with the same shape,
    layout and memory space, after bufferization and before
    `expand-strided-metadata` / `finalize-memref-to-llvm`:

    - `memref.load` of `i1` becomes a load of `i8` followed by `arith.trunci`;
      `memref.store` of `i1` stores the `arith.extui` of the value.
    - `memref.global` of `i1` becomes an `i8` global with its initial value
      widened (true is 1); `memref.get_global` is retyped.
    - Function signatures, calls and returns, and `scf` ops, are converted
      structurally, so function arguments and results of `i1` memrefs become
      `i8` memrefs: one byte per element, the layout of a numpy bool array.
    - Any other op without regions (alloc, dealloc, subview, cast, copy,
      reshapes, metadata extraction...) is recreated with the converted types.
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

#endif // NNFORGE_PASSES
