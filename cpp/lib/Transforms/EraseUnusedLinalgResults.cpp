//===- EraseUnusedLinalgResults.cpp - drop dead results of linalg.generic --===//
//
// torch-mlir lowers a max over a dimension (softmax's first step) to one
// linalg.generic computing the maximum and its index; softmax uses the
// maximum only. sharding-propagation gives every result of an op a sharding
// from its users, and an unused result has none: shard-partition cannot
// partition the op. Upstream has the patterns that drop such results
// (linalg::populateEraseUnusedOperandsAndResultsPatterns) but no pass that
// applies them alone; this pass does.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFERASEUNUSEDLINALGRESULTS
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

struct NNFEraseUnusedLinalgResultsPass
    : nnforge::impl::NNFEraseUnusedLinalgResultsBase<
          NNFEraseUnusedLinalgResultsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    linalg::populateEraseUnusedOperandsAndResultsPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
