//===- ProfileDispatchRegions.cpp - timers around dispatch regions --------===//
//
// nnf-profile-dispatch-regions brackets each public function, and each
// dispatch region or op computing outside one in it, with calls to
// nnforge's runtime timer (cpp/runtime/profile.c), which adds the elapsed
// time to counters held by the module itself. Upstream MLIR has pass timing
// (of the compiler), not timing of the compiled code; this pass instruments
// at the level where a region is still one op, before code generation turns
// it into loops: the ops stay in their block's order through tiling,
// bufferization and the lowering to LLVM, so the loops of each region end
// up between its two calls.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/FunctionCallUtils.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "nnforge/Dialect/NNF/NNFOps.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFPROFILEDISPATCHREGIONS
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

constexpr StringLiteral kStart = "nnforge_profile_start";
constexpr StringLiteral kStop = "nnforge_profile_stop";
constexpr StringLiteral kCounters = "nnf_profile_counters";
constexpr StringLiteral kCountersAddress = "nnf_profile_counters_address";
constexpr StringLiteral kRegionAttr = "nnf.profile_region";
// Counters per region: nanoseconds, calls.
constexpr int64_t kCountersPerRegion = 2;

/// Whether `op`, directly in a function's block, computes something worth a
/// region of its own: a dispatch region, a linalg op, a pad (a copy), or an
/// op holding regions (a loop, a conditional), timed as a whole.
bool isProfiled(Operation *op) {
  if (isa<nnforge::nnf::DispatchOp, tensor::PadOp>(op))
    return true;
  if (op->getDialect() && isa<linalg::LinalgDialect>(op->getDialect()))
    return true;
  return op->getNumRegions() > 0;
}

struct NNFProfileDispatchRegionsPass
    : nnforge::impl::NNFProfileDispatchRegionsBase<
          NNFProfileDispatchRegionsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (SymbolTable::lookupSymbolIn(module, kCounters)) {
      module.emitError() << "the module is profiled already (it has @"
                         << kCounters << ")";
      return signalPassFailure();
    }
    MLIRContext *context = &getContext();
    OpBuilder builder(context);
    builder.setInsertionPointToStart(module.getBody());
    Type pointer = LLVM::LLVMPointerType::get(context);
    Type i64 = builder.getI64Type();
    FailureOr<LLVM::LLVMFuncOp> start =
        LLVM::lookupOrCreateFn(builder, module, kStart, {}, i64);
    FailureOr<LLVM::LLVMFuncOp> stop =
        LLVM::lookupOrCreateFn(builder, module, kStop, {pointer, i64, i64},
                               LLVM::LLVMVoidType::get(context));
    if (failed(start) || failed(stop)) {
      module.emitError() << "cannot declare @" << kStart << " and @" << kStop;
      return signalPassFailure();
    }

    int64_t regions = 0;
    // Brackets the ops from `first` to `last` (in one block) as a region.
    auto bracket = [&](Operation *first, ArrayRef<Operation *> lasts) {
      IntegerAttr id = builder.getI64IntegerAttr(regions++);
      builder.setInsertionPoint(first);
      Value began =
          LLVM::CallOp::create(builder, first->getLoc(), *start, ValueRange{})
              .getResult();
      for (Operation *last : lasts) {
        if (last->hasTrait<OpTrait::IsTerminator>())
          builder.setInsertionPoint(last);
        else
          builder.setInsertionPointAfter(last);
        Location loc = last->getLoc();
        Value counters =
            LLVM::AddressOfOp::create(builder, loc, pointer, kCounters);
        Value region = arith::ConstantOp::create(builder, loc, id);
        LLVM::CallOp::create(builder, loc, *stop,
                             ValueRange{counters, region, began});
      }
      return id;
    };

    SmallVector<func::FuncOp> functions(module.getOps<func::FuncOp>());
    for (func::FuncOp function : functions) {
      if (function.isExternal() || !function.isPublic())
        continue;
      SmallVector<Operation *> returns;
      for (Block &block : function.getBody())
        if (isa<func::ReturnOp>(block.getTerminator()))
          returns.push_back(block.getTerminator());
      function->setAttr(kRegionAttr,
                        bracket(&function.getBody().front().front(), returns));
      for (Block &block : function.getBody()) {
        SmallVector<Operation *> profiled;
        for (Operation &op : block)
          if (isProfiled(&op))
            profiled.push_back(&op);
        for (Operation *op : profiled)
          op->setAttr(kRegionAttr, bracket(op, {op}));
      }
    }
    if (regions == 0)
      return;

    // The counters, zeroed, and the function returning their address.
    builder.setInsertionPointToEnd(module.getBody());
    Location loc = module.getLoc();
    auto counterType = RankedTensorType::get({regions * kCountersPerRegion}, i64);
    LLVM::GlobalOp::create(
        builder, loc, LLVM::LLVMArrayType::get(i64, regions * kCountersPerRegion),
        /*isConstant=*/false, LLVM::Linkage::Internal, kCounters,
        DenseElementsAttr::get(counterType, builder.getI64IntegerAttr(0)));
    auto address = func::FuncOp::create(
        builder, loc, kCountersAddress, builder.getFunctionType({}, {pointer}));
    builder.setInsertionPointToStart(address.addEntryBlock());
    Value counters = LLVM::AddressOfOp::create(builder, loc, pointer, kCounters);
    func::ReturnOp::create(builder, loc, counters);
  }
};

} // namespace
