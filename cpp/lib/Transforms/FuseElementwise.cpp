//===- FuseElementwise.cpp - elementwise fusion without recomputation -----===//
//
// Upstream's elementwise fusion patterns, driven by a control function that
// refuses fusions which recompute the producer per consumer iteration (they
// turn matmuls into generics no schedule recognizes) and accepts cheap
// producers with several uses (so their results need not go to memory).
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Tensor/Transforms/Transforms.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFFUSEELEMENTWISE
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// Producers with at most this many arith ops are recomputed in each consumer
/// rather than stored, when they have several uses.
constexpr unsigned kCheapProducerOps = 2;

bool isCheapToRecompute(linalg::GenericOp producer) {
  Block &body = producer.getRegion().front();
  unsigned count = 0;
  for (Operation &op : body.without_terminator()) {
    if (!isa<arith::ArithDialect>(op.getDialect()))
      return false;
    ++count;
  }
  return count <= kCheapProducerOps;
}

bool shouldFuse(OpOperand *fusedOperand) {
  auto producer = fusedOperand->get().getDefiningOp<linalg::GenericOp>();
  auto consumer = dyn_cast<linalg::LinalgOp>(fusedOperand->getOwner());
  if (!producer || !consumer)
    return false;
  // Each produced element is read by exactly one consumer iteration.
  if (!consumer.getMatchingIndexingMap(fusedOperand).isPermutation())
    return false;
  return producer->hasOneUse() || isCheapToRecompute(producer);
}

/// Upstream's rule, for what is not elementwise fusion proper.
bool hasOneUseProducer(OpOperand *fusedOperand) {
  Operation *producer = fusedOperand->get().getDefiningOp();
  return producer && producer->hasOneUse();
}

struct NNFFuseElementwisePass
    : nnforge::impl::NNFFuseElementwiseBase<NNFFuseElementwisePass> {
  using NNFFuseElementwiseBase::NNFFuseElementwiseBase;

  void runOnOperation() override {
    MLIRContext *context = &getContext();
    RewritePatternSet patterns(context);
    linalg::populateElementwiseOpsFusionPatterns(patterns, shouldFuse);
    if (propagateReshapes) {
      linalg::populateFoldReshapeOpsByExpansionPatterns(patterns,
                                                        hasOneUseProducer);
      tensor::populateBubbleUpExpandShapePatterns(patterns);
    }
    affine::AffineApplyOp::getCanonicalizationPatterns(patterns, context);
    linalg::GenericOp::getCanonicalizationPatterns(patterns, context);
    tensor::ExpandShapeOp::getCanonicalizationPatterns(patterns, context);
    tensor::CollapseShapeOp::getCanonicalizationPatterns(patterns, context);
    context->getLoadedDialect<linalg::LinalgDialect>()
        ->getCanonicalizationPatterns(patterns);
    linalg::populateConstantFoldLinalgOperations(patterns, hasOneUseProducer);
    // Top-down, as upstream's pass, for compile time.
    if (failed(applyPatternsGreedily(
            getOperation(), std::move(patterns),
            GreedyRewriteConfig().setUseTopDownTraversal())))
      signalPassFailure();
  }
};

} // namespace
