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
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::tensor::TensorDialect",
  ];
}

#endif // NNFORGE_PASSES
