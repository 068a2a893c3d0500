//===- NNFToLinalg.cpp - lower nnf ops to linalg on tensors ---------------===//
//
// Each nnf op becomes linalg named ops where one fits (matmul, convolutions,
// so that later tiling/vectorization strategies see a named contraction) and
// linalg.generic ops otherwise. f16/bf16 ops accumulate and compute in f32
// and round once, at the end; dynamic dimensions are taken from the operands.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/ReshapeOpsUtils.h"
#include "mlir/Transforms/DialectConversion.h"
#include "nnforge/Dialect/NNF/NNFOps.h"
#include "nnforge/Passes.h"

#include <cmath>

namespace nnforge {
#define GEN_PASS_DEF_CONVERTNNFTOLINALG
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;
using nnforge::nnf::ActivationKind;

namespace {

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

/// The type arithmetic is done in: f32 for the 16-bit float types.
Type computeType(Type element) {
  return element.getIntOrFloatBitWidth() < 32
             ? Float32Type::get(element.getContext())
             : element;
}

Type elementType(Value tensor) {
  return cast<RankedTensorType>(tensor.getType()).getElementType();
}

Value toCompute(OpBuilder &b, Location loc, Value scalar) {
  Type wide = computeType(scalar.getType());
  return wide == scalar.getType()
             ? scalar
             : arith::ExtFOp::create(b, loc, wide, scalar).getResult();
}

Value fromCompute(OpBuilder &b, Location loc, Value scalar, Type element) {
  return scalar.getType() == element
             ? scalar
             : arith::TruncFOp::create(b, loc, element, scalar).getResult();
}

Value floatConstant(OpBuilder &b, Location loc, Type type, double value) {
  return arith::ConstantOp::create(b, loc, type, b.getFloatAttr(type, value));
}

/// A tensor.empty of `sizes` (static or dynamic).
Value emptyTensor(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                  Type element) {
  return tensor::EmptyOp::create(b, loc, sizes, element);
}

/// A tensor of `sizes` filled with `value`.
Value filledTensor(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                   Type element, double value) {
  Value init = emptyTensor(b, loc, sizes, element);
  Value fill = floatConstant(b, loc, element, value);
  return linalg::FillOp::create(b, loc, fill, init).getResult(0);
}

SmallVector<utils::IteratorType> parallelIterators(int64_t rank) {
  return SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel);
}

/// `x` converted to f32 (for f16/bf16) in a computation, `activation` of it.
Value applyActivation(OpBuilder &b, Location loc, ActivationKind kind,
                      Value x) {
  Type type = x.getType();
  auto constant = [&](double value) {
    return floatConstant(b, loc, type, value);
  };
  auto sigmoid = [&](Value v) {
    Value negated = arith::NegFOp::create(b, loc, v);
    Value denominator = arith::AddFOp::create(
        b, loc, constant(1.0), math::ExpOp::create(b, loc, negated));
    return arith::DivFOp::create(b, loc, constant(1.0), denominator)
        .getResult();
  };
  switch (kind) {
  case ActivationKind::none:
    return x;
  case ActivationKind::relu:
    return arith::MaximumFOp::create(b, loc, x, constant(0.0));
  case ActivationKind::relu6:
    return arith::MinimumFOp::create(
        b, loc, arith::MaximumFOp::create(b, loc, x, constant(0.0)),
        constant(6.0));
  case ActivationKind::gelu: {
    // 0.5 * x * (1 + erf(x / sqrt(2)))
    Value scaled = arith::MulFOp::create(b, loc, x, constant(M_SQRT1_2));
    Value erf = math::ErfOp::create(b, loc, scaled);
    Value half = arith::MulFOp::create(b, loc, x, constant(0.5));
    return arith::MulFOp::create(
        b, loc, half, arith::AddFOp::create(b, loc, erf, constant(1.0)));
  }
  case ActivationKind::gelu_tanh: {
    // 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))
    Value cube = arith::MulFOp::create(b, loc, x,
                                       arith::MulFOp::create(b, loc, x, x));
    Value inner = arith::AddFOp::create(
        b, loc, x, arith::MulFOp::create(b, loc, cube, constant(0.044715)));
    Value tanh = math::TanhOp::create(
        b, loc,
        arith::MulFOp::create(b, loc, inner, constant(std::sqrt(2.0 / M_PI))));
    Value half = arith::MulFOp::create(b, loc, x, constant(0.5));
    return arith::MulFOp::create(
        b, loc, half, arith::AddFOp::create(b, loc, tanh, constant(1.0)));
  }
  case ActivationKind::sigmoid:
    return sigmoid(x);
  case ActivationKind::tanh:
    return math::TanhOp::create(b, loc, x);
  case ActivationKind::silu:
    return arith::MulFOp::create(b, loc, x, sigmoid(x));
  }
  llvm_unreachable("unknown activation kind");
}

/// An elementwise generic over `input` (any element type) producing a tensor
/// of `resultElement`: activation(input) computed in f32, then rounded.
Value elementwiseEpilogue(OpBuilder &b, Location loc, Value input,
                          ActivationKind kind, Type resultElement) {
  auto type = cast<RankedTensorType>(input.getType());
  Value init = emptyTensor(b, loc, tensor::getMixedSizes(b, loc, input),
                           resultElement);
  AffineMap identity = b.getMultiDimIdentityMap(type.getRank());
  return linalg::GenericOp::create(
             b, loc, init.getType(), input, init,
             ArrayRef<AffineMap>{identity, identity},
             parallelIterators(type.getRank()),
             [&](OpBuilder &nested, Location nestedLoc, ValueRange args) {
               Value x = toCompute(nested, nestedLoc, args[0]);
               Value y = applyActivation(nested, nestedLoc, kind, x);
               linalg::YieldOp::create(
                   nested, nestedLoc,
                   fromCompute(nested, nestedLoc, y, resultElement));
             })
      .getResult(0);
}

/// `init` (of rank `rank`, compute type) with `bias` broadcast along
/// dimension `dim`, converted to the compute type.
Value broadcastBias(OpBuilder &b, Location loc, Value bias, Value init,
                    int64_t dim) {
  int64_t rank = cast<RankedTensorType>(init.getType()).getRank();
  AffineMap biasMap = AffineMap::get(rank, 0, b.getAffineDimExpr(dim));
  return linalg::GenericOp::create(
             b, loc, init.getType(), bias, init,
             ArrayRef<AffineMap>{biasMap, b.getMultiDimIdentityMap(rank)},
             parallelIterators(rank),
             [&](OpBuilder &nested, Location nestedLoc, ValueRange args) {
               linalg::YieldOp::create(nested, nestedLoc,
                                       toCompute(nested, nestedLoc, args[0]));
             })
      .getResult(0);
}

/// The accumulator of a contraction/convolution: the bias broadcast along
/// `biasDim`, or zeros.
Value accumulator(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                  Type element, Value bias, int64_t biasDim) {
  Type compute = computeType(element);
  if (!bias)
    return filledTensor(b, loc, sizes, compute, 0.0);
  return broadcastBias(b, loc, bias, emptyTensor(b, loc, sizes, compute),
                       biasDim);
}

/// The result of a contraction accumulated in the compute type: `activation`
/// applied and rounded to `element` where either changes anything.
Value finish(OpBuilder &b, Location loc, Value accumulated,
             ActivationKind kind, Type element) {
  if (kind == ActivationKind::none && elementType(accumulated) == element)
    return accumulated;
  return elementwiseEpilogue(b, loc, accumulated, kind, element);
}

/// Reassociation grouping all leading dimensions into one and keeping the
/// last: [[0, ..., rank-2], [rank-1]].
SmallVector<ReassociationIndices> collapseLeading(int64_t rank) {
  ReassociationIndices leading;
  for (int64_t i = 0; i + 1 < rank; ++i)
    leading.push_back(i);
  return {leading, {rank - 1}};
}

//===----------------------------------------------------------------------===//
// Patterns
//===----------------------------------------------------------------------===//

struct ActivationLowering : OpRewritePattern<nnforge::nnf::ActivationOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(nnforge::nnf::ActivationOp op,
                                PatternRewriter &rewriter) const override {
    rewriter.replaceOp(op, elementwiseEpilogue(rewriter, op.getLoc(),
                                               op.getInput(), op.getKind(),
                                               elementType(op.getInput())));
    return success();
  }
};

/// input [..., K] x weight[N, K]^T + bias as one linalg.matmul (weight read
/// transposed through its indexing map) on the input flattened to [M, K].
struct LinearLowering : OpRewritePattern<nnforge::nnf::LinearOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(nnforge::nnf::LinearOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = op.getInput();
    auto inputType = cast<RankedTensorType>(input.getType());
    auto resultType = cast<RankedTensorType>(op.getType());
    int64_t rank = inputType.getRank();
    Type element = inputType.getElementType();

    // A 2-D view of the input: [M, K].
    Value matrix = input;
    if (rank == 1) {
      auto type = RankedTensorType::get({1, inputType.getDimSize(0)}, element);
      matrix = tensor::ExpandShapeOp::create(
          rewriter, loc, type, input,
          SmallVector<ReassociationIndices>{{0, 1}});
    } else if (rank > 2) {
      matrix = tensor::CollapseShapeOp::create(rewriter, loc, input,
                                               collapseLeading(rank));
    }

    OpFoldResult rows = tensor::getMixedSize(rewriter, loc, matrix, 0);
    OpFoldResult cols = tensor::getMixedSize(rewriter, loc, op.getWeight(), 0);
    Value init = accumulator(rewriter, loc, {rows, cols}, element,
                             op.getBias(), /*biasDim=*/1);

    MLIRContext *context = rewriter.getContext();
    AffineExpr m, n, k;
    bindDims(context, m, n, k);
    auto maps = rewriter.getAffineMapArrayAttr(
        {AffineMap::get(3, 0, {m, k}, context),
         AffineMap::get(3, 0, {n, k}, context),
         AffineMap::get(3, 0, {m, n}, context)});
    Value product =
        linalg::MatmulOp::create(
            rewriter, loc, TypeRange{init.getType()},
            ValueRange{matrix, op.getWeight()}, ValueRange{init},
            ArrayRef<NamedAttribute>{rewriter.getNamedAttr("indexing_maps",
                                                           maps)})
            .getResult(0);
    Value result = finish(rewriter, loc, product, op.getActivation(), element);

    // Back to [..., N].
    if (rank == 1) {
      result = tensor::CollapseShapeOp::create(
          rewriter, loc, result, SmallVector<ReassociationIndices>{{0, 1}});
    } else if (rank > 2) {
      SmallVector<OpFoldResult> sizes =
          tensor::getMixedSizes(rewriter, loc, input);
      sizes.back() = cols;
      result = tensor::ExpandShapeOp::create(rewriter, loc, resultType,
                                             result, collapseLeading(rank),
                                             sizes);
    }
    if (result.getType() != resultType)
      result = tensor::CastOp::create(rewriter, loc, resultType, result);
    rewriter.replaceOp(op, result);
    return success();
  }
};

/// Output size of one spatial dimension:
/// (size + padLow + padHigh - dilation * (kernel - 1) - 1) / stride + 1.
OpFoldResult convOutputSize(OpBuilder &b, Location loc, OpFoldResult size,
                            OpFoldResult kernel, int64_t padding,
                            int64_t dilation, int64_t stride) {
  AffineExpr s, k;
  bindSymbols(b.getContext(), s, k);
  AffineExpr out =
      (s + padding - (k - 1) * dilation - 1).floorDiv(stride) + 1;
  return affine::makeComposedFoldedAffineApply(b, loc, out, {size, kernel});
}

/// conv2d on NCHW/OIHW: zero padding by tensor.pad, then
/// linalg.conv_2d_nchw_fchw (groups == 1) or linalg.conv_2d_ngchw_gfchw on
/// grouped views, accumulating onto the broadcast bias.
struct Conv2DLowering : OpRewritePattern<nnforge::nnf::Conv2DOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(nnforge::nnf::Conv2DOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = op.getInput();
    Value filter = op.getFilter();
    auto inputType = cast<RankedTensorType>(input.getType());
    auto resultType = cast<RankedTensorType>(op.getType());
    Type element = inputType.getElementType();
    ArrayRef<int64_t> padding = op.getPadding();
    ArrayRef<int64_t> strides = op.getStrides();
    ArrayRef<int64_t> dilations = op.getDilations();
    int64_t groups = op.getGroups();

    if (llvm::any_of(padding, [](int64_t p) { return p != 0; })) {
      SmallVector<OpFoldResult> low = {
          rewriter.getIndexAttr(0), rewriter.getIndexAttr(0),
          rewriter.getIndexAttr(padding[0]), rewriter.getIndexAttr(padding[1])};
      SmallVector<OpFoldResult> high = {
          rewriter.getIndexAttr(0), rewriter.getIndexAttr(0),
          rewriter.getIndexAttr(padding[2]), rewriter.getIndexAttr(padding[3])};
      SmallVector<int64_t> paddedShape(inputType.getShape());
      for (int i = 0; i < 2; ++i)
        if (!ShapedType::isDynamic(paddedShape[2 + i]))
          paddedShape[2 + i] += padding[i] + padding[i + 2];
      Value zero = floatConstant(rewriter, loc, element, 0.0);
      input = tensor::PadOp::create(
          rewriter, loc, RankedTensorType::get(paddedShape, element), input,
          low, high, zero);
    }

    SmallVector<OpFoldResult> inputSizes =
        tensor::getMixedSizes(rewriter, loc, op.getInput());
    SmallVector<OpFoldResult> filterSizes =
        tensor::getMixedSizes(rewriter, loc, filter);
    SmallVector<OpFoldResult> outSizes = {inputSizes[0], filterSizes[0]};
    for (int i = 0; i < 2; ++i)
      outSizes.push_back(convOutputSize(
          rewriter, loc, inputSizes[2 + i], filterSizes[2 + i],
          padding[i] + padding[i + 2], dilations[i], strides[i]));

    auto stridesAttr = rewriter.getI64TensorAttr(strides);
    auto dilationsAttr = rewriter.getI64TensorAttr(dilations);
    Value convolved;
    if (groups == 1) {
      Value init = accumulator(rewriter, loc, outSizes, element, op.getBias(),
                               /*biasDim=*/1);
      convolved = linalg::Conv2DNchwFchwOp::create(
                      rewriter, loc, init.getType(), ValueRange{input, filter},
                      init, stridesAttr, dilationsAttr)
                      .getResult(0);
    } else {
      convolved = groupedConvolution(rewriter, loc, op, input, outSizes,
                                     stridesAttr, dilationsAttr);
    }
    Value result =
        finish(rewriter, loc, convolved, op.getActivation(), element);
    if (result.getType() != resultType)
      result = tensor::CastOp::create(rewriter, loc, resultType, result);
    rewriter.replaceOp(op, result);
    return success();
  }

  /// Splits channels into [groups, channels / groups] on input, filter and
  /// output, convolves with linalg.conv_2d_ngchw_gfchw, merges them back.
  static Value groupedConvolution(PatternRewriter &rewriter, Location loc,
                                  nnforge::nnf::Conv2DOp op, Value input,
                                  ArrayRef<OpFoldResult> outSizes,
                                  DenseIntElementsAttr strides,
                                  DenseIntElementsAttr dilations) {
    int64_t groups = op.getGroups();
    Type element = elementType(input);
    auto split = [&](Value value, int64_t dim) {
      SmallVector<OpFoldResult> sizes =
          tensor::getMixedSizes(rewriter, loc, value);
      AffineExpr s;
      bindSymbols(rewriter.getContext(), s);
      OpFoldResult perGroup = affine::makeComposedFoldedAffineApply(
          rewriter, loc, s.floorDiv(groups), {sizes[dim]});
      sizes[dim] = perGroup;
      sizes.insert(sizes.begin() + dim, rewriter.getIndexAttr(groups));
      auto [shape, dynamic] = decomposeMixedValues(sizes);
      (void)dynamic;
      SmallVector<ReassociationIndices> reassociation;
      for (int64_t i = 0, rank = shape.size(); i < rank; ++i) {
        if (i == dim + 1)
          continue;
        if (i == dim)
          reassociation.push_back({i, i + 1});
        else
          reassociation.push_back({i});
      }
      return tensor::ExpandShapeOp::create(
                 rewriter, loc, RankedTensorType::get(shape, element), value,
                 reassociation, sizes)
          .getResult();
    };
    Value groupedInput = split(input, 1);
    Value groupedFilter = split(op.getFilter(), 0);

    // Output [N, G, O / G, HO, WO], the bias split the same way.
    AffineExpr s;
    bindSymbols(rewriter.getContext(), s);
    SmallVector<OpFoldResult> groupedSizes = {
        outSizes[0], rewriter.getIndexAttr(groups),
        affine::makeComposedFoldedAffineApply(rewriter, loc,
                                              s.floorDiv(groups), {outSizes[1]}),
        outSizes[2], outSizes[3]};
    Type compute = computeType(element);
    Value init;
    if (Value bias = op.getBias()) {
      Value groupedBias = tensor::ExpandShapeOp::create(
          rewriter, loc,
          RankedTensorType::get(
              {groups, getConstantIntValue(groupedSizes[2])
                           .value_or(ShapedType::kDynamic)},
              elementType(bias)),
          bias, SmallVector<ReassociationIndices>{{0, 1}},
          ArrayRef<OpFoldResult>{groupedSizes[1], groupedSizes[2]});
      Value empty = emptyTensor(rewriter, loc, groupedSizes, compute);
      AffineMap biasMap = AffineMap::get(
          5, 0, {rewriter.getAffineDimExpr(1), rewriter.getAffineDimExpr(2)},
          rewriter.getContext());
      init = linalg::GenericOp::create(
                 rewriter, loc, empty.getType(), groupedBias, empty,
                 ArrayRef<AffineMap>{biasMap,
                                     rewriter.getMultiDimIdentityMap(5)},
                 parallelIterators(5),
                 [&](OpBuilder &b, Location nestedLoc, ValueRange args) {
                   linalg::YieldOp::create(b, nestedLoc,
                                           toCompute(b, nestedLoc, args[0]));
                 })
                 .getResult(0);
    } else {
      init = filledTensor(rewriter, loc, groupedSizes, compute, 0.0);
    }
    Value convolved = linalg::Conv2DNgchwGfchwOp::create(
                          rewriter, loc, init.getType(),
                          ValueRange{groupedInput, groupedFilter}, init,
                          strides, dilations)
                          .getResult(0);
    return tensor::CollapseShapeOp::create(
        rewriter, loc, convolved,
        SmallVector<ReassociationIndices>{{0}, {1, 2}, {3}, {4}});
  }
};

/// Maps from a rank-`rank` iteration space: identity, and the same without
/// the dimensions in [`from`, `to`) (a reduction's result).
AffineMap droppingDims(OpBuilder &b, int64_t rank, int64_t from, int64_t to) {
  SmallVector<AffineExpr> kept;
  for (int64_t i = 0; i < rank; ++i)
    if (i < from || i >= to)
      kept.push_back(b.getAffineDimExpr(i));
  return AffineMap::get(rank, 0, kept, b.getContext());
}

SmallVector<utils::IteratorType> reducingIterators(int64_t rank, int64_t from,
                                                   int64_t to) {
  SmallVector<utils::IteratorType> iterators = parallelIterators(rank);
  for (int64_t i = from; i < to; ++i)
    iterators[i] = utils::IteratorType::reduction;
  return iterators;
}

/// Sizes of `value` without the dimensions in [`from`, `to`).
SmallVector<OpFoldResult> reducedSizes(OpBuilder &b, Location loc, Value value,
                                       int64_t from, int64_t to) {
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, value);
  sizes.erase(sizes.begin() + from, sizes.begin() + to);
  return sizes;
}

/// Softmax of `logits` along `axis`, rounded to `element` (math in the
/// compute type), as upstream decomposes `linalg.softmax`: the maximum of
/// each row, e = exp(x - max) stored once, its sum, then e multiplied by the
/// sum's reciprocal, one division per row (as PyTorch's and onnxruntime's
/// kernels compute it: a division per element took a third of the time). The
/// maximum only shifts the exponents, so it may ignore NaN (maxnumf: three
/// vector instructions on x86, maximumf five): a NaN in a row still makes all
/// of it NaN, through the sum.
Value softmax(OpBuilder &b, Location loc, Value logits, int64_t axis,
              Type element) {
  auto type = cast<RankedTensorType>(logits.getType());
  int64_t rank = type.getRank();
  Type compute = computeType(element);
  SmallVector<OpFoldResult> reduced =
      reducedSizes(b, loc, logits, axis, axis + 1);
  AffineMap identity = b.getMultiDimIdentityMap(rank);
  AffineMap row = droppingDims(b, rank, axis, axis + 1);
  SmallVector<utils::IteratorType> reducing =
      reducingIterators(rank, axis, axis + 1);
  auto reduceRows = [&](Value input, double init, auto combine) {
    Value filled = filledTensor(b, loc, reduced, compute, init);
    return linalg::GenericOp::create(
               b, loc, filled.getType(), input, filled,
               ArrayRef<AffineMap>{identity, row}, reducing,
               [&](OpBuilder &nb, Location nl, ValueRange args) {
                 Value x = toCompute(nb, nl, args[0]);
                 linalg::YieldOp::create(nb, nl, combine(nb, nl, x, args[1]));
               })
        .getResult(0);
  };
  // The elementwise `body(x, row value)` of `input` and a per-row `rowValue`.
  auto eachElement = [&](Value input, Value rowValue, Type resultElement,
                         auto body) {
    Value init = emptyTensor(b, loc, tensor::getMixedSizes(b, loc, input),
                             resultElement);
    return linalg::GenericOp::create(
               b, loc, init.getType(), ValueRange{input, rowValue}, init,
               ArrayRef<AffineMap>{identity, row, identity},
               parallelIterators(rank),
               [&](OpBuilder &nb, Location nl, ValueRange args) {
                 linalg::YieldOp::create(nb, nl,
                                         body(nb, nl, args[0], args[1]));
               })
        .getResult(0);
  };

  Value maximum = reduceRows(
      logits, -std::numeric_limits<double>::infinity(),
      [](OpBuilder &nb, Location nl, Value x, Value acc) -> Value {
        return arith::MaxNumFOp::create(nb, nl, x, acc);
      });
  Value exps = eachElement(
      logits, maximum, compute,
      [](OpBuilder &nb, Location nl, Value x, Value max) -> Value {
        return math::ExpOp::create(
            nb, nl, arith::SubFOp::create(nb, nl, toCompute(nb, nl, x), max));
      });
  Value sum = reduceRows(
      exps, 0.0, [](OpBuilder &nb, Location nl, Value e, Value acc) -> Value {
        return arith::AddFOp::create(nb, nl, e, acc);
      });
  AffineMap rowIdentity = b.getMultiDimIdentityMap(rank - 1);
  Value reciprocal =
      linalg::GenericOp::create(
          b, loc, sum.getType(), sum,
          emptyTensor(b, loc, reduced, compute),
          ArrayRef<AffineMap>{rowIdentity, rowIdentity},
          parallelIterators(rank - 1),
          [&](OpBuilder &nb, Location nl, ValueRange args) {
            Value one = floatConstant(nb, nl, compute, 1.0);
            Value inverse = arith::DivFOp::create(nb, nl, one, args[0]);
            linalg::YieldOp::create(nb, nl, inverse);
          })
          .getResult(0);
  return eachElement(
      exps, reciprocal, element,
      [&](OpBuilder &nb, Location nl, Value e, Value inverse) -> Value {
        return fromCompute(nb, nl, arith::MulFOp::create(nb, nl, e, inverse),
                           element);
      });
}

int64_t normalizedAxis(int64_t axis, int64_t rank) {
  return axis < 0 ? axis + rank : axis;
}

struct SoftmaxLowering : OpRewritePattern<nnforge::nnf::SoftmaxOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(nnforge::nnf::SoftmaxOp op,
                                PatternRewriter &rewriter) const override {
    Value input = op.getInput();
    int64_t rank = cast<RankedTensorType>(input.getType()).getRank();
    rewriter.replaceOp(op, softmax(rewriter, op.getLoc(), input,
                                   normalizedAxis(op.getAxis(), rank),
                                   elementType(input)));
    return success();
  }
};

/// Mean and biased variance over dims [axis, rank) in two passes (sum, then
/// sum of squared deviations: accurate where E[x^2] - E[x]^2 cancels), then
/// (x - mean) * rsqrt(var + eps) * scale + bias.
struct LayerNormLowering : OpRewritePattern<nnforge::nnf::LayerNormOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(nnforge::nnf::LayerNormOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = op.getInput();
    auto type = cast<RankedTensorType>(input.getType());
    int64_t rank = type.getRank();
    int64_t axis = normalizedAxis(op.getAxis(), rank);
    Type element = type.getElementType();
    Type compute = computeType(element);

    // 1 / (number of normalized elements), as a compute-type scalar.
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(rewriter, loc, input);
    Value count = arith::ConstantIndexOp::create(rewriter, loc, 1);
    for (int64_t i = axis; i < rank; ++i)
      count = arith::MulIOp::create(
          rewriter, loc, count,
          getValueOrCreateConstantIndexOp(rewriter, loc, sizes[i]));
    Value countFloat = arith::UIToFPOp::create(
        rewriter, loc, compute,
        arith::IndexCastUIOp::create(rewriter, loc, rewriter.getI64Type(),
                                     count));
    Value inverseCount = arith::DivFOp::create(
        rewriter, loc, floatConstant(rewriter, loc, compute, 1.0), countFloat);

    SmallVector<OpFoldResult> reduced =
        reducedSizes(rewriter, loc, input, axis, rank);
    AffineMap identity = rewriter.getMultiDimIdentityMap(rank);
    AffineMap row = droppingDims(rewriter, rank, axis, rank);
    SmallVector<utils::IteratorType> reducing =
        reducingIterators(rank, axis, rank);

    Value zeros = filledTensor(rewriter, loc, reduced, compute, 0.0);
    Value sum =
        linalg::GenericOp::create(
            rewriter, loc, zeros.getType(), input, zeros,
            ArrayRef<AffineMap>{identity, row}, reducing,
            [&](OpBuilder &b, Location l, ValueRange args) {
              linalg::YieldOp::create(
                  b, l,
                  arith::AddFOp::create(b, l, toCompute(b, l, args[0]), args[1])
                      .getResult());
            })
            .getResult(0);
    auto deviation = [&](OpBuilder &b, Location l, Value x, Value rowSum) {
      Value mean = arith::MulFOp::create(b, l, rowSum, inverseCount);
      return arith::SubFOp::create(b, l, toCompute(b, l, x), mean).getResult();
    };
    Value squares =
        linalg::GenericOp::create(
            rewriter, loc, zeros.getType(), ValueRange{input, sum}, zeros,
            ArrayRef<AffineMap>{identity, row, row}, reducing,
            [&](OpBuilder &b, Location l, ValueRange args) {
              Value d = deviation(b, l, args[0], args[1]);
              linalg::YieldOp::create(
                  b, l,
                  arith::AddFOp::create(b, l, arith::MulFOp::create(b, l, d, d),
                                        args[2])
                      .getResult());
            })
            .getResult(0);

    // Scale and bias are indexed by the normalized dims.
    SmallVector<AffineExpr> trailing;
    for (int64_t i = axis; i < rank; ++i)
      trailing.push_back(rewriter.getAffineDimExpr(i));
    AffineMap affineMap =
        AffineMap::get(rank, 0, trailing, rewriter.getContext());
    SmallVector<Value> inputs = {input, sum, squares};
    SmallVector<AffineMap> maps = {identity, row, row};
    for (Value operand : {op.getScale(), op.getBias()}) {
      if (!operand)
        continue;
      inputs.push_back(operand);
      maps.push_back(affineMap);
    }
    maps.push_back(identity);
    bool hasScale = static_cast<bool>(op.getScale());
    bool hasBias = static_cast<bool>(op.getBias());
    double epsilon = op.getEpsilon().convertToDouble();
    Value init = emptyTensor(rewriter, loc, sizes, element);
    Value result =
        linalg::GenericOp::create(
            rewriter, loc, init.getType(), inputs, init, maps,
            parallelIterators(rank),
            [&](OpBuilder &b, Location l, ValueRange args) {
              Value d = deviation(b, l, args[0], args[1]);
              Value variance = arith::MulFOp::create(b, l, args[2], inverseCount);
              Value rstd = math::RsqrtOp::create(
                  b, l,
                  arith::AddFOp::create(b, l, variance,
                                        floatConstant(b, l, compute, epsilon)));
              Value y = arith::MulFOp::create(b, l, d, rstd);
              unsigned next = 3;
              if (hasScale)
                y = arith::MulFOp::create(b, l, y,
                                          toCompute(b, l, args[next++]));
              if (hasBias)
                y = arith::AddFOp::create(b, l, y,
                                          toCompute(b, l, args[next++]));
              linalg::YieldOp::create(b, l, fromCompute(b, l, y, element));
            })
            .getResult(0);
    if (result.getType() != op.getType())
      result = tensor::CastOp::create(rewriter, loc, op.getType(), result);
    rewriter.replaceOp(op, result);
    return success();
  }
};

/// softmax(q k^T * scale + mask) v as generics over [..., L, S, D]: the
/// scores contraction, masking, softmax along S, and the contraction with v.
struct AttentionLowering : OpRewritePattern<nnforge::nnf::AttentionOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(nnforge::nnf::AttentionOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    MLIRContext *context = rewriter.getContext();
    Value query = op.getQuery(), key = op.getKey(), value = op.getValue();
    auto queryType = cast<RankedTensorType>(query.getType());
    int64_t rank = queryType.getRank();
    int64_t batch = rank - 2;
    Type element = queryType.getElementType();
    Type compute = computeType(element);

    // Iteration space [batch..., L, S, D]; the same index names serve the
    // second contraction with D read as DV.
    auto dim = [&](int64_t i) { return rewriter.getAffineDimExpr(i); };
    auto mapOf = [&](std::initializer_list<int64_t> tail) {
      SmallVector<AffineExpr> exprs;
      for (int64_t i = 0; i < batch; ++i)
        exprs.push_back(dim(i));
      for (int64_t i : tail)
        exprs.push_back(dim(batch + i));
      return AffineMap::get(batch + 3, 0, exprs, context);
    };
    enum { L = 0, S = 1, D = 2 };
    SmallVector<utils::IteratorType> contractOverD =
        reducingIterators(batch + 3, batch + D, batch + 3);

    SmallVector<OpFoldResult> scoreSizes =
        tensor::getMixedSizes(rewriter, loc, query);
    scoreSizes.back() = tensor::getMixedSize(rewriter, loc, key, batch);
    Value scoresInit = filledTensor(rewriter, loc, scoreSizes, compute, 0.0);
    Value scores =
        linalg::GenericOp::create(
            rewriter, loc, scoresInit.getType(), ValueRange{query, key},
            scoresInit,
            ArrayRef<AffineMap>{mapOf({L, D}), mapOf({S, D}), mapOf({L, S})},
            contractOverD,
            [&](OpBuilder &b, Location l, ValueRange args) {
              Value product = arith::MulFOp::create(
                  b, l, toCompute(b, l, args[0]), toCompute(b, l, args[1]));
              linalg::YieldOp::create(
                  b, l, arith::AddFOp::create(b, l, product, args[2]).getResult());
            })
            .getResult(0);

    // scale: given, or 1 / sqrt(D).
    Value scale;
    if (std::optional<APFloat> given = op.getScale()) {
      scale = floatConstant(rewriter, loc, compute, given->convertToDouble());
    } else if (int64_t staticDepth = queryType.getDimSize(rank - 1);
               !ShapedType::isDynamic(staticDepth)) {
      scale = floatConstant(rewriter, loc, compute,
                            1.0 / std::sqrt(static_cast<double>(staticDepth)));
    } else {
      Value depth = getValueOrCreateConstantIndexOp(
          rewriter, loc, tensor::getMixedSize(rewriter, loc, query, rank - 1));
      Value depthFloat = arith::UIToFPOp::create(
          rewriter, loc, compute,
          arith::IndexCastUIOp::create(rewriter, loc, rewriter.getI64Type(),
                                       depth));
      scale = math::RsqrtOp::create(rewriter, loc, depthFloat);
    }

    // logits = scores * scale (+ mask), -inf where masked out.
    int64_t scoresRank = rank;
    AffineMap identity = rewriter.getMultiDimIdentityMap(scoresRank);
    SmallVector<Value> inputs = {scores};
    SmallVector<AffineMap> maps = {identity};
    Value mask = op.getMask();
    if (mask) {
      auto maskType = cast<RankedTensorType>(mask.getType());
      int64_t offset = scoresRank - maskType.getRank();
      SmallVector<AffineExpr> exprs;
      for (auto [i, size] : llvm::enumerate(maskType.getShape()))
        exprs.push_back(size == 1 ? rewriter.getAffineConstantExpr(0)
                                  : rewriter.getAffineDimExpr(offset + i));
      inputs.push_back(mask);
      maps.push_back(AffineMap::get(scoresRank, 0, exprs, context));
    }
    maps.push_back(identity);
    bool booleanMask = mask && elementType(mask).isInteger(1);
    bool causal = op.getCausal();
    Value logitsInit = emptyTensor(rewriter, loc, scoreSizes, compute);
    Value logits =
        linalg::GenericOp::create(
            rewriter, loc, logitsInit.getType(), inputs, logitsInit, maps,
            parallelIterators(scoresRank),
            [&](OpBuilder &b, Location l, ValueRange args) {
              Value x = arith::MulFOp::create(b, l, args[0], scale);
              Value minusInf = floatConstant(
                  b, l, compute, -std::numeric_limits<double>::infinity());
              if (mask && booleanMask)
                x = arith::SelectOp::create(b, l, args[1], x, minusInf);
              else if (mask)
                x = arith::AddFOp::create(b, l, x, toCompute(b, l, args[1]));
              if (causal) {
                Value row = linalg::IndexOp::create(b, l, scoresRank - 2);
                Value col = linalg::IndexOp::create(b, l, scoresRank - 1);
                Value future = arith::CmpIOp::create(
                    b, l, arith::CmpIPredicate::ugt, col, row);
                x = arith::SelectOp::create(b, l, future, minusInf, x);
              }
              linalg::YieldOp::create(b, l, x);
            })
            .getResult(0);
    Value probabilities = softmax(rewriter, loc, logits, scoresRank - 1, compute);

    // out[..., L, DV] = sum over S of p[..., L, S] * v[..., S, DV].
    SmallVector<OpFoldResult> outSizes = tensor::getMixedSizes(rewriter, loc, query);
    outSizes.back() = tensor::getMixedSize(rewriter, loc, value, rank - 1);
    Value outInit = filledTensor(rewriter, loc, outSizes, compute, 0.0);
    SmallVector<utils::IteratorType> contractOverS = parallelIterators(batch + 3);
    contractOverS[batch + S] = utils::IteratorType::reduction;
    Value out =
        linalg::GenericOp::create(
            rewriter, loc, outInit.getType(), ValueRange{probabilities, value},
            outInit,
            ArrayRef<AffineMap>{mapOf({L, S}), mapOf({S, D}), mapOf({L, D})},
            contractOverS,
            [&](OpBuilder &b, Location l, ValueRange args) {
              Value product =
                  arith::MulFOp::create(b, l, args[0], toCompute(b, l, args[1]));
              linalg::YieldOp::create(
                  b, l, arith::AddFOp::create(b, l, product, args[2]).getResult());
            })
            .getResult(0);
    Value result = finish(rewriter, loc, out, ActivationKind::none, element);
    if (result.getType() != op.getType())
      result = tensor::CastOp::create(rewriter, loc, op.getType(), result);
    rewriter.replaceOp(op, result);
    return success();
  }
};

struct ConvertNNFToLinalgPass
    : nnforge::impl::ConvertNNFToLinalgBase<ConvertNNFToLinalgPass> {
  void runOnOperation() override {
    MLIRContext *context = &getContext();
    ConversionTarget target(*context);
    target.addIllegalDialect<nnforge::nnf::NNFDialect>();
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    RewritePatternSet patterns(context);
    patterns.add<ActivationLowering, AttentionLowering, Conv2DLowering,
                 LayerNormLowering, LinearLowering, SoftmaxLowering>(context);
    if (failed(applyPartialConversion(getOperation(), target,
                                      std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
