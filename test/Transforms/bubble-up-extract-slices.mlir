// RUN: nnforge-opt %s --pass-pipeline="builtin.module(func.func(nnf-bubble-up-extract-slices,canonicalize))" --split-input-file | FileCheck %s

// A packed q/k/v projection (weight taken as [3, E, K], collapsed to
// [3E, K]) sliced in thirds: one matmul per third, on its third of the
// weight and the bias. The last third too (upstream's slice-through-collapse
// pattern refuses a slice that ends where its dimension ends).
// CHECK-LABEL: func.func @packed
// CHECK-SAME: (%[[X:.*]]: tensor<4x8xf32>, %[[W:.*]]: tensor<3x4x8xf32>, %[[B:.*]]: tensor<3x4xf32>)
// CHECK: %[[W0:.*]] = tensor.extract_slice %[[W]][0, 0, 0] [1, 4, 8] [1, 1, 1]
// CHECK: %[[C0:.*]] = tensor.collapse_shape %[[W0]] {{\[\[}}0, 1], [2]] : tensor<1x4x8xf32> into tensor<4x8xf32>
// CHECK: %[[T0:.*]] = linalg.transpose ins(%[[C0]] : tensor<4x8xf32>)
// CHECK: %[[M0:.*]] = linalg.matmul ins(%[[X]], %[[T0]] : tensor<4x8xf32>, tensor<8x4xf32>)
// CHECK: tensor.extract_slice %[[B]][0, 0] [1, 4] [1, 1]
// CHECK: %[[Q:.*]] = linalg.generic {{.*}} ins(%[[M0]]
// CHECK: tensor.extract_slice %[[W]][1, 0, 0] [1, 4, 8] [1, 1, 1]
// CHECK: %[[K:.*]] = linalg.generic
// CHECK: tensor.extract_slice %[[W]][2, 0, 0] [1, 4, 8] [1, 1, 1]
// CHECK: tensor.extract_slice %[[B]][2, 0] [1, 4] [1, 1]
// CHECK: %[[V:.*]] = linalg.generic
// CHECK-NOT: tensor<4x12xf32>
// CHECK: return %[[Q]], %[[K]], %[[V]]
func.func @packed(%x: tensor<4x8xf32>, %w: tensor<3x4x8xf32>, %b: tensor<3x4xf32>) -> (tensor<4x4xf32>, tensor<4x4xf32>, tensor<4x4xf32>) {
  %wc = tensor.collapse_shape %w [[0, 1], [2]] : tensor<3x4x8xf32> into tensor<12x8xf32>
  %bc = tensor.collapse_shape %b [[0, 1]] : tensor<3x4xf32> into tensor<12xf32>
  %e0 = tensor.empty() : tensor<8x12xf32>
  %wt = linalg.transpose ins(%wc : tensor<12x8xf32>) outs(%e0 : tensor<8x12xf32>) permutation = [1, 0]
  %cst = arith.constant 0.0 : f32
  %e1 = tensor.empty() : tensor<4x12xf32>
  %f = linalg.fill ins(%cst : f32) outs(%e1 : tensor<4x12xf32>) -> tensor<4x12xf32>
  %mm = linalg.matmul ins(%x, %wt : tensor<4x8xf32>, tensor<8x12xf32>) outs(%f : tensor<4x12xf32>) -> tensor<4x12xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%mm, %bc : tensor<4x12xf32>, tensor<12xf32>) outs(%e1 : tensor<4x12xf32>) {
  ^bb0(%in: f32, %in1: f32, %out: f32):
    %a = arith.addf %in, %in1 : f32
    linalg.yield %a : f32
  } -> tensor<4x12xf32>
  %q = tensor.extract_slice %y[0, 0] [4, 4] [1, 1] : tensor<4x12xf32> to tensor<4x4xf32>
  %k = tensor.extract_slice %y[0, 4] [4, 4] [1, 1] : tensor<4x12xf32> to tensor<4x4xf32>
  %v = tensor.extract_slice %y[0, 8] [4, 4] [1, 1] : tensor<4x12xf32> to tensor<4x4xf32>
  return %q, %k, %v : tensor<4x4xf32>, tensor<4x4xf32>, tensor<4x4xf32>
}

// -----

// Slices through an expand_shape ([B * S, 3E] expanded to [B, S, 3E]).
// CHECK-LABEL: func.func @expanded
// CHECK: %[[S:.*]] = tensor.extract_slice %{{.*}}[0, 4] [6, 4] [1, 1] : tensor<6x12xf32> to tensor<6x4xf32>
// CHECK: tensor.expand_shape %[[S]] {{\[\[}}0, 1], [2]] output_shape [2, 3, 4]
func.func @expanded(%y: tensor<6x12xf32>) -> tensor<2x3x4xf32> {
  %e = tensor.expand_shape %y [[0, 1], [2]] output_shape [2, 3, 12] : tensor<6x12xf32> into tensor<2x3x12xf32>
  %k = tensor.extract_slice %e[0, 0, 4] [2, 3, 4] [1, 1, 1] : tensor<2x3x12xf32> to tensor<2x3x4xf32>
  return %k : tensor<2x3x4xf32>
}

// -----

// Overlapping slices would compute some elements twice: the producer stays
// whole.
// CHECK-LABEL: func.func @overlapping
// CHECK: %[[Y:.*]] = linalg.generic
// CHECK: tensor.extract_slice %[[Y]][0, 0] [4, 8]
// CHECK: tensor.extract_slice %[[Y]][0, 4] [4, 8]
func.func @overlapping(%x: tensor<4x12xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>) {
  %e = tensor.empty() : tensor<4x12xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<4x12xf32>) outs(%e : tensor<4x12xf32>) {
  ^bb0(%in: f32, %out: f32):
    %a = arith.mulf %in, %in : f32
    linalg.yield %a : f32
  } -> tensor<4x12xf32>
  %a = tensor.extract_slice %y[0, 0] [4, 8] [1, 1] : tensor<4x12xf32> to tensor<4x8xf32>
  %b = tensor.extract_slice %y[0, 4] [4, 8] [1, 1] : tensor<4x12xf32> to tensor<4x8xf32>
  return %a, %b : tensor<4x8xf32>, tensor<4x8xf32>
}

// -----

// A packed projection viewed as [B, S, 3, H, D], permuted to [3, B, H, S, D]
// and unbound (rank-reducing selects): each third becomes [B, S, E] sliced
// before the view, and the transposes drop the unit dimension (a [1, B, H]
// batch would not split by heads).
// CHECK-LABEL: func.func @unbound
// CHECK-SAME: (%[[Y:.*]]: tensor<2x6x96xf32>)
// CHECK: %[[K:.*]] = tensor.extract_slice %[[Y]][0, 0, 32] [2, 6, 32] [1, 1, 1] : tensor<2x6x96xf32> to tensor<2x6x32xf32>
// CHECK: %[[E:.*]] = tensor.expand_shape %[[K]] {{\[\[}}0], [1], [2, 3]] output_shape [2, 6, 4, 8] : tensor<2x6x32xf32> into tensor<2x6x4x8xf32>
// CHECK: %[[T:.*]] = linalg.transpose ins(%[[E]] : tensor<2x6x4x8xf32>) outs(%{{.*}} : tensor<2x4x6x8xf32>) permutation = [0, 2, 1, 3]
// CHECK: return %{{.*}}, %[[T]]
func.func @unbound(%y: tensor<2x6x96xf32>) -> (tensor<2x4x6x8xf32>, tensor<2x4x6x8xf32>) {
  %e = tensor.expand_shape %y [[0], [1], [2, 3, 4]] output_shape [2, 6, 3, 4, 8] : tensor<2x6x96xf32> into tensor<2x6x3x4x8xf32>
  %init = tensor.empty() : tensor<3x2x4x6x8xf32>
  %t = linalg.transpose ins(%e : tensor<2x6x3x4x8xf32>) outs(%init : tensor<3x2x4x6x8xf32>) permutation = [2, 0, 3, 1, 4]
  %q = tensor.extract_slice %t[0, 0, 0, 0, 0] [1, 2, 4, 6, 8] [1, 1, 1, 1, 1] : tensor<3x2x4x6x8xf32> to tensor<2x4x6x8xf32>
  %k = tensor.extract_slice %t[1, 0, 0, 0, 0] [1, 2, 4, 6, 8] [1, 1, 1, 1, 1] : tensor<3x2x4x6x8xf32> to tensor<2x4x6x8xf32>
  return %q, %k : tensor<2x4x6x8xf32>, tensor<2x4x6x8xf32>
}
