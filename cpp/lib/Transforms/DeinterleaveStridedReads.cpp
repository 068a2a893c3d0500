//===- DeinterleaveStridedReads.cpp - strided windows as vector shuffles ---===//
//
// A strided convolution or pooling tiled down to one output row segment
// reads its input at every s-th element (map d0 * s). Upstream's vectorizer
// takes no such map, so these segments stayed scalar loops (ResNet-18's
// first layer copied its stride-2 windows one float at a time, and its max
// pool ran scalar at a fifth of onnxruntime's speed). This pass reads such an
// operand as one contiguous vector of L * s elements and keeps every s-th
// lane (a shuffle: two loads and a permute on AVX-512 for s = 2), then hands
// the segment the L elements as a dense operand with an identity map, which
// the vectorizer takes and whose temporary tensor it folds away.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFDEINTERLEAVESTRIDEDREADS
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// The widest contiguous read (in elements) a strided operand becomes: four
/// AVX-512 registers of f32. Larger segments are left alone (the pass is
/// meant for tiled row segments, not whole tensors).
constexpr int64_t kMaxReadLanes = 64;

/// A 1-D operand read at `loop * stride`.
struct StridedRead {
  unsigned loop;
  int64_t stride;
};

std::optional<StridedRead> stridedRead(AffineMap map) {
  if (map.getNumResults() != 1)
    return std::nullopt;
  auto product = dyn_cast<AffineBinaryOpExpr>(map.getResult(0));
  if (!product || product.getKind() != AffineExprKind::Mul)
    return std::nullopt;
  auto loop = dyn_cast<AffineDimExpr>(product.getLHS());
  auto stride = dyn_cast<AffineConstantExpr>(product.getRHS());
  if (!loop || !stride || stride.getValue() < 2)
    return std::nullopt;
  return StridedRead{loop.getPosition(), stride.getValue()};
}

struct DeinterleaveStridedRead : OpRewritePattern<linalg::GenericOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::GenericOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasPureTensorSemantics())
      return rewriter.notifyMatchFailure(op, "not on tensors");
    SmallVector<int64_t> loopSizes = op.getStaticLoopRanges();
    for (OpOperand *input : op.getDpsInputOperands()) {
      auto type = dyn_cast<RankedTensorType>(input->get().getType());
      std::optional<StridedRead> read =
          stridedRead(op.getMatchingIndexingMap(input));
      if (!type || type.getRank() != 1 || !type.hasStaticShape() || !read ||
          !type.getElementType().isIntOrFloat())
        continue;
      int64_t lanes = loopSizes[read->loop];
      int64_t wide = lanes * read->stride;
      if (ShapedType::isDynamic(lanes) || wide > kMaxReadLanes ||
          type.getDimSize(0) < (lanes - 1) * read->stride + 1)
        continue;
      rewriteRead(rewriter, op, *input, *read, lanes);
      return success();
    }
    return rewriter.notifyMatchFailure(op, "no 1-D operand read with a stride");
  }

  static void rewriteRead(PatternRewriter &rewriter, linalg::GenericOp op,
                          OpOperand &input, StridedRead read, int64_t lanes) {
    Location loc = op.getLoc();
    auto type = cast<RankedTensorType>(input.get().getType());
    Type element = type.getElementType();
    int64_t wide = lanes * read.stride;
    Value zero = arith::ConstantIndexOp::create(rewriter, loc, 0);
    Value padding = arith::ConstantOp::create(rewriter, loc, element,
                                              rewriter.getZeroAttr(element));
    // Lanes past the operand's end (the last stride - 1) read the padding.
    bool inBounds = wide <= type.getDimSize(0);
    Value contiguous = vector::TransferReadOp::create(
        rewriter, loc, VectorType::get({wide}, element), input.get(),
        ValueRange{zero}, padding, ArrayRef<bool>{inBounds});
    SmallVector<int64_t> everyStride;
    for (int64_t lane = 0; lane < lanes; ++lane)
      everyStride.push_back(lane * read.stride);
    Value picked = vector::ShuffleOp::create(rewriter, loc, contiguous,
                                             contiguous, everyStride);
    Value empty = tensor::EmptyOp::create(rewriter, loc, {lanes}, element);
    Value dense = vector::TransferWriteOp::create(rewriter, loc, picked, empty,
                                                  ValueRange{zero},
                                                  ArrayRef<bool>{true})
                      .getResult();
    SmallVector<AffineMap> maps = op.getIndexingMapsArray();
    maps[input.getOperandNumber()] =
        AffineMap::get(op.getNumLoops(), 0,
                       rewriter.getAffineDimExpr(read.loop));
    rewriter.modifyOpInPlace(op, [&] {
      input.set(dense);
      op.setIndexingMapsAttr(rewriter.getAffineMapArrayAttr(maps));
    });
  }
};

struct NNFDeinterleaveStridedReadsPass
    : nnforge::impl::NNFDeinterleaveStridedReadsBase<
          NNFDeinterleaveStridedReadsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<DeinterleaveStridedRead>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
