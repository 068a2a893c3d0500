//===- OneSourceSharding.cpp - sharding of one-source tensor ops ----------===//

#include "nnforge/Dialect/Tensor/OneSourceSharding.h"

#include "llvm/ADT/DenseSet.h"

using namespace mlir;
using shard::GridAxis;
using shard::Sharding;
using shard::ShardingArray;
using shard::ShardingOption;

bool nnforge::isBlockSharding(const Sharding &sharding) {
  return sharding.getStaticHaloSizes().empty() &&
         sharding.getStaticShardedDimsOffsets().empty() &&
         sharding.getDynamicHaloSizes().empty() &&
         sharding.getDynamicShardedDimsOffsets().empty();
}

bool nnforge::isSplit(const Sharding &sharding) {
  return sharding && !shard::isFullReplication(sharding);
}

ShardingArray nnforge::splitAxes(const Sharding &sharding) {
  ShardingArray axes;
  if (sharding)
    for (shard::GridAxesAttr attr : sharding.getSplitAxes())
      axes.emplace_back(attr.asArrayRef());
  return axes;
}

Sharding nnforge::makeSharding(MLIRContext *context, FlatSymbolRefAttr grid,
                               ShardingArray axes) {
  shard::removeTrailingEmptySubArray(axes);
  SmallVector<shard::GridAxesAttr> attributes;
  for (const SmallVector<GridAxis> &dimAxes : axes)
    attributes.push_back(shard::GridAxesAttr::get(context, dimAxes));
  return Sharding::get(grid, attributes);
}

FailureOr<ShardingOption> nnforge::mergeLoopSplits(
    ArrayRef<Sharding> operandShardings, ArrayRef<Sharding> resultShardings,
    int64_t loopRank,
    llvm::function_ref<FailureOr<ShardingArray>(const Sharding &, bool)>
        loopSplit) {
  ShardingArray loops(loopRank);
  FlatSymbolRefAttr gridName;
  bool informative = false;
  auto merge = [&](const Sharding &sharding, bool ofSource) -> LogicalResult {
    if (!sharding)
      return success();
    if (gridName && gridName != sharding.getGridAttr())
      return failure();
    gridName = sharding.getGridAttr();
    FailureOr<ShardingArray> split = loopSplit(sharding, ofSource);
    if (failed(split))
      return failure();
    for (auto [dim, axes] : llvm::enumerate(*split)) {
      if (axes.empty())
        continue;
      if (!loops[dim].empty() && loops[dim] != axes)
        return failure();
      loops[dim] = axes;
      informative = true;
    }
    // A replicated result informs (the op must be replicated); a
    // replicated source does not (it may be sliced locally).
    informative |= !ofSource;
    return success();
  };
  Sharding source = operandShardings.empty() ? Sharding() : operandShardings[0];
  Sharding result = resultShardings.empty() ? Sharding() : resultShardings[0];
  if (failed(merge(result, /*ofSource=*/false)) ||
      failed(merge(source, /*ofSource=*/true)))
    return failure();
  if (!informative)
    return ShardingOption::makeEmpty();
  llvm::SmallDenseSet<GridAxis> used;
  for (const SmallVector<GridAxis> &axes : loops)
    for (GridAxis axis : axes)
      if (!used.insert(axis).second)
        return failure();
  shard::removeTrailingEmptySubArray(loops);
  return ShardingOption(std::move(loops), gridName);
}

FailureOr<shard::GridOp>
nnforge::lookUpSplitGrid(Operation *op, const Sharding &source,
                         const Sharding &result,
                         SymbolTableCollection &symbolTable) {
  FlatSymbolRefAttr gridName =
      isSplit(source) ? source.getGridAttr() : result.getGridAttr();
  shard::GridOp grid = shard::getGridOrNull(op, gridName, symbolTable);
  if (!grid)
    return op->emitOpError() << "cannot be partitioned: no grid " << gridName;
  return grid;
}
