// nnforge's ShardingInterface for tensor.expand_shape / collapse_shape
// (MLIR 22.1.8 has none): shardings propagate through reshapes, and a
// sharded reshape partitions to the same reshape of each rank's block.
// RUN: nnforge-opt %s --pass-pipeline="builtin.module(func.func(sharding-propagation{traversal=forward-backward}))" --split-input-file | FileCheck %s --check-prefix=PROP
// RUN: nnforge-opt %s --pass-pipeline="builtin.module(func.func(sharding-propagation{traversal=forward-backward},shard-partition),canonicalize)" --split-input-file | FileCheck %s --check-prefix=PART
// The wheel's mlir-opt with nnforge as a plugin has it too; without, it fails.
// RUN: mlir-opt %s --load-dialect-plugin=%nnforge_plugin --load-pass-plugin=%nnforge_plugin --pass-pipeline="builtin.module(func.func(sharding-propagation))" --split-input-file | FileCheck %s --check-prefix=PROP
// RUN: not mlir-opt %s --pass-pipeline="builtin.module(func.func(sharding-propagation))" --split-input-file 2>&1 | FileCheck %s --check-prefix=UPSTREAM
// UPSTREAM: 'tensor.expand_shape' op sharding interface is not implemented

// Attention heads: [S, E] with E split over 2 ranks, expanded to [S, H, D],
// is split along H (each rank holds whole heads).
// PROP-LABEL: func.func @heads
// PROP: %[[E:.*]] = tensor.expand_shape
// PROP: %[[S:.*]] = shard.sharding @grid split_axes = {{\[\[}}], [0]] : !shard.sharding
// PROP: shard.shard %[[E]] to %[[S]] : tensor<3x2x4xf32>
// PART-LABEL: func.func @heads
// PART-SAME: (%[[X:.*]]: tensor<3x4xf32>) -> tensor<3x1x4xf32>
// PART: %[[E:.*]] = tensor.expand_shape %[[X]] {{\[\[}}0], [1, 2]] output_shape [3, 1, 4] : tensor<3x4xf32> into tensor<3x1x4xf32>
// PART: return %[[E]]
shard.grid @grid(shape = 2)
func.func @heads(%x: tensor<3x8xf32>) -> tensor<3x2x4xf32> {
  %s = shard.sharding @grid split_axes = [[], [0]] : !shard.sharding
  %xs = shard.shard %x to %s annotate_for_users : tensor<3x8xf32>
  %e = tensor.expand_shape %xs [[0], [1, 2]] output_shape [3, 2, 4] : tensor<3x8xf32> into tensor<3x2x4xf32>
  return %e : tensor<3x2x4xf32>
}

// -----

// Backward: a split result (heads) gives the source's split.
// PROP-LABEL: func.func @backward
// PROP: %[[S:.*]] = shard.sharding @grid split_axes = {{\[\[}}], [0]] : !shard.sharding
// PROP: %[[X:.*]] = shard.shard %{{.*}} to %[[S]] annotate_for_users : tensor<3x8xf32>
// PROP: tensor.expand_shape %[[X]]
shard.grid @grid(shape = 2)
func.func @backward(%x: tensor<3x8xf32>) -> tensor<3x2x4xf32> {
  %e = tensor.expand_shape %x [[0], [1, 2]] output_shape [3, 2, 4] : tensor<3x8xf32> into tensor<3x2x4xf32>
  %s = shard.sharding @grid split_axes = [[], [0]] : !shard.sharding
  %r = shard.shard %e to %s : tensor<3x2x4xf32>
  return %r : tensor<3x2x4xf32>
}

// -----

// Collapsing [1, H, S, D] to [H, S, D]: the split of H (after a unit
// dimension) is a split of the collapsed dimension.
// PROP-LABEL: func.func @collapse_unit_batch
// PROP: %[[C:.*]] = tensor.collapse_shape
// PROP: %[[S:.*]] = shard.sharding @grid split_axes = {{\[\[}}0]] : !shard.sharding
// PROP: shard.shard %[[C]] to %[[S]] : tensor<4x3x8xf32>
// PART-LABEL: func.func @collapse_unit_batch
// PART-SAME: (%[[X:.*]]: tensor<1x2x3x8xf32>) -> tensor<2x3x8xf32>
// PART: tensor.collapse_shape %[[X]] {{\[\[}}0, 1], [2], [3]] : tensor<1x2x3x8xf32> into tensor<2x3x8xf32>
shard.grid @grid(shape = 2)
func.func @collapse_unit_batch(%x: tensor<1x4x3x8xf32>) -> tensor<4x3x8xf32> {
  %s = shard.sharding @grid split_axes = [[], [0]] : !shard.sharding
  %xs = shard.shard %x to %s annotate_for_users : tensor<1x4x3x8xf32>
  %c = tensor.collapse_shape %xs [[0, 1], [2], [3]] : tensor<1x4x3x8xf32> into tensor<4x3x8xf32>
  return %c : tensor<4x3x8xf32>
}

// -----

// A linear layer on a 3-D input: [B, S, E] collapsed to [B * S, E], a
// matmul with the weight split by output columns, expanded back: the
// result is split along its features, with no collective.
// PART-LABEL: func.func @linear3d
// PART-SAME: (%[[X:.*]]: tensor<2x3x8xf32>, %[[W:.*]]: tensor<8x2xf32>) -> tensor<2x3x2xf32>
// PART: tensor.collapse_shape %[[X]] {{.*}} into tensor<6x8xf32>
// PART: linalg.matmul {{.*}} -> tensor<6x2xf32>
// PART: tensor.expand_shape {{.*}} into tensor<2x3x2xf32>
// PART-NOT: shard.
// PART: return
shard.grid @grid(shape = 4)
func.func @linear3d(%x: tensor<2x3x8xf32>, %w: tensor<8x8xf32>) -> tensor<2x3x8xf32> {
  %rep = shard.sharding @grid split_axes = [[]] : !shard.sharding
  %cols = shard.sharding @grid split_axes = [[], [0]] : !shard.sharding
  %out = shard.sharding @grid split_axes = [[], [], [0]] : !shard.sharding
  %xs = shard.shard %x to %rep annotate_for_users : tensor<2x3x8xf32>
  %ws = shard.shard %w to %cols annotate_for_users : tensor<8x8xf32>
  %flat = tensor.collapse_shape %xs [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty() : tensor<6x8xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<6x8xf32>) -> tensor<6x8xf32>
  %mm = linalg.matmul ins(%flat, %ws : tensor<6x8xf32>, tensor<8x8xf32>) outs(%init : tensor<6x8xf32>) -> tensor<6x8xf32>
  %y = tensor.expand_shape %mm [[0, 1], [2]] output_shape [2, 3, 8] : tensor<6x8xf32> into tensor<2x3x8xf32>
  %r = shard.shard %y to %out : tensor<2x3x8xf32>
  return %r : tensor<2x3x8xf32>
}
