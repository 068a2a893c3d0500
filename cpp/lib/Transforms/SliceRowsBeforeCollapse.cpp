//===- SliceRowsBeforeCollapse.cpp - slices of collapsed rows -------------===//
//
// A 1x1 convolution is a contraction over the collapsed spatial dims of its
// NCHW input ([N, C, H, W] -> [N, C, H*W]). Tiled along H*W, it reads
// tensor.extract_slice(tensor.collapse_shape(x)); a producer of x (the
// depthwise convolution of a MobileNetV2 block) can be fused into the tile
// loop only if the slice is taken of x itself. Where the tile is whole rows
// (its size a multiple of W and its offset provably one too: the offset of a
// tile loop stepping by whole rows), the slice of x is rows h0 .. h0 + n of
// every W column, collapsed afterwards. Upstream's bubble-up patterns take
// slices of such groups with static offsets only.
//
//===----------------------------------------------------------------------===//

#include <numeric>

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFSLICEROWSBEFORECOLLAPSE
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

int64_t knownDivisor(Value value, unsigned depth);

/// A divisor of every value `expr` takes, its dims and symbols being
/// `operands` (0: the expression is 0).
int64_t knownDivisor(AffineExpr expr, ValueRange operands, unsigned numDims,
                     unsigned depth) {
  if (auto constant = dyn_cast<AffineConstantExpr>(expr))
    return std::abs(constant.getValue());
  if (auto dim = dyn_cast<AffineDimExpr>(expr))
    return knownDivisor(operands[dim.getPosition()], depth + 1);
  if (auto symbol = dyn_cast<AffineSymbolExpr>(expr))
    return knownDivisor(operands[numDims + symbol.getPosition()], depth + 1);
  auto binary = cast<AffineBinaryOpExpr>(expr);
  int64_t lhs = knownDivisor(binary.getLHS(), operands, numDims, depth);
  int64_t rhs = knownDivisor(binary.getRHS(), operands, numDims, depth);
  int64_t product;
  switch (expr.getKind()) {
  case AffineExprKind::Add:
    return std::gcd(lhs, rhs);
  case AffineExprKind::Mul:
    return __builtin_mul_overflow(lhs, rhs, &product) ? 1 : product;
  default:
    return 1; // floordiv, ceildiv, mod: nothing known
  }
}

/// A divisor of every value `value` takes (0: it is 0): constants, affine
/// maps of such values, and induction variables of scf.for and scf.forall
/// loops (a common divisor of their lower bound and step).
int64_t knownDivisor(Value value, unsigned depth) {
  constexpr unsigned kMaxDepth = 8;
  if (depth > kMaxDepth)
    return 1;
  APInt constant;
  if (matchPattern(value, m_ConstantInt(&constant)))
    return std::abs(constant.getSExtValue());
  if (auto apply = value.getDefiningOp<affine::AffineApplyOp>())
    return knownDivisor(apply.getAffineMap().getResult(0),
                        apply.getMapOperands(), apply.getAffineMap().getNumDims(),
                        depth);
  auto argument = dyn_cast<BlockArgument>(value);
  if (!argument)
    return 1;
  auto divisorOf = [&](OpFoldResult bound) {
    if (std::optional<int64_t> fixed = getConstantIntValue(bound))
      return std::abs(*fixed);
    return knownDivisor(cast<Value>(bound), depth + 1);
  };
  Operation *owner = argument.getOwner()->getParentOp();
  if (auto loop = dyn_cast<scf::ForOp>(owner); loop && value == loop.getInductionVar())
    return std::gcd(divisorOf(loop.getLowerBound()), divisorOf(loop.getStep()));
  if (auto loop = dyn_cast<scf::ForallOp>(owner)) {
    unsigned position = argument.getArgNumber();
    if (position < loop.getRank())
      return std::gcd(divisorOf(loop.getMixedLowerBound()[position]),
                      divisorOf(loop.getMixedStep()[position]));
  }
  return 1;
}

/// extract_slice(collapse_shape(x)) -> collapse_shape(extract_slice(x)) where
/// the slice of every collapsed group is whole rows of the group's inner
/// dims: x's dims after the first of the group taken whole, its first sliced.
struct SliceRowsBeforeCollapse : OpRewritePattern<tensor::ExtractSliceOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(tensor::ExtractSliceOp slice,
                                PatternRewriter &rewriter) const override {
    auto collapse = slice.getSource().getDefiningOp<tensor::CollapseShapeOp>();
    if (!collapse || !collapse.getSrcType().hasStaticShape() ||
        slice.getResultType().getRank() != slice.getSourceType().getRank() ||
        !slice.hasUnitStride())
      return rewriter.notifyMatchFailure(slice, "no unit-stride slice of a static collapse");
    ArrayRef<int64_t> shape = collapse.getSrcType().getShape();
    SmallVector<OpFoldResult> offsets, sizes;
    for (auto [group, offset, size] :
         llvm::zip_equal(collapse.getReassociationIndices(),
                         slice.getMixedOffsets(), slice.getMixedSizes())) {
      if (group.size() == 1) {
        offsets.push_back(offset);
        sizes.push_back(size);
        continue;
      }
      int64_t row = 1;
      for (int64_t dim : ArrayRef(group).drop_front())
        row *= shape[dim];
      std::optional<int64_t> staticSize = getConstantIntValue(size);
      std::optional<int64_t> staticOffset = getConstantIntValue(offset);
      int64_t offsetDivisor =
          staticOffset ? *staticOffset : knownDivisor(cast<Value>(offset), 0);
      if (!staticSize || *staticSize % row || offsetDivisor % row)
        return rewriter.notifyMatchFailure(slice, "a group's slice is no whole rows");
      AffineExpr rows = rewriter.getAffineDimExpr(0).floorDiv(row);
      offsets.push_back(affine::makeComposedFoldedAffineApply(
          rewriter, slice.getLoc(), rows, {offset}));
      sizes.push_back(rewriter.getIndexAttr(*staticSize / row));
      for (int64_t dim : ArrayRef(group).drop_front()) {
        offsets.push_back(rewriter.getIndexAttr(0));
        sizes.push_back(rewriter.getIndexAttr(shape[dim]));
      }
    }
    SmallVector<OpFoldResult> strides(offsets.size(), rewriter.getIndexAttr(1));
    Value rowsSlice = tensor::ExtractSliceOp::create(
        rewriter, slice.getLoc(), collapse.getSrc(), offsets, sizes, strides);
    rewriter.replaceOpWithNewOp<tensor::CollapseShapeOp>(
        slice, slice.getResultType(), rowsSlice,
        collapse.getReassociationIndices());
    return success();
  }
};

struct NNFSliceRowsBeforeCollapsePass
    : nnforge::impl::NNFSliceRowsBeforeCollapseBase<
          NNFSliceRowsBeforeCollapsePass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<SliceRowsBeforeCollapse>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};

} // namespace
