//===- IndexSwitchToIf.cpp - scf.index_switch as a chain of scf.if --------===//
//
// Upstream's one-shot bufferization (MLIR 22) analyzes `scf.index_switch`
// without treating the switch's tensor results as aliases of the values its
// cases yield (scf.yield's aliasing knows `scf.if` and `scf.execute_region`
// parents only). A case writing into a buffer that a later op also writes
// in place (a `tensor.empty` shared after CSE) then has its result
// overwritten: the function computes wrong values, silently. The same
// branches under `scf.if` are analyzed right, so switches with tensor
// results become a chain of `scf.if` before bufferization.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/PatternMatch.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFINDEXSWITCHTOIF
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// Whether one-shot bufferization would analyze `op`'s results: some is a
/// tensor.
bool hasTensorResult(scf::IndexSwitchOp op) {
  return llvm::any_of(op.getResultTypes(), llvm::IsaPred<TensorType>);
}

/// Replaces `op` by `if (arg == case 0) {...} else if (arg == case 1) {...}
/// ... else {default}`: the cases' values are distinct, so testing them in
/// order selects the region the switch would.
void rewrite(scf::IndexSwitchOp op) {
  IRRewriter rewriter(op);
  Location loc = op.getLoc();
  TypeRange types = op.getResultTypes();

  if (op.getNumCases() == 0) {
    // Only the default region: its body in place of the switch.
    Block &body = op.getDefaultBlock();
    Operation *yield = body.getTerminator();
    SmallVector<Value> results(yield->getOperands());
    rewriter.eraseOp(yield);
    rewriter.inlineBlockBefore(&body, op);
    rewriter.replaceOp(op, results);
    return;
  }

  scf::IfOp outermost;
  unsigned last = op.getNumCases() - 1;
  for (auto [position, value] : llvm::enumerate(op.getCases())) {
    Value constant = arith::ConstantIndexOp::create(rewriter, loc, value);
    Value equal = arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::eq,
                                        op.getArg(), constant);
    auto branch = scf::IfOp::create(rewriter, loc, types, equal,
                                    /*addThenBlock=*/false,
                                    /*addElseBlock=*/false);
    if (outermost) // In the previous branch's else region.
      scf::YieldOp::create(rewriter, loc, branch.getResults());
    else
      outermost = branch;
    Region &thenRegion = branch.getThenRegion();
    rewriter.inlineRegionBefore(op.getCaseRegions()[position], thenRegion,
                                thenRegion.end());
    Region &elseRegion = branch.getElseRegion();
    if (position == last)
      rewriter.inlineRegionBefore(op.getDefaultRegion(), elseRegion,
                                  elseRegion.end());
    else
      rewriter.createBlock(&elseRegion); // The next test goes there.
  }
  rewriter.replaceOp(op, outermost.getResults());
}

struct NNFIndexSwitchToIfPass
    : nnforge::impl::NNFIndexSwitchToIfBase<NNFIndexSwitchToIfPass> {
  void runOnOperation() override {
    // Post-order: a switch nested in a case is rewritten before its parent
    // moves the case's region.
    SmallVector<scf::IndexSwitchOp> switches;
    getOperation()->walk([&](scf::IndexSwitchOp op) {
      if (hasTensorResult(op))
        switches.push_back(op);
    });
    for (scf::IndexSwitchOp op : switches)
      rewrite(op);
  }
};

} // namespace
