//===- ExtractSliceSharding.h - sharding of tensor.extract_slice -*- C++ -*-===//

#ifndef NNFORGE_DIALECT_TENSOR_EXTRACTSLICESHARDING_H
#define NNFORGE_DIALECT_TENSOR_EXTRACTSLICESHARDING_H

#include "mlir/IR/DialectRegistry.h"

namespace nnforge {

/// Gives tensor.extract_slice the shard dialect's ShardingInterface, which
/// MLIR 22.1.8 lacks for it (sharding-propagation stops at it with
/// "sharding interface is not implemented"). A dimension that the slice
/// takes whole may be split (the rank's slice is the same slice of its
/// block); a dimension it cuts stays whole. One third of a packed q/k/v
/// weight viewed as [3, E, K] ([1:2, 0:E, 0:K]) keeps E split by heads.
void registerExtractSliceShardingInterface(mlir::DialectRegistry &registry);

} // namespace nnforge

#endif // NNFORGE_DIALECT_TENSOR_EXTRACTSLICESHARDING_H
