// nnforge's ShardingInterface for tensor.extract_slice (MLIR 22.1.8 has
// none): a dimension the slice takes whole may be split, and a sharded slice
// partitions to the same slice of each rank's block.
// RUN: nnforge-opt %s --pass-pipeline="builtin.module(func.func(sharding-propagation{traversal=forward-backward}))" --split-input-file | FileCheck %s --check-prefix=PROP
// RUN: nnforge-opt %s --pass-pipeline="builtin.module(func.func(sharding-propagation{traversal=forward-backward},shard-partition),canonicalize)" --split-input-file | FileCheck %s --check-prefix=PART
// The wheel's mlir-opt with nnforge as a plugin has it too; without, it fails.
// RUN: mlir-opt %s --load-dialect-plugin=%nnforge_plugin --load-pass-plugin=%nnforge_plugin --pass-pipeline="builtin.module(func.func(sharding-propagation{traversal=forward-backward}))" --split-input-file | FileCheck %s --check-prefix=PROP
// RUN: not mlir-opt %s --pass-pipeline="builtin.module(func.func(sharding-propagation))" --split-input-file 2>&1 | FileCheck %s --check-prefix=UPSTREAM
// UPSTREAM: 'tensor.extract_slice' op sharding interface is not implemented

// The last third of a packed [3, E, K] weight with E split over 2 ranks
// (rank-reducing): the third keeps E split; each rank slices its block.
// PROP-LABEL: func.func @third
// PROP: %[[T:.*]] = tensor.extract_slice
// PROP: %[[S:.*]] = shard.sharding @grid split_axes = {{\[\[}}0]] : !shard.sharding
// PROP: shard.shard %[[T]] to %[[S]] : tensor<4x8xf32>
// PART-LABEL: func.func @third
// PART-SAME: (%[[W:.*]]: tensor<3x2x8xf32>) -> tensor<2x8xf32>
// PART: %[[T:.*]] = tensor.extract_slice %[[W]][2, 0, 0] [1, 2, 8] [1, 1, 1] : tensor<3x2x8xf32> to tensor<2x8xf32>
// PART: return %[[T]]
shard.grid @grid(shape = 2)
func.func @third(%w: tensor<3x4x8xf32>) -> tensor<4x8xf32> {
  %s = shard.sharding @grid split_axes = [[], [0]] : !shard.sharding
  %ws = shard.shard %w to %s annotate_for_users : tensor<3x4x8xf32>
  %t = tensor.extract_slice %ws[2, 0, 0] [1, 4, 8] [1, 1, 1] : tensor<3x4x8xf32> to tensor<4x8xf32>
  return %t : tensor<4x8xf32>
}

// -----

// Backward: a split result gives the source the same split.
// PROP-LABEL: func.func @backward
// PROP: %[[S:.*]] = shard.sharding @grid split_axes = {{\[\[}}], [0]] : !shard.sharding
// PROP: %[[W:.*]] = shard.shard %{{.*}} to %[[S]] annotate_for_users : tensor<3x4x8xf32>
// PROP: tensor.extract_slice %[[W]][1, 0, 0] [1, 4, 8]
// PART-LABEL: func.func @backward
// PART-SAME: (%[[W:.*]]: tensor<3x2x8xf32>) -> tensor<1x2x8xf32>
// PART: tensor.extract_slice %[[W]][1, 0, 0] [1, 2, 8] [1, 1, 1] : tensor<3x2x8xf32> to tensor<1x2x8xf32>
shard.grid @grid(shape = 2)
func.func @backward(%w: tensor<3x4x8xf32>) -> tensor<1x4x8xf32> {
  %t = tensor.extract_slice %w[1, 0, 0] [1, 4, 8] [1, 1, 1] : tensor<3x4x8xf32> to tensor<1x4x8xf32>
  %s = shard.sharding @grid split_axes = [[], [0]] : !shard.sharding
  %r = shard.shard %t to %s : tensor<1x4x8xf32>
  return %r : tensor<1x4x8xf32>
}

// -----

// Replicated: the slice stays as it is (torch-mlir's thirds of a packed
// projection left whole, a causal mask cut to the sequence); the source is
// replicated too.
// PROP-LABEL: func.func @replicated
// PROP: %[[S:.*]] = shard.sharding @grid split_axes = {{\[\[}}]] : !shard.sharding
// PROP: %[[X:.*]] = shard.shard %{{.*}} to %{{.*}} annotate_for_users : tensor<6x8xf32>
// PROP: tensor.extract_slice %[[X]][3, 0] [3, 8]
// PROP: shard.shard %{{.*}} to %[[S]] : tensor<3x8xf32>
// PART-LABEL: func.func @replicated
// PART-SAME: (%[[X:.*]]: tensor<6x8xf32>) -> tensor<3x8xf32>
// PART: tensor.extract_slice %[[X]][3, 0] [3, 8] [1, 1] : tensor<6x8xf32> to tensor<3x8xf32>
shard.grid @grid(shape = 2)
func.func @replicated(%x: tensor<6x8xf32>) -> tensor<3x8xf32> {
  %s = shard.sharding @grid split_axes = [[]] : !shard.sharding
  %t = tensor.extract_slice %x[3, 0] [3, 8] [1, 1] : tensor<6x8xf32> to tensor<3x8xf32>
  %r = shard.shard %t to %s : tensor<3x8xf32>
  return %r : tensor<3x8xf32>
}
