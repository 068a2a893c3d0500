//===- LinalgMatchers.cpp - shapes of linalg ops our passes look for ------===//

#include "nnforge/Transforms/LinalgMatchers.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"

using namespace mlir;

Value nnforge::batchBroadcastSource(Value value) {
  Value source;
  SmallVector<int64_t> dimensions;
  if (auto broadcast = value.getDefiningOp<linalg::BroadcastOp>()) {
    source = broadcast.getInput();
    dimensions = llvm::to_vector(broadcast.getDimensions());
  } else if (auto generic = value.getDefiningOp<linalg::GenericOp>()) {
    std::optional<SmallVector<int64_t>> broadcastDims =
        linalg::isaBroadcastOpInterface(generic);
    if (!broadcastDims)
      return {};
    source = generic.getDpsInputOperand(0)->get();
    dimensions = *broadcastDims;
  } else {
    return {};
  }
  auto sourceType = dyn_cast<RankedTensorType>(source.getType());
  if (!sourceType || sourceType.getRank() != 2 ||
      dimensions != SmallVector<int64_t>{0})
    return {};
  return source;
}
