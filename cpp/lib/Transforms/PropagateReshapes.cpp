//===- PropagateReshapes.cpp - reshapes out of the way of sharding -------===//
//
// torch.nn.MultiheadAttention computes its heads collapsed with the batch
// ([S, B * H, D], [B * H, S, S]), where a rank's heads are no block for a
// batch above 1. Upstream's patterns that fold reshapes into linalg ops by
// expanding their loops (linalg::populateFoldReshapeOpsByExpansionPatterns)
// give those ops [.., B, H, ..] loops, with two differences from upstream's
// use of them: they fold whatever else uses the op on the other side (the
// softmax's inputs have several users), and a view that regroups
// dimensions, which torch-mlir lowers as a tensor.collapse_shape to
// [S, B * E] then a tensor.expand_shape to [S, B * H, D], becomes an
// expand_shape to the shape both sides refine ([S, B, H, D]) then a
// collapse_shape. Upstream composes such a pair only where the result is one
// reshape (canonicalization) or where each collapsed group expands on its
// own (tensor::populateBubbleUpExpandShapePatterns).
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Tensor/Transforms/Transforms.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFPROPAGATERESHAPES
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// The coarsest shape that refines both `source` and `result` (static sizes,
/// none 0), with the groups of its dimensions that make each dimension of
/// `source` and of `result`; failure where a size of one side is not a
/// product of consecutive sizes of the refinement.
LogicalResult commonRefinement(ArrayRef<int64_t> source,
                               ArrayRef<int64_t> result,
                               SmallVectorImpl<int64_t> &refined,
                               SmallVectorImpl<ReassociationIndices> &fromSource,
                               SmallVectorImpl<ReassociationIndices> &toResult) {
  if (source.empty() || result.empty() ||
      llvm::any_of(source, [](int64_t size) { return size <= 0; }) ||
      llvm::any_of(result, [](int64_t size) { return size <= 0; }))
    return failure();
  size_t i = 0, j = 0;
  int64_t left = source[0], right = result[0];
  fromSource.emplace_back();
  toResult.emplace_back();
  while (true) {
    int64_t size;
    if (left == right)
      size = left;
    else if (right % left == 0)
      size = left;
    else if (left % right == 0)
      size = right;
    else
      return failure();
    fromSource.back().push_back(refined.size());
    toResult.back().push_back(refined.size());
    refined.push_back(size);
    left /= size;
    right /= size;
    bool sourceDone = left == 1, resultDone = right == 1;
    if (sourceDone && ++i < source.size()) {
      left = source[i];
      fromSource.emplace_back();
    }
    if (resultDone && ++j < result.size()) {
      right = result[j];
      toResult.emplace_back();
    }
    if (i == source.size() || j == result.size())
      return success(i == source.size() && j == result.size());
  }
}

struct CollapseThenExpandAsExpandThenCollapse
    : OpRewritePattern<tensor::ExpandShapeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(tensor::ExpandShapeOp expand,
                                PatternRewriter &rewriter) const override {
    auto collapse = expand.getSrc().getDefiningOp<tensor::CollapseShapeOp>();
    if (!collapse)
      return rewriter.notifyMatchFailure(expand, "not fed by a collapse_shape");
    RankedTensorType sourceType = collapse.getSrcType();
    RankedTensorType resultType = expand.getResultType();
    if (!sourceType.hasStaticShape() || !resultType.hasStaticShape() ||
        sourceType.getEncoding() || resultType.getEncoding())
      return rewriter.notifyMatchFailure(expand, "dynamic or encoded shapes");
    SmallVector<int64_t> refined;
    SmallVector<ReassociationIndices> fromSource, toResult;
    if (failed(commonRefinement(sourceType.getShape(), resultType.getShape(),
                                refined, fromSource, toResult)))
      return rewriter.notifyMatchFailure(expand, "no common refinement");
    // One reshape does it: canonicalization composes the pair.
    auto rank = static_cast<int64_t>(refined.size());
    if (rank == sourceType.getRank() || rank == resultType.getRank())
      return rewriter.notifyMatchFailure(expand, "composes into one reshape");
    auto refinedType =
        RankedTensorType::get(refined, sourceType.getElementType());
    Value expanded = tensor::ExpandShapeOp::create(
        rewriter, expand.getLoc(), refinedType, collapse.getSrc(), fromSource);
    rewriter.replaceOpWithNewOp<tensor::CollapseShapeOp>(expand, resultType,
                                                         expanded, toResult);
    return success();
  }
};

/// Reshapes are folded into linalg ops whatever else uses the op on the
/// other side (upstream's default wants one use): the op is replaced by its
/// expanded form and its other users read a reshape of it, so nothing is
/// computed twice.
bool anyUses(OpOperand *) { return true; }

struct NNFPropagateReshapesPass
    : nnforge::impl::NNFPropagateReshapesBase<NNFPropagateReshapesPass> {
  void runOnOperation() override {
    MLIRContext *context = &getContext();
    RewritePatternSet patterns(context);
    patterns.add<CollapseThenExpandAsExpandThenCollapse>(context);
    linalg::populateFoldReshapeOpsByExpansionPatterns(patterns, anyUses);
    tensor::populateBubbleUpExpandShapePatterns(patterns);
    tensor::ExpandShapeOp::getCanonicalizationPatterns(patterns, context);
    tensor::CollapseShapeOp::getCanonicalizationPatterns(patterns, context);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
