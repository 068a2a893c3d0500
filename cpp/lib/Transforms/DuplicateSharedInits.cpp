//===- DuplicateSharedInits.cpp - one tensor.empty / fill per user ---------===//
//
// torch-mlir's output, CSE'd, shares one `tensor.empty` (or one zero
// `linalg.fill` of it) among the ops that take a tensor of that shape as
// their destination: the transposes of several weights, the accumulators of
// several matmuls. Split over ranks, the users want that destination
// sharded differently (a column-split projection, a replicated one), and
// sharding-propagation aborts on a value whose users annotate it with
// different shardings. Each user gets its own copy instead (free: neither
// op holds data until bufferization).
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFDUPLICATESHAREDINITS
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// Whether `op` only makes a destination: a tensor.empty, or a linalg.fill
/// of a scalar into one.
bool isInit(Operation *op) {
  if (isa<tensor::EmptyOp>(op))
    return true;
  auto fill = dyn_cast<linalg::FillOp>(op);
  return fill && fill.hasPureTensorSemantics() &&
         fill.getOutputs()[0].getDefiningOp<tensor::EmptyOp>();
}

struct NNFDuplicateSharedInitsPass
    : nnforge::impl::NNFDuplicateSharedInitsBase<NNFDuplicateSharedInitsPass> {
  void runOnOperation() override {
    SmallVector<Operation *> inits;
    getOperation()->walk([&](Operation *op) {
      if (isInit(op) && !op->getResult(0).hasOneUse())
        inits.push_back(op);
    });
    OpBuilder builder(&getContext());
    for (Operation *init : inits) {
      SmallVector<OpOperand *> uses = llvm::map_to_vector(
          init->getResult(0).getUses(), [](OpOperand &use) { return &use; });
      for (OpOperand *use : llvm::drop_begin(uses)) {
        builder.setInsertionPoint(use->getOwner());
        IRMapping mapping;
        if (auto fill = dyn_cast<linalg::FillOp>(init)) {
          Operation *empty = fill.getOutputs()[0].getDefiningOp();
          mapping.map(empty->getResult(0), builder.clone(*empty)->getResult(0));
        }
        use->set(builder.clone(*init, mapping)->getResult(0));
      }
    }
  }
};

} // namespace
