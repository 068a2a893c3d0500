// Shardings that nnforge's reshape ShardingInterface cannot carry across.
// RUN: nnforge-opt %s --pass-pipeline="builtin.module(func.func(sharding-propagation{traversal=forward-backward}))" --split-input-file | FileCheck %s
// RUN: nnforge-opt %s --pass-pipeline="builtin.module(func.func(sharding-propagation{traversal=forward-backward},shard-partition))" --split-input-file --verify-diagnostics

// Splits that are not blocks of the other side have no sharding option:
// the reshape's result stays unannotated, and partitioned as it is the
// reshape is an error. An inner dimension of a collapsed group: [2, 2, 3]
// -> [4, 3] with dimension 1 split.
// CHECK-LABEL: func.func @inner_split
// CHECK: %[[C:.*]] = tensor.collapse_shape
// CHECK-NEXT: return %[[C]]
shard.grid @grid(shape = 2)
func.func @inner_split(%x: tensor<2x2x3xf32>) -> tensor<4x3xf32> {
  %s = shard.sharding @grid split_axes = [[], [0]] : !shard.sharding
  %xs = shard.shard %x to %s annotate_for_users : tensor<2x2x3xf32>
  // expected-error @+1 {{'tensor.collapse_shape' op cannot be partitioned: its source and result shardings do not split the same elements}}
  %c = tensor.collapse_shape %xs [[0, 1], [2]] : tensor<2x2x3xf32> into tensor<4x3xf32>
  return %c : tensor<4x3xf32>
}

// -----

// A collapsed dimension whose outermost expanded dimension the ranks do not
// divide: [3, 6] -> [3, 3, 2], 6 split over 2 ranks is 1.5 rows of 2.
// CHECK-LABEL: func.func @indivisible
// CHECK: %[[E:.*]] = tensor.expand_shape
// CHECK-NEXT: return %[[E]]
shard.grid @grid(shape = 2)
func.func @indivisible(%x: tensor<3x6xf32>) -> tensor<3x3x2xf32> {
  %s = shard.sharding @grid split_axes = [[], [0]] : !shard.sharding
  %xs = shard.shard %x to %s annotate_for_users : tensor<3x6xf32>
  // expected-error @+1 {{'tensor.expand_shape' op cannot be partitioned: its source and result shardings do not split the same elements}}
  %e = tensor.expand_shape %xs [[0], [1, 2]] output_shape [3, 3, 2] : tensor<3x6xf32> into tensor<3x3x2xf32>
  return %e : tensor<3x3x2xf32>
}
