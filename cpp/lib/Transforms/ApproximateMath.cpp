//===- ApproximateMath.cpp - polynomial approximations of math ops --------===//
//
// Upstream MLIR has polynomial approximations of the transcendental math ops
// that vectorize (range reduction + FMAs), but registers them only as a test
// pass. Without them `math-to-llvm` leaves one libm call per element.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
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

struct NNFApproximateMathPass
    : nnforge::impl::NNFApproximateMathBase<NNFApproximateMathPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    // f16/bf16 operands are widened to f32 around the approximated ops.
    populateMathF32ExpansionPatterns(patterns, isApproximated);
    populateMathPolynomialApproximationPatterns(patterns, isApproximated);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
