//===- OneSourceSharding.h - sharding of one-source tensor ops --*- C++ -*-===//
//
// What the ShardingInterface models of tensor.extract_slice and the tensor
// reshapes share: ops with one tensor operand (operand 0; the others are
// index values), one result, and a split that is a block split of some of
// their loop dimensions.
//
//===----------------------------------------------------------------------===//

#ifndef NNFORGE_DIALECT_TENSOR_ONESOURCESHARDING_H
#define NNFORGE_DIALECT_TENSOR_ONESOURCESHARDING_H

#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/Dialect/Shard/Interfaces/ShardingInterface.h"

namespace nnforge {

/// Whether `sharding` splits in even blocks (no halos, no explicit offsets).
bool isBlockSharding(const mlir::shard::Sharding &sharding);

/// Whether `sharding` exists and splits some dimension.
bool isSplit(const mlir::shard::Sharding &sharding);

/// The split axes of each dimension of `sharding` (none for no sharding).
mlir::shard::ShardingArray splitAxes(const mlir::shard::Sharding &sharding);

/// A block sharding over `grid` with `axes` per dimension.
mlir::shard::Sharding makeSharding(mlir::MLIRContext *context,
                                   mlir::FlatSymbolRefAttr grid,
                                   mlir::shard::ShardingArray axes);

/// The split of each of the op's `loopRank` loops that the operand and
/// result shardings ask for, as upstream's default rule decides it: the
/// result's sharding (replicated included) and the source's split decide; a
/// replicated source alone says nothing. `loopSplit(sharding, ofSource)` is
/// the split of the loops that `sharding` of the source (or of the result)
/// is, or failure where it is no split of them.
mlir::FailureOr<mlir::shard::ShardingOption> mergeLoopSplits(
    mlir::ArrayRef<mlir::shard::Sharding> operandShardings,
    mlir::ArrayRef<mlir::shard::Sharding> resultShardings, int64_t loopRank,
    llvm::function_ref<mlir::FailureOr<mlir::shard::ShardingArray>(
        const mlir::shard::Sharding &, bool ofSource)>
        loopSplit);

/// The grid that the split one of `source` and `result` is on, with an
/// error on `op` where the grid does not exist.
mlir::FailureOr<mlir::shard::GridOp>
lookUpSplitGrid(mlir::Operation *op, const mlir::shard::Sharding &source,
                const mlir::shard::Sharding &result,
                mlir::SymbolTableCollection &symbolTable);

/// The parts of a one-source op's ShardingInterface model that do not depend
/// on the op: annotations are inserted on the source and on the result, as
/// `ConcreteModel::getShardingAnnotations` gives them.
template <typename ConcreteModel, typename Op>
struct OneSourceShardingModel
    : mlir::shard::ShardingInterface::ExternalModel<ConcreteModel, Op> {
  mlir::LogicalResult
  addShardingAnnotations(mlir::Operation *op, mlir::OpBuilder &builder,
                         const mlir::shard::ShardingOption &option) const {
    mlir::FailureOr<std::vector<mlir::shard::Sharding>> shardings =
        static_cast<const ConcreteModel *>(this)->getShardingAnnotations(
            op, option);
    if (mlir::failed(shardings))
      return mlir::failure();
    mlir::shard::maybeInsertTargetShardingAnnotation(
        shardings->back(), op->getResult(0), builder);
    mlir::OpBuilder::InsertionGuard guard(builder);
    mlir::shard::maybeInsertSourceShardingAnnotation(
        shardings->front(), op->getOpOperand(0), builder);
    return mlir::success();
  }
};

} // namespace nnforge

#endif // NNFORGE_DIALECT_TENSOR_ONESOURCESHARDING_H
