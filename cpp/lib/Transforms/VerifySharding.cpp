//===- VerifySharding.cpp - every value annotated before shard-partition --===//
//
// shard-partition expects each op's tensor operands to come from a
// `shard.shard` and each tensor result to feed one `shard.shard` that is
// not `annotate_for_users` (that one is its users' view of the value).
// Where sharding-propagation found no sharding for an op (shardings that
// disagree, a reshape whose split is no block of the other side), the op
// is left unannotated and shard-partition aborts on a failed cast.
// nnf-verify-sharding reports the first such op instead.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFVERIFYSHARDING
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

bool isShardedTensor(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  return tensor && tensor.getRank() > 0;
}

/// Which operand or result of `op` has no sharding annotation, or "".
std::string unannotated(Operation &op) {
  if (isa<shard::ShardOp, shard::ShardingOp>(op) ||
      op.hasTrait<OpTrait::ConstantLike>())
    return "";
  for (OpOperand &operand : op.getOpOperands()) {
    if (!isShardedTensor(operand.get().getType()))
      continue;
    if (!operand.get().getDefiningOp<shard::ShardOp>())
      return "operand #" + std::to_string(operand.getOperandNumber());
  }
  for (OpResult result : op.getResults()) {
    if (!isShardedTensor(result.getType()))
      continue;
    auto annotation = result.hasOneUse()
                          ? dyn_cast<shard::ShardOp>(*result.user_begin())
                          : shard::ShardOp();
    if (!annotation || annotation.getAnnotateForUsers())
      return "result #" + std::to_string(result.getResultNumber());
  }
  return "";
}

struct NNFVerifyShardingPass
    : nnforge::impl::NNFVerifyShardingBase<NNFVerifyShardingPass> {
  void runOnOperation() override {
    getOperation()->walk([&](FunctionOpInterface function) {
      if (!function.isExternal() && failed(verifyAnnotated(function)))
        signalPassFailure();
    });
  }

  /// Reports the first unannotated argument or op of `function`.
  static LogicalResult verifyAnnotated(FunctionOpInterface function) {
    for (BlockArgument argument : function.getArguments()) {
      if (!isShardedTensor(argument.getType()) ||
          (argument.hasOneUse() &&
           isa<shard::ShardOp>(*argument.user_begin())))
        continue;
      return function.emitError()
             << "cannot be partitioned: argument #" << argument.getArgNumber()
             << " has no sharding annotation";
    }
    for (Operation &op : function.getFunctionBody().getOps()) {
      std::string what = unannotated(op);
      if (what.empty())
        continue;
      InFlightDiagnostic error =
          op.emitError() << "cannot be partitioned: sharding-propagation "
                            "found no sharding of its "
                         << what
                         << " that agrees with the shardings around it";
      if (isa<tensor::ExpandShapeOp, tensor::CollapseShapeOp>(op))
        error << " (a split of a collapsed dimension is a split of the "
                 "outermost dimension of its group whose size is not 1, "
                 "which the number of processes must divide)";
      return error;
    }
    return success();
  }
};

} // namespace
