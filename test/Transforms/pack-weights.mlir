// RUN: nnforge-opt %s --nnf-pack-weights="panel=4 min-bytes=0" --split-input-file | FileCheck %s
// RUN: nnforge-opt %s --nnf-pack-weights="panel=4" --split-input-file | FileCheck %s --check-prefix=SMALL
// RUN: not nnforge-opt %s --nnf-pack-weights="panel=0" 2>&1 | FileCheck %s --check-prefix=PANEL
// RUN: nnforge-opt %s --nnf-pack-weights="panel=4 min-bytes=0 runtime-min-reuse=4" --split-input-file | FileCheck %s --check-prefix=RUNTIME

// PANEL: error: nnf-pack-weights: panel must be positive

// A matmul by a constant [K=2, N=8]: the weight stored as two panels of 4
// columns, [2, 2, 4], the matmul a generic with the column within a panel as
// its last loop, its result split likewise and collapsed back.
// CHECK-DAG: #[[X_MAP:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d2)>
// CHECK-DAG: #[[W_MAP:.*]] = affine_map<(d0, d1, d2, d3) -> (d1, d2, d3)>
// CHECK-DAG: #[[OUT_MAP:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>
// CHECK-LABEL: func.func @matmul
// CHECK-SAME: (%[[X:.*]]: tensor<3x2xf32>, %[[ACC:.*]]: tensor<3x8xf32>)
// CHECK: %[[PANELS:.*]] = arith.constant dense<{{\[\[\[}}0.000000e+00, 1.000000e+00, 2.000000e+00, 3.000000e+00], [8.000000e+00, 9.000000e+00, 1.000000e+01, 1.100000e+01]], {{\[\[}}4.000000e+00, 5.000000e+00, 6.000000e+00, 7.000000e+00], [1.200000e+01, 1.300000e+01, 1.400000e+01, 1.500000e+01]]]> : tensor<2x2x4xf32>
// CHECK: %[[SPLIT:.*]] = tensor.expand_shape %[[ACC]] {{\[\[}}0], [1, 2]] output_shape [3, 2, 4] : tensor<3x8xf32> into tensor<3x2x4xf32>
// CHECK: %[[R:.*]] = linalg.generic {indexing_maps = [#[[X_MAP]], #[[W_MAP]], #[[OUT_MAP]]], iterator_types = ["parallel", "parallel", "reduction", "parallel"]}
// CHECK-SAME: ins(%[[X]], %[[PANELS]] : tensor<3x2xf32>, tensor<2x2x4xf32>) outs(%[[SPLIT]] : tensor<3x2x4xf32>)
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK: %[[FLAT:.*]] = tensor.collapse_shape %[[R]] {{\[\[}}0], [1, 2]] : tensor<3x2x4xf32> into tensor<3x8xf32>
// CHECK: return %[[FLAT]]
// Smaller than the default 1 MiB: left alone.
// SMALL-LABEL: func.func @matmul
// SMALL: linalg.matmul
func.func @matmul(%x: tensor<3x2xf32>, %acc: tensor<3x8xf32>) -> tensor<3x8xf32> {
  %w = arith.constant dense<[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0]]> : tensor<2x8xf32>
  %r = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x8xf32>) outs(%acc : tensor<3x8xf32>) -> tensor<3x8xf32>
  return %r : tensor<3x8xf32>
}

// -----

// A contraction generic with a batch loop shared by both operands and the
// weight on the left: the panel index goes first, the batch and k follow.
// CHECK-DAG: #[[W_MAP:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d2, d0, d3, d4)>
// CHECK-DAG: #[[OUT_MAP:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d4)>
// CHECK-LABEL: func.func @batched
// CHECK: %[[PANELS:.*]] = arith.constant dense<{{.*}}> : tensor<2x2x1x4xf32>
// CHECK: linalg.generic {indexing_maps = [#[[W_MAP]], #{{.*}}, #[[OUT_MAP]]]
// CHECK-SAME: ins(%[[PANELS]], %{{.*}} : tensor<2x2x1x4xf32>, tensor<2x3x1xf32>) outs(%{{.*}} : tensor<2x3x2x4xf32>)
// CHECK: tensor.collapse_shape %{{.*}} {{\[\[}}0], [1], [2, 3]] : tensor<2x3x2x4xf32> into tensor<2x3x8xf32>
func.func @batched(%x: tensor<2x3x1xf32>, %acc: tensor<2x3x8xf32>) -> tensor<2x3x8xf32> {
  %w = arith.constant dense<[[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]], [[8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0]]]> : tensor<2x1x8xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(b, m, n, k) -> (b, k, n)>, affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, m, n)>],
                       iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%w, %x : tensor<2x1x8xf32>, tensor<2x3x1xf32>) outs(%acc : tensor<2x3x8xf32>) {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  } -> tensor<2x3x8xf32>
  return %r : tensor<2x3x8xf32>
}

// -----

// Left alone: a weight that is a function argument read by few rows
// (packing copies it on every call: 3 rows here, fewer than
// runtime-min-reuse), columns that are no multiple of the panel, or one
// panel.
// RUNTIME-LABEL: func.func @argument
// RUNTIME: linalg.matmul
// CHECK-LABEL: func.func @argument
// CHECK: linalg.matmul
// CHECK-LABEL: func.func @ragged
// CHECK: linalg.matmul
// CHECK-LABEL: func.func @one_panel
// CHECK: linalg.matmul
func.func @argument(%x: tensor<3x2xf32>, %w: tensor<2x8xf32>, %acc: tensor<3x8xf32>) -> tensor<3x8xf32> {
  %r = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x8xf32>) outs(%acc : tensor<3x8xf32>) -> tensor<3x8xf32>
  return %r : tensor<3x8xf32>
}
func.func @ragged(%x: tensor<3x2xf32>, %acc: tensor<3x6xf32>) -> tensor<3x6xf32> {
  %w = arith.constant dense<[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [8.0, 9.0, 10.0, 11.0, 12.0, 13.0]]> : tensor<2x6xf32>
  %r = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x6xf32>) outs(%acc : tensor<3x6xf32>) -> tensor<3x6xf32>
  return %r : tensor<3x6xf32>
}
func.func @one_panel(%x: tensor<3x2xf32>, %acc: tensor<3x4xf32>) -> tensor<3x4xf32> {
  %w = arith.constant dense<[[0.0, 1.0, 2.0, 3.0], [8.0, 9.0, 10.0, 11.0]]> : tensor<2x4xf32>
  %r = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x4xf32>) outs(%acc : tensor<3x4xf32>) -> tensor<3x4xf32>
  return %r : tensor<3x4xf32>
}

// -----

// The same weight read by two matmuls: packed once (the unpacked weight,
// now unused, is erased).
// CHECK-LABEL: func.func @shared
// CHECK-COUNT-1: arith.constant dense<{{.*}}> : tensor<2x2x4xf32>
// CHECK-NOT: arith.constant dense
// CHECK-COUNT-2: linalg.generic
func.func @shared(%x: tensor<3x2xf32>, %y: tensor<5x2xf32>, %acc: tensor<3x8xf32>, %acc2: tensor<5x8xf32>) -> (tensor<3x8xf32>, tensor<5x8xf32>) {
  %w = arith.constant dense<[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0]]> : tensor<2x8xf32>
  %r = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x8xf32>) outs(%acc : tensor<3x8xf32>) -> tensor<3x8xf32>
  %s = linalg.matmul ins(%y, %w : tensor<5x2xf32>, tensor<2x8xf32>) outs(%acc2 : tensor<5x8xf32>) -> tensor<5x8xf32>
  return %r, %s : tensor<3x8xf32>, tensor<5x8xf32>
}

// -----

// A weight computed at run time (here an argument) whose elements are each
// read by at least runtime-min-reuse rows is copied into panels on every
// call, by a generic reading [K, N/4, 4] (each panel row one run), right
// after its definition and once for all its users, and the products read
// the panels. By default (2048 rows) it is left alone.
// CHECK-LABEL: func.func @argument_reused
// CHECK: linalg.matmul
// RUNTIME-LABEL: func.func @argument_reused
// RUNTIME-SAME: (%[[X:.*]]: tensor<4x2xf32>, %[[W:.*]]: tensor<2x8xf32>
// RUNTIME: %[[SPLIT:.*]] = tensor.expand_shape %[[W]] {{\[\[}}0], [1, 2]] output_shape [2, 2, 4]
// RUNTIME: %[[PANELS:.*]] = linalg.generic {{.*}} ins(%[[SPLIT]] : tensor<2x2x4xf32>) outs(%{{.*}} : tensor<2x2x4xf32>)
// RUNTIME-NEXT: ^bb0(%[[IN:.*]]: f32, %{{.*}}: f32):
// RUNTIME-NEXT: linalg.yield %[[IN]]
// RUNTIME-NOT: tensor.expand_shape %[[W]]
// RUNTIME: linalg.generic {{.*}} ins(%[[X]], %[[PANELS]] : tensor<4x2xf32>, tensor<2x2x4xf32>)
// RUNTIME-NOT: tensor.expand_shape %[[W]]
// RUNTIME: linalg.generic {{.*}} ins(%[[X]], %[[PANELS]] : tensor<4x2xf32>, tensor<2x2x4xf32>)
// RUNTIME-NOT: linalg.matmul
func.func @argument_reused(%x: tensor<4x2xf32>, %w: tensor<2x8xf32>, %acc: tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>) {
  %r = linalg.matmul ins(%x, %w : tensor<4x2xf32>, tensor<2x8xf32>) outs(%acc : tensor<4x8xf32>) -> tensor<4x8xf32>
  %s = linalg.matmul ins(%x, %w : tensor<4x2xf32>, tensor<2x8xf32>) outs(%r : tensor<4x8xf32>) -> tensor<4x8xf32>
  return %r, %s : tensor<4x8xf32>, tensor<4x8xf32>
}

// -----

// Element reads of a constant packed read the panels ([.., n] is
// [n / 4, .., n % 4]), and the constant goes: the weight is stored once.
// CHECK-LABEL: func.func @reads_follow_panels
// CHECK-SAME: (%[[X:.*]]: tensor<3x2xf32>, %[[ACC:.*]]: tensor<3x8xf32>, %[[I:.*]]: index, %[[J:.*]]: index)
// CHECK: %[[PANELS:.*]] = arith.constant dense<{{.*}}> : tensor<2x2x4xf32>
// CHECK-NOT: tensor<2x8xf32>
// CHECK: %[[FOUR:.*]] = arith.constant 4 : index
// CHECK: %[[P:.*]] = arith.divui %[[J]], %[[FOUR]] : index
// CHECK: %[[COLUMN:.*]] = arith.remui %[[J]], %[[FOUR]] : index
// CHECK: tensor.extract %[[PANELS]][%[[P]], %[[I]], %[[COLUMN]]] : tensor<2x2x4xf32>
func.func @reads_follow_panels(%x: tensor<3x2xf32>, %acc: tensor<3x8xf32>, %i: index, %j: index) -> (tensor<3x8xf32>, f32) {
  %w = arith.constant dense<[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0]]> : tensor<2x8xf32>
  %e = tensor.extract %w[%i, %j] : tensor<2x8xf32>
  %r = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x8xf32>) outs(%acc : tensor<3x8xf32>) -> tensor<3x8xf32>
  return %r, %e : tensor<3x8xf32>, f32
}

// -----

// A constant that records the weight it is a transposed copy of
// (nnf-fold-constant-transposes: W [N=8, K=2] transposed) is packed from
// that weight, and is gone: its own data (zeros here, to show which is
// read) is not.
// CHECK-LABEL: func.func @packed_from_source
// CHECK-NOT: tensor<2x8xf32>
// CHECK: arith.constant dense<{{\[\[\[}}0.000000e+00, 1.000000e+00, 2.000000e+00, 3.000000e+00], [8.000000e+00, 9.000000e+00, 1.000000e+01, 1.100000e+01]], {{\[\[}}4.000000e+00, 5.000000e+00, 6.000000e+00, 7.000000e+00], [1.200000e+01, 1.300000e+01, 1.400000e+01, 1.500000e+01]]]> : tensor<2x2x4xf32>
// CHECK-NOT: tensor<2x8xf32>
// CHECK: return
func.func @packed_from_source(%x: tensor<3x2xf32>, %acc: tensor<3x8xf32>) -> tensor<3x8xf32> {
  %w = arith.constant {nnf.transpose_permutation = array<i64: 1, 0>, nnf.transpose_source = dense_resource<w_nk> : tensor<8x2xf32>} dense<0.0> : tensor<2x8xf32>
  %r = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x8xf32>) outs(%acc : tensor<3x8xf32>) -> tensor<3x8xf32>
  return %r : tensor<3x8xf32>
}

// The same source read as [b=2, k=1, n=8] (dimension d of the constant is
// dimension permutation[d] of the source): the panels follow the batch.
// CHECK-LABEL: func.func @packed_from_source_batched
// CHECK: arith.constant dense<{{\[\[\[\[}}0.000000e+00, 1.000000e+00, 2.000000e+00, 3.000000e+00]], {{\[\[}}8.000000e+00, 9.000000e+00, 1.000000e+01, 1.100000e+01]]], {{\[\[\[}}4.000000e+00, 5.000000e+00, 6.000000e+00, 7.000000e+00]], {{\[\[}}1.200000e+01, 1.300000e+01, 1.400000e+01, 1.500000e+01]]]]> : tensor<2x2x1x4xf32>
func.func @packed_from_source_batched(%x: tensor<2x3x1xf32>, %acc: tensor<2x3x8xf32>) -> tensor<2x3x8xf32> {
  %w = arith.constant {nnf.transpose_permutation = array<i64: 1, 2, 0>, nnf.transpose_source = dense_resource<w_nbk> : tensor<8x2x1xf32>} dense<0.0> : tensor<2x1x8xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(b, m, n, k) -> (b, k, n)>, affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, m, n)>],
                       iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%w, %x : tensor<2x1x8xf32>, tensor<2x3x1xf32>) outs(%acc : tensor<2x3x8xf32>) {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  } -> tensor<2x3x8xf32>
  return %r : tensor<2x3x8xf32>
}

{-#
  dialect_resources: {
    builtin: {
      w_nk: "0x0400000000000000000000410000803F000010410000004000002041000040400000304100008040000040410000A040000050410000C040000060410000E04000007041",
      w_nbk: "0x0400000000000000000000410000803F000010410000004000002041000040400000304100008040000040410000A040000050410000C040000060410000E04000007041"
    }
  }
#-}

// -----

// A constant reaching the matmul through a collapse_shape (an im2col'd
// convolution's filter, [C, KH*KW, F] as [C*KH*KW, F]) is packed like a
// constant: the collapsed constant is stored as panels, the original freed.
// CHECK-LABEL: func.func @collapsed_weight(
// RUNTIME-LABEL: func.func @collapsed_weight(
// CHECK-NOT: tensor.collapse_shape
// CHECK: %[[PANELS:.*]] = arith.constant dense<{{\[\[\[}}0.000000e+00, 1.000000e+00, 2.000000e+00, 3.000000e+00], [8.000000e+00, 9.000000e+00, 1.000000e+01, 1.100000e+01]], {{\[\[}}4.000000e+00, 5.000000e+00, 6.000000e+00, 7.000000e+00], [1.200000e+01, 1.300000e+01, 1.400000e+01, 1.500000e+01]]]> : tensor<2x2x4xf32>
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[PANELS]] : tensor<3x2xf32>, tensor<2x2x4xf32>)
func.func @collapsed_weight(%x: tensor<3x2xf32>, %acc: tensor<3x8xf32>) -> tensor<3x8xf32> {
  %w = arith.constant dense<[[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]], [[8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0]]]> : tensor<2x1x8xf32>
  %flat = tensor.collapse_shape %w [[0, 1], [2]] : tensor<2x1x8xf32> into tensor<2x8xf32>
  %r = linalg.matmul ins(%x, %flat : tensor<3x2xf32>, tensor<2x8xf32>) outs(%acc : tensor<3x8xf32>) -> tensor<3x8xf32>
  return %r : tensor<3x8xf32>
}

// -----

// A collapsed constant that another op reads too stays as it is (folding it
// would store the data twice); the matmul reads it in place.
// CHECK-LABEL: func.func @collapsed_weight_read_elsewhere
// CHECK: tensor.collapse_shape
// CHECK: linalg.matmul
func.func @collapsed_weight_read_elsewhere(%x: tensor<3x2xf32>, %acc: tensor<3x8xf32>) -> (tensor<3x8xf32>, tensor<2x8xf32>) {
  %w = arith.constant dense<[[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]], [[8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0]]]> : tensor<2x1x8xf32>
  %flat = tensor.collapse_shape %w [[0, 1], [2]] : tensor<2x1x8xf32> into tensor<2x8xf32>
  %r = linalg.matmul ins(%x, %flat : tensor<3x2xf32>, tensor<2x8xf32>) outs(%acc : tensor<3x8xf32>) -> tensor<3x8xf32>
  return %r, %flat : tensor<3x8xf32>, tensor<2x8xf32>
}
