// RUN: nnforge-opt %s --nnf-unbroadcast-batch-matmul --split-input-file | FileCheck %s

// A linalg.broadcast of the weights along the batch: one matmul of all rows.
// CHECK-LABEL: func.func @broadcast_op
// CHECK-SAME: (%[[X:.*]]: tensor<4x2x8xf32>, %[[W:.*]]: tensor<8x16xf32>, %[[ACC:.*]]: tensor<4x2x16xf32>)
// CHECK-NOT: linalg.broadcast
// CHECK-DAG: %[[ROWS:.*]] = tensor.collapse_shape %[[X]] {{\[\[}}0, 1], [2]] : tensor<4x2x8xf32> into tensor<8x8xf32>
// CHECK-DAG: %[[FLAT:.*]] = tensor.collapse_shape %[[ACC]] {{\[\[}}0, 1], [2]] : tensor<4x2x16xf32> into tensor<8x16xf32>
// CHECK: %[[M:.*]] = linalg.matmul ins(%[[ROWS]], %[[W]] : tensor<8x8xf32>, tensor<8x16xf32>) outs(%[[FLAT]] : tensor<8x16xf32>)
// CHECK: %[[R:.*]] = tensor.expand_shape %[[M]] {{\[\[}}0, 1], [2]] output_shape [4, 2, 16] : tensor<8x16xf32> into tensor<4x2x16xf32>
// CHECK: return %[[R]]
func.func @broadcast_op(%x: tensor<4x2x8xf32>, %w: tensor<8x16xf32>, %acc: tensor<4x2x16xf32>) -> tensor<4x2x16xf32> {
  %e = tensor.empty() : tensor<4x8x16xf32>
  %wb = linalg.broadcast ins(%w : tensor<8x16xf32>) outs(%e : tensor<4x8x16xf32>) dimensions = [0]
  %r = linalg.batch_matmul ins(%x, %wb : tensor<4x2x8xf32>, tensor<4x8x16xf32>) outs(%acc : tensor<4x2x16xf32>) -> tensor<4x2x16xf32>
  return %r : tensor<4x2x16xf32>
}

// -----

// The generic form torch-mlir emits.
#rhs = affine_map<(d0, d1, d2) -> (d1, d2)>
#id = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @broadcast_generic
// CHECK-NOT: linalg.batch_matmul
// CHECK: linalg.matmul ins(%{{.*}}, %arg1 : tensor<24x8xf32>, tensor<8x16xf32>)
// CHECK: tensor.expand_shape {{.*}} output_shape [4, 6, 16]
func.func @broadcast_generic(%x: tensor<4x6x8xf32>, %w: tensor<8x16xf32>, %acc: tensor<4x6x16xf32>) -> tensor<4x6x16xf32> {
  %e = tensor.empty() : tensor<4x8x16xf32>
  %wb = linalg.generic {indexing_maps = [#rhs, #id], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%w : tensor<8x16xf32>) outs(%e : tensor<4x8x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    linalg.yield %in : f32
  } -> tensor<4x8x16xf32>
  %r = linalg.batch_matmul ins(%x, %wb : tensor<4x6x8xf32>, tensor<4x8x16xf32>) outs(%acc : tensor<4x6x16xf32>) -> tensor<4x6x16xf32>
  return %r : tensor<4x6x16xf32>
}

// -----

// Left alone: batches of different matrices, a broadcast along another
// dimension, and a dynamic batch.
#rows = affine_map<(d0, d1, d2) -> (d0, d2)>
#id = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @left_alone
// CHECK-COUNT-3: linalg.batch_matmul
// CHECK-NOT: linalg.matmul
func.func @left_alone(%x: tensor<4x2x8xf32>, %b: tensor<4x8x16xf32>, %v: tensor<4x16xf32>, %acc: tensor<4x2x16xf32>,
                      %dx: tensor<?x2x8xf32>, %dacc: tensor<?x2x16xf32>, %w: tensor<8x16xf32>) -> (tensor<4x2x16xf32>, tensor<4x2x16xf32>, tensor<?x2x16xf32>) {
  %r0 = linalg.batch_matmul ins(%x, %b : tensor<4x2x8xf32>, tensor<4x8x16xf32>) outs(%acc : tensor<4x2x16xf32>) -> tensor<4x2x16xf32>
  %e = tensor.empty() : tensor<4x8x16xf32>
  %vb = linalg.generic {indexing_maps = [#rows, #id], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%v : tensor<4x16xf32>) outs(%e : tensor<4x8x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    linalg.yield %in : f32
  } -> tensor<4x8x16xf32>
  %r1 = linalg.batch_matmul ins(%x, %vb : tensor<4x2x8xf32>, tensor<4x8x16xf32>) outs(%acc : tensor<4x2x16xf32>) -> tensor<4x2x16xf32>
  %c0 = arith.constant 0 : index
  %n = tensor.dim %dx, %c0 : tensor<?x2x8xf32>
  %de = tensor.empty(%n) : tensor<?x8x16xf32>
  %wb = linalg.broadcast ins(%w : tensor<8x16xf32>) outs(%de : tensor<?x8x16xf32>) dimensions = [0]
  %r2 = linalg.batch_matmul ins(%dx, %wb : tensor<?x2x8xf32>, tensor<?x8x16xf32>) outs(%dacc : tensor<?x2x16xf32>) -> tensor<?x2x16xf32>
  return %r0, %r1, %r2 : tensor<4x2x16xf32>, tensor<4x2x16xf32>, tensor<?x2x16xf32>
}
