//===- NNFRaise.cpp - raise linalg on tensors to nnf ops ------------------===//
//
// Recognizes the linalg-on-tensors forms torch-mlir emits for dense layers,
// convolutions, softmax and elementwise activations and replaces them with nnf
// ops. Each pattern is anchored on the last op of its chain and fires only when
// indexing maps, iterator types, body ops, constants and uses match exactly.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Dialect/NNF/NNFOps.h"
#include "nnforge/Passes.h"
#include "nnforge/Transforms/LinalgMatchers.h"
#include "llvm/ADT/StringExtras.h"

#include <cmath>

namespace nnforge {
#define GEN_PASS_DEF_NNFRAISE
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;
namespace nnf = nnforge::nnf;

namespace {

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

/// A ranked tensor of an element type the nnf dialect accepts.
static RankedTensorType nnfTensorType(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  if (!tensor || !(tensor.getElementType().isF32() ||
                   tensor.getElementType().isF16() ||
                   tensor.getElementType().isBF16()))
    return {};
  return tensor;
}

/// The value of a floating-point constant scalar.
static std::optional<double> constantFloat(Value value) {
  FloatAttr attr;
  if (!matchPattern(value, m_Constant(&attr)))
    return std::nullopt;
  return attr.getValueAsDouble();
}

/// Whether `value` is a constant equal to `expected` (relative tolerance for
/// constants that are rounded to the element type).
static bool isConstant(Value value, double expected, double tolerance = 0.0) {
  std::optional<double> actual = constantFloat(value);
  if (!actual)
    return false;
  if (tolerance == 0.0)
    return *actual == expected;
  return std::fabs(*actual - expected) <= tolerance * std::fabs(expected);
}

static bool isZero(Value value) { return matchPattern(value, m_AnyZeroFloat()); }

/// `init` is `linalg.fill` of a floating-point zero.
static bool isZeroFill(Value init) {
  auto fill = init.getDefiningOp<linalg::FillOp>();
  return fill && isZero(fill.getInputs()[0]);
}

/// `init` is `linalg.fill` of negative infinity.
static bool isNegInfFill(Value init) {
  auto fill = init.getDefiningOp<linalg::FillOp>();
  if (!fill)
    return false;
  std::optional<double> value = constantFloat(fill.getInputs()[0]);
  return value && std::isinf(*value) && *value < 0;
}

/// The bias of an accumulator that is either a zero fill (returns a null
/// value) or a `linalg.broadcast` of a 1-D tensor whose only kept dimension is
/// `keptDim` of the rank-`rank` result. Fails otherwise.
static FailureOr<Value> biasOfAccumulator(Value init, int64_t rank,
                                          int64_t keptDim) {
  if (isZeroFill(init))
    return Value();
  auto broadcast = init.getDefiningOp<linalg::BroadcastOp>();
  if (!broadcast)
    return failure();
  auto biasType = nnfTensorType(broadcast.getInput().getType());
  if (!biasType || biasType.getRank() != 1)
    return failure();
  SmallVector<int64_t> expected;
  for (int64_t d = 0; d < rank; ++d)
    if (d != keptDim)
      expected.push_back(d);
  if (!llvm::equal(broadcast.getDimensions(), expected))
    return failure();
  return broadcast.getInput();
}

static bool allParallel(linalg::GenericOp op) {
  return llvm::all_of(op.getIteratorTypesArray(), [](utils::IteratorType t) {
    return t == utils::IteratorType::parallel;
  });
}

/// Two static-or-dynamic sizes that may be equal.
static bool compatible(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

/// The single value a generic's body yields, when its block holds exactly
/// `numOps` ops besides the terminator.
static Value yieldedValue(linalg::GenericOp op, unsigned numOps) {
  Block &body = op.getRegion().front();
  if (body.getOperations().size() != numOps + 1)
    return {};
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  if (yield.getNumOperands() != 1)
    return {};
  return yield.getOperand(0);
}

/// Matches `op(a, b)` of a binary op type with the operands in either order
/// when `commutative`; on success `other` is the operand that is not `a`.
template <typename OpTy>
static OpTy matchBinary(Value value, Value a, Value &other,
                        bool commutative = true) {
  auto op = value.getDefiningOp<OpTy>();
  if (!op)
    return {};
  if (op.getLhs() == a) {
    other = op.getRhs();
    return op;
  }
  if (commutative && op.getRhs() == a) {
    other = op.getLhs();
    return op;
  }
  return {};
}

/// The input of a generic that maps one tensor elementwise, with identity
/// indexing maps and all-parallel iterators, to a result of the same type, and
/// that does not read its output. Null if the generic has another form.
static Value unaryElementwiseInput(linalg::GenericOp op) {
  if (op.getNumDpsInputs() != 1 || op.getNumDpsInits() != 1 ||
      op->getNumResults() != 1 || !allParallel(op))
    return {};
  if (!llvm::all_of(op.getIndexingMapsArray(),
                    [](AffineMap map) { return map.isIdentity(); }))
    return {};
  Value input = op.getDpsInputOperand(0)->get();
  auto type = nnfTensorType(input.getType());
  if (!type || type != op->getResult(0).getType())
    return {};
  Block &body = op.getRegion().front();
  if (!body.getArgument(1).use_empty())
    return {};
  return input;
}

//===----------------------------------------------------------------------===//
// Elementwise activations
//===----------------------------------------------------------------------===//

/// The `f` of `result = x * ((f + 1) * 0.5)`, operands in either order (the
/// shape both GELU forms share), or a null value.
static Value halfOfOnePlus(Value result, Value x) {
  Value other;
  if (!matchBinary<arith::MulFOp>(result, x, other))
    return {};
  auto scale = other.getDefiningOp<arith::MulFOp>();
  if (!scale)
    return {};
  Value lhs = scale.getLhs(), rhs = scale.getRhs();
  Value sum = isConstant(rhs, 0.5) ? lhs : isConstant(lhs, 0.5) ? rhs : Value();
  auto add = sum ? sum.getDefiningOp<arith::AddFOp>() : nullptr;
  if (!add)
    return {};
  return isConstant(add.getRhs(), 1.0)   ? add.getLhs()
         : isConstant(add.getLhs(), 1.0) ? add.getRhs()
                                         : Value();
}

/// The activation a unary elementwise body computes of its argument `x`.
static std::optional<nnf::ActivationKind> classifyActivation(linalg::GenericOp op) {
  Block &body = op.getRegion().front();
  Value x = body.getArgument(0);
  unsigned numOps = body.getOperations().size() - 1;
  Value result = yieldedValue(op, numOps);
  if (!result)
    return std::nullopt;
  Value other;

  // relu: select(x > 0, x, 0) or max(x, 0).
  if (numOps == 2) {
    if (auto select = result.getDefiningOp<arith::SelectOp>()) {
      auto cmp = select.getCondition().getDefiningOp<arith::CmpFOp>();
      // ugt keeps NaN like torch.relu; ogt would turn NaN into 0.
      if (cmp && cmp.getPredicate() == arith::CmpFPredicate::UGT &&
          cmp.getLhs() == x && isZero(cmp.getRhs()) &&
          select.getTrueValue() == x && isZero(select.getFalseValue()))
        return nnf::ActivationKind::relu;
    }
  }
  if (numOps == 1) {
    // maximumf propagates NaN; maxnumf would not.
    if (matchBinary<arith::MaximumFOp>(result, x, other) && isZero(other))
      return nnf::ActivationKind::relu;
    // tanh
    if (auto tanh = result.getDefiningOp<math::TanhOp>())
      if (tanh.getOperand() == x)
        return nnf::ActivationKind::tanh;
  }

  // sigmoid: 1 / (exp(-x) + 1).
  if (numOps == 4) {
    auto div = result.getDefiningOp<arith::DivFOp>();
    if (div && isConstant(div.getLhs(), 1.0)) {
      auto add = div.getRhs().getDefiningOp<arith::AddFOp>();
      if (add) {
        Value expValue = isConstant(add.getRhs(), 1.0)   ? add.getLhs()
                         : isConstant(add.getLhs(), 1.0) ? add.getRhs()
                                                         : Value();
        auto exp = expValue ? expValue.getDefiningOp<math::ExpOp>() : nullptr;
        auto neg = exp ? exp.getOperand().getDefiningOp<arith::NegFOp>()
                       : nullptr;
        if (neg && neg.getOperand() == x)
          return nnf::ActivationKind::sigmoid;
      }
    }
  }

  // gelu (erf): x * ((erf(x / sqrt(2)) + 1) * 0.5).
  if (numOps == 5) {
    Value erfValue = halfOfOnePlus(result, x);
    auto erf = erfValue ? erfValue.getDefiningOp<math::ErfOp>() : nullptr;
    if (erf) {
      Value arg = erf.getOperand();
      if (auto div = arg.getDefiningOp<arith::DivFOp>())
        if (div.getLhs() == x && isConstant(div.getRhs(), std::sqrt(2.0), 1e-6))
          return nnf::ActivationKind::gelu;
      Value c;
      if (matchBinary<arith::MulFOp>(arg, x, c) &&
          isConstant(c, std::sqrt(0.5), 1e-6))
        return nnf::ActivationKind::gelu;
    }
  }

  // gelu (tanh): x * ((tanh((x + x^3 * 0.044715) * sqrt(2 / pi)) + 1) * 0.5).
  // Only with sqrt(2 / pi) to float precision: a chain built on another
  // constant computes other values and is left alone.
  if (numOps == 8) {
    Value tanhValue = halfOfOnePlus(result, x);
    auto tanh = tanhValue ? tanhValue.getDefiningOp<math::TanhOp>() : nullptr;
    auto inner = tanh ? tanh.getOperand().getDefiningOp<arith::MulFOp>() : nullptr;
    if (inner) {
      double k = std::sqrt(2.0 / M_PI);
      Value poly = isConstant(inner.getRhs(), k, 1e-6)   ? inner.getLhs()
                   : isConstant(inner.getLhs(), k, 1e-6) ? inner.getRhs()
                                                         : Value();
      Value cubic;
      auto polyAdd = poly ? matchBinary<arith::AddFOp>(poly, x, cubic) : nullptr;
      auto cubicMul = polyAdd ? cubic.getDefiningOp<arith::MulFOp>() : nullptr;
      if (cubicMul) {
        Value pow = isConstant(cubicMul.getRhs(), 0.044715, 1e-6) ? cubicMul.getLhs()
                    : isConstant(cubicMul.getLhs(), 0.044715, 1e-6)
                        ? cubicMul.getRhs()
                        : Value();
        auto fpowi = pow ? pow.getDefiningOp<math::FPowIOp>() : nullptr;
        APInt exponent;
        if (fpowi && fpowi.getLhs() == x &&
            matchPattern(fpowi.getRhs(), m_ConstantInt(&exponent)) &&
            exponent == 3)
          return nnf::ActivationKind::gelu_tanh;
      }
    }
  }
  return std::nullopt;
}

/// An elementwise generic computing an activation -> nnf.activation.
struct RaiseActivation : OpRewritePattern<linalg::GenericOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::GenericOp op,
                                PatternRewriter &rewriter) const override {
    Value input = unaryElementwiseInput(op);
    if (!input)
      return rewriter.notifyMatchFailure(op, "not a unary elementwise generic");
    std::optional<nnf::ActivationKind> kind = classifyActivation(op);
    if (!kind)
      return rewriter.notifyMatchFailure(op, "body is no known activation");
    rewriter.replaceOpWithNewOp<nnf::ActivationOp>(op, op->getResult(0).getType(),
                                                   input, *kind);
    return success();
  }
};

/// x * sigmoid(x), as a binary elementwise generic of `x` and an
/// `nnf.activation sigmoid` of `x` that has no other user -> nnf.activation silu.
struct RaiseSilu : OpRewritePattern<linalg::GenericOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::GenericOp op,
                                PatternRewriter &rewriter) const override {
    if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
        op->getNumResults() != 1 || !allParallel(op) ||
        !llvm::all_of(op.getIndexingMapsArray(),
                      [](AffineMap map) { return map.isIdentity(); }))
      return failure();
    Type type = op->getResult(0).getType();
    Value a = op.getDpsInputOperand(0)->get(), b = op.getDpsInputOperand(1)->get();
    if (!nnfTensorType(type) || a.getType() != type || b.getType() != type)
      return failure();
    Block &body = op.getRegion().front();
    Value result = yieldedValue(op, 1);
    auto mul = result ? result.getDefiningOp<arith::MulFOp>() : nullptr;
    if (!mul || !body.getArgument(2).use_empty())
      return failure();
    Value x0 = body.getArgument(0), x1 = body.getArgument(1);
    if (!((mul.getLhs() == x0 && mul.getRhs() == x1) ||
          (mul.getLhs() == x1 && mul.getRhs() == x0)))
      return failure();
    for (auto [x, s] : {std::pair(a, b), std::pair(b, a)}) {
      auto sigmoid = s.getDefiningOp<nnf::ActivationOp>();
      if (sigmoid && sigmoid.getKind() == nnf::ActivationKind::sigmoid &&
          sigmoid.getInput() == x && sigmoid->hasOneUse() && x != s) {
        rewriter.replaceOpWithNewOp<nnf::ActivationOp>(op, type, x,
                                                       nnf::ActivationKind::silu);
        return success();
      }
    }
    return failure();
  }
};

/// activation(reshape(nnf.linear)) -> reshape(nnf.linear with the activation):
/// an elementwise function commutes with a reshape. torch-mlir flattens the
/// leading dimensions of a linear's input and expands them back before the
/// activation.
template <typename ReshapeOp>
struct FuseActivationThroughReshape : OpRewritePattern<nnf::ActivationOp> {
  using OpRewritePattern<nnf::ActivationOp>::OpRewritePattern;

  LogicalResult matchAndRewrite(nnf::ActivationOp activation,
                                PatternRewriter &rewriter) const override {
    auto reshape = activation.getInput().template getDefiningOp<ReshapeOp>();
    if (!reshape || !reshape->hasOneUse())
      return failure();
    auto linear = reshape.getSrc().template getDefiningOp<nnf::LinearOp>();
    if (!linear || !linear->hasOneUse() ||
        linear.getActivation() != nnf::ActivationKind::none)
      return failure();
    rewriter.modifyOpInPlace(
        linear, [&] { linear.setActivation(activation.getKind()); });
    rewriter.replaceOp(activation, reshape->getResults());
    return success();
  }
};

//===----------------------------------------------------------------------===//
// Linear
//===----------------------------------------------------------------------===//

/// W when `value` is `linalg.transpose(W)` of a 2-D W with permutation [1, 0].
static Value transposedWeight(Value value) {
  auto transpose = value.getDefiningOp<linalg::TransposeOp>();
  if (!transpose || !llvm::equal(transpose.getPermutation(), ArrayRef<int64_t>{1, 0}))
    return {};
  return transpose.getInput();
}

/// W when `value` is transpose(W) broadcast along a new leading dimension
/// (as torch-mlir emits for a linear of a 3-D input through batch_matmul).
static Value batchBroadcastTransposedWeight(Value value) {
  Value matrix = nnforge::batchBroadcastSource(value);
  return matrix ? transposedWeight(matrix) : Value();
}

/// Creates `nnf.linear x, w[, bias]` replacing a contraction `op` of result
/// type `type`, after checking the operand types.
static LogicalResult replaceWithLinear(PatternRewriter &rewriter,
                                       Operation *op, Value x, Value w,
                                       Value bias) {
  auto resultType = nnfTensorType(op->getResult(0).getType());
  auto xType = nnfTensorType(x.getType());
  auto wType = nnfTensorType(w.getType());
  if (!resultType || !xType || !wType || wType.getRank() != 2)
    return failure();
  Type element = resultType.getElementType();
  if (xType.getElementType() != element || wType.getElementType() != element)
    return failure();
  if (bias) {
    auto biasType = nnfTensorType(bias.getType());
    if (!biasType || biasType.getRank() != 1 ||
        biasType.getElementType() != element ||
        !compatible(biasType.getDimSize(0), wType.getDimSize(0)))
      return failure();
  }
  rewriter.replaceOpWithNewOp<nnf::LinearOp>(op, resultType, x, w, bias,
                                             nnf::ActivationKind::none);
  return success();
}

/// linalg.matmul(x, transpose(W)), or linalg.batch_matmul(x,
/// broadcast(transpose(W))), into a zero fill or a broadcast bias.
template <typename MatmulOpTy>
struct RaiseMatmul : OpRewritePattern<MatmulOpTy> {
  using OpRewritePattern<MatmulOpTy>::OpRewritePattern;
  static constexpr bool kBatched =
      std::is_same_v<MatmulOpTy, linalg::BatchMatmulOp>;

  LogicalResult matchAndRewrite(MatmulOpTy op,
                                PatternRewriter &rewriter) const override {
    if (op.hasUserDefinedMaps() || op->getNumResults() != 1)
      return failure();
    Value rhs = op.getDpsInputOperand(1)->get();
    Value w = kBatched ? batchBroadcastTransposedWeight(rhs)
                       : transposedWeight(rhs);
    if (!w)
      return rewriter.notifyMatchFailure(op, "rhs is not transpose(W)");
    int64_t rank = kBatched ? 3 : 2;
    FailureOr<Value> bias =
        biasOfAccumulator(op.getDpsInitOperand(0)->get(), rank, rank - 1);
    if (failed(bias))
      return rewriter.notifyMatchFailure(op, "accumulator is not 0 or a bias");
    return replaceWithLinear(rewriter, op, op.getDpsInputOperand(0)->get(), w,
                             *bias);
  }
};

/// A generic adding a 1-D bias along the last dimension to the result of a
/// bias-less, activation-less nnf.linear that has no other user.
struct FuseLinearBias : OpRewritePattern<linalg::GenericOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::GenericOp op,
                                PatternRewriter &rewriter) const override {
    if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
        op->getNumResults() != 1 || !allParallel(op))
      return failure();
    Type type = op->getResult(0).getType();
    unsigned rank = op.getNumLoops();
    MLIRContext *ctx = op.getContext();
    AffineMap lastDim =
        AffineMap::get(rank, 0, {getAffineDimExpr(rank - 1, ctx)}, ctx);
    SmallVector<AffineMap> maps = op.getIndexingMapsArray();
    Block &body = op.getRegion().front();
    Value sum = yieldedValue(op, 1);
    auto add = sum ? sum.getDefiningOp<arith::AddFOp>() : nullptr;
    if (!add || !body.getArgument(2).use_empty() || !maps[2].isIdentity())
      return failure();
    for (unsigned i = 0; i < 2; ++i) {
      Value linearValue = op.getDpsInputOperand(i)->get();
      Value bias = op.getDpsInputOperand(1 - i)->get();
      auto linear = linearValue.getDefiningOp<nnf::LinearOp>();
      if (!linear || linear.getBias() ||
          linear.getActivation() != nnf::ActivationKind::none ||
          !linear->hasOneUse() || linear.getType() != type ||
          !maps[i].isIdentity() || maps[1 - i] != lastDim)
        continue;
      Value l = body.getArgument(i), b = body.getArgument(1 - i);
      if (!((add.getLhs() == l && add.getRhs() == b) ||
            (add.getLhs() == b && add.getRhs() == l)))
        continue;
      auto resultType = cast<RankedTensorType>(type);
      auto biasType = dyn_cast<RankedTensorType>(bias.getType());
      if (!biasType || biasType.getRank() != 1 ||
          !compatible(biasType.getDimSize(0), resultType.getDimSize(rank - 1)))
        continue;
      return replaceWithLinear(rewriter, op, linear.getInput(),
                               linear.getWeight(), bias);
    }
    return failure();
  }
};

//===----------------------------------------------------------------------===//
// Conv2d
//===----------------------------------------------------------------------===//

/// Replaces `op` (whose result is the NCHW convolution result) with
/// nnf.conv2d of `input` (NCHW, optionally zero-padded by a tensor.pad of the
/// spatial dimensions) and `filter` (OIHW) with `bias` (may be null).
static LogicalResult replaceWithConv2D(PatternRewriter &rewriter, Operation *op,
                                       Value input, Value filter, Value bias,
                                       DenseIntElementsAttr stridesAttr,
                                       DenseIntElementsAttr dilationsAttr,
                                       int64_t groups) {
  auto resultType = nnfTensorType(op->getResult(0).getType());
  auto filterType = nnfTensorType(filter.getType());
  auto paddedType = nnfTensorType(input.getType());
  if (!resultType || !filterType || !paddedType || resultType.getRank() != 4 ||
      filterType.getRank() != 4 || paddedType.getRank() != 4 ||
      filterType.getElementType() != resultType.getElementType() ||
      paddedType.getElementType() != resultType.getElementType())
    return failure();
  if (bias && cast<RankedTensorType>(bias.getType()).getElementType() !=
                  resultType.getElementType())
    return failure();
  SmallVector<int64_t> strides(stridesAttr.getValues<int64_t>());
  SmallVector<int64_t> dilations(dilationsAttr.getValues<int64_t>());
  if (strides.size() != 2 || dilations.size() != 2)
    return failure();
  SmallVector<int64_t> padding = {0, 0, 0, 0};
  if (auto pad = input.getDefiningOp<tensor::PadOp>()) {
    Value value = pad.getConstantPaddingValue();
    ArrayRef<int64_t> low = pad.getStaticLow(), high = pad.getStaticHigh();
    if (value && isZero(value) && low.size() == 4 && low[0] == 0 &&
        low[1] == 0 && high[0] == 0 && high[1] == 0 &&
        !llvm::any_of(low, ShapedType::isDynamic) &&
        !llvm::any_of(high, ShapedType::isDynamic)) {
      padding = {low[2], low[3], high[2], high[3]};
      input = pad.getSource();
    }
  }
  // nnf.conv2d's result size is (H + pads - dilation * (KH - 1) - 1) /
  // stride + 1; linalg also accepts a smaller output, which is not raised.
  for (int i = 0; i < 2; ++i) {
    int64_t padded = paddedType.getDimSize(2 + i);
    int64_t kernel = filterType.getDimSize(2 + i);
    int64_t out = resultType.getDimSize(2 + i);
    if (ShapedType::isDynamic(padded) || ShapedType::isDynamic(kernel) ||
        ShapedType::isDynamic(out))
      return rewriter.notifyMatchFailure(op, "dynamic spatial size");
    if (out != (padded - dilations[i] * (kernel - 1) - 1) / strides[i] + 1)
      return rewriter.notifyMatchFailure(op, "output is not the full conv");
  }
  rewriter.replaceOpWithNewOp<nnf::Conv2DOp>(
      op, resultType, input, filter, bias, strides, padding, dilations,
      static_cast<uint64_t>(groups), nnf::ActivationKind::none);
  return success();
}

/// linalg.conv_2d_nchw_fchw of an optionally zero-padded input into a zero
/// fill or a bias broadcast along the channels.
struct RaiseConv2D : OpRewritePattern<linalg::Conv2DNchwFchwOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::Conv2DNchwFchwOp op,
                                PatternRewriter &rewriter) const override {
    if (op->getNumResults() != 1)
      return failure();
    FailureOr<Value> bias = biasOfAccumulator(op.getDpsInitOperand(0)->get(), 4, 1);
    if (failed(bias))
      return rewriter.notifyMatchFailure(op, "accumulator is not 0 or a bias");
    return replaceWithConv2D(rewriter, op, op.getDpsInputOperand(0)->get(),
                             op.getDpsInputOperand(1)->get(), *bias,
                             op.getStrides(), op.getDilations(), /*groups=*/1);
  }
};

/// The source of `value` when it is a tensor.expand_shape with exactly the
/// reassociation `expected`.
static Value expandSource(Value value, ArrayRef<ReassociationIndices> expected) {
  auto expand = value.getDefiningOp<tensor::ExpandShapeOp>();
  if (!expand || expand.getReassociationIndices() != expected)
    return {};
  return expand.getSrc();
}

/// A grouped convolution as torch-mlir emits it: collapse(conv_2d_ngchw_gfchw(
/// expand(x), expand(filter), accumulator)) with the channels split into
/// [groups, channels / groups].
struct RaiseGroupedConv2D : OpRewritePattern<tensor::CollapseShapeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(tensor::CollapseShapeOp collapse,
                                PatternRewriter &rewriter) const override {
    SmallVector<ReassociationIndices> channels = {{0}, {1, 2}, {3}, {4}};
    SmallVector<ReassociationIndices> filters = {{0, 1}, {2}, {3}, {4}};
    if (collapse.getReassociationIndices() != channels)
      return failure();
    auto conv = collapse.getSrc().getDefiningOp<linalg::Conv2DNgchwGfchwOp>();
    if (!conv || !conv->hasOneUse() || conv->getNumResults() != 1)
      return failure();
    Value input = expandSource(conv.getDpsInputOperand(0)->get(), channels);
    Value filter = expandSource(conv.getDpsInputOperand(1)->get(), filters);
    if (!input || !filter)
      return failure();
    auto convType = cast<RankedTensorType>(conv->getResult(0).getType());
    int64_t groups = convType.getDimSize(1);
    if (ShapedType::isDynamic(groups))
      return failure();
    // Zero fill of the expanded accumulator, or expand of a 4-D zero fill or
    // channel bias broadcast.
    Value init = conv.getDpsInitOperand(0)->get();
    Value bias;
    if (!isZeroFill(init)) {
      Value init4d = expandSource(init, channels);
      if (!init4d)
        return failure();
      FailureOr<Value> maybeBias = biasOfAccumulator(init4d, 4, 1);
      if (failed(maybeBias))
        return failure();
      bias = *maybeBias;
    }
    return replaceWithConv2D(rewriter, collapse, input, filter, bias,
                             conv.getStrides(), conv.getDilations(), groups);
  }
};

//===----------------------------------------------------------------------===//
// Softmax
//===----------------------------------------------------------------------===//

/// The identity map of `rank` dims with result `axis` replaced by 0.
static AffineMap keepDimMap(unsigned rank, unsigned axis, MLIRContext *ctx) {
  SmallVector<AffineExpr> exprs;
  for (unsigned d = 0; d < rank; ++d)
    exprs.push_back(d == axis ? getAffineConstantExpr(0, ctx)
                              : getAffineDimExpr(d, ctx));
  return AffineMap::get(rank, 0, exprs, ctx);
}

/// The identity map of `rank` dims with result `axis` dropped.
static AffineMap dropDimMap(unsigned rank, unsigned axis, MLIRContext *ctx) {
  SmallVector<AffineExpr> exprs;
  for (unsigned d = 0; d < rank; ++d)
    if (d != axis)
      exprs.push_back(getAffineDimExpr(d, ctx));
  return AffineMap::get(rank, 0, exprs, ctx);
}

/// The one reduction dimension of a generic whose other loops are parallel.
static std::optional<unsigned> singleReductionDim(linalg::GenericOp op) {
  std::optional<unsigned> axis;
  for (auto [d, type] : llvm::enumerate(op.getIteratorTypesArray())) {
    if (type == utils::IteratorType::parallel)
      continue;
    if (axis)
      return std::nullopt;
    axis = d;
  }
  return axis;
}

/// A generic `out = combine(in0, in1)` with maps [identity, keepDim(axis),
/// identity] and all-parallel iterators; returns the combining op.
template <typename OpTy>
static OpTy matchBroadcastBinary(linalg::GenericOp op, unsigned axis) {
  if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
      op->getNumResults() != 1 || !allParallel(op))
    return {};
  unsigned rank = op.getNumLoops();
  SmallVector<AffineMap> maps = op.getIndexingMapsArray();
  if (!maps[0].isIdentity() || !maps[2].isIdentity() ||
      maps[1] != keepDimMap(rank, axis, op.getContext()))
    return {};
  Block &body = op.getRegion().front();
  Value result = yieldedValue(op, 1);
  auto combine = result ? result.getDefiningOp<OpTy>() : nullptr;
  if (!combine || combine.getLhs() != body.getArgument(0) ||
      combine.getRhs() != body.getArgument(1))
    return {};
  return combine;
}

/// div(e, sum(e)) with e = exp(x - expand(max(x))) along one axis -> softmax.
struct RaiseSoftmaxChain : OpRewritePattern<linalg::GenericOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::GenericOp div,
                                PatternRewriter &rewriter) const override {
    auto type = nnfTensorType(div->getResult(0).getType());
    if (!type || div.getNumLoops() != type.getRank() ||
        div.getNumDpsInputs() != 2)
      return failure();
    MLIRContext *ctx = div.getContext();
    unsigned rank = type.getRank();
    // The axis is the dimension along which the divisor is broadcast.
    AffineMap divisorMap = div.getIndexingMapsArray()[1];
    std::optional<unsigned> axis;
    for (unsigned a = 0; a < rank; ++a)
      if (divisorMap == keepDimMap(rank, a, ctx))
        axis = a;
    if (!axis || !matchBroadcastBinary<arith::DivFOp>(div, *axis))
      return failure();

    Value e = div.getDpsInputOperand(0)->get();
    Value s = div.getDpsInputOperand(1)->get();
    if (e.getType() != type || !s.hasOneUse())
      return failure();
    // s = sum(e) along axis, keeping it as a unit dimension, from 0.
    auto sum = s.getDefiningOp<linalg::GenericOp>();
    if (!sum || sum.getNumDpsInputs() != 1 || sum.getNumDpsInits() != 1 ||
        sum->getNumResults() != 1 || singleReductionDim(sum) != axis ||
        sum.getDpsInputOperand(0)->get() != e ||
        !isZeroFill(sum.getDpsInitOperand(0)->get()))
      return failure();
    SmallVector<AffineMap> sumMaps = sum.getIndexingMapsArray();
    if (!sumMaps[0].isIdentity() || sumMaps[1] != keepDimMap(rank, *axis, ctx))
      return failure();
    Block &sumBody = sum.getRegion().front();
    Value sumValue = yieldedValue(sum, 1);
    auto add = sumValue ? sumValue.getDefiningOp<arith::AddFOp>() : nullptr;
    if (!add || !((add.getLhs() == sumBody.getArgument(0) &&
                   add.getRhs() == sumBody.getArgument(1)) ||
                  (add.getLhs() == sumBody.getArgument(1) &&
                   add.getRhs() == sumBody.getArgument(0))))
      return failure();

    // e = exp(d), used by the sum and the division only.
    auto exp = e.getDefiningOp<linalg::GenericOp>();
    if (!exp || !llvm::hasNItems(e.getUses(), 2))
      return failure();
    Value d = unaryElementwiseInput(exp);
    Value expValue = d ? yieldedValue(exp, 1) : Value();
    auto expOp = expValue ? expValue.getDefiningOp<math::ExpOp>() : nullptr;
    if (!expOp || expOp.getOperand() != exp.getRegion().front().getArgument(0) ||
        !d.hasOneUse())
      return failure();

    // d = x - expand(max(x)).
    auto sub = d.getDefiningOp<linalg::GenericOp>();
    if (!sub || !matchBroadcastBinary<arith::SubFOp>(sub, *axis))
      return failure();
    Value x = sub.getDpsInputOperand(0)->get();
    if (x.getType() != type)
      return failure();
    auto expand = sub.getDpsInputOperand(1)->get().getDefiningOp<tensor::ExpandShapeOp>();
    if (!expand)
      return failure();
    // The expansion only inserts the unit dimension `axis`.
    auto expandedType = cast<RankedTensorType>(expand.getResultType());
    auto maxType = cast<RankedTensorType>(expand.getSrcType());
    SmallVector<int64_t> kept(type.getShape());
    kept[*axis] = 1;
    SmallVector<int64_t> dropped(type.getShape());
    dropped.erase(dropped.begin() + *axis);
    if (expandedType.getShape() != ArrayRef<int64_t>(kept) ||
        maxType.getShape() != ArrayRef<int64_t>(dropped) ||
        llvm::any_of(dropped, ShapedType::isDynamic))
      return failure();

    // max(x) along axis from -inf, result #0 of a generic (a second result
    // with the arg-max indices may be present).
    auto maxResult = dyn_cast<OpResult>(expand.getSrc());
    auto max = maxResult ? dyn_cast<linalg::GenericOp>(maxResult.getOwner())
                         : nullptr;
    if (!max || maxResult.getResultNumber() != 0 || max.getNumDpsInputs() != 1 ||
        max.getDpsInputOperand(0)->get() != x ||
        singleReductionDim(max) != axis ||
        !isNegInfFill(max.getDpsInitOperand(0)->get()))
      return failure();
    SmallVector<AffineMap> maxMaps = max.getIndexingMapsArray();
    if (!maxMaps[0].isIdentity() || maxMaps[1] != dropDimMap(rank, *axis, ctx))
      return failure();
    Block &maxBody = max.getRegion().front();
    Value in = maxBody.getArgument(0), acc = maxBody.getArgument(1);
    Value maxValue = maxBody.getTerminator()->getOperand(0);
    Value other;
    if (!(matchBinary<arith::MaximumFOp>(maxValue, in, other) && other == acc))
      return failure();

    int64_t negativeAxis = static_cast<int64_t>(*axis) - rank;
    rewriter.replaceOpWithNewOp<nnf::SoftmaxOp>(
        div, type, x, rewriter.getI64IntegerAttr(negativeAxis));
    return success();
  }
};

/// linalg.softmax -> nnf.softmax.
struct RaiseLinalgSoftmax : OpRewritePattern<linalg::SoftmaxOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(linalg::SoftmaxOp op,
                                PatternRewriter &rewriter) const override {
    auto type = nnfTensorType(op.getInput().getType());
    if (!type || op->getNumResults() != 1 || op->getResult(0).getType() != type)
      return failure();
    int64_t axis = static_cast<int64_t>(op.getDimension()) - type.getRank();
    rewriter.replaceOpWithNewOp<nnf::SoftmaxOp>(
        op, type, op.getInput(), rewriter.getI64IntegerAttr(axis));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// Pass
//===----------------------------------------------------------------------===//

struct NNFRaisePass : nnforge::impl::NNFRaiseBase<NNFRaisePass> {
  using Base::Base;

  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    constexpr StringLiteral kKinds[] = {"linear", "conv2d", "softmax",
                                        "activation"};
    for (const std::string &kind : ops) {
      if (!llvm::is_contained(kKinds, kind)) {
        getOperation().emitError()
            << "nnf-raise: unknown op kind '" << kind << "' (expected "
            << llvm::join(ArrayRef(kKinds).drop_back(), ", ") << " or "
            << ArrayRef(kKinds).back() << ")";
        return signalPassFailure();
      }
    }
    auto raises = [&](StringRef kind) {
      return ops.empty() || llvm::is_contained(ops, kind);
    };
    RewritePatternSet patterns(ctx);
    if (raises("activation")) {
      patterns.add<RaiseActivation, RaiseSilu,
                   FuseActivationThroughReshape<tensor::ExpandShapeOp>,
                   FuseActivationThroughReshape<tensor::CollapseShapeOp>>(ctx);
      nnf::ActivationOp::getCanonicalizationPatterns(patterns, ctx);
    }
    if (raises("linear"))
      patterns.add<RaiseMatmul<linalg::MatmulOp>,
                   RaiseMatmul<linalg::BatchMatmulOp>, FuseLinearBias>(ctx);
    if (raises("conv2d"))
      patterns.add<RaiseConv2D, RaiseGroupedConv2D>(ctx);
    if (raises("softmax"))
      patterns.add<RaiseSoftmaxChain, RaiseLinalgSoftmax>(ctx);
    // Not converging within the iteration limit leaves correct IR behind.
    (void)applyPatternsGreedily(getOperation(), std::move(patterns));
  }
};

} // namespace
