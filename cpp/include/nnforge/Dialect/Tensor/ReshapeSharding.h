//===- ReshapeSharding.h - sharding of tensor reshapes ----------*- C++ -*-===//

#ifndef NNFORGE_DIALECT_TENSOR_RESHAPESHARDING_H
#define NNFORGE_DIALECT_TENSOR_RESHAPESHARDING_H

#include "mlir/IR/DialectRegistry.h"

namespace nnforge {

/// Gives tensor.expand_shape and tensor.collapse_shape the shard dialect's
/// ShardingInterface, which MLIR 22.1.8 lacks for them (sharding-propagation
/// stops at them with "sharding interface is not implemented"). A split of a
/// collapsed dimension is a split of the outermost non-unit dimension of its
/// group of expanded dimensions, and back: attention heads ([.., E] expanded
/// to [.., H, D], E split) stay split by heads.
void registerReshapeShardingInterface(mlir::DialectRegistry &registry);

} // namespace nnforge

#endif // NNFORGE_DIALECT_TENSOR_RESHAPESHARDING_H
