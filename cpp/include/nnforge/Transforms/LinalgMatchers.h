//===- LinalgMatchers.h - shapes of linalg ops our passes look for --------===//
//
// Matchers shared by more than one pass.
//
//===----------------------------------------------------------------------===//

#ifndef NNFORGE_TRANSFORMS_LINALGMATCHERS_H
#define NNFORGE_TRANSFORMS_LINALGMATCHERS_H

#include "mlir/IR/Value.h"

namespace nnforge {

/// The 2-D matrix that `value` broadcasts along a new leading (batch)
/// dimension, through a `linalg.broadcast` or an equivalent generic (as
/// torch-mlir emits the right operand of a batch matmul for a linear layer
/// on a 3-D input), or null.
mlir::Value batchBroadcastSource(mlir::Value value);

} // namespace nnforge

#endif // NNFORGE_TRANSFORMS_LINALGMATCHERS_H
