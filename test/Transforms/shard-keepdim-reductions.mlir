// RUN: nnforge-opt %s --pass-pipeline="builtin.module(func.func(linalg-fold-unit-extent-dims,canonicalize,nnf-erase-unused-linalg-results,sharding-propagation{traversal=forward-backward}),nnf-verify-sharding,func.func(shard-partition),canonicalize)" | FileCheck %s

// The first steps of the partitioning of models split over ranks
// (python/nnforge/distributed/partition.py) on torch-mlir's LayerNorm and
// softmax. LayerNorm's mean is a keepdim reduction: its result is
// [1, 6, 1], indexed by (d0, d1, 0), which upstream's linalg sharding
// cannot map (no sharding option); upstream's linalg-fold-unit-extent-dims
// removes the unit dimensions. Softmax's maximum also computes an unused
// index, which would get no sharding; nnf-erase-unused-linalg-results drops
// it. With the sequence split over 2 ranks, each rank normalizes its 3 rows
// and takes their maxima, with no collective.

// CHECK-LABEL: func.func @mean_centered_and_max
// CHECK-SAME: (%[[X:.*]]: tensor<1x3x32xf32>) -> (tensor<1x3x32xf32>, tensor<1x3xf32>)
// CHECK: %[[ROWS:.*]] = tensor.collapse_shape %[[X]] {{\[}}[0, 1], [2]] : tensor<1x3x32xf32> into tensor<3x32xf32>
// CHECK: %[[SUM:.*]] = linalg.generic
// CHECK-SAME: ins(%[[ROWS]] : tensor<3x32xf32>) outs(%{{.*}} : tensor<3xf32>)
// CHECK: arith.addf
// CHECK: linalg.generic
// CHECK-SAME: outs(%{{.*}} : tensor<3x32xf32>)
// CHECK: arith.subf
// CHECK: %[[MAX:.*]] = linalg.generic
// CHECK-SAME: outs(%{{.*}} : tensor<3xf32>)
// CHECK-NEXT: ^bb0(%{{.*}}: f32, %{{.*}}: f32):
// CHECK-NEXT: arith.maximumf
// CHECK-NOT: shard.all
// CHECK-NOT: i64
// CHECK: return
shard.grid @grid(shape = 2)
func.func @mean_centered_and_max(%arg0: tensor<1x6x32xf32>) -> (tensor<1x6x32xf32>, tensor<1x6xf32>) {
  %rows = shard.sharding @grid split_axes = [[], [0]] : !shard.sharding
  %x = shard.shard %arg0 to %rows annotate_for_users : tensor<1x6x32xf32>
  %zero = arith.constant 0.000000e+00 : f32
  %lowest = arith.constant 0xFF800000 : f32
  %n = arith.constant 3.200000e+01 : f32
  %zero_i64 = arith.constant 0 : i64
  %e1 = tensor.empty() : tensor<1x6x1xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e1 : tensor<1x6x1xf32>) -> tensor<1x6x1xf32>
  %sum = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, 0)>],
                         iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x : tensor<1x6x32xf32>) outs(%acc : tensor<1x6x1xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.addf %in, %out : f32
    linalg.yield %s : f32
  } -> tensor<1x6x1xf32>
  %e = tensor.empty() : tensor<1x6x32xf32>
  %centered = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, 0)>,
                                               affine_map<(d0, d1, d2) -> (d0, d1, d2)>],
                              iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%x, %sum : tensor<1x6x32xf32>, tensor<1x6x1xf32>) outs(%e : tensor<1x6x32xf32>) {
  ^bb0(%in: f32, %total: f32, %out: f32):
    %mean = arith.divf %total, %n : f32
    %d = arith.subf %in, %mean : f32
    linalg.yield %d : f32
  } -> tensor<1x6x32xf32>
  %e2 = tensor.empty() : tensor<1x6xf32>
  %max0 = linalg.fill ins(%lowest : f32) outs(%e2 : tensor<1x6xf32>) -> tensor<1x6xf32>
  %e3 = tensor.empty() : tensor<1x6xi64>
  %index0 = linalg.fill ins(%zero_i64 : i64) outs(%e3 : tensor<1x6xi64>) -> tensor<1x6xi64>
  %m:2 = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>,
                                          affine_map<(d0, d1, d2) -> (d0, d1)>],
                         iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x : tensor<1x6x32xf32>) outs(%max0, %index0 : tensor<1x6xf32>, tensor<1x6xi64>) {
  ^bb0(%in: f32, %out: f32, %i: i64):
    %j = linalg.index 2 : index
    %k = arith.index_cast %j : index to i64
    %y = arith.maximumf %in, %out : f32
    %greater = arith.cmpf ogt, %in, %out : f32
    %z = arith.select %greater, %k, %i : i64
    linalg.yield %y, %z : f32, i64
  } -> (tensor<1x6xf32>, tensor<1x6xi64>)
  %r0 = shard.shard %centered to %rows : tensor<1x6x32xf32>
  %r1 = shard.shard %m#0 to %rows : tensor<1x6xf32>
  return %r0, %r1 : tensor<1x6x32xf32>, tensor<1x6xf32>
}
