//===- BubbleUpExtractSlices.cpp - slice producers, not their results ------===//
//
// torch-mlir computes a packed projection (GPT-2's c_attn: queries, keys and
// values of every head from one [3E, K] weight) as one matmul whose result
// is sliced in thirds. No block split of the 3E features is a split of the
// heads: rank r's block of rows holds some heads' queries and other heads'
// keys. With the slices moved onto the operands, each third is its own
// matmul over its own slice of the weight ([3, E, K] viewed so: third i is
// [i, 0:E, 0:K]), and E splits by heads in each.
//
// Upstream has the patterns that move a slice above its producer
// (linalg::populateBubbleUpExtractSliceOpPatterns through linalg ops, and
// tensor::populateBubbleUpExtractSliceOpPatterns through reshapes) but no
// pass; the linalg one needs the producer to have no other user. This pass
// applies them, after giving each slice its own copy of a linalg producer
// whose users are all slices taking, together, no more elements than it
// computes (so no work is repeated).
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Tensor/Transforms/Transforms.h"
#include "mlir/Dialect/Utils/ReshapeOpsUtils.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFBUBBLEUPEXTRACTSLICES
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// Each unit-stride slice of a single-result linalg op that has
/// several users, all such slices taking no more elements together than
/// the op computes, gets its own copy of the op.
struct CopyProducerPerSlice : OpRewritePattern<tensor::ExtractSliceOp> {
  using OpRewritePattern::OpRewritePattern;

  static bool isCopyableSlice(Operation *user) {
    auto slice = dyn_cast<tensor::ExtractSliceOp>(user);
    return slice && slice.hasUnitStride() &&
           slice.getResultType().hasStaticShape();
  }

  LogicalResult matchAndRewrite(tensor::ExtractSliceOp slice,
                                PatternRewriter &rewriter) const override {
    auto producer = slice.getSource().getDefiningOp<linalg::LinalgOp>();
    if (!producer || producer->getNumResults() != 1 ||
        producer->hasOneUse() || !producer.hasPureTensorSemantics())
      return rewriter.notifyMatchFailure(slice, "no shared linalg producer");
    auto type = cast<RankedTensorType>(producer->getResult(0).getType());
    if (!type.hasStaticShape())
      return rewriter.notifyMatchFailure(slice, "dynamic producer");
    int64_t taken = 0;
    for (Operation *user : producer->getUsers()) {
      if (!isCopyableSlice(user))
        return rewriter.notifyMatchFailure(slice, "a user is no slice");
      taken += cast<tensor::ExtractSliceOp>(user).getResultType().getNumElements();
    }
    if (taken > type.getNumElements())
      return rewriter.notifyMatchFailure(slice, "the slices overlap");
    rewriter.setInsertionPoint(producer);
    Operation *copy = rewriter.clone(*producer);
    rewriter.modifyOpInPlace(
        slice, [&] { slice.getSourceMutable().assign(copy->getResult(0)); });
    return success();
  }
};

/// A rank-reducing slice of a linalg op or an expand_shape (torch-mlir's
/// select and unbind: a third of a packed projection viewed as [3, ..]) as a
/// full-rank slice and a tensor.collapse_shape dropping the unit dimensions,
/// which upstream's patterns move above the op (they take no rank-reducing
/// slice). A transpose keeps the rank reduction (below): the unit dimension
/// it would keep stands between the batch and the heads of attention.
struct RankReducingSliceAsCollapse : OpRewritePattern<tensor::ExtractSliceOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(tensor::ExtractSliceOp slice,
                                PatternRewriter &rewriter) const override {
    RankedTensorType result = slice.getResultType();
    Operation *producer = slice.getSource().getDefiningOp();
    if (result.getRank() == slice.getSourceType().getRank() || !producer ||
        isa<linalg::TransposeOp>(producer) ||
        !isa<linalg::LinalgOp, tensor::ExpandShapeOp>(producer) ||
        !slice.hasUnitStride() ||
        ShapedType::isDynamicShape(slice.getStaticSizes()))
      return rewriter.notifyMatchFailure(slice, "no rank-reducing slice");
    auto full = RankedTensorType::get(slice.getStaticSizes(),
                                      result.getElementType());
    std::optional<SmallVector<ReassociationIndices>> groups =
        getReassociationIndicesForReshape(full, result);
    if (!groups)
      return rewriter.notifyMatchFailure(slice, "no reassociation");
    Value sliced = tensor::ExtractSliceOp::create(
        rewriter, slice.getLoc(), full, slice.getSource(),
        slice.getMixedOffsets(), slice.getMixedSizes(),
        slice.getMixedStrides());
    rewriter.replaceOpWithNewOp<tensor::CollapseShapeOp>(slice, result, sliced,
                                                         *groups);
    return success();
  }
};

/// A rank-reducing slice of a linalg.transpose as a transpose of the
/// rank-reducing slice of its input: the dropped dimensions are those the
/// permutation maps them from.
struct RankReducingSliceOfTranspose : OpRewritePattern<tensor::ExtractSliceOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(tensor::ExtractSliceOp slice,
                                PatternRewriter &rewriter) const override {
    auto transpose = slice.getSource().getDefiningOp<linalg::TransposeOp>();
    RankedTensorType result = slice.getResultType();
    if (!transpose || !transpose->hasOneUse() ||
        !transpose.hasPureTensorSemantics() || !slice.hasUnitStride() ||
        result.getRank() == slice.getSourceType().getRank())
      return rewriter.notifyMatchFailure(slice, "no rank-reducing slice");
    ArrayRef<int64_t> permutation = transpose.getPermutation();
    llvm::SmallBitVector dropped = slice.getDroppedDims();
    int64_t rank = permutation.size();
    // Output dimension d reads input dimension permutation[d].
    SmallVector<OpFoldResult> offsets(rank), sizes(rank), strides(rank);
    llvm::SmallBitVector droppedInput(rank);
    for (int64_t d = 0; d < rank; ++d) {
      offsets[permutation[d]] = slice.getMixedOffsets()[d];
      sizes[permutation[d]] = slice.getMixedSizes()[d];
      strides[permutation[d]] = slice.getMixedStrides()[d];
      if (dropped.test(d))
        droppedInput.set(permutation[d]);
    }
    // The kept dimensions, renumbered, and the permutation between them.
    SmallVector<int64_t> newIndex(rank, -1), inputShape;
    auto inputType = cast<RankedTensorType>(transpose.getInput().getType());
    for (int64_t i = 0, next = 0; i < rank; ++i)
      if (!droppedInput.test(i)) {
        newIndex[i] = next++;
        std::optional<int64_t> size = getConstantIntValue(sizes[i]);
        if (!size)
          return rewriter.notifyMatchFailure(slice, "dynamic size");
        inputShape.push_back(*size);
      }
    SmallVector<int64_t> reduced;
    for (int64_t d = 0; d < rank; ++d)
      if (!dropped.test(d))
        reduced.push_back(newIndex[permutation[d]]);
    Location loc = slice.getLoc();
    Value input = tensor::ExtractSliceOp::create(
        rewriter, loc,
        RankedTensorType::get(inputShape, inputType.getElementType()),
        transpose.getInput(), offsets, sizes, strides);
    Value init = tensor::EmptyOp::create(rewriter, loc, result.getShape(),
                                         result.getElementType());
    rewriter.replaceOpWithNewOp<linalg::TransposeOp>(slice, input, init,
                                                     reduced);
    return success();
  }
};

/// tensor.extract_slice(tensor.collapse_shape) as
/// tensor.collapse_shape(tensor.extract_slice), for a static slice that is
/// contiguous in each group: whole inner dimensions, one sliced dimension,
/// unit outer ones. Upstream's pattern (BubbleUpExtractSliceThroughCollapse-
/// Shape, MLIR 22.1.8) refuses a slice ending where its dimension ends
/// (it tests size + offset >= dim, not >): the last third of a packed
/// weight viewed as [3, E, K] and collapsed to [3E, K].
struct BubbleUpStaticSliceThroughCollapse
    : OpRewritePattern<tensor::ExtractSliceOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(tensor::ExtractSliceOp slice,
                                PatternRewriter &rewriter) const override {
    auto collapse = slice.getSource().getDefiningOp<tensor::CollapseShapeOp>();
    if (!collapse || !slice.hasUnitStride() ||
        slice.getResultType().getRank() != slice.getSourceType().getRank() ||
        !collapse.getSrcType().hasStaticShape() ||
        ShapedType::isDynamicShape(slice.getStaticOffsets()) ||
        ShapedType::isDynamicShape(slice.getStaticSizes()))
      return rewriter.notifyMatchFailure(slice, "no static slice of a collapse");
    ArrayRef<int64_t> shape = collapse.getSrcType().getShape();
    SmallVector<int64_t> offsets(shape.size()), sizes(shape.size());
    for (auto [dim, group] :
         llvm::enumerate(collapse.getReassociationIndices())) {
      int64_t offset = slice.getStaticOffsets()[dim];
      int64_t size = slice.getStaticSizes()[dim];
      bool whole = true;
      for (int64_t fine : llvm::reverse(group)) {
        int64_t extent = shape[fine];
        if (whole && size >= extent) {
          if (size % extent != 0 || offset % extent != 0)
            return rewriter.notifyMatchFailure(slice, "not contiguous");
          sizes[fine] = extent;
          offsets[fine] = 0;
        } else {
          whole = false;
          if (offset % extent + size > extent)
            return rewriter.notifyMatchFailure(slice, "not contiguous");
          sizes[fine] = size;
          offsets[fine] = offset % extent;
          size = extent;
        }
        size /= extent;
        offset /= extent;
      }
    }
    SmallVector<int64_t> strides(shape.size(), 1);
    MLIRContext *context = rewriter.getContext();
    Value fine = tensor::ExtractSliceOp::create(
        rewriter, slice.getLoc(), collapse.getSrc(),
        getAsIndexOpFoldResult(context, offsets),
        getAsIndexOpFoldResult(context, sizes),
        getAsIndexOpFoldResult(context, strides));
    rewriter.replaceOpWithNewOp<tensor::CollapseShapeOp>(
        slice, slice.getResultType(), fine,
        collapse.getReassociationIndices());
    return success();
  }
};

struct NNFBubbleUpExtractSlicesPass
    : nnforge::impl::NNFBubbleUpExtractSlicesBase<
          NNFBubbleUpExtractSlicesPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<CopyProducerPerSlice, RankReducingSliceAsCollapse,
                 RankReducingSliceOfTranspose,
                 BubbleUpStaticSliceThroughCollapse>(
        &getContext());
    linalg::populateBubbleUpExtractSliceOpPatterns(patterns);
    tensor::populateBubbleUpExtractSliceOpPatterns(patterns);
    // Slices of a tensor.empty (the copies' destinations) as smaller ones.
    tensor::populateFoldTensorEmptyPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
