//===- ExpandShapesAsCasts.cpp - dynamic expand_shape groups as casts -----===//
//
// Upstream's `expand-strided-metadata` (MLIR 22) computes the sizes of a
// `memref.expand_shape` group from the source size and the group's static
// sizes, and asserts that a group has at most one dynamic size: a model
// whose reshape splits one dimension into two of unknown size (a jax
// transformer exported with a symbolic batch and sequence length) aborted
// the process there. The op's `output_shape` operands give those sizes; with
// them the expansion is a `memref.reinterpret_cast` of the source: the same
// offset, the given sizes, and in each group the source dimension's stride
// on its innermost dimension, each outer one the stride of the next times
// its size.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/BuiltinTypes.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFEXPANDSHAPESASCASTS
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// Whether some reassociation group of `op` has two or more dynamic sizes
/// (what `expand-strided-metadata` cannot take).
bool hasSeveralDynamicSizesInAGroup(memref::ExpandShapeOp op) {
  MemRefType type = op.getResultType();
  for (const ReassociationIndices &group : op.getReassociationIndices()) {
    unsigned dynamic = 0;
    for (int64_t dim : group)
      dynamic += type.isDynamicDim(dim);
    if (dynamic > 1)
      return true;
  }
  return false;
}

/// `lhs * rhs`, folded where both are constants.
OpFoldResult multiply(OpBuilder &builder, Location loc, OpFoldResult lhs,
                      OpFoldResult rhs) {
  std::optional<int64_t> left = getConstantIntValue(lhs);
  std::optional<int64_t> right = getConstantIntValue(rhs);
  if (left && right)
    return builder.getIndexAttr(*left * *right);
  if (left == 1)
    return rhs;
  if (right == 1)
    return lhs;
  return arith::MulIOp::create(
             builder, loc, getValueOrCreateConstantIndexOp(builder, loc, lhs),
             getValueOrCreateConstantIndexOp(builder, loc, rhs))
      .getResult();
}

/// `computed`, or the static value the result type gives at that place (the
/// cast's verifier compares them, and the type's is the better fold).
OpFoldResult preferStatic(OpBuilder &builder, int64_t fromType,
                          OpFoldResult computed) {
  return ShapedType::isDynamic(fromType) ? computed
                                         : builder.getIndexAttr(fromType);
}

LogicalResult rewrite(memref::ExpandShapeOp op) {
  MemRefType resultType = op.getResultType();
  MemRefType sourceType = op.getSrcType();
  SmallVector<int64_t> resultStrides, sourceStrides;
  int64_t resultOffset, sourceOffset;
  if (failed(resultType.getStridesAndOffset(resultStrides, resultOffset)) ||
      failed(sourceType.getStridesAndOffset(sourceStrides, sourceOffset)))
    return op.emitOpError("has a layout that is not strided");

  OpBuilder builder(op);
  Location loc = op.getLoc();
  // The source's strides and offset, static where its type says.
  auto metadata = memref::ExtractStridedMetadataOp::create(builder, loc,
                                                           op.getSrc());
  auto sourceStride = [&](int64_t dim) -> OpFoldResult {
    if (ShapedType::isDynamic(sourceStrides[dim]))
      return metadata.getStrides()[dim];
    return builder.getIndexAttr(sourceStrides[dim]);
  };
  OpFoldResult offset =
      ShapedType::isDynamic(sourceOffset)
          ? OpFoldResult(metadata.getOffset())
          : OpFoldResult(builder.getIndexAttr(sourceOffset));

  SmallVector<OpFoldResult> sizes = op.getMixedOutputShape();
  SmallVector<OpFoldResult> strides(resultType.getRank());
  for (auto [sourceDim, group] :
       llvm::enumerate(op.getReassociationIndices())) {
    OpFoldResult stride = sourceStride(sourceDim);
    for (int64_t dim : llvm::reverse(group)) {
      strides[dim] = stride;
      stride = multiply(builder, loc, stride, sizes[dim]);
    }
  }
  for (int64_t dim = 0; dim < resultType.getRank(); ++dim) {
    sizes[dim] = preferStatic(builder, resultType.getDimSize(dim), sizes[dim]);
    strides[dim] = preferStatic(builder, resultStrides[dim], strides[dim]);
  }
  offset = preferStatic(builder, resultOffset, offset);

  auto cast = memref::ReinterpretCastOp::create(
      builder, loc, resultType, metadata.getBaseBuffer(), offset, sizes,
      strides);
  op.getResult().replaceAllUsesWith(cast.getResult());
  op.erase();
  return success();
}

struct NNFExpandShapesAsCastsPass
    : nnforge::impl::NNFExpandShapesAsCastsBase<NNFExpandShapesAsCastsPass> {
  void runOnOperation() override {
    SmallVector<memref::ExpandShapeOp> expansions;
    getOperation()->walk([&](memref::ExpandShapeOp op) {
      if (hasSeveralDynamicSizesInAGroup(op))
        expansions.push_back(op);
    });
    for (memref::ExpandShapeOp op : expansions)
      if (failed(rewrite(op)))
        return signalPassFailure();
  }
};

} // namespace
