//===- ConvToIm2col.cpp - convolutions as a window copy and a matmul ------===//
//
// Upstream's im2col (transform.structured.convert_conv2d_to_img2col) fills
// its [N, C*KH*KW, OH*OW] buffer with a generic that recovers c, kh, kw, oh
// and ow from flat indices with floordiv/mod: the copy cannot be vectorized
// and stays a scalar gather. This rewrite writes the same buffer as a 6-D
// tensor [N, C, KH, KW, OH, OW] (a plain copy whose input map is
// (n, c, oh * sh + kh * dh, ow * sw + kw * dw): rows of the input, which
// vectorize), collapsed for free into the matmul operand; a product
// computed transposed (channels innermost) copies them one output row at a
// time, [N, OH, C, KH, KW, OW], so that the pixels of its register tile of
// rows are contiguous at every k. NHWC
// convolutions (what jax and TensorFlow write) get the same treatment with
// channels innermost: windows [N, OH, OW, KH, KW, C], contiguous along C,
// times the HWCF filter, which already is the [KH*KW*C, F] matrix. An NCHW
// convolution with unit strides whose output rows fill a register tile
// becomes an NHWC one between two transposing copies instead: the CPU code
// generation computes those from the input directly, without the window
// copy (nine times the input for a 3x3 window).
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/TypeUtilities.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFCONVTOIM2COL
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// The input's windows copied into a tensor whose dimensions are the loops
/// (n, c, kh, kw, oh, ow) in the order `order`: windows[...] =
/// input[n, c, oh*sh + kh*dh, ow*sw + kw*dw], rows of the input along ow.
/// The copy's loops stay in that order (its outer parallel loop is the
/// channels, whatever the layout).
Value windowCopy(OpBuilder &builder, Location loc, Value input,
                 ArrayRef<int64_t> kernel, ArrayRef<int64_t> out,
                 ArrayRef<int64_t> strides, ArrayRef<int64_t> dilations,
                 ArrayRef<unsigned> order) {
  MLIRContext *context = builder.getContext();
  auto inputType = cast<RankedTensorType>(input.getType());
  AffineExpr n, c, kh, kw, oh, ow;
  bindDims(context, n, c, kh, kw, oh, ow);
  AffineMap windowMap =
      AffineMap::get(6, 0,
                     {n, c, oh * strides[0] + kh * dilations[0],
                      ow * strides[1] + kw * dilations[1]},
                     context);
  SmallVector<int64_t> sizes = {inputType.getDimSize(0),
                                inputType.getDimSize(1),
                                kernel[2],
                                kernel[3],
                                out[2],
                                out[3]};
  SmallVector<int64_t> windowShape;
  for (unsigned loop : order)
    windowShape.push_back(sizes[loop]);
  Value empty = tensor::EmptyOp::create(builder, loc, windowShape,
                                        inputType.getElementType());
  return linalg::GenericOp::create(
             builder, loc, empty.getType(), ValueRange{input},
             ValueRange{empty},
             {windowMap, AffineMap::getPermutationMap(order, context)},
             SmallVector<utils::IteratorType>(6, utils::IteratorType::parallel),
             [](OpBuilder &builder, Location loc, ValueRange arguments) {
               linalg::YieldOp::create(builder, loc, arguments[0]);
             })
      .getResult(0);
}

/// Whether a convolution's columns are its input itself (a 1x1 window with
/// unit strides): no window copy.
bool needsNoWindowCopy(ArrayRef<int64_t> kernel, ArrayRef<int64_t> strides) {
  return kernel[2] == 1 && kernel[3] == 1 && strides[0] == 1 &&
         strides[1] == 1;
}

/// The columns of im2col, [N, C*KH*KW, OH*OW], as a collapsed copy of the
/// windows: windows[n, c, kh, kw, oh, ow] =
/// input[n, c, oh*sh + kh*dh, ow*sw + kw*dw]. A 1x1 convolution with unit
/// strides needs no copy: its columns are the input, spatial dims collapsed.
Value im2colColumns(OpBuilder &builder, Location loc, Value input,
                    ArrayRef<int64_t> kernel, ArrayRef<int64_t> out,
                    ArrayRef<int64_t> strides, ArrayRef<int64_t> dilations) {
  if (needsNoWindowCopy(kernel, strides))
    return tensor::CollapseShapeOp::create(
        builder, loc, input, ArrayRef<ReassociationIndices>{{0}, {1}, {2, 3}});
  return tensor::CollapseShapeOp::create(
      builder, loc,
      windowCopy(builder, loc, input, kernel, out, strides, dilations,
                 {0, 1, 2, 3, 4, 5}),
      ArrayRef<ReassociationIndices>{{0}, {1, 2, 3}, {4, 5}});
}

/// The columns one output row at a time, [N, OH, C*KH*KW, OW]: windows[n,
/// oh, c, kh, kw, ow] collapsed, so that the pixels of an output row (a
/// register tile of the transposed product's rows) lie side by side at
/// every k, one k after another.
Value rowColumns(OpBuilder &builder, Location loc, Value input,
                 ArrayRef<int64_t> kernel, ArrayRef<int64_t> out,
                 ArrayRef<int64_t> strides, ArrayRef<int64_t> dilations) {
  return tensor::CollapseShapeOp::create(
      builder, loc,
      windowCopy(builder, loc, input, kernel, out, strides, dilations,
                 {0, 4, 1, 2, 3, 5}),
      ArrayRef<ReassociationIndices>{{0}, {1}, {2, 3, 4}, {5}});
}

/// Vector lanes per register of the code generation (f32 on AVX-512): an
/// output row of pixels that is no multiple of this ends in partial vectors.
constexpr int64_t kLanes = 16;
/// Output channels per register tile (two vectors).
constexpr int64_t kChannelTile = 32;

/// Whether to compute the convolution with channels as the vector
/// dimension: where the pixels of an output channel (49 for 7x7) are no
/// multiple of the vector width (49 = 32 + 16 + 1 would leave a column of
/// scalar multiply-adds) but the channels are, and the filter is a constant
/// (transposed once, when compiling).
bool prefersChannelVectors(Value filter, RankedTensorType outputType) {
  int64_t pixels = outputType.getDimSize(2) * outputType.getDimSize(3);
  return filter.getDefiningOp<arith::ConstantOp>() && pixels % kLanes != 0 &&
         outputType.getDimSize(1) % kChannelTile == 0;
}

/// An empty tensor of the shape of `value` with its dimensions permuted.
Value permutedEmpty(OpBuilder &builder, Location loc, Value value,
                    ArrayRef<int64_t> permutation) {
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<int64_t> shape;
  for (int64_t dim : permutation)
    shape.push_back(type.getDimSize(dim));
  return tensor::EmptyOp::create(builder, loc, shape, type.getElementType());
}

/// `value` with its dimensions permuted.
Value transposed(OpBuilder &builder, Location loc, Value value,
                 ArrayRef<int64_t> permutation) {
  Value empty = permutedEmpty(builder, loc, value, permutation);
  return linalg::TransposeOp::create(builder, loc, value, empty, permutation)
      .getResult()[0];
}

/// A generic computing `init + lhs * rhs` over `maps` (loops: all parallel
/// but the last, the reduction).
Value multiplyAccumulate(OpBuilder &builder, Location loc, Value lhs,
                         Value rhs, Value init, ArrayRef<AffineMap> maps) {
  SmallVector<utils::IteratorType> iterators(maps[0].getNumDims() - 1,
                                             utils::IteratorType::parallel);
  iterators.push_back(utils::IteratorType::reduction);
  return linalg::GenericOp::create(
             builder, loc, init.getType(), ValueRange{lhs, rhs},
             ValueRange{init}, maps, iterators,
             [](OpBuilder &builder, Location loc, ValueRange arguments) {
               Value term = arith::MulFOp::create(builder, loc, arguments[0],
                                                  arguments[1]);
               Value sum =
                   arith::AddFOp::create(builder, loc, arguments[2], term);
               linalg::YieldOp::create(builder, loc, sum);
             })
      .getResult(0);
}

/// out[b, f, p] = init[b, f, p] + filter[f, k] * columns[b, k, p]: the
/// output pixels are the contraction's n, the vector dimension.
Value pixelsInnermostProduct(OpBuilder &builder, Location loc, Value filter,
                             Value columns, Value init) {
  MLIRContext *context = builder.getContext();
  AffineExpr b, f, p, k;
  bindDims(context, b, f, p, k);
  Value matrix = tensor::CollapseShapeOp::create(
      builder, loc, filter, ArrayRef<ReassociationIndices>{{0}, {1, 2, 3}});
  return multiplyAccumulate(builder, loc, matrix, columns, init,
                            {AffineMap::get(4, 0, {f, k}, context),
                             AffineMap::get(4, 0, {b, k, p}, context),
                             AffineMap::get(4, 0, {b, f, p}, context)});
}

/// The filter [F, C, KH, KW] as the [C*KH*KW, F] matrix of a product with
/// channels innermost (transposed once, when compiling).
Value transposedFilter(OpBuilder &builder, Location loc, Value filter) {
  return tensor::CollapseShapeOp::create(
      builder, loc, transposed(builder, loc, filter, {1, 2, 3, 0}),
      ArrayRef<ReassociationIndices>{{0, 1, 2}, {3}});
}

/// The same product computed transposed, outT[b, p, f] = columns[b, k, p] *
/// filterT[k, f], then transposed into [b, f, p]: the output channels are
/// the contraction's n (whole vectors where there are a multiple of 32),
/// the pixels its m; the filter is transposed once, when compiling.
Value channelsInnermostProduct(OpBuilder &builder, Location loc, Value filter,
                               Value columns, Value init) {
  MLIRContext *context = builder.getContext();
  AffineExpr b, p, f, k;
  bindDims(context, b, p, f, k);
  Value productT = multiplyAccumulate(
      builder, loc, columns, transposedFilter(builder, loc, filter),
      transposed(builder, loc, init, {0, 2, 1}),
      {AffineMap::get(4, 0, {b, k, p}, context),
       AffineMap::get(4, 0, {k, f}, context),
       AffineMap::get(4, 0, {b, p, f}, context)});
  return transposed(builder, loc, productT, {0, 2, 1});
}

/// The transposed product from the columns of each output row,
/// outT[b, oh, ow, f] = rows[b, oh, k, ow] * filterT[k, f], transposed
/// into [b, f, oh * ow]: `init` and the result collapsed [b, f, oh * ow].
Value channelsInnermostRowProduct(OpBuilder &builder, Location loc,
                                  Value filter, Value rows, Value init,
                                  int64_t outputRows) {
  MLIRContext *context = builder.getContext();
  AffineExpr b, oh, ow, f, k;
  bindDims(context, b, oh, ow, f, k);
  auto initType = cast<RankedTensorType>(init.getType());
  Value initT = tensor::ExpandShapeOp::create(
      builder, loc,
      RankedTensorType::get({initType.getDimSize(0), outputRows,
                             initType.getDimSize(2) / outputRows,
                             initType.getDimSize(1)},
                            initType.getElementType()),
      transposed(builder, loc, init, {0, 2, 1}),
      ArrayRef<ReassociationIndices>{{0}, {1, 2}, {3}});
  Value productT = multiplyAccumulate(
      builder, loc, rows, transposedFilter(builder, loc, filter), initT,
      {AffineMap::get(5, 0, {b, oh, k, ow}, context),
       AffineMap::get(5, 0, {k, f}, context),
       AffineMap::get(5, 0, {b, oh, ow, f}, context)});
  Value collapsed = tensor::CollapseShapeOp::create(
      builder, loc, productT, ArrayRef<ReassociationIndices>{{0}, {1, 2}, {3}});
  return transposed(builder, loc, collapsed, {0, 2, 1});
}

/// Whether to compute the NCHW convolution as an NHWC one from its input
/// directly: unit strides and dilations, a window larger than 1x1, output
/// rows of at least `directMinWidth` pixels, whole vectors of output
/// channels and a constant filter (transposed once, when compiling).
bool computesDirectly(Value filter, RankedTensorType filterType,
                      RankedTensorType outputType, ArrayRef<int64_t> strides,
                      ArrayRef<int64_t> dilations, int64_t directMinWidth) {
  return llvm::all_equal({int64_t(1), strides[0], strides[1], dilations[0],
                          dilations[1]}) &&
         filterType.getDimSize(2) * filterType.getDimSize(3) > 1 &&
         outputType.getDimSize(3) >= directMinWidth &&
         outputType.getDimSize(1) % kLanes == 0 &&
         filter.getDefiningOp<arith::ConstantOp>();
}

/// A copy of `value` with its dimensions permuted, as a generic (a
/// transposing read), so that elementwise fusion can merge it into the ops
/// around it.
Value permutedCopy(OpBuilder &builder, Location loc, Value value,
                   ArrayRef<int64_t> permutation) {
  int64_t rank = cast<RankedTensorType>(value.getType()).getRank();
  Value empty = permutedEmpty(builder, loc, value, permutation);
  AffineMap read = inversePermutation(
      AffineMap::getPermutationMap(permutation, builder.getContext()));
  return linalg::GenericOp::create(
             builder, loc, empty.getType(), ValueRange{value},
             ValueRange{empty},
             {read, builder.getMultiDimIdentityMap(rank)},
             SmallVector<utils::IteratorType>(rank,
                                              utils::IteratorType::parallel),
             [](OpBuilder &builder, Location loc, ValueRange arguments) {
               linalg::YieldOp::create(builder, loc, arguments[0]);
             })
      .getResult(0);
}

/// `input` copied into NHWC. A tensor.pad of constant padding is done after
/// the copy, on its source: the copy can then be fused into the op that
/// computes the source (a batch norm and ReLU between two convolutions),
/// which writes NHWC directly.
Value nhwcInput(OpBuilder &builder, Location loc, Value input,
                ArrayRef<int64_t> toNhwc) {
  auto pad = input.getDefiningOp<tensor::PadOp>();
  Value padding = pad ? pad.getConstantPaddingValue() : Value();
  if (!padding || !pad.getLow().empty() || !pad.getHigh().empty())
    return permutedCopy(builder, loc, input, toNhwc);
  SmallVector<OpFoldResult> low, high;
  for (int64_t dim : toNhwc) {
    low.push_back(builder.getIndexAttr(pad.getStaticLow()[dim]));
    high.push_back(builder.getIndexAttr(pad.getStaticHigh()[dim]));
  }
  return tensor::PadOp::create(
      builder, loc, Type(),
      permutedCopy(builder, loc, pad.getSource(), toNhwc), low, high, padding);
}

/// The accumulator `init` in NHWC: a fill or a broadcast of the channels
/// (a bias) done again in NHWC, anything else copied.
Value nhwcAccumulator(OpBuilder &builder, Location loc, Value init,
                      ArrayRef<int64_t> toNhwc) {
  Value empty = permutedEmpty(builder, loc, init, toNhwc);
  if (auto fill = init.getDefiningOp<linalg::FillOp>())
    return linalg::FillOp::create(builder, loc, fill.getInputs(), empty)
        .getResult(0);
  auto broadcast = init.getDefiningOp<linalg::BroadcastOp>();
  if (broadcast && broadcast.getDimensions() == ArrayRef<int64_t>{0, 2, 3})
    return linalg::BroadcastOp::create(builder, loc, broadcast.getInput(),
                                       empty, ArrayRef<int64_t>{0, 1, 2})
        .getResults()[0];
  return permutedCopy(builder, loc, init, toNhwc);
}

/// The NCHW convolution as an NHWC/HWCF one: the input and the accumulator
/// in NHWC, the filter transposed to HWCF, the result copied back into
/// NCHW.
Value directNhwcConvolution(OpBuilder &builder, Location loc,
                            linalg::Conv2DNchwFchwOp conv) {
  Value input = conv.getInputs()[0], filter = conv.getInputs()[1];
  Value init = conv.getOutputs()[0];
  const SmallVector<int64_t> toNhwc = {0, 2, 3, 1}, toNchw = {0, 3, 1, 2};
  Value nhwcInit = nhwcAccumulator(builder, loc, init, toNhwc);
  auto nhwc = linalg::Conv2DNhwcHwcfOp::create(
      builder, loc, TypeRange{nhwcInit.getType()},
      ValueRange{nhwcInput(builder, loc, input, toNhwc),
                 transposed(builder, loc, filter, {2, 3, 1, 0})},
      ValueRange{nhwcInit}, conv.getStrides(), conv.getDilations());
  return permutedCopy(builder, loc, nhwc.getResult(0), toNchw);
}

/// Whether some number of pixels from `rowTileMin` to `rowTileMax` (a
/// register tile of rows that keeps the FMA pipes busy) divides an output
/// row of `width` pixels: its windows are then copied a row at a time.
bool copiesRowWindows(int64_t width, int64_t rowTileMin, int64_t rowTileMax) {
  if (rowTileMin <= 0)
    return false;
  for (int64_t rows = rowTileMin; rows <= rowTileMax; ++rows)
    if (width % rows == 0)
      return true;
  return false;
}

struct ConvToIm2col : OpRewritePattern<linalg::Conv2DNchwFchwOp> {
  ConvToIm2col(MLIRContext *context, int64_t directMinWidth,
               int64_t rowTileMin, int64_t rowTileMax)
      : OpRewritePattern(context), directMinWidth(directMinWidth),
        rowTileMin(rowTileMin), rowTileMax(rowTileMax) {}

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
    Location loc = conv.getLoc();
    if (computesDirectly(filter, filterType, outputType, strides, dilations,
                         directMinWidth)) {
      rewriter.replaceOp(conv, directNhwcConvolution(rewriter, loc, conv));
      return success();
    }
    SmallVector<ReassociationIndices> spatial = {{0}, {1}, {2, 3}};
    Value accumulator =
        tensor::CollapseShapeOp::create(rewriter, loc, init, spatial);
    ArrayRef<int64_t> kernel = filterType.getShape();
    ArrayRef<int64_t> out = outputType.getShape();
    Value product;
    if (!prefersChannelVectors(filter, outputType))
      product = pixelsInnermostProduct(
          rewriter, loc, filter,
          im2colColumns(rewriter, loc, input, kernel, out, strides, dilations),
          accumulator);
    else if (needsNoWindowCopy(kernel, strides) ||
             !copiesRowWindows(out[3], rowTileMin, rowTileMax))
      product = channelsInnermostProduct(
          rewriter, loc, filter,
          im2colColumns(rewriter, loc, input, kernel, out, strides, dilations),
          accumulator);
    else
      product = channelsInnermostRowProduct(
          rewriter, loc, filter,
          rowColumns(rewriter, loc, input, kernel, out, strides, dilations),
          accumulator, out[2]);
    rewriter.replaceOpWithNewOp<tensor::ExpandShapeOp>(conv, outputType,
                                                       product, spatial);
    return success();
  }

  int64_t directMinWidth;
  int64_t rowTileMin;
  int64_t rowTileMax;
};

/// The columns of an NHWC im2col, [N, OH*OW, KH*KW*C], as a collapsed copy
/// of the windows: windows[n, oh, ow, kh, kw, c] =
/// input[n, oh*sh + kh*dh, ow*sw + kw*dw, c] (rows of channels, contiguous
/// in both). A 1x1 convolution with unit strides needs no copy.
Value nhwcColumns(OpBuilder &builder, Location loc, Value input,
                  ArrayRef<int64_t> kernel, ArrayRef<int64_t> out,
                  ArrayRef<int64_t> strides, ArrayRef<int64_t> dilations) {
  if (kernel[0] == 1 && kernel[1] == 1 && strides[0] == 1 && strides[1] == 1)
    return tensor::CollapseShapeOp::create(
        builder, loc, input, ArrayRef<ReassociationIndices>{{0}, {1, 2}, {3}});
  MLIRContext *context = builder.getContext();
  auto inputType = cast<RankedTensorType>(input.getType());
  AffineExpr n, oh, ow, kh, kw, c;
  bindDims(context, n, oh, ow, kh, kw, c);
  AffineMap windowMap =
      AffineMap::get(6, 0,
                     {n, oh * strides[0] + kh * dilations[0],
                      ow * strides[1] + kw * dilations[1], c},
                     context);
  SmallVector<int64_t> windowShape = {inputType.getDimSize(0), out[1],
                                      out[2],    kernel[0],
                                      kernel[1], inputType.getDimSize(3)};
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
      ArrayRef<ReassociationIndices>{{0}, {1, 2}, {3, 4, 5}});
}

/// The checks both layouts share: static shapes, one float element type.
LogicalResult checkTypes(linalg::LinalgOp conv, PatternRewriter &rewriter) {
  for (Value value : conv->getOperands()) {
    auto type = dyn_cast<RankedTensorType>(value.getType());
    if (!type || !type.hasStaticShape())
      return rewriter.notifyMatchFailure(conv, "dynamic shapes");
  }
  Type element = getElementTypeOrSelf(conv->getOperand(2).getType());
  if (!isa<FloatType>(element) ||
      getElementTypeOrSelf(conv->getOperand(0).getType()) != element ||
      getElementTypeOrSelf(conv->getOperand(1).getType()) != element)
    return rewriter.notifyMatchFailure(conv, "not one float element type");
  return success();
}

/// An NHWC/HWCF convolution as out[b, p, f] = init[b, p, f] +
/// columns[b, p, k] * filter[k, f]: the output channels are the
/// contraction's n (the vectors), the pixels its m, and neither the filter
/// nor the output is transposed. With unit strides and dilations (and a
/// window larger than 1x1) the convolution stays: the CPU code generation
/// computes it from the input directly (a register tile of pixels reads a
/// row of channels per filter tap, no window copy), which measured faster
/// than the copy and the contraction (3x3, 64 channels, 56x56, one thread:
/// 2.15 ms against 2.40).
struct NhwcConvToIm2col : OpRewritePattern<linalg::Conv2DNhwcHwcfOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::Conv2DNhwcHwcfOp conv,
                                PatternRewriter &rewriter) const override {
    if (failed(checkTypes(conv, rewriter)))
      return failure();
    Value input = conv.getInputs()[0], filter = conv.getInputs()[1];
    Value init = conv.getOutputs()[0];
    auto filterType = cast<RankedTensorType>(filter.getType());
    auto outputType = cast<RankedTensorType>(init.getType());
    SmallVector<int64_t> strides(conv.getStrides().getValues<int64_t>());
    SmallVector<int64_t> dilations(conv.getDilations().getValues<int64_t>());
    if (llvm::all_equal({int64_t(1), strides[0], strides[1], dilations[0],
                         dilations[1]}) &&
        filterType.getDimSize(0) * filterType.getDimSize(1) > 1)
      return rewriter.notifyMatchFailure(
          conv, "unit strides: computed directly from the input");
    Location loc = conv.getLoc();
    Value columns =
        nhwcColumns(rewriter, loc, input, filterType.getShape(),
                    outputType.getShape(), strides, dilations);
    Value matrix = tensor::CollapseShapeOp::create(
        rewriter, loc, filter, ArrayRef<ReassociationIndices>{{0, 1, 2}, {3}});
    SmallVector<ReassociationIndices> spatial = {{0}, {1, 2}, {3}};
    Value accumulator =
        tensor::CollapseShapeOp::create(rewriter, loc, init, spatial);
    MLIRContext *context = rewriter.getContext();
    AffineExpr b, p, f, k;
    bindDims(context, b, p, f, k);
    Value product = multiplyAccumulate(
        rewriter, loc, columns, matrix, accumulator,
        {AffineMap::get(4, 0, {b, p, k}, context),
         AffineMap::get(4, 0, {k, f}, context),
         AffineMap::get(4, 0, {b, p, f}, context)});
    rewriter.replaceOpWithNewOp<tensor::ExpandShapeOp>(conv, outputType,
                                                       product, spatial);
    return success();
  }
};

struct NNFConvToIm2colPass
    : nnforge::impl::NNFConvToIm2colBase<NNFConvToIm2colPass> {
  using Base::Base;

  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<ConvToIm2col>(&getContext(), directMinWidth, rowTileMin,
                               rowTileMax);
    patterns.add<NhwcConvToIm2col>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
