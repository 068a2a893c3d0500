//===- DeallocateAfterLastUse.cpp - free buffers once they are dead -------===//
//
// Upstream's ownership-based buffer deallocation frees every buffer at the
// end of the block that allocated it, so all of a model's intermediates are
// alive until its function returns: no buffer is reused within one call,
// and the memory a call touches is the sum of all its intermediates
// (ResNet-18: every convolution's im2col matrix). Freed right after their
// last use instead, buffers go back to nnforge's buffer cache while the
// call runs, and a later intermediate of the same size gets the same,
// still cached, memory.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/Block.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFDEALLOCATEAFTERLASTUSE
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// The last op of `dealloc`'s block that uses its buffer, directly, through
/// a view, or in a nested region; failure where the buffer may be reached
/// otherwise: yielded out of a region, returned, or read as a raw pointer.
/// Every memref result of a user is taken as a possible alias.
FailureOr<Operation *> lastUse(memref::DeallocOp dealloc) {
  Block *block = dealloc->getBlock();
  Value buffer = dealloc.getMemref();
  Operation *definition = buffer.getDefiningOp();
  if (!definition || definition->getBlock() != block)
    return failure();
  Operation *last = definition;
  SmallVector<Value> worklist{buffer};
  DenseSet<Value> visited;
  while (!worklist.empty()) {
    Value value = worklist.pop_back_val();
    if (!visited.insert(value).second)
      continue;
    for (Operation *user : value.getUsers()) {
      if (user == dealloc.getOperation())
        continue;
      if (user->hasTrait<OpTrait::IsTerminator>() ||
          isa<memref::ExtractAlignedPointerAsIndexOp>(user))
        return failure();
      for (Value result : user->getResults())
        if (isa<BaseMemRefType>(result.getType()))
          worklist.push_back(result);
      Operation *ancestor = block->findAncestorOpInBlock(*user);
      if (!ancestor)
        return failure();
      if (last->isBeforeInBlock(ancestor))
        last = ancestor;
    }
  }
  return last;
}

struct NNFDeallocateAfterLastUsePass
    : nnforge::impl::NNFDeallocateAfterLastUseBase<
          NNFDeallocateAfterLastUsePass> {
  void runOnOperation() override {
    SmallVector<memref::DeallocOp> deallocs;
    getOperation()->walk(
        [&](memref::DeallocOp dealloc) { deallocs.push_back(dealloc); });
    for (memref::DeallocOp dealloc : deallocs) {
      FailureOr<Operation *> last = lastUse(dealloc);
      if (succeeded(last) && (*last)->isBeforeInBlock(dealloc))
        dealloc->moveAfter(*last);
    }
  }
};

} // namespace
