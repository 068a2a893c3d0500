//===- ReshapeSharding.cpp - sharding of tensor reshapes ------------------===//
//
// MLIR 22.1.8 has no ShardingInterface for tensor.expand_shape and
// tensor.collapse_shape: sharding-propagation fails on them ("sharding
// interface is not implemented"), so nothing with a reshape between sharded
// ops (a linear layer on a 3-D input, attention heads) can be partitioned.
//
// A reshape is seen as groups of fine (expanded) dimensions, one group per
// coarse (collapsed) dimension; its loops are the fine dimensions, all
// parallel. Splitting a coarse dimension of N elements in P contiguous
// blocks is splitting the outermost fine dimension of its group whose size
// is not 1 in P blocks, when P divides that size: every block then holds
// whole rows of the inner dimensions. [S, E] expanded to [S, H, D] with E
// split over the ranks is [S, H, D] with H split (each rank holds whole
// heads); collapsing [B, H, S, D] to [B * H, S, D] with H split is not a
// block split of B * H unless B is 1, and has no sharding option.
//
// The upstream default implementation (indexing maps) cannot express this:
// it needs projected permutations for the results and takes a split of an
// operand dimension indexed by several loops from no loop in particular.
//
//===----------------------------------------------------------------------===//

#include "nnforge/Dialect/Tensor/ReshapeSharding.h"

#include "nnforge/Dialect/Tensor/OneSourceSharding.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/SymbolTable.h"

using namespace mlir;
using namespace nnforge;
using shard::GridAxis;
using shard::Sharding;
using shard::ShardingArray;
using shard::ShardingOption;

namespace {

/// A reshape as groups of fine (expanded) dimensions, one group per coarse
/// (collapsed) dimension.
struct Reshape {
  RankedTensorType fine, coarse;
  SmallVector<ReassociationIndices> groups;
  /// expand_shape: the result is the fine side; collapse_shape: the source.
  bool fineIsResult;

  static Reshape of(Operation *op) {
    if (auto expand = dyn_cast<tensor::ExpandShapeOp>(op))
      return {expand.getResultType(), expand.getSrcType(),
              expand.getReassociationIndices(), true};
    auto collapse = cast<tensor::CollapseShapeOp>(op);
    return {collapse.getSrcType(), collapse.getResultType(),
            collapse.getReassociationIndices(), false};
  }

  bool isStatic() const {
    return fine.hasStaticShape() && coarse.hasStaticShape();
  }
};

/// The grid axes of each fine dimension that `sharding` of the coarse
/// tensor is, or failure where it splits a coarse dimension in blocks that
/// are not blocks of one fine dimension.
FailureOr<ShardingArray> fineFromCoarse(const Reshape &reshape,
                                        const Sharding &sharding,
                                        shard::GridOp grid) {
  ShardingArray fine(reshape.fine.getRank());
  ShardingArray coarse = splitAxes(sharding);
  if (coarse.size() > reshape.groups.size() &&
      llvm::any_of(ArrayRef(coarse).drop_front(reshape.groups.size()),
                   [](const auto &axes) { return !axes.empty(); }))
    return failure();
  for (auto [dim, group] : llvm::enumerate(reshape.groups)) {
    if (dim >= coarse.size() || coarse[dim].empty())
      continue;
    const ReassociationIndices &members = group;
    auto outer = llvm::find_if(members, [&](int64_t fineDim) {
      return reshape.fine.getDimSize(fineDim) != 1;
    });
    if (outer == members.end())
      return failure();
    int64_t size = reshape.fine.getDimSize(*outer);
    int64_t count = shard::collectiveProcessGroupSize(coarse[dim], grid);
    if (ShapedType::isDynamic(size) || ShapedType::isDynamic(count) ||
        size % count != 0)
      return failure();
    fine[*outer] = coarse[dim];
  }
  return fine;
}

/// The grid axes of each coarse dimension that a split of the fine
/// dimensions (`fine`) is, or failure where a split fine dimension follows
/// another dimension of its group that is split or not 1.
FailureOr<ShardingArray> coarseFromFine(const Reshape &reshape,
                                        ArrayRef<SmallVector<GridAxis>> fine) {
  auto isSplit = [&](int64_t fineDim) {
    return fineDim < static_cast<int64_t>(fine.size()) && !fine[fineDim].empty();
  };
  ShardingArray coarse(reshape.coarse.getRank());
  int64_t grouped = 0;
  for (auto [dim, group] : llvm::enumerate(reshape.groups)) {
    bool outerIsOne = true;
    for (int64_t fineDim : group) {
      ++grouped;
      if (isSplit(fineDim)) {
        if (!outerIsOne)
          return failure();
        coarse[dim] = fine[fineDim];
        outerIsOne = false;
      } else if (reshape.fine.getDimSize(fineDim) != 1) {
        outerIsOne = false;
      }
    }
  }
  // A collapse to rank 0 has no groups: no fine dimension may be split.
  for (int64_t fineDim = grouped; fineDim < reshape.fine.getRank(); ++fineDim)
    if (isSplit(fineDim))
      return failure();
  return coarse;
}

/// The fine split that `sharding` of the fine (`fineSide`) or coarse tensor
/// is; no sharding is no split.
FailureOr<ShardingArray> fineSplit(const Reshape &reshape,
                                   const Sharding &sharding, bool fineSide,
                                   shard::GridOp grid) {
  if (!sharding)
    return ShardingArray(reshape.fine.getRank());
  if (!isBlockSharding(sharding))
    return failure();
  if (!fineSide)
    return fineFromCoarse(reshape, sharding, grid);
  ShardingArray fine = splitAxes(sharding);
  if (fine.size() > static_cast<size_t>(reshape.fine.getRank()))
    return failure();
  fine.resize(reshape.fine.getRank());
  return fine;
}

bool sameSplit(ArrayRef<SmallVector<GridAxis>> a,
               ArrayRef<SmallVector<GridAxis>> b) {
  size_t size = std::max(a.size(), b.size());
  for (size_t dim = 0; dim < size; ++dim) {
    ArrayRef<GridAxis> left = dim < a.size() ? ArrayRef(a[dim]) : ArrayRef<GridAxis>();
    ArrayRef<GridAxis> right = dim < b.size() ? ArrayRef(b[dim]) : ArrayRef<GridAxis>();
    if (left != right)
      return false;
  }
  return true;
}

template <typename Op>
struct ReshapeShardingModel
    : OneSourceShardingModel<ReshapeShardingModel<Op>, Op> {
  SmallVector<utils::IteratorType> getLoopIteratorTypes(Operation *op) const {
    return SmallVector<utils::IteratorType>(Reshape::of(op).fine.getRank(),
                                            utils::IteratorType::parallel);
  }

  /// Fine side: identity; coarse side: each coarse index as the linear
  /// index of its group of fine indices (none where a size is dynamic).
  SmallVector<AffineMap> getIndexingMaps(Operation *op) const {
    Reshape reshape = Reshape::of(op);
    MLIRContext *context = op->getContext();
    unsigned rank = reshape.fine.getRank();
    SmallVector<AffineExpr> linear;
    for (const ReassociationIndices &group : reshape.groups) {
      AffineExpr index = getAffineConstantExpr(0, context);
      for (int64_t fineDim : group) {
        int64_t size = reshape.fine.getDimSize(fineDim);
        if (ShapedType::isDynamic(size))
          return {};
        index = index * size + getAffineDimExpr(fineDim, context);
      }
      linear.push_back(index);
    }
    AffineMap fineMap = AffineMap::getMultiDimIdentityMap(rank, context);
    AffineMap coarseMap = AffineMap::get(rank, 0, linear, context);
    SmallVector<AffineMap> maps;
    maps.push_back(reshape.fineIsResult ? coarseMap : fineMap);
    for (unsigned i = 1; i < op->getNumOperands(); ++i)
      maps.push_back(AffineMap::get(rank, 0, context));
    maps.push_back(reshape.fineIsResult ? fineMap : coarseMap);
    return maps;
  }

  /// The split of the fine dimensions the shardings ask for, where it is a
  /// split of the coarse dimensions too.
  FailureOr<ShardingOption>
  getShardingOption(Operation *op, ArrayRef<Sharding> operandShardings,
                    ArrayRef<Sharding> resultShardings) const {
    Reshape reshape = Reshape::of(op);
    SymbolTableCollection symbols;
    FailureOr<ShardingOption> option = mergeLoopSplits(
        operandShardings, resultShardings, reshape.fine.getRank(),
        [&](const Sharding &sharding,
            bool ofSource) -> FailureOr<ShardingArray> {
          shard::GridOp grid =
              shard::getGridOrNull(op, sharding.getGridAttr(), symbols);
          if (!grid)
            return failure();
          bool fineSide = ofSource != reshape.fineIsResult;
          return fineSplit(reshape, sharding, fineSide, grid);
        });
    if (failed(option) || failed(coarseFromFine(reshape, option->shardingArray)))
      return failure();
    return option;
  }

  FailureOr<std::vector<Sharding>>
  getShardingAnnotations(Operation *op, const ShardingOption &option) const {
    Reshape reshape = Reshape::of(op);
    ShardingArray fine = option.shardingArray;
    fine.resize(reshape.fine.getRank());
    FailureOr<ShardingArray> coarse = coarseFromFine(reshape, fine);
    if (failed(coarse))
      return failure();
    MLIRContext *context = op->getContext();
    Sharding fineSharding = makeSharding(context, option.grid, fine);
    Sharding coarseSharding = makeSharding(context, option.grid, *coarse);
    std::vector<Sharding> shardings;
    shardings.push_back(reshape.fineIsResult ? coarseSharding : fineSharding);
    for (unsigned i = 1; i < op->getNumOperands(); ++i)
      shardings.emplace_back(); // the output_shape's index values
    shardings.push_back(reshape.fineIsResult ? fineSharding : coarseSharding);
    return shardings;
  }

  /// The same reshape of the rank's block: split dimensions shrink by the
  /// number of processes along their grid axes.
  LogicalResult partition(Operation *op, ArrayRef<Value> partitionedOperands,
                          ArrayRef<Sharding> operandShardings,
                          ArrayRef<Sharding> resultShardings,
                          IRMapping &partitionMap,
                          SymbolTableCollection &symbolTable,
                          OpBuilder &builder) const {
    Reshape reshape = Reshape::of(op);
    Sharding source = operandShardings[0];
    Sharding result = resultShardings[0];
    if (!isSplit(source) && !isSplit(result)) {
      builder.clone(*op, partitionMap);
      return success();
    }
    if (!reshape.isStatic())
      return op->emitOpError()
             << "cannot be partitioned over the grid: sharded reshapes need "
                "static shapes";
    FailureOr<shard::GridOp> grid =
        lookUpSplitGrid(op, source, result, symbolTable);
    if (failed(grid))
      return failure();
    FailureOr<ShardingArray> fromSource =
        fineSplit(reshape, source, !reshape.fineIsResult, *grid);
    FailureOr<ShardingArray> fromResult =
        fineSplit(reshape, result, reshape.fineIsResult, *grid);
    if (failed(fromSource) || failed(fromResult) ||
        (source && result && !sameSplit(*fromSource, *fromResult)) ||
        failed(coarseFromFine(reshape, source ? *fromSource : *fromResult)))
      return op->emitOpError()
             << "cannot be partitioned: its source and result shardings do "
                "not split the same elements (a split collapsed dimension is "
                "a split of the outermost non-unit dimension of its group, "
                "which the number of processes divides)";
    ShardingArray fine = source ? *fromSource : *fromResult;
    ShardingArray coarse = *coarseFromFine(reshape, fine);
    Sharding resultSharding =
        makeSharding(op->getContext(), FlatSymbolRefAttr::get(*grid),
                     reshape.fineIsResult ? fine : coarse);
    Type localType = shard::shardType(op->getResult(0).getType(), *grid,
                                      resultSharding);
    Value local;
    if (reshape.fineIsResult)
      local = tensor::ExpandShapeOp::create(builder, op->getLoc(), localType,
                                            partitionedOperands[0],
                                            reshape.groups);
    else
      local = tensor::CollapseShapeOp::create(builder, op->getLoc(), localType,
                                              partitionedOperands[0],
                                              reshape.groups);
    partitionMap.map(op->getResult(0), local);
    return success();
  }
};

} // namespace

void nnforge::registerReshapeShardingInterface(DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *context, tensor::TensorDialect *) {
    tensor::ExpandShapeOp::attachInterface<
        ReshapeShardingModel<tensor::ExpandShapeOp>>(*context);
    tensor::CollapseShapeOp::attachInterface<
        ReshapeShardingModel<tensor::CollapseShapeOp>>(*context);
  });
}
