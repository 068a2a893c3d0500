//===- ConvToIm2col.cpp - convolutions as a window copy and a matmul ------===//
//
// Upstream's im2col (transform.structured.convert_conv2d_to_img2col) fills
// its [N, C*KH*KW, OH*OW] buffer with a generic that recovers c, kh, kw, oh
// and ow from flat indices with floordiv/mod: the copy cannot be vectorized
// and stays a scalar gather. This rewrite writes the same buffer as a 6-D
// tensor [N, C, KH, KW, OH, OW] (a plain copy whose input map is
// (n, c, oh * sh + kh * dh, ow * sw + kw * dw): rows of the input, which
// vectorize), collapsed for free into the matmul operand.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFCONVTOIM2COL
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// The columns of im2col, [N, C*KH*KW, OH*OW], as a collapsed copy of the
/// windows: windows[n, c, kh, kw, oh, ow] =
/// input[n, c, oh*sh + kh*dh, ow*sw + kw*dw]. A 1x1 convolution with unit
/// strides needs no copy: its columns are the input, spatial dims collapsed.
Value im2colColumns(OpBuilder &builder, Location loc, Value input,
                    ArrayRef<int64_t> kernel, ArrayRef<int64_t> out,
                    ArrayRef<int64_t> strides, ArrayRef<int64_t> dilations) {
  if (kernel[2] == 1 && kernel[3] == 1 && strides[0] == 1 && strides[1] == 1)
    return tensor::CollapseShapeOp::create(
        builder, loc, input, ArrayRef<ReassociationIndices>{{0}, {1}, {2, 3}});
  MLIRContext *context = builder.getContext();
  auto inputType = cast<RankedTensorType>(input.getType());
  AffineExpr n, c, kh, kw, oh, ow;
  bindDims(context, n, c, kh, kw, oh, ow);
  AffineMap windowMap =
      AffineMap::get(6, 0,
                     {n, c, oh * strides[0] + kh * dilations[0],
                      ow * strides[1] + kw * dilations[1]},
                     context);
  SmallVector<int64_t> windowShape = {
      inputType.getDimSize(0), inputType.getDimSize(1), kernel[2], kernel[3],
      out[2],                  out[3]};
  Value empty = tensor::EmptyOp::create(builder, loc, windowShape,
                                        inputType.getElementType());
  auto windows = linalg::GenericOp::create(
      builder, loc, empty.getType(), ValueRange{input}, ValueRange{empty},
      {windowMap, builder.getMultiDimIdentityMap(6)},
      SmallVector<utils::IteratorType>(6, utils::IteratorType::parallel),
      [](OpBuilder &builder, Location loc, ValueRange arguments) {
        linalg::YieldOp::create(builder, loc, arguments[0]);
      });
  return tensor::CollapseShapeOp::create(
      builder, loc, windows.getResult(0),
      ArrayRef<ReassociationIndices>{{0}, {1, 2, 3}, {4, 5}});
}

struct ConvToIm2col : OpRewritePattern<linalg::Conv2DNchwFchwOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::Conv2DNchwFchwOp conv,
                                PatternRewriter &rewriter) const override {
    Value input = conv.getInputs()[0], filter = conv.getInputs()[1];
    Value init = conv.getOutputs()[0];
    auto inputType = dyn_cast<RankedTensorType>(input.getType());
    auto filterType = dyn_cast<RankedTensorType>(filter.getType());
    auto outputType = dyn_cast<RankedTensorType>(init.getType());
    if (!inputType || !filterType || !outputType ||
        !inputType.hasStaticShape() || !filterType.hasStaticShape() ||
        !outputType.hasStaticShape())
      return rewriter.notifyMatchFailure(conv, "dynamic shapes");
    Type element = outputType.getElementType();
    if (!isa<FloatType>(element) || inputType.getElementType() != element ||
        filterType.getElementType() != element)
      return rewriter.notifyMatchFailure(conv, "not one float element type");

    SmallVector<int64_t> strides(conv.getStrides().getValues<int64_t>());
    SmallVector<int64_t> dilations(conv.getDilations().getValues<int64_t>());
    MLIRContext *context = rewriter.getContext();
    Location loc = conv.getLoc();
    Value columns =
        im2colColumns(rewriter, loc, input, filterType.getShape(),
                      outputType.getShape(), strides, dilations);

    // out[b, f, p] += filter[f, k] * columns[b, k, p]
    Value matrix = tensor::CollapseShapeOp::create(
        rewriter, loc, filter, ArrayRef<ReassociationIndices>{{0}, {1, 2, 3}});
    SmallVector<ReassociationIndices> spatial = {{0}, {1}, {2, 3}};
    Value accumulator =
        tensor::CollapseShapeOp::create(rewriter, loc, init, spatial);
    AffineExpr b, f, p, k;
    bindDims(context, b, f, p, k);
    auto product = linalg::GenericOp::create(
        rewriter, loc, accumulator.getType(), ValueRange{matrix, columns},
        ValueRange{accumulator},
        {AffineMap::get(4, 0, {f, k}, context),
         AffineMap::get(4, 0, {b, k, p}, context),
         AffineMap::get(4, 0, {b, f, p}, context)},
        {utils::IteratorType::parallel, utils::IteratorType::parallel,
         utils::IteratorType::parallel, utils::IteratorType::reduction},
        [](OpBuilder &builder, Location loc, ValueRange arguments) {
          Value term =
              arith::MulFOp::create(builder, loc, arguments[0], arguments[1]);
          Value sum = arith::AddFOp::create(builder, loc, arguments[2], term);
          linalg::YieldOp::create(builder, loc, sum);
        });
    rewriter.replaceOpWithNewOp<tensor::ExpandShapeOp>(
        conv, outputType, product.getResult(0), spatial);
    return success();
  }
};

struct NNFConvToIm2colPass
    : nnforge::impl::NNFConvToIm2colBase<NNFConvToIm2colPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<ConvToIm2col>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
