// RUN: nnforge-opt %s --nnf-uncollapse-batch-matmul --split-input-file | FileCheck %s
// RUN: nnforge-opt %s --pass-pipeline="builtin.module(func.func(nnf-uncollapse-batch-matmul,sharding-propagation{traversal=forward-backward},shard-partition),canonicalize)" --split-input-file | FileCheck %s --check-prefix=PART

// Attention scores [B, H, S, D] x [B, H, D, S] on collapsed batches become a
// generic over (b, h, m, n, k) on the uncollapsed operands.
// CHECK-DAG: #[[A:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d4)>
// CHECK-DAG: #[[B:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d4, d3)>
// CHECK-DAG: #[[C:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d3)>
// CHECK-LABEL: func.func @scores
// CHECK: %[[Q:.*]] = shard.shard %arg0
// CHECK: %[[K:.*]] = shard.shard %arg1
// CHECK: %[[EMPTY:.*]] = tensor.empty() : tensor<2x4x6x6xf32>
// CHECK: %[[INIT:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%[[EMPTY]] : tensor<2x4x6x6xf32>)
// CHECK: %[[R:.*]] = linalg.generic {indexing_maps = [#[[A]], #[[B]], #[[C]]], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]}
// CHECK-SAME: ins(%[[Q]], %[[K]] : tensor<2x4x6x8xf32>, tensor<2x4x8x6xf32>) outs(%[[INIT]] : tensor<2x4x6x6xf32>)
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK-NOT: linalg.batch_matmul
// CHECK: shard.shard %[[R]]

// Split by heads over 2 ranks, each rank multiplies its heads of every batch.
// PART-LABEL: func.func @scores
// PART-SAME: (%{{.*}}: tensor<2x2x6x8xf32>, %{{.*}}: tensor<2x2x8x6xf32>) -> tensor<2x2x6x6xf32>
// PART: linalg.generic
// PART-NOT: shard.
// PART: return
shard.grid @grid(shape = 2)
func.func @scores(%q: tensor<2x4x6x8xf32>, %k: tensor<2x4x8x6xf32>) -> tensor<2x4x6x6xf32> {
  %heads = shard.sharding @grid split_axes = [[], [0]] : !shard.sharding
  %qs = shard.shard %q to %heads annotate_for_users : tensor<2x4x6x8xf32>
  %ks = shard.shard %k to %heads annotate_for_users : tensor<2x4x8x6xf32>
  %a = tensor.collapse_shape %qs [[0, 1], [2], [3]] : tensor<2x4x6x8xf32> into tensor<8x6x8xf32>
  %b = tensor.collapse_shape %ks [[0, 1], [2], [3]] : tensor<2x4x8x6xf32> into tensor<8x8x6xf32>
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty() : tensor<8x6x6xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%empty : tensor<8x6x6xf32>) -> tensor<8x6x6xf32>
  %p = linalg.batch_matmul ins(%a, %b : tensor<8x6x8xf32>, tensor<8x8x6xf32>) outs(%acc : tensor<8x6x6xf32>) -> tensor<8x6x6xf32>
  %r = tensor.expand_shape %p [[0, 1], [2], [3]] output_shape [2, 4, 6, 6] : tensor<8x6x6xf32> into tensor<2x4x6x6xf32>
  %rs = shard.shard %r to %heads : tensor<2x4x6x6xf32>
  return %rs : tensor<2x4x6x6xf32>
}

// -----

// An operand that is no collapse of the batches: unchanged (and
// replicated, it partitions as it is).
// CHECK-LABEL: func.func @other_grouping
// CHECK: linalg.batch_matmul
// PART-LABEL: func.func @other_grouping
// PART: linalg.batch_matmul
shard.grid @grid(shape = 2)
func.func @other_grouping(%x: tensor<2x4x6x8xf32>, %y: tensor<8x8x6xf32>) -> tensor<2x4x6x6xf32> {
  %rep = shard.sharding @grid split_axes = [[]] : !shard.sharding
  %q = shard.shard %x to %rep annotate_for_users : tensor<2x4x6x8xf32>
  %k = shard.shard %y to %rep annotate_for_users : tensor<8x8x6xf32>
  %a = tensor.collapse_shape %q [[0, 1], [2], [3]] : tensor<2x4x6x8xf32> into tensor<8x6x8xf32>
  %zero = arith.constant 0.0 : f32
  %empty = tensor.empty() : tensor<8x6x6xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%empty : tensor<8x6x6xf32>) -> tensor<8x6x6xf32>
  %p = linalg.batch_matmul ins(%a, %k : tensor<8x6x8xf32>, tensor<8x8x6xf32>) outs(%acc : tensor<8x6x6xf32>) -> tensor<8x6x6xf32>
  %r = tensor.expand_shape %p [[0, 1], [2], [3]] output_shape [2, 4, 6, 6] : tensor<8x6x6xf32> into tensor<2x4x6x6xf32>
  %rs = shard.shard %r to %rep : tensor<2x4x6x6xf32>
  return %rs : tensor<2x4x6x6xf32>
}
