//===- UncollapseBatchMatmul.cpp - batch matmuls on uncollapsed batches ---===//
//
// torch lowers `a @ b` on tensors of rank 4 ([B, H, M, K] @ [B, H, K, N],
// attention) as a batch matmul on the batch dimensions collapsed into one
// ([B*H, M, K]), its result expanded back. With the heads split over ranks,
// a rank's heads are no block of B*H unless B is 1: the collapsed form
// cannot be sharded by heads. The same product as a linalg.generic over
// the uncollapsed batch dimensions can.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFUNCOLLAPSEBATCHMATMUL
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

struct UncollapseBatchMatmul : OpRewritePattern<tensor::ExpandShapeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(tensor::ExpandShapeOp expand,
                                PatternRewriter &rewriter) const override {
    auto product = expand.getSrc().getDefiningOp<linalg::BatchMatmulOp>();
    if (!product || !product.hasPureTensorSemantics() ||
        product.hasUserDefinedMaps() || !product->hasOneUse())
      return rewriter.notifyMatchFailure(expand, "no plain batch matmul");
    SmallVector<ReassociationIndices> groups = expand.getReassociationIndices();
    if (groups.size() != 3 || groups[0].size() < 2 || groups[1].size() != 1 ||
        groups[2].size() != 1)
      return rewriter.notifyMatchFailure(expand, "not [batches..., M, N]");
    RankedTensorType resultType = expand.getResultType();
    if (!resultType.hasStaticShape())
      return rewriter.notifyMatchFailure(expand, "dynamic shape");
    // The accumulator is filled anew in the uncollapsed shape (expanding the
    // collapsed one would keep batches and heads collapsed in its producer).
    auto fill = product.getDpsInitOperand(0)->get().getDefiningOp<linalg::FillOp>();
    if (!fill || !fill.hasPureTensorSemantics() ||
        !fill.getOutputs()[0].getDefiningOp<tensor::EmptyOp>())
      return rewriter.notifyMatchFailure(expand, "accumulator is no fill");
    int64_t batches = groups[0].size();
    ArrayRef<int64_t> batchShape = resultType.getShape().take_front(batches);
    SmallVector<Value> operands;
    for (int index : {0, 1}) {
      auto collapse = product.getDpsInputOperand(index)
                          ->get()
                          .getDefiningOp<tensor::CollapseShapeOp>();
      if (!collapse || collapse.getReassociationIndices() != groups ||
          collapse.getSrcType().getShape().take_front(batches) != batchShape)
        return rewriter.notifyMatchFailure(expand, "operand not collapsed alike");
      operands.push_back(collapse.getSrc());
    }

    Location loc = expand.getLoc();
    MLIRContext *context = rewriter.getContext();
    unsigned loops = batches + 3;
    auto map = [&](int64_t row, int64_t column) {
      SmallVector<AffineExpr> results;
      for (int64_t batch = 0; batch < batches; ++batch)
        results.push_back(getAffineDimExpr(batch, context));
      results.push_back(getAffineDimExpr(row, context));
      results.push_back(getAffineDimExpr(column, context));
      return AffineMap::get(loops, 0, results, context);
    };
    int64_t m = batches, n = batches + 1, k = batches + 2;
    SmallVector<AffineMap> maps = {map(m, k), map(k, n), map(m, n)};
    SmallVector<utils::IteratorType> iterators(batches + 2,
                                               utils::IteratorType::parallel);
    iterators.push_back(utils::IteratorType::reduction);
    Value empty = tensor::EmptyOp::create(rewriter, loc, resultType.getShape(),
                                          resultType.getElementType());
    Value init = linalg::FillOp::create(rewriter, loc, fill.getInputs()[0], empty)
                     .getResult(0);
    auto generic = linalg::GenericOp::create(rewriter, loc, TypeRange{resultType},
                                             operands, ValueRange{init}, maps,
                                             iterators);
    // The batch matmul's body (multiply, accumulate) fits the generic's.
    rewriter.cloneRegionBefore(product->getRegion(0), generic.getRegion(),
                               generic.getRegion().end());
    rewriter.replaceOp(expand, generic.getResults());
    return success();
  }
};

struct NNFUncollapseBatchMatmulPass
    : nnforge::impl::NNFUncollapseBatchMatmulBase<
          NNFUncollapseBatchMatmulPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<UncollapseBatchMatmul>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
