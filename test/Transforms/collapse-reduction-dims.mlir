// RUN: nnforge-opt %s --nnf-collapse-reduction-dims --split-input-file | FileCheck %s

// A multi-head attention's input projection after reshape propagation:
// m = (d0, d1), n = (d2, d3, d4), k = (d5, d6). Each run becomes one loop:
// a [128 x 256] x [256 x 768] contraction, its result expanded back.
#a = affine_map<(d0, d1, d2, d3, d4, d5, d6) -> (d0, d1, d5, d6)>
#w = affine_map<(d0, d1, d2, d3, d4, d5, d6) -> (d5, d6, d2, d3, d4)>
#o = affine_map<(d0, d1, d2, d3, d4, d5, d6) -> (d0, d1, d2, d3, d4)>
// CHECK-LABEL: func.func @split_projection
// CHECK-DAG: %[[A:.*]] = tensor.collapse_shape %{{.*}} {{\[\[}}0, 1], [2, 3]] : tensor<1x128x1x256xf32> into tensor<128x256xf32>
// CHECK-DAG: %[[W:.*]] = tensor.collapse_shape %{{.*}} {{\[\[}}0, 1], [2, 3, 4]] : tensor<1x256x1x3x256xf32> into tensor<256x768xf32>
// CHECK: %[[P:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]} ins(%[[A]], %[[W]] : tensor<128x256xf32>, tensor<256x768xf32>) outs(%{{.*}} : tensor<128x768xf32>)
// CHECK: %[[E:.*]] = tensor.expand_shape %[[P]] {{\[\[}}0, 1], [2, 3, 4]] output_shape [1, 128, 1, 3, 256] : tensor<128x768xf32> into tensor<1x128x1x3x256xf32>
// CHECK: return %[[E]]
func.func @split_projection(%x: tensor<1x128x1x256xf32>, %w: tensor<1x256x1x3x256xf32>, %acc: tensor<1x128x1x3x256xf32>) -> tensor<1x128x1x3x256xf32> {
  %y = linalg.generic {indexing_maps = [#a, #w, #o], iterator_types = ["parallel", "parallel", "parallel", "parallel", "parallel", "reduction", "reduction"]}
      ins(%x, %w : tensor<1x128x1x256xf32>, tensor<1x256x1x3x256xf32>) outs(%acc : tensor<1x128x1x3x256xf32>) {
  ^bb0(%in: f32, %in_w: f32, %out: f32):
    %m = arith.mulf %in, %in_w : f32
    %s = arith.addf %out, %m : f32
    linalg.yield %s : f32
  } -> tensor<1x128x1x3x256xf32>
  return %y : tensor<1x128x1x3x256xf32>
}

// -----

// A weight packed into column panels: n = (d1, d3) is split by k in the
// weight and stays; nothing else to merge.
#a = affine_map<(d0, d1, d2, d3) -> (d0, d2)>
#w = affine_map<(d0, d1, d2, d3) -> (d1, d2, d3)>
#o = affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>
// CHECK-LABEL: func.func @packed_panels
// CHECK-NOT: tensor.collapse_shape
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<128x256xf32>, tensor<32x256x32xf32>)
func.func @packed_panels(%x: tensor<128x256xf32>, %w: tensor<32x256x32xf32>, %acc: tensor<128x32x32xf32>) -> tensor<128x32x32xf32> {
  %y = linalg.generic {indexing_maps = [#a, #w, #o], iterator_types = ["parallel", "parallel", "reduction", "parallel"]}
      ins(%x, %w : tensor<128x256xf32>, tensor<32x256x32xf32>) outs(%acc : tensor<128x32x32xf32>) {
  ^bb0(%in: f32, %in_w: f32, %out: f32):
    %m = arith.mulf %in, %in_w : f32
    %s = arith.addf %out, %m : f32
    linalg.yield %s : f32
  } -> tensor<128x32x32xf32>
  return %y : tensor<128x32x32xf32>
}

// -----

// Elementwise generics are left alone.
#id = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @elementwise
// CHECK-NOT: tensor.collapse_shape
func.func @elementwise(%x: tensor<2x3x4xf32>) -> tensor<2x3x4xf32> {
  %y = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%x : tensor<2x3x4xf32>) outs(%x : tensor<2x3x4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.addf %in, %in : f32
    linalg.yield %s : f32
  } -> tensor<2x3x4xf32>
  return %y : tensor<2x3x4xf32>
}

// -----

// A sum over two adjacent loops (a layer norm's row sum of a [8, 32] split
// row) becomes a row reduction; the parallel loops keep their shape.
#in = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#bias = affine_map<(d0, d1, d2, d3) -> (d2, d3)>
#out = affine_map<(d0, d1, d2, d3) -> (d0, d1)>
// CHECK-LABEL: func.func @split_row_sum
// CHECK-DAG: %[[X:.*]] = tensor.collapse_shape %{{.*}} {{\[\[}}0], [1], [2, 3]] : tensor<1x128x8x32xf32> into tensor<1x128x256xf32>
// CHECK-DAG: %[[B:.*]] = tensor.collapse_shape %{{.*}} {{\[\[}}0, 1]] : tensor<8x32xf32> into tensor<256xf32>
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]} ins(%[[X]], %[[B]] : tensor<1x128x256xf32>, tensor<256xf32>) outs(%{{.*}} : tensor<1x128xf32>)
func.func @split_row_sum(%x: tensor<1x128x8x32xf32>, %b: tensor<8x32xf32>, %acc: tensor<1x128xf32>) -> tensor<1x128xf32> {
  %y = linalg.generic {indexing_maps = [#in, #bias, #out], iterator_types = ["parallel", "parallel", "reduction", "reduction"]}
      ins(%x, %b : tensor<1x128x8x32xf32>, tensor<8x32xf32>) outs(%acc : tensor<1x128xf32>) {
  ^bb0(%in: f32, %in_b: f32, %out: f32):
    %s = arith.addf %in, %in_b : f32
    %t = arith.addf %s, %out : f32
    linalg.yield %t : f32
  } -> tensor<1x128xf32>
  return %y : tensor<1x128xf32>
}

// -----

// A pooling window (oh + kh) reads no loop as it is: left alone.
#in = affine_map<(d0, d1, d2, d3) -> (d0 + d2, d1 + d3)>
#win = affine_map<(d0, d1, d2, d3) -> (d2, d3)>
#out = affine_map<(d0, d1, d2, d3) -> (d0, d1)>
// CHECK-LABEL: func.func @window_sum
// CHECK-NOT: tensor.collapse_shape
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction", "reduction"]
func.func @window_sum(%x: tensor<10x10xf32>, %w: tensor<3x3xf32>, %acc: tensor<8x8xf32>) -> tensor<8x8xf32> {
  %y = linalg.generic {indexing_maps = [#in, #win, #out], iterator_types = ["parallel", "parallel", "reduction", "reduction"]}
      ins(%x, %w : tensor<10x10xf32>, tensor<3x3xf32>) outs(%acc : tensor<8x8xf32>) {
  ^bb0(%in: f32, %in_w: f32, %out: f32):
    %m = arith.maximumf %in, %out : f32
    linalg.yield %m : f32
  } -> tensor<8x8xf32>
  return %y : tensor<8x8xf32>
}

// -----

// A sum whose body reads its loop indices (a gather fused into it) is left
// alone: merged loops would need the indices delinearized.
#in = affine_map<(d0, d1) -> (d0, d1)>
#out = affine_map<(d0, d1) -> ()>
// CHECK-LABEL: func.func @gathered_sum
// CHECK-NOT: tensor.collapse_shape
// CHECK: linalg.generic {{.*}} iterator_types = ["reduction", "reduction"]
func.func @gathered_sum(%x: tensor<3x6xf32>, %table: tensor<3x6xf32>, %acc: tensor<f32>) -> tensor<f32> {
  %y = linalg.generic {indexing_maps = [#in, #out], iterator_types = ["reduction", "reduction"]}
      ins(%x : tensor<3x6xf32>) outs(%acc : tensor<f32>) {
  ^bb0(%in: f32, %out: f32):
    %i = linalg.index 0 : index
    %j = linalg.index 1 : index
    %g = tensor.extract %table[%i, %j] : tensor<3x6xf32>
    %p = arith.mulf %in, %g : f32
    %s = arith.addf %p, %out : f32
    linalg.yield %s : f32
  } -> tensor<f32>
  return %y : tensor<f32>
}
