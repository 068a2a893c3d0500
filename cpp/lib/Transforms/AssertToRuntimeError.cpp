//===- AssertToRuntimeError.cpp - failed checks as errors, not aborts -----===//
//
// torch-mlir guards gathers and dynamic shapes with `cf.assert`, which
// upstream lowers to abort(): an out-of-range index in the user's data would
// take the user's process down. This pass makes a failed assertion call
// nnforge's runtime (cpp/runtime/checks.c), which returns to the caller of
// the model with the assertion's message.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/LLVMIR/FunctionCallUtils.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFASSERTTORUNTIMEERROR
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

constexpr StringLiteral kCheckFailed = "nnforge_check_failed";

struct NNFAssertToRuntimeErrorPass
    : nnforge::impl::NNFAssertToRuntimeErrorBase<NNFAssertToRuntimeErrorPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<cf::AssertOp> asserts;
    module.walk([&](cf::AssertOp op) { asserts.push_back(op); });
    if (asserts.empty())
      return;
    MLIRContext *context = &getContext();
    OpBuilder builder(context);
    builder.setInsertionPointToStart(module.getBody());
    Type pointer = LLVM::LLVMPointerType::get(context);
    FailureOr<LLVM::LLVMFuncOp> checkFailed = LLVM::lookupOrCreateFn(
        builder, module, kCheckFailed, {pointer}, LLVM::LLVMVoidType::get(context));
    if (failed(checkFailed)) {
      module.emitError() << "cannot declare @" << kCheckFailed;
      return signalPassFailure();
    }
    unsigned messages = 0;
    for (cf::AssertOp assertOp : asserts) {
      Location loc = assertOp.getLoc();
      builder.setInsertionPoint(assertOp);
      auto check = scf::IfOp::create(builder, loc, assertOp.getArg(),
                                     /*withElseRegion=*/true);
      builder.setInsertionPointToStart(check.elseBlock());
      // A fresh name per message: createGlobalString does not rename.
      std::string name;
      do
        name = "nnforge_check_message_" + std::to_string(messages++);
      while (SymbolTable::lookupSymbolIn(module, name));
      Value message = LLVM::createGlobalString(
          loc, builder, name, (assertOp.getMsg() + Twine('\0')).str(),
          LLVM::Linkage::Internal);
      LLVM::CallOp::create(builder, loc, *checkFailed, ValueRange{message});
      assertOp.erase();
    }
  }
};

} // namespace
