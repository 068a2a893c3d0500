//===- UnbroadcastBatchMatmul.cpp - batch matmul by one matrix as a matmul -===//
//
// torch-mlir lowers `x @ W` for a 3-D `x` whose rows are not contiguous as a
// batch matmul by W broadcast along the batch, which materializes one copy
// of W per batch. Multiplying every batch by the same matrix is one matmul
// of all rows: collapse [B, M, K] to [B*M, K] (free on tensors), multiply,
// expand the result back.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"
#include "nnforge/Transforms/LinalgMatchers.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFUNBROADCASTBATCHMATMUL
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

struct UnbroadcastBatchMatmul : OpRewritePattern<linalg::BatchMatmulOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::BatchMatmulOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasPureTensorSemantics() || op.hasUserDefinedMaps())
      return rewriter.notifyMatchFailure(op, "not the plain tensor form");
    Value matrix = nnforge::batchBroadcastSource(op.getDpsInputOperand(1)->get());
    if (!matrix)
      return rewriter.notifyMatchFailure(op, "right operand is no batch broadcast");
    Value lhs = op.getDpsInputOperand(0)->get();
    Value init = op.getDpsInitOperand(0)->get();
    auto lhsType = cast<RankedTensorType>(lhs.getType());
    auto resultType = cast<RankedTensorType>(init.getType());
    if (lhsType.isDynamicDim(0) || lhsType.isDynamicDim(1))
      return rewriter.notifyMatchFailure(op, "dynamic batch or rows");

    Location loc = op.getLoc();
    SmallVector<ReassociationIndices> batchIntoRows = {{0, 1}, {2}};
    Value rows = tensor::CollapseShapeOp::create(rewriter, loc, lhs, batchIntoRows);
    Value flatInit =
        tensor::CollapseShapeOp::create(rewriter, loc, init, batchIntoRows);
    Value product = linalg::MatmulOp::create(
                        rewriter, loc, TypeRange{flatInit.getType()},
                        ValueRange{rows, matrix}, ValueRange{flatInit})
                        .getResult(0);
    rewriter.replaceOpWithNewOp<tensor::ExpandShapeOp>(op, resultType, product,
                                                       batchIntoRows);
    return success();
  }
};

struct NNFUnbroadcastBatchMatmulPass
    : nnforge::impl::NNFUnbroadcastBatchMatmulBase<
          NNFUnbroadcastBatchMatmulPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<UnbroadcastBatchMatmul>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
