//===- CollapseReductionDims.cpp - one loop per role in reductions -------===//
//
// Reshapes propagated through a contraction (nnf-fuse-elementwise folds a
// multi-head attention's unflatten/unsqueeze into the projection that feeds
// it) split its loops: a [128 x 256] x [256 x 768] projection became a
// 7-loop generic, [1, 128] x [1, 256] -> [1, 3, 256]. Code generation tiles
// the last m and n loops only, and the unit loops in between left vectors
// like vector<8x1x1x32xf32> that the contraction lowering unrolled lane by
// lane. Likewise a reduction over two loops (a layer norm's row sum over
// [8, 32]) is no row reduction and stayed scalar. Merging each run of
// adjacent loops of one role back into one loop gives the plain forms again.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/IR/LinalgInterfaces.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFCOLLAPSEREDUCTIONDIMS
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// Each loop's role: batch, m, n or k in a contraction; in another
/// reduction, its reduction loops' (its parallel loops keep their shape:
/// the elementwise ops a row group fuses with it read them as they are).
/// -1: never merged. Empty: nothing to merge.
SmallVector<int> loopRoles(linalg::GenericOp op) {
  SmallVector<int> role(op.getNumLoops(), -1);
  if (linalg::isaContractionOpInterface(op)) {
    FailureOr<linalg::ContractionDimensions> dims =
        linalg::inferContractionDims(op);
    if (failed(dims))
      return {};
    const SmallVector<unsigned, 2> *byRole[] = {&dims->batch, &dims->m,
                                                &dims->n, &dims->k};
    for (auto [index, loops] : llvm::enumerate(byRole))
      for (unsigned loop : *loops)
        role[loop] = index;
    return role;
  }
  // Windows (a pooling's h + kh) are no dims to merge.
  if (op.getNumReductionLoops() < 2 ||
      !llvm::all_of(op.getIndexingMapsArray(),
                    [](AffineMap map) { return map.isProjectedPermutation(); }))
    return {};
  for (auto [loop, iterator] : llvm::enumerate(op.getIteratorTypesArray()))
    if (linalg::isReductionIterator(iterator))
      role[loop] = 0;
  return role;
}

/// Runs of two or more consecutive loops of one role that every operand
/// reads next to each other, in loop order.
SmallVector<ReassociationIndices> collapsibleRuns(linalg::GenericOp op) {
  SmallVector<int> role = loopRoles(op);
  SmallVector<ReassociationIndices> runs;
  SmallVector<AffineMap> maps = op.getIndexingMapsArray();
  for (unsigned start = 0; start < role.size();) {
    unsigned end = start + 1;
    while (end < role.size() && role[end] == role[start] && role[start] >= 0)
      ++end;
    ReassociationIndices run =
        llvm::to_vector<2>(llvm::seq<int64_t>(start, end));
    if (run.size() > 1 && linalg::areDimSequencesPreserved(maps, {run}))
      runs.push_back(run);
    start = end;
  }
  return runs;
}

struct CollapseSameRoleRuns : OpRewritePattern<linalg::GenericOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::GenericOp op,
                                PatternRewriter &rewriter) const override {
    // A body reading loop indices (a gather fused into a sum) would need
    // them delinearized: the merged loops gave wrong sums (ONNX NLL loss).
    if (!op.hasPureTensorSemantics() || op.hasIndexSemantics())
      return rewriter.notifyMatchFailure(op, "not on tensors, or reads indices");
    SmallVector<ReassociationIndices> runs = collapsibleRuns(op);
    if (runs.empty())
      return rewriter.notifyMatchFailure(op, "nothing to merge");
    FailureOr<linalg::CollapseResult> collapsed =
        linalg::collapseOpIterationDims(op, runs, rewriter);
    if (failed(collapsed))
      return rewriter.notifyMatchFailure(op, "loops not collapsible");
    rewriter.replaceOp(op, collapsed->results);
    return success();
  }
};

struct NNFCollapseReductionDimsPass
    : nnforge::impl::NNFCollapseReductionDimsBase<
          NNFCollapseReductionDimsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<CollapseSameRoleRuns>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
