//===- PairwiseVectorReductions.cpp - float min/max reductions as trees ---===//
//
// LLVM expands a horizontal floating-point minimum or maximum one lane after
// another unless it may assume no NaN: a vector<64xf32> maximum (a softmax
// row's partial maxima) became 64 dependent scalar steps of three
// instructions each, as many as the whole row's vector loop. These
// reductions are associative, NaN included, so combining the two halves of
// the vector elementwise first gives the same result in a few vector steps.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFPAIRWISEVECTORREDUCTIONS
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

bool isFloatMinMax(vector::CombiningKind kind) {
  switch (kind) {
  case vector::CombiningKind::MAXNUMF:
  case vector::CombiningKind::MINNUMF:
  case vector::CombiningKind::MAXIMUMF:
  case vector::CombiningKind::MINIMUMF:
    return true;
  default:
    return false;
  }
}

/// reduction(v[0..2n)) = reduction(combine(v[0..n), v[n..2n))).
struct HalveMinMaxReduction : OpRewritePattern<vector::ReductionOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(vector::ReductionOp op,
                                PatternRewriter &rewriter) const override {
    VectorType type = op.getSourceVectorType();
    if (!isFloatMinMax(op.getKind()) || op.isMasked())
      return rewriter.notifyMatchFailure(op, "not an unmasked float min/max");
    if (type.getRank() != 1 || type.isScalable() || type.getNumElements() < 4 ||
        type.getNumElements() % 2 != 0)
      return rewriter.notifyMatchFailure(op, "no even, static vector of 4+");
    int64_t half = type.getNumElements() / 2;
    Location loc = op.getLoc();
    auto slice = [&](int64_t offset) -> Value {
      return vector::ExtractStridedSliceOp::create(
          rewriter, loc, op.getVector(), ArrayRef<int64_t>{offset},
          ArrayRef<int64_t>{half}, ArrayRef<int64_t>{1});
    };
    Value combined = vector::makeArithReduction(
        rewriter, loc, op.getKind(), slice(0), slice(half),
        op.getFastmathAttr());
    rewriter.replaceOpWithNewOp<vector::ReductionOp>(
        op, op.getKind(), combined, op.getAcc(), op.getFastmath());
    return success();
  }
};

struct NNFPairwiseVectorReductionsPass
    : nnforge::impl::NNFPairwiseVectorReductionsBase<
          NNFPairwiseVectorReductionsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<HalveMinMaxReduction>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
