// RUN: nnforge-opt %s --nnf-erase-unused-linalg-results --split-input-file | FileCheck %s

// Softmax's maximum over the last dimension, as torch-mlir lowers it: one
// generic computing the maximum and its index (unused). The index result,
// its destination and its payload are dropped; the maximum stays.
// CHECK-LABEL: func.func @max_and_unused_index
// CHECK: %[[M:.*]] = linalg.generic
// CHECK-SAME: iterator_types = ["parallel", "parallel", "reduction"]
// CHECK-SAME: ins(%{{.*}} : tensor<4x6x6xf32>) outs(%{{.*}} : tensor<4x6xf32>)
// CHECK-NEXT: ^bb0(%[[IN:.*]]: f32, %[[OUT:.*]]: f32):
// CHECK-NEXT: %[[MAX:.*]] = arith.maximumf %[[IN]], %[[OUT]] : f32
// CHECK-NEXT: linalg.yield %[[MAX]] : f32
// CHECK-NEXT: } -> tensor<4x6xf32>
// CHECK-NOT: i64
// CHECK: return
func.func @max_and_unused_index(%x: tensor<4x6x6xf32>) -> tensor<4x6xf32> {
  %lowest = arith.constant 0xFF800000 : f32
  %zero = arith.constant 0 : i64
  %e = tensor.empty() : tensor<4x6xf32>
  %max = linalg.fill ins(%lowest : f32) outs(%e : tensor<4x6xf32>) -> tensor<4x6xf32>
  %ei = tensor.empty() : tensor<4x6xi64>
  %index = linalg.fill ins(%zero : i64) outs(%ei : tensor<4x6xi64>) -> tensor<4x6xi64>
  %m:2 = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>],
                         iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x : tensor<4x6x6xf32>) outs(%max, %index : tensor<4x6xf32>, tensor<4x6xi64>) {
  ^bb0(%in: f32, %out: f32, %i: i64):
    %j = linalg.index 2 : index
    %k = arith.index_cast %j : index to i64
    %y = arith.maximumf %in, %out : f32
    %greater = arith.cmpf ogt, %in, %out : f32
    %z = arith.select %greater, %k, %i : i64
    linalg.yield %y, %z : f32, i64
  } -> (tensor<4x6xf32>, tensor<4x6xi64>)
  return %m#0 : tensor<4x6xf32>
}

// -----

// Both results used: unchanged.
// CHECK-LABEL: func.func @both_used
// CHECK: %[[M:.*]]:2 = linalg.generic
// CHECK: return %[[M]]#0, %[[M]]#1
func.func @both_used(%x: tensor<4x6xf32>) -> (tensor<4xf32>, tensor<4xi64>) {
  %lowest = arith.constant 0xFF800000 : f32
  %zero = arith.constant 0 : i64
  %e = tensor.empty() : tensor<4xf32>
  %max = linalg.fill ins(%lowest : f32) outs(%e : tensor<4xf32>) -> tensor<4xf32>
  %ei = tensor.empty() : tensor<4xi64>
  %index = linalg.fill ins(%zero : i64) outs(%ei : tensor<4xi64>) -> tensor<4xi64>
  %m:2 = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0)>],
                         iterator_types = ["parallel", "reduction"]}
      ins(%x : tensor<4x6xf32>) outs(%max, %index : tensor<4xf32>, tensor<4xi64>) {
  ^bb0(%in: f32, %out: f32, %i: i64):
    %j = linalg.index 1 : index
    %k = arith.index_cast %j : index to i64
    %y = arith.maximumf %in, %out : f32
    %greater = arith.cmpf ogt, %in, %out : f32
    %z = arith.select %greater, %k, %i : i64
    linalg.yield %y, %z : f32, i64
  } -> (tensor<4xf32>, tensor<4xi64>)
  return %m#0, %m#1 : tensor<4xf32>, tensor<4xi64>
}
