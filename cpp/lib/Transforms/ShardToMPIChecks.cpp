//===- ShardToMPIChecks.cpp - what convert-shard-to-mpi can lower ---------===//
//
// MLIR 22.1.8's convert-shard-to-mpi lowers all_reduce and the process
// index queries; every other collective makes it fail legalization, which
// inside a Python process aborts (the bindings assert that no diagnostic is
// left uncaptured). nnf-verify-shard-to-mpi reports such ops as errors
// first, so that the pipeline fails with a diagnostic instead.
//
// nnf-shard-world-communicator replaces the communicator that
// convert-shard-to-mpi splits off MPI_COMM_WORLD before every collective
// (MPI_Comm_split per call, never freed: MPICH runs out of communicators
// after a few thousand calls) by MPI_COMM_WORLD itself.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/MPI/IR/MPI.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Matchers.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFVERIFYSHARDTOMPI
#define GEN_PASS_DEF_NNFSHARDWORLDCOMMUNICATOR
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// Whether MPI has a datatype for `type` in MLIR's lowering of mpi.allreduce.
bool hasMPIDatatype(Type type) {
  if (type.isF32() || type.isF64())
    return true;
  auto integer = dyn_cast<IntegerType>(type);
  return integer && llvm::is_contained({8u, 16u, 32u, 64u}, integer.getWidth());
}

/// Why `op` (of the shard dialect) cannot be lowered to MPI, or "" if it can.
std::string whyNotLowered(Operation *op) {
  if (isa<shard::GridOp, shard::ProcessMultiIndexOp,
          shard::ProcessLinearIndexOp>(op))
    return "";
  if (auto reduce = dyn_cast<shard::AllReduceOp>(op)) {
    Type element = getElementTypeOrSelf(reduce.getInput().getType());
    if (hasMPIDatatype(element))
      return "";
    std::string text;
    llvm::raw_string_ostream os(text);
    os << "has no MPI datatype for element type " << element;
    return text;
  }
  if (isa<shard::ShardingOp, shard::ShardOp>(op))
    return "is a sharding annotation left after shard-partition";
  return "has no lowering to MPI in this MLIR (convert-shard-to-mpi lowers "
         "all_reduce and the process index queries only)";
}

struct NNFVerifyShardToMPIPass
    : nnforge::impl::NNFVerifyShardToMPIBase<NNFVerifyShardToMPIPass> {
  void runOnOperation() override {
    bool failed = false;
    getOperation()->walk([&](Operation *op) {
      if (!isa_and_nonnull<shard::ShardDialect>(op->getDialect()))
        return;
      std::string reason = whyNotLowered(op);
      if (reason.empty())
        return;
      op->emitError() << "'" << op->getName() << "' " << reason;
      failed = true;
    });
    if (failed)
      signalPassFailure();
  }
};

struct NNFShardWorldCommunicatorPass
    : nnforge::impl::NNFShardWorldCommunicatorBase<
          NNFShardWorldCommunicatorPass> {
  void runOnOperation() override {
    SmallVector<mpi::CommSplitOp> splits;
    getOperation()->walk([&](mpi::CommSplitOp split) {
      // One color for every rank: the new communicator holds them all.
      if (split.getComm().getDefiningOp<mpi::CommWorldOp>() &&
          matchPattern(split.getColor(), m_Constant()) && !split.getRetval())
        splits.push_back(split);
    });
    for (mpi::CommSplitOp split : splits) {
      split.getNewcomm().replaceAllUsesWith(split.getComm());
      split.erase();
    }
  }
};

} // namespace
