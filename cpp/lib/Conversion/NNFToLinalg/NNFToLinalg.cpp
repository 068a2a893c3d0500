//===- NNFToLinalg.cpp - lower nnf ops to linalg on tensors ---------------===//

#include "mlir/Transforms/DialectConversion.h"
#include "nnforge/Dialect/NNF/NNFOps.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_CONVERTNNFTOLINALG
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {
struct ConvertNNFToLinalgPass
    : nnforge::impl::ConvertNNFToLinalgBase<ConvertNNFToLinalgPass> {
  void runOnOperation() override {
    ConversionTarget target(getContext());
    target.addIllegalDialect<nnforge::nnf::NNFDialect>();
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    RewritePatternSet patterns(&getContext());
    if (failed(applyPartialConversion(getOperation(), target,
                                      std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
