// RUN: nnforge-opt %s --nnf-slice-rows-before-collapse --split-input-file | FileCheck %s

// A tile loop stepping by whole rows (224 = 4 rows of 56): the slice is
// taken of the rows, then collapsed.
// CHECK: #[[ROW_OF:[a-z0-9]+]] = affine_map<(d0) -> (d0 floordiv 56)>
// CHECK-LABEL: func.func @rows_of_a_tile_loop
// CHECK-SAME: (%[[X:.*]]: tensor<1x192x56x56xf32>,
// CHECK: scf.for %[[I:[a-z0-9]+]] =
// CHECK: %[[ROW:.*]] = affine.apply #[[ROW_OF]](%[[I]])
// CHECK: %[[ROWS:.*]] = tensor.extract_slice %[[X]][0, 0, %[[ROW]], 0] [1, 192, 4, 56] [1, 1, 1, 1] : tensor<1x192x56x56xf32> to tensor<1x192x4x56xf32>
// CHECK: tensor.collapse_shape %[[ROWS]] {{\[\[}}0], [1], [2, 3]] : tensor<1x192x4x56xf32> into tensor<1x192x224xf32>
func.func @rows_of_a_tile_loop(%x: tensor<1x192x56x56xf32>, %init: tensor<1x192x3136xf32>) -> tensor<1x192x3136xf32> {
  %c0 = arith.constant 0 : index
  %c224 = arith.constant 224 : index
  %c3136 = arith.constant 3136 : index
  %flat = tensor.collapse_shape %x [[0], [1], [2, 3]] : tensor<1x192x56x56xf32> into tensor<1x192x3136xf32>
  %r = scf.for %i = %c0 to %c3136 step %c224 iter_args(%acc = %init) -> tensor<1x192x3136xf32> {
    %tile = tensor.extract_slice %flat[0, 0, %i] [1, 192, 224] [1, 1, 1] : tensor<1x192x3136xf32> to tensor<1x192x224xf32>
    %u = tensor.insert_slice %tile into %acc[0, 0, %i] [1, 192, 224] [1, 1, 1] : tensor<1x192x224xf32> into tensor<1x192x3136xf32>
    scf.yield %u : tensor<1x192x3136xf32>
  }
  return %r : tensor<1x192x3136xf32>
}

// -----

// The same in a parallel loop, and through an affine map of a multiple.
// CHECK: #[[TIMES_4:[a-z0-9]+]] = affine_map<()[s0] -> (s0 * 4)>
// CHECK-LABEL: func.func @rows_of_a_parallel_loop
// CHECK: scf.forall
// CHECK: tensor.extract_slice %{{.*}}[0, 0, %{{.*}}, 0] [1, 8, 2, 56] [1, 1, 1, 1] : tensor<1x8x56x56xf32> to tensor<1x8x2x56xf32>
// CHECK: tensor.collapse_shape
// CHECK-LABEL: func.func @rows_at_an_affine_multiple
// CHECK: %[[ROW:.*]] = affine.apply #[[TIMES_4]]()[%{{.*}}]
// CHECK: tensor.extract_slice %{{.*}}[0, 0, %[[ROW]], 0] [1, 8, 4, 56]
func.func @rows_of_a_parallel_loop(%x: tensor<1x8x56x56xf32>, %init: tensor<1x8x3136xf32>) -> tensor<1x8x3136xf32> {
  %flat = tensor.collapse_shape %x [[0], [1], [2, 3]] : tensor<1x8x56x56xf32> into tensor<1x8x3136xf32>
  %r = scf.forall (%i) = (0) to (3136) step (112) shared_outs(%acc = %init) -> tensor<1x8x3136xf32> {
    %tile = tensor.extract_slice %flat[0, 0, %i] [1, 8, 112] [1, 1, 1] : tensor<1x8x3136xf32> to tensor<1x8x112xf32>
    scf.forall.in_parallel {
      tensor.parallel_insert_slice %tile into %acc[0, 0, %i] [1, 8, 112] [1, 1, 1] : tensor<1x8x112xf32> into tensor<1x8x3136xf32>
    }
  }
  return %r : tensor<1x8x3136xf32>
}
func.func @rows_at_an_affine_multiple(%x: tensor<1x8x56x56xf32>, %band: index) -> tensor<1x8x224xf32> {
  %flat = tensor.collapse_shape %x [[0], [1], [2, 3]] : tensor<1x8x56x56xf32> into tensor<1x8x3136xf32>
  %offset = affine.apply affine_map<(d0) -> (d0 * 224)>(%band)
  %tile = tensor.extract_slice %flat[0, 0, %offset] [1, 8, 224] [1, 1, 1] : tensor<1x8x3136xf32> to tensor<1x8x224xf32>
  return %tile : tensor<1x8x224xf32>
}

// -----

// Offsets not known to be whole rows, and tiles that are no whole rows,
// stay slices of the collapsed tensor.
// CHECK-LABEL: func.func @not_whole_rows
// CHECK: %[[FLAT:.*]] = tensor.collapse_shape
// CHECK: tensor.extract_slice %[[FLAT]]
// CHECK: tensor.extract_slice %[[FLAT]]
// CHECK: tensor.extract_slice %[[FLAT]]
// CHECK-NOT: tensor.collapse_shape
func.func @not_whole_rows(%x: tensor<1x8x56x56xf32>, %i: index) -> (tensor<1x8x224xf32>, tensor<1x8x100xf32>, tensor<1x8x224xf32>) {
  %flat = tensor.collapse_shape %x [[0], [1], [2, 3]] : tensor<1x8x56x56xf32> into tensor<1x8x3136xf32>
  %half_row = affine.apply affine_map<(d0) -> (d0 * 28)>(%i)
  %a = tensor.extract_slice %flat[0, 0, %half_row] [1, 8, 224] [1, 1, 1] : tensor<1x8x3136xf32> to tensor<1x8x224xf32>
  %b = tensor.extract_slice %flat[0, 0, 0] [1, 8, 100] [1, 1, 1] : tensor<1x8x3136xf32> to tensor<1x8x100xf32>
  %unknown = tensor.extract_slice %flat[0, 0, %i] [1, 8, 224] [1, 1, 1] : tensor<1x8x3136xf32> to tensor<1x8x224xf32>
  return %a, %b, %unknown : tensor<1x8x224xf32>, tensor<1x8x100xf32>, tensor<1x8x224xf32>
}
