//===- SaturateShifts.cpp - shifts by the bit width or more ---------------===//
//
// `arith` shifts by the operand's bit width or more (negative amounts
// included, read as unsigned) are poison; LLVM on x86 masks the amount, so
// `x << 33` on i32 gives `x << 1`. ONNX, numpy and PyTorch define them:
// every bit shifted out, leaving 0, or the sign for arithmetic right shifts.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/IR/Matchers.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFSATURATESHIFTS
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// Whether `amount` is a constant (scalar or splat) below `width`: shifts by
/// such amounts are defined already.
bool isInRangeConstant(Value amount, unsigned width) {
  APInt value;
  return matchPattern(amount, m_ConstantInt(&value)) && value.ult(width);
}

void saturate(Operation *shift) {
  Value input = shift->getOperand(0), amount = shift->getOperand(1);
  Type type = input.getType();
  unsigned width = getElementTypeOrSelf(type).getIntOrFloatBitWidth();
  if (isInRangeConstant(amount, width))
    return;
  OpBuilder builder(shift->getContext());
  builder.setInsertionPointAfter(shift);
  Location loc = shift->getLoc();
  Value widthValue = createScalarOrSplatConstant(builder, loc, type, width);
  Value inRange = arith::CmpIOp::create(builder, loc, arith::CmpIPredicate::ult,
                                        amount, widthValue);
  // Shifted out entirely: the sign bit everywhere (x >> (width - 1)) for an
  // arithmetic right shift, zero otherwise.
  Value saturated =
      isa<arith::ShRSIOp>(shift)
          ? arith::ShRSIOp::create(
                builder, loc, input,
                createScalarOrSplatConstant(builder, loc, type, width - 1))
                .getResult()
          : createScalarOrSplatConstant(builder, loc, type, 0);
  Value result = shift->getResult(0);
  auto select =
      arith::SelectOp::create(builder, loc, inRange, result, saturated);
  result.replaceAllUsesExcept(select.getResult(), select);
}

struct NNFSaturateShiftsPass
    : nnforge::impl::NNFSaturateShiftsBase<NNFSaturateShiftsPass> {
  void runOnOperation() override {
    SmallVector<Operation *> shifts;
    getOperation()->walk([&](Operation *op) {
      if (isa<arith::ShLIOp, arith::ShRUIOp, arith::ShRSIOp>(op))
        shifts.push_back(op);
    });
    for (Operation *shift : shifts)
      saturate(shift);
  }
};

} // namespace
