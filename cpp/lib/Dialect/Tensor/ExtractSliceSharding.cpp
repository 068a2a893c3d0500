//===- ExtractSliceSharding.cpp - sharding of tensor.extract_slice --------===//
//
// MLIR 22.1.8 has no ShardingInterface for tensor.extract_slice:
// sharding-propagation fails on any function holding one (torch-mlir
// lowers a split or a select to it: the thirds of a packed q/k/v
// projection, a causal mask cut to the sequence length), even where the
// slice would stay replicated.
//
// A slice is seen as one parallel loop per source dimension. A dimension
// the slice takes whole (offset 0, the full size, stride 1) may be split:
// each rank's slice of that dimension is its whole block. A dimension the
// slice cuts has no split: its elements are not a block of the ranks'.
// Dimensions a rank-reducing slice drops have size 1 and no split either.
//
//===----------------------------------------------------------------------===//

#include "nnforge/Dialect/Tensor/ExtractSliceSharding.h"

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

/// A slice's source dimensions: which the result keeps (and where), and
/// which it takes whole.
struct Slice {
  RankedTensorType source, result;
  /// For each source dimension, its result dimension (-1: dropped).
  SmallVector<int64_t> resultDim;
  /// For each source dimension, whether the slice takes it whole.
  SmallVector<bool> whole;

  static Slice of(Operation *op) {
    auto slice = cast<tensor::ExtractSliceOp>(op);
    Slice info{slice.getSourceType(), slice.getResultType(), {}, {}};
    llvm::SmallBitVector dropped = slice.getDroppedDims();
    int64_t next = 0;
    for (int64_t dim = 0; dim < info.source.getRank(); ++dim) {
      info.resultDim.push_back(dropped.test(dim) ? -1 : next++);
      std::optional<int64_t> offset =
          getConstantIntValue(slice.getMixedOffsets()[dim]);
      std::optional<int64_t> size =
          getConstantIntValue(slice.getMixedSizes()[dim]);
      std::optional<int64_t> stride =
          getConstantIntValue(slice.getMixedStrides()[dim]);
      int64_t full = info.source.getDimSize(dim);
      info.whole.push_back(offset == 0 && stride == 1 && size &&
                           !ShapedType::isDynamic(full) && *size == full &&
                           !dropped.test(dim));
    }
    return info;
  }
};

/// The split of each source dimension that `sharding` of the source
/// (`ofSource`) or of the result is, or failure where it splits a
/// dimension the slice cuts or drops. No sharding is no split.
FailureOr<ShardingArray> sourceSplit(const Slice &slice,
                                     const Sharding &sharding, bool ofSource) {
  ShardingArray split(slice.source.getRank());
  if (!sharding)
    return split;
  if (!isBlockSharding(sharding))
    return failure();
  ShardingArray axes = splitAxes(sharding);
  int64_t rank = ofSource ? slice.source.getRank() : slice.result.getRank();
  if (static_cast<int64_t>(axes.size()) > rank)
    return failure();
  axes.resize(rank);
  for (int64_t dim = 0; dim < slice.source.getRank(); ++dim) {
    int64_t at = ofSource ? dim : slice.resultDim[dim];
    if (at < 0 || axes[at].empty())
      continue;
    if (!slice.whole[dim])
      return failure();
    split[dim] = axes[at];
  }
  return split;
}

/// The result's split axes for a split of the source dimensions.
ShardingArray resultSplit(const Slice &slice, const ShardingArray &split) {
  ShardingArray result(slice.result.getRank());
  for (auto [dim, axes] : llvm::enumerate(split))
    if (slice.resultDim[dim] >= 0)
      result[slice.resultDim[dim]] = axes;
  return result;
}

struct ExtractSliceShardingModel
    : OneSourceShardingModel<ExtractSliceShardingModel,
                             tensor::ExtractSliceOp> {
  SmallVector<utils::IteratorType> getLoopIteratorTypes(Operation *op) const {
    return SmallVector<utils::IteratorType>(Slice::of(op).source.getRank(),
                                            utils::IteratorType::parallel);
  }

  /// Source: identity; result: the kept dimensions (the offsets are not
  /// part of the maps: only the dimensions taken whole are ever split).
  SmallVector<AffineMap> getIndexingMaps(Operation *op) const {
    Slice slice = Slice::of(op);
    MLIRContext *context = op->getContext();
    unsigned rank = slice.source.getRank();
    SmallVector<AffineExpr> kept;
    for (auto [dim, at] : llvm::enumerate(slice.resultDim))
      if (at >= 0)
        kept.push_back(getAffineDimExpr(dim, context));
    SmallVector<AffineMap> maps;
    maps.push_back(AffineMap::getMultiDimIdentityMap(rank, context));
    for (unsigned i = 1; i < op->getNumOperands(); ++i)
      maps.push_back(AffineMap::get(rank, 0, context));
    maps.push_back(AffineMap::get(rank, 0, kept, context));
    return maps;
  }

  FailureOr<ShardingOption>
  getShardingOption(Operation *op, ArrayRef<Sharding> operandShardings,
                    ArrayRef<Sharding> resultShardings) const {
    Slice slice = Slice::of(op);
    return mergeLoopSplits(operandShardings, resultShardings,
                           slice.source.getRank(),
                           [&](const Sharding &sharding, bool ofSource) {
                             return sourceSplit(slice, sharding, ofSource);
                           });
  }

  FailureOr<std::vector<Sharding>>
  getShardingAnnotations(Operation *op, const ShardingOption &option) const {
    Slice slice = Slice::of(op);
    ShardingArray split = option.shardingArray;
    split.resize(slice.source.getRank());
    for (auto [dim, axes] : llvm::enumerate(split))
      if (!axes.empty() && !slice.whole[dim])
        return failure();
    MLIRContext *context = op->getContext();
    std::vector<Sharding> shardings;
    shardings.push_back(makeSharding(context, option.grid, split));
    for (unsigned i = 1; i < op->getNumOperands(); ++i)
      shardings.emplace_back(); // the offsets', sizes' and strides' indices
    shardings.push_back(
        makeSharding(context, option.grid, resultSplit(slice, split)));
    return shardings;
  }

  /// The same slice of the rank's block: a split dimension (taken whole)
  /// is its whole local block.
  LogicalResult partition(Operation *op, ArrayRef<Value> partitionedOperands,
                          ArrayRef<Sharding> operandShardings,
                          ArrayRef<Sharding> resultShardings,
                          IRMapping &partitionMap,
                          SymbolTableCollection &symbolTable,
                          OpBuilder &builder) const {
    Slice slice = Slice::of(op);
    Sharding source = operandShardings[0];
    Sharding result = resultShardings[0];
    if (!isSplit(source) && !isSplit(result)) {
      builder.clone(*op, partitionMap);
      return success();
    }
    FailureOr<ShardingArray> fromSource = sourceSplit(slice, source, true);
    FailureOr<ShardingArray> fromResult = sourceSplit(slice, result, false);
    if (failed(fromSource) || failed(fromResult) ||
        (source && result && *fromSource != *fromResult))
      return op->emitOpError()
             << "cannot be partitioned: its source and result shardings do "
                "not split the same elements (only dimensions the slice "
                "takes whole may be split)";
    FailureOr<shard::GridOp> grid =
        lookUpSplitGrid(op, source, result, symbolTable);
    if (failed(grid))
      return failure();
    ShardingArray split = source ? *fromSource : *fromResult;
    auto original = cast<tensor::ExtractSliceOp>(op);
    IRMapping operands;
    for (auto [old, local] : llvm::zip(op->getOperands(), partitionedOperands))
      operands.map(old, local);
    auto mapped = [&](ArrayRef<OpFoldResult> values) {
      return llvm::map_to_vector(values, [&](OpFoldResult value) {
        if (auto dynamic = dyn_cast<Value>(value))
          return OpFoldResult(operands.lookupOrDefault(dynamic));
        return value;
      });
    };
    SmallVector<OpFoldResult> sizes = mapped(original.getMixedSizes());
    for (auto [dim, axes] : llvm::enumerate(split)) {
      if (axes.empty())
        continue;
      int64_t count = shard::collectiveProcessGroupSize(axes, *grid);
      int64_t full = slice.source.getDimSize(dim);
      if (ShapedType::isDynamic(count) || full % count != 0)
        return op->emitOpError()
               << "cannot be partitioned: dimension " << dim << " of size "
               << full << " does not split evenly over the grid";
      sizes[dim] = builder.getIndexAttr(full / count);
    }
    Sharding resultSharding = makeSharding(
        op->getContext(), FlatSymbolRefAttr::get(*grid), resultSplit(slice, split));
    auto localType = cast<RankedTensorType>(
        shard::shardType(slice.result, *grid, resultSharding));
    Value local = tensor::ExtractSliceOp::create(
        builder, op->getLoc(), localType, partitionedOperands[0],
        mapped(original.getMixedOffsets()), sizes,
        mapped(original.getMixedStrides()));
    partitionMap.map(op->getResult(0), local);
    return success();
  }
};

} // namespace

void nnforge::registerExtractSliceShardingInterface(
    DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *context, tensor::TensorDialect *) {
    tensor::ExtractSliceOp::attachInterface<ExtractSliceShardingModel>(
        *context);
  });
}
