// RUN: nnforge-opt %s --pass-pipeline="builtin.module(func.func(shard-partition))" --split-input-file --verify-diagnostics

// A split of a dimension the slice cuts (rows 3..5 of 6 split over 2 ranks
// are no rank's block): an error, not a wrong program.
shard.grid @grid(shape = 2)
func.func @cut(%x: tensor<6x8xf32>) -> tensor<3x8xf32> {
  %s = shard.sharding @grid split_axes = [[0]] : !shard.sharding
  %x0 = shard.shard %x to %s : tensor<6x8xf32>
  %x1 = shard.shard %x0 to %s annotate_for_users : tensor<6x8xf32>
  // expected-error @+1 {{'tensor.extract_slice' op cannot be partitioned: its source and result shardings do not split the same elements (only dimensions the slice takes whole may be split)}}
  %t = tensor.extract_slice %x1[3, 0] [3, 8] [1, 1] : tensor<6x8xf32> to tensor<3x8xf32>
  %r0 = shard.shard %t to %s : tensor<3x8xf32>
  %r1 = shard.shard %r0 to %s annotate_for_users : tensor<3x8xf32>
  return %r1 : tensor<3x8xf32>
}
