// RUN: nnforge-opt %s --nnf-propagate-reshapes --split-input-file | FileCheck %s

// torch.nn.MultiheadAttention's view of [S, B, E] queries as [S, B * H, D]:
// through [S, B, H, D], the heads a dimension of their own.
// CHECK-LABEL: func.func @heads_of_batch
// CHECK-SAME: (%[[Q:.*]]: tensor<6x2x32xf32>)
// CHECK: %[[R:.*]] = tensor.expand_shape %[[Q]] {{\[\[}}0], [1], [2, 3]] output_shape [6, 2, 4, 8] : tensor<6x2x32xf32> into tensor<6x2x4x8xf32>
// CHECK: %[[C:.*]] = tensor.collapse_shape %[[R]] {{\[\[}}0], [1, 2], [3]] : tensor<6x2x4x8xf32> into tensor<6x8x8xf32>
// CHECK: return %[[C]]
func.func @heads_of_batch(%q: tensor<6x2x32xf32>) -> tensor<6x8x8xf32> {
  %c = tensor.collapse_shape %q [[0], [1, 2]] : tensor<6x2x32xf32> into tensor<6x64xf32>
  %e = tensor.expand_shape %c [[0], [1, 2]] output_shape [6, 8, 8] : tensor<6x64xf32> into tensor<6x8x8xf32>
  return %e : tensor<6x8x8xf32>
}

// -----

// Its attention output [S, B * H, D] flattened and viewed as [S * B, E].
// CHECK-LABEL: func.func @flattened
// CHECK-SAME: (%[[O:.*]]: tensor<3x4x4xf32>)
// CHECK: %[[R:.*]] = tensor.expand_shape %[[O]] {{\[\[}}0], [1, 2], [3]] output_shape [3, 2, 2, 4] : tensor<3x4x4xf32> into tensor<3x2x2x4xf32>
// CHECK: tensor.collapse_shape %[[R]] {{\[\[}}0, 1], [2, 3]] : tensor<3x2x2x4xf32> into tensor<6x8xf32>
func.func @flattened(%o: tensor<3x4x4xf32>) -> tensor<6x8xf32> {
  %c = tensor.collapse_shape %o [[0, 1, 2]] : tensor<3x4x4xf32> into tensor<48xf32>
  %e = tensor.expand_shape %c [[0, 1]] output_shape [6, 8] : tensor<48xf32> into tensor<6x8xf32>
  return %e : tensor<6x8xf32>
}

// -----

// No common refinement (6 and 4 do not divide each other): left as it is.
// CHECK-LABEL: func.func @no_refinement
// CHECK: tensor.collapse_shape %{{.*}} {{\[\[}}0, 1]] : tensor<6x4xf32> into tensor<24xf32>
// CHECK: tensor.expand_shape %{{.*}} {{\[\[}}0, 1]] output_shape [4, 6]
func.func @no_refinement(%x: tensor<6x4xf32>) -> tensor<4x6xf32> {
  %c = tensor.collapse_shape %x [[0, 1]] : tensor<6x4xf32> into tensor<24xf32>
  %e = tensor.expand_shape %c [[0, 1]] output_shape [4, 6] : tensor<24xf32> into tensor<4x6xf32>
  return %e : tensor<4x6xf32>
}

// -----

// One expand_shape does it: canonicalization composes the pair.
// CHECK-LABEL: func.func @one_reshape
// CHECK-NEXT: tensor.expand_shape %{{.*}} {{\[\[}}0], [1, 2]] output_shape [2, 3, 4] : tensor<2x12xf32> into tensor<2x3x4xf32>
// CHECK-NEXT: return
func.func @one_reshape(%x: tensor<2x12xf32>) -> tensor<2x3x4xf32> {
  %c = tensor.collapse_shape %x [[0, 1]] : tensor<2x12xf32> into tensor<24xf32>
  %e = tensor.expand_shape %c [[0, 1, 2]] output_shape [2, 3, 4] : tensor<24xf32> into tensor<2x3x4xf32>
  return %e : tensor<2x3x4xf32>
}

// -----

// Softmax's first steps on scores with the batch and heads collapsed
// ([B * H, S, S]): the collapse has two users, and both run on [B, H, S, S].
// CHECK-LABEL: func.func @several_users
// CHECK-SAME: (%[[S:[a-z0-9]+]]: tensor<2x4x3x3xf32>,
// CHECK: linalg.generic {{.*}} ins(%[[S]] : tensor<2x4x3x3xf32>) outs(%{{.*}} : tensor<2x4x3xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[S]] : tensor<2x4x3x3xf32>) outs(%{{.*}} : tensor<2x4x3x3xf32>)
#rows = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
#row = affine_map<(d0, d1, d2) -> (d0, d1)>
func.func @several_users(%s: tensor<2x4x3x3xf32>, %init: tensor<8x3xf32>) -> (tensor<8x3xf32>, tensor<8x3x3xf32>) {
  %c = tensor.collapse_shape %s [[0, 1], [2], [3]] : tensor<2x4x3x3xf32> into tensor<8x3x3xf32>
  %max = linalg.generic {indexing_maps = [#rows, #row], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%c : tensor<8x3x3xf32>) outs(%init : tensor<8x3xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = arith.maximumf %in, %out : f32
    linalg.yield %m : f32
  } -> tensor<8x3xf32>
  %empty = tensor.empty() : tensor<8x3x3xf32>
  %exp = linalg.generic {indexing_maps = [#rows, #rows], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%c : tensor<8x3x3xf32>) outs(%empty : tensor<8x3x3xf32>) {
  ^bb0(%in: f32, %out: f32):
    %e = math.exp %in : f32
    linalg.yield %e : f32
  } -> tensor<8x3x3xf32>
  return %max, %exp : tensor<8x3xf32>, tensor<8x3x3xf32>
}
