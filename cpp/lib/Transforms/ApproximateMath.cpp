//===- ApproximateMath.cpp - polynomial approximations of math ops --------===//
//
// Upstream MLIR has polynomial approximations of the transcendental math ops
// that vectorize (range reduction + FMAs), but registers them only as a test
// pass. Without them `math-to-llvm` leaves one libm call per element.
//
// f32 exp has its own, cheaper rewrite here: softmax is mostly exp, and
// upstream's clamps the reduced exponent and converts it to an integer,
// where an FMA with a rounding constant yields both the rounded exponent
// and, in its low mantissa bits, the biased exponent of 2^n.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"
#include "llvm/ADT/StringSwitch.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFAPPROXIMATEMATH
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// The math ops whose upstream approximations are accurate to a few ulp over
/// all of f32, infinities and NaN included. sin/cos/atan and friends are
/// left to libm: their approximations lose accuracy away from small inputs.
bool isApproximated(StringRef opName) {
  opName.consume_front("math.");
  return llvm::StringSwitch<bool>(opName)
      .Cases({"exp", "expm1", "log", "log1p", "log2", "tanh", "erf", "erfc"},
             true)
      .Default(false);
}

/// f32 exp(x) = p(r) * 2^n, n = round(x / ln 2), r = x - n ln 2 in
/// [-ln 2 / 2, ln 2 / 2], p a degree-6 polynomial (at most 2 ulp from exp in
/// the normal range). Both n and 2^n come from one FMA: x / ln 2 + 1.5 * 2^23
/// rounds to an integer, and its low mantissa bits, shifted into the exponent
/// field, are the bits of 2^(n - 1) (the bias 126 is folded into the
/// constant). x is clamped to [-87.6, 88.7229] so that the exponent field
/// stays within 0..254; the result is (p * 2^(n - 1)) * 2, which overflows
/// to +inf above ln(FLT_MAX) and is 0 below about -86.99 (results under
/// 1.7e-38, the bottom of the normal range and the subnormals, flush to 0).
/// NaN propagates: the clamps keep it and so does every operation after.
struct ExpToPolynomial : OpRewritePattern<math::ExpOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(math::ExpOp op,
                                PatternRewriter &rewriter) const override {
    Type type = op.getType();
    if (!getElementTypeOrSelf(type).isF32())
      return rewriter.notifyMatchFailure(op, "not f32");
    auto vectorType = dyn_cast<VectorType>(type);
    if (vectorType && vectorType.isScalable())
      return rewriter.notifyMatchFailure(op, "scalable vector");
    Type intType = vectorType ? Type(vectorType.clone(rewriter.getI32Type()))
                              : Type(rewriter.getI32Type());

    ImplicitLocOpBuilder b(op.getLoc(), rewriter);
    // A scalar constant, or its splat where the op works on vectors.
    auto constantOf = [&](TypedAttr scalar) -> Value {
      if (vectorType)
        scalar = DenseElementsAttr::get(
            vectorType.clone(scalar.getType()), ArrayRef<Attribute>(scalar));
      return arith::ConstantOp::create(b, scalar);
    };
    auto constant = [&](float value) -> Value {
      return constantOf(b.getF32FloatAttr(value));
    };
    auto fma = [&](Value x, Value y, Value z) -> Value {
      return math::FmaOp::create(b, x, y, z);
    };
    // select(x beyond bound, bound, x): NaN is kept (ordered comparisons
    // with NaN are false).
    auto clamp = [&](Value x, arith::CmpFPredicate beyond,
                     float bound) -> Value {
      Value limit = constant(bound);
      Value outside = arith::CmpFOp::create(b, beyond, x, limit);
      return arith::SelectOp::create(b, outside, limit, x);
    };

    Value x = clamp(clamp(op.getOperand(), arith::CmpFPredicate::OLT, -87.6f),
                    arith::CmpFPredicate::OGT, 88.7229f);
    // 1.5 * 2^23: adding it rounds to an integer and leaves the integer in
    // the low mantissa bits whatever its sign; + 126 is 2^(n - 1)'s bias.
    Value rounder = constant(12582912.0f + 126.0f);
    Value shifted = fma(x, constant(1.44269504088896341f), rounder);
    Value n = arith::SubFOp::create(b, shifted, rounder);
    // r = x - n ln 2, ln 2 split so that n * ln2High is exact (Cody-Waite).
    Value r = fma(n, constant(-0.693359375f), x);
    r = fma(n, constant(2.12194440e-4f), r);
    // e^r on [-ln 2 / 2, ln 2 / 2], p(0) = 1, fitted by weighted least
    // squares toward the minimax: relative error 1.8e-8.
    const float coefficients[] = {1.38436071e-3f, 8.37419555e-3f,
                                  4.16680053e-2f, 1.66664302e-1f,
                                  4.99999940e-1f, 1.0f,
                                  1.0f};
    Value p = constant(coefficients[0]);
    for (float coefficient : ArrayRef(coefficients).drop_front())
      p = fma(p, r, constant(coefficient));
    Value bits = arith::BitcastOp::create(b, intType, shifted);
    Value exponentField = arith::ShLIOp::create(
        b, bits, constantOf(b.getI32IntegerAttr(23)));
    Value halfScale = arith::BitcastOp::create(b, type, exponentField);
    Value result = arith::MulFOp::create(
        b, arith::MulFOp::create(b, p, halfScale), constant(2.0f));
    rewriter.replaceOp(op, result);
    return success();
  }
};

struct NNFApproximateMathPass
    : nnforge::impl::NNFApproximateMathBase<NNFApproximateMathPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    // f16/bf16 operands are widened to f32 around the approximated ops.
    populateMathF32ExpansionPatterns(patterns, isApproximated);
    // Preferred to upstream's exp approximation (left for scalable vectors).
    patterns.add<ExpToPolynomial>(&getContext(), /*benefit=*/2);
    populateMathPolynomialApproximationPatterns(patterns, isApproximated);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
