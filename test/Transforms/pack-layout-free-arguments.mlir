// RUN: nnforge-opt %s --nnf-pack-layout-free-arguments="panel=4 min-bytes=0" --split-input-file | FileCheck %s
// RUN: nnforge-opt %s --nnf-pack-layout-free-arguments="panel=4" --split-input-file | FileCheck %s --check-prefix=SMALL
// RUN: not nnforge-opt %s --nnf-pack-layout-free-arguments="panel=0" 2>&1 | FileCheck %s --check-prefix=PANEL

// PANEL: error: nnf-pack-layout-free-arguments: panel must be positive

// A weight [K=2, N=8] whose layout the caller chooses, read by two matmuls
// (3 rows each: nnf-pack-weights would leave it alone): the argument is
// taken as two panels of 4 columns, [2, 2, 4], in place (no copy), and
// says so; the matmuls read the panels. The input before it keeps its type
// and attributes.
// CHECK-DAG: #[[X_MAP:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d2)>
// CHECK-DAG: #[[W_MAP:.*]] = affine_map<(d0, d1, d2, d3) -> (d1, d2, d3)>
// CHECK-DAG: #[[OUT_MAP:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>
// CHECK-LABEL: func.func @matmuls
// CHECK-SAME: (%[[X:.*]]: tensor<3x2xf32> {bufferization.writable = false}, %[[W:.*]]: tensor<2x2x4xf32> {bufferization.writable = false, nnf.panels = 4 : i64}, %[[ACC:.*]]: tensor<3x8xf32>)
// CHECK-SAME: -> (tensor<3x8xf32>, tensor<3x8xf32>)
// CHECK-NOT: linalg.matmul
// CHECK: %[[SPLIT:.*]] = tensor.expand_shape %[[ACC]] {{\[\[}}0], [1, 2]] output_shape [3, 2, 4] : tensor<3x8xf32> into tensor<3x2x4xf32>
// CHECK: %[[R:.*]] = linalg.generic {indexing_maps = [#[[X_MAP]], #[[W_MAP]], #[[OUT_MAP]]], iterator_types = ["parallel", "parallel", "reduction", "parallel"]}
// CHECK-SAME: ins(%[[X]], %[[W]] : tensor<3x2xf32>, tensor<2x2x4xf32>) outs(%[[SPLIT]] : tensor<3x2x4xf32>)
// CHECK: %[[FLAT:.*]] = tensor.collapse_shape %[[R]] {{\[\[}}0], [1, 2]] : tensor<3x2x4xf32> into tensor<3x8xf32>
// CHECK: linalg.generic {{.*}} ins(%[[X]], %[[W]] : tensor<3x2xf32>, tensor<2x2x4xf32>)
// CHECK-NOT: linalg.matmul
// CHECK: return
// Smaller than the default 1 MiB: left alone, still marked.
// SMALL-LABEL: func.func @matmuls
// SMALL-SAME: tensor<2x8xf32> {bufferization.writable = false, nnf.layout_free}
// SMALL: linalg.matmul
func.func @matmuls(%x: tensor<3x2xf32> {bufferization.writable = false}, %w: tensor<2x8xf32> {bufferization.writable = false, nnf.layout_free}, %acc: tensor<3x8xf32>) -> (tensor<3x8xf32>, tensor<3x8xf32>) {
  %r = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x8xf32>) outs(%acc : tensor<3x8xf32>) -> tensor<3x8xf32>
  %s = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x8xf32>) outs(%r : tensor<3x8xf32>) -> tensor<3x8xf32>
  return %r, %s : tensor<3x8xf32>, tensor<3x8xf32>
}

// -----

// Left alone: an argument without the marker, a marked one that something
// else reads too (its type cannot change under that reader), one read as
// the left operand, and one whose columns are no multiple of the panel.
// CHECK-LABEL: func.func @unmarked
// CHECK-SAME: %{{.*}}: tensor<2x8xf32>,
// CHECK: linalg.matmul
// CHECK-LABEL: func.func @read_otherwise
// CHECK-SAME: tensor<2x8xf32> {nnf.layout_free}
// CHECK: linalg.matmul
// CHECK-LABEL: func.func @left_operand
// CHECK-SAME: tensor<3x2xf32> {nnf.layout_free}
// CHECK: linalg.matmul
// CHECK-LABEL: func.func @ragged
// CHECK-SAME: tensor<2x6xf32> {nnf.layout_free}
// CHECK: linalg.matmul
func.func @unmarked(%x: tensor<3x2xf32>, %w: tensor<2x8xf32>, %acc: tensor<3x8xf32>) -> tensor<3x8xf32> {
  %r = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x8xf32>) outs(%acc : tensor<3x8xf32>) -> tensor<3x8xf32>
  return %r : tensor<3x8xf32>
}
func.func @read_otherwise(%x: tensor<3x2xf32>, %w: tensor<2x8xf32> {nnf.layout_free}, %acc: tensor<3x8xf32>, %i: index) -> (tensor<3x8xf32>, f32) {
  %e = tensor.extract %w[%i, %i] : tensor<2x8xf32>
  %r = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x8xf32>) outs(%acc : tensor<3x8xf32>) -> tensor<3x8xf32>
  return %r, %e : tensor<3x8xf32>, f32
}
func.func @left_operand(%x: tensor<3x2xf32> {nnf.layout_free}, %w: tensor<2x8xf32>, %acc: tensor<3x8xf32>) -> tensor<3x8xf32> {
  %r = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x8xf32>) outs(%acc : tensor<3x8xf32>) -> tensor<3x8xf32>
  return %r : tensor<3x8xf32>
}
func.func @ragged(%x: tensor<3x2xf32>, %w: tensor<2x6xf32> {nnf.layout_free}, %acc: tensor<3x6xf32>) -> tensor<3x6xf32> {
  %r = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x6xf32>) outs(%acc : tensor<3x6xf32>) -> tensor<3x6xf32>
  return %r : tensor<3x6xf32>
}
