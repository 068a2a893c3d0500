//===- FoldConstantTransposes.cpp - transpose constants at compile time ---===//
//
// Importers store weights as `dense_resource` blobs and express a layer's
// use of `W^T` as a `linalg.transpose` of that constant, which upstream's
// linalg constant folding (inline dense elements only) leaves for run time.
// This pass permutes the bytes of such constants once, when compiling.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"
#include "nnforge/Transforms/ConstantData.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFFOLDCONSTANTTRANSPOSES
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

struct FoldConstantTranspose : OpRewritePattern<linalg::TransposeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::TransposeOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasPureTensorSemantics())
      return failure();
    auto source = op.getInput().getDefiningOp<arith::ConstantOp>();
    if (!source)
      return rewriter.notifyMatchFailure(op, "input is not a constant");
    auto inputType = cast<RankedTensorType>(op.getInput().getType());
    auto resultType = cast<RankedTensorType>(op.getResult()[0].getType());
    unsigned bits = inputType.getElementTypeBitWidth();
    if (!inputType.hasStaticShape() || bits % 8 != 0)
      return rewriter.notifyMatchFailure(op, "dynamic or sub-byte constant");
    std::optional<ArrayRef<char>> bytes = nnforge::rawConstantBytes(source.getValue());
    size_t elementBytes = bits / 8;
    int64_t count = inputType.getNumElements();
    if (!bytes || bytes->size() != static_cast<size_t>(count) * elementBytes)
      return rewriter.notifyMatchFailure(op, "constant data not readable");

    // result[i_0, ..., i_r] = input[j] with j[permutation[d]] = i_d.
    ArrayRef<int64_t> permutation = op.getPermutation();
    ArrayRef<int64_t> inputShape = inputType.getShape();
    int64_t rank = inputType.getRank();
    SmallVector<int64_t> inputStrides(rank, 1);
    for (int64_t d = rank - 2; d >= 0; --d)
      inputStrides[d] = inputStrides[d + 1] * inputShape[d + 1];
    SmallVector<int64_t> strideOfResultDim(rank);
    for (int64_t d = 0; d < rank; ++d)
      strideOfResultDim[d] = inputStrides[permutation[d]];

    std::vector<char> transposed(bytes->size());
    SmallVector<int64_t> index(rank, 0);
    ArrayRef<int64_t> resultShape = resultType.getShape();
    for (int64_t linear = 0; linear < count; ++linear) {
      int64_t from = 0;
      for (int64_t d = 0; d < rank; ++d)
        from += index[d] * strideOfResultDim[d];
      std::memcpy(transposed.data() + linear * elementBytes,
                  bytes->data() + from * elementBytes, elementBytes);
      for (int64_t d = rank - 1; d >= 0 && ++index[d] == resultShape[d]; --d)
        index[d] = 0;
    }
    auto folded = DenseElementsAttr::getFromRawBuffer(resultType, transposed);
    rewriter.replaceOpWithNewOp<arith::ConstantOp>(op, resultType, folded);
    return success();
  }
};

struct NNFFoldConstantTransposesPass
    : nnforge::impl::NNFFoldConstantTransposesBase<
          NNFFoldConstantTransposesPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FoldConstantTranspose>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
