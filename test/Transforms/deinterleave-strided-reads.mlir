// RUN: nnforge-opt %s --nnf-deinterleave-strided-reads --split-input-file | FileCheck %s

// A row segment of a stride-2 window copy: 16 elements read from 31, as one
// read of 32 (the last lane past the end: not in bounds, padded) whose even
// lanes are kept, then read by the copy through the identity map.
// CHECK-DAG: #[[ID:.*]] = affine_map<(d0) -> (d0)>
// CHECK-LABEL: func.func @copy
// CHECK-SAME: (%[[ROW:.*]]: tensor<31xf32>, %[[OUT:.*]]: tensor<16xf32>)
// CHECK: %[[WIDE:.*]] = vector.transfer_read %[[ROW]][%{{.*}}], %{{.*}} : tensor<31xf32>, vector<32xf32>
// CHECK: %[[EVEN:.*]] = vector.shuffle %[[WIDE]], %[[WIDE]] [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30] : vector<32xf32>, vector<32xf32>
// CHECK: %[[EMPTY:.*]] = tensor.empty() : tensor<16xf32>
// CHECK: %[[DENSE:.*]] = vector.transfer_write %[[EVEN]], %[[EMPTY]][%{{.*}}] {in_bounds = [true]} : vector<16xf32>, tensor<16xf32>
// CHECK: linalg.generic {indexing_maps = [#[[ID]], #[[ID]]], iterator_types = ["parallel"]} ins(%[[DENSE]] : tensor<16xf32>) outs(%[[OUT]] : tensor<16xf32>)
func.func @copy(%row: tensor<31xf32>, %out: tensor<16xf32>) -> tensor<16xf32> {
  %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0 * 2)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%row : tensor<31xf32>) outs(%out : tensor<16xf32>) {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  } -> tensor<16xf32>
  return %r : tensor<16xf32>
}

// -----

// A max-pooling tap with stride 3 (8 lanes of 24, all in bounds); the 0-D
// window operand is left as it is.
// CHECK-DAG: #[[ID:.*]] = affine_map<(d0) -> (d0)>
// CHECK-DAG: #[[SCALAR:.*]] = affine_map<(d0) -> ()>
// CHECK-LABEL: func.func @pool
// CHECK: %[[WIDE:.*]] = vector.transfer_read %{{.*}} {in_bounds = [true]} : tensor<24xf32>, vector<24xf32>
// CHECK: vector.shuffle %[[WIDE]], %[[WIDE]] [0, 3, 6, 9, 12, 15, 18, 21] : vector<24xf32>, vector<24xf32>
// CHECK: linalg.generic {indexing_maps = [#[[ID]], #[[SCALAR]], #[[ID]]]
// CHECK: arith.maximumf
func.func @pool(%row: tensor<24xf32>, %window: tensor<f32>, %out: tensor<8xf32>) -> tensor<8xf32> {
  %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0 * 3)>, affine_map<(d0) -> ()>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%row, %window : tensor<24xf32>, tensor<f32>) outs(%out : tensor<8xf32>) {
  ^bb0(%in: f32, %w: f32, %o: f32):
    %m = arith.maximumf %o, %in : f32
    linalg.yield %m : f32
  } -> tensor<8xf32>
  return %r : tensor<8xf32>
}

// -----

// Left alone: dynamic sizes, more than 64 lanes to read, unit strides, and
// an operand of more than one dimension.
// CHECK-LABEL: func.func @dynamic
// CHECK-NOT: vector.shuffle
// CHECK-LABEL: func.func @too_wide
// CHECK-NOT: vector.shuffle
// CHECK-LABEL: func.func @unit_stride
// CHECK-NOT: vector.shuffle
// CHECK-LABEL: func.func @two_dims
// CHECK-NOT: vector.shuffle
func.func @dynamic(%row: tensor<?xf32>, %out: tensor<?xf32>) -> tensor<?xf32> {
  %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0 * 2)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%row : tensor<?xf32>) outs(%out : tensor<?xf32>) {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  } -> tensor<?xf32>
  return %r : tensor<?xf32>
}
func.func @too_wide(%row: tensor<65xf32>, %out: tensor<33xf32>) -> tensor<33xf32> {
  %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0 * 2)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%row : tensor<65xf32>) outs(%out : tensor<33xf32>) {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  } -> tensor<33xf32>
  return %r : tensor<33xf32>
}
func.func @unit_stride(%row: tensor<16xf32>, %out: tensor<16xf32>) -> tensor<16xf32> {
  %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%row : tensor<16xf32>) outs(%out : tensor<16xf32>) {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  } -> tensor<16xf32>
  return %r : tensor<16xf32>
}
func.func @two_dims(%rows: tensor<2x31xf32>, %out: tensor<2x16xf32>) -> tensor<2x16xf32> {
  %r = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1 * 2)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]}
      ins(%rows : tensor<2x31xf32>) outs(%out : tensor<2x16xf32>) {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  } -> tensor<2x16xf32>
  return %r : tensor<2x16xf32>
}
