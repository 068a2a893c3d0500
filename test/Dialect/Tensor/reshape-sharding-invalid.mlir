// RUN: nnforge-opt %s --pass-pipeline="builtin.module(func.func(shard-partition))" --split-input-file --verify-diagnostics

// Annotations that do not describe the same elements on both sides of a
// reshape (dimension 1 of [2, 2, 3] split, dimension 0 of [4, 3] split): an
// error, not a wrong program.
shard.grid @grid(shape = 2)
func.func @mismatch(%x: tensor<2x2x3xf32>) -> tensor<4x3xf32> {
  %s = shard.sharding @grid split_axes = [[], [0]] : !shard.sharding
  %t = shard.sharding @grid split_axes = [[0]] : !shard.sharding
  %x0 = shard.shard %x to %s : tensor<2x2x3xf32>
  %x1 = shard.shard %x0 to %s annotate_for_users : tensor<2x2x3xf32>
  // expected-error @+1 {{'tensor.collapse_shape' op cannot be partitioned: its source and result shardings do not split the same elements}}
  %c = tensor.collapse_shape %x1 [[0, 1], [2]] : tensor<2x2x3xf32> into tensor<4x3xf32>
  %r0 = shard.shard %c to %t : tensor<4x3xf32>
  %r1 = shard.shard %r0 to %t annotate_for_users : tensor<4x3xf32>
  return %r1 : tensor<4x3xf32>
}
