// RUN: nnforge-opt %s --pass-pipeline="builtin.module(func.func(sharding-propagation{traversal=forward-backward}),nnf-verify-sharding)" --split-input-file --verify-diagnostics | FileCheck %s

// Everything annotated: unchanged.
// CHECK-LABEL: func.func @annotated
// CHECK: tensor.expand_shape
shard.grid @grid(shape = 2)
func.func @annotated(%x: tensor<3x8xf32>) -> tensor<3x2x4xf32> {
  %s = shard.sharding @grid split_axes = [[], [0]] : !shard.sharding
  %xs = shard.shard %x to %s annotate_for_users : tensor<3x8xf32>
  %e = tensor.expand_shape %xs [[0], [1, 2]] output_shape [3, 2, 4] : tensor<3x8xf32> into tensor<3x2x4xf32>
  %r = shard.shard %e to %s : tensor<3x2x4xf32>
  return %r : tensor<3x2x4xf32>
}

// -----

// A packed [3 * E] projection split over 2 ranks, unflattened to [3, E]:
// the block of each rank is no block of the 3 rows, and the result cannot
// be replicated without a collective. An error naming the reshape, where
// shard-partition would abort.
shard.grid @grid(shape = 2)
func.func @packed(%x: tensor<24xf32>) -> tensor<3x8xf32> {
  %s = shard.sharding @grid split_axes = [[0]] : !shard.sharding
  %r = shard.sharding @grid split_axes = [[]] : !shard.sharding
  %xs = shard.shard %x to %s annotate_for_users : tensor<24xf32>
  // expected-error @+1 {{cannot be partitioned: sharding-propagation found no sharding of its result #0 that agrees with the shardings around it (a split of a collapsed dimension}}
  %e = tensor.expand_shape %xs [[0, 1]] output_shape [3, 8] : tensor<24xf32> into tensor<3x8xf32>
  %er = shard.shard %e to %r annotate_for_users : tensor<3x8xf32>
  %y = tensor.empty() : tensor<3x8xf32>
  %c = linalg.copy ins(%er : tensor<3x8xf32>) outs(%y : tensor<3x8xf32>) -> tensor<3x8xf32>
  return %c : tensor<3x8xf32>
}

// -----

// Rows 3..5 of 6 rows split over 2 ranks are no rank's block: the slice
// gets no sharding, an error naming it.
shard.grid @grid(shape = 2)
func.func @cut(%x: tensor<6x8xf32>) -> tensor<3x8xf32> {
  %s = shard.sharding @grid split_axes = [[0]] : !shard.sharding
  %xs = shard.shard %x to %s annotate_for_users : tensor<6x8xf32>
  // expected-error @+1 {{cannot be partitioned: sharding-propagation found no sharding of its result #0 that agrees with the shardings around it}}
  %t = tensor.extract_slice %xs[3, 0] [3, 8] [1, 1] : tensor<6x8xf32> to tensor<3x8xf32>
  return %t : tensor<3x8xf32>
}
