//===- MultiplyByReciprocal.cpp - vector division by a broadcast scalar ---===//
//
// A softmax divides each row by its sum: vectorized, one `vdivps` per vector
// of the row, where one scalar division and a multiplication per vector do
// (a third of the softmax's time went to the divisions on AMD Zen 4).
//
//===----------------------------------------------------------------------===//

#include <cmath>

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFMULTIPLYBYRECIPROCAL
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// The reciprocal of a splat constant, where it is a normal number.
std::optional<APFloat> normalReciprocal(const APFloat &value) {
  APFloat reciprocal(value.getSemantics(), 1);
  if (reciprocal.divide(value, APFloat::rmNearestTiesToEven) &
      ~APFloat::opInexact)
    return std::nullopt; // divided by zero, overflowed, underflowed
  if (!reciprocal.isNormal())
    return std::nullopt;
  return reciprocal;
}

/// x / broadcast(s) = x * broadcast(1 / s); x / splat(c) = x * splat(1 / c).
struct DivisionByBroadcast : OpRewritePattern<arith::DivFOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(arith::DivFOp division,
                                PatternRewriter &rewriter) const override {
    auto type = dyn_cast<VectorType>(division.getType());
    if (!type)
      return rewriter.notifyMatchFailure(division, "not a vector division");
    Location loc = division.getLoc();
    Value divisor = division.getRhs();
    Value reciprocal;
    if (auto broadcast = divisor.getDefiningOp<vector::BroadcastOp>()) {
      Value scalar = broadcast.getSource();
      if (!isa<FloatType>(scalar.getType()))
        return rewriter.notifyMatchFailure(division, "broadcasts a vector");
      rewriter.setInsertionPoint(broadcast);
      Value one = arith::ConstantOp::create(
          rewriter, loc, rewriter.getFloatAttr(scalar.getType(), 1.0));
      Value inverse = arith::DivFOp::create(rewriter, loc, one, scalar,
                                            division.getFastmathAttr());
      reciprocal = vector::BroadcastOp::create(rewriter, loc, type, inverse);
    } else {
      APFloat splat(0.0f);
      if (!matchPattern(divisor, m_ConstantFloat(&splat)))
        return rewriter.notifyMatchFailure(division, "no same-lane divisor");
      std::optional<APFloat> inverse = normalReciprocal(splat);
      if (!inverse)
        return rewriter.notifyMatchFailure(division, "reciprocal not normal");
      reciprocal = arith::ConstantOp::create(
          rewriter, loc, type, DenseElementsAttr::get(type, *inverse));
    }
    rewriter.setInsertionPoint(division);
    rewriter.replaceOpWithNewOp<arith::MulFOp>(division, division.getLhs(),
                                               reciprocal,
                                               division.getFastmathAttr());
    return success();
  }
};

struct NNFMultiplyByReciprocalPass
    : nnforge::impl::NNFMultiplyByReciprocalBase<NNFMultiplyByReciprocalPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<DivisionByBroadcast>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
