// RUN: nnforge-opt %s --nnf-fold-constant-transposes --split-input-file | FileCheck %s

// A 2x3 dense constant transposed to 3x2.
// CHECK-LABEL: func.func @dense
// CHECK: %[[C:.*]] = arith.constant dense<{{\[\[}}1.000000e+00, 4.000000e+00], [2.000000e+00, 5.000000e+00], [3.000000e+00, 6.000000e+00]]> : tensor<3x2xf32>
// CHECK-NOT: linalg.transpose
// CHECK: return %[[C]]
func.func @dense() -> tensor<3x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %e = tensor.empty() : tensor<3x2xf32>
  %t = linalg.transpose ins(%w : tensor<2x3xf32>) outs(%e : tensor<3x2xf32>) permutation = [1, 0]
  return %t : tensor<3x2xf32>
}

// -----

// A dense_resource blob (how importers store weights), rank 3. The
// transposed constant records its source and permutation (nnf-pack-weights
// packs from the source once the copy is freed).
// CHECK-LABEL: func.func @resource
// CHECK: arith.constant {nnf.transpose_permutation = array<i64: 2, 0, 1>, nnf.transpose_source = dense_resource<blob> : tensor<1x2x2xi32>} dense<{{\[\[\[}}1, 3]], {{\[\[}}2, 4]]]> : tensor<2x1x2xi32>
// CHECK-NOT: linalg.transpose
func.func @resource() -> tensor<2x1x2xi32> {
  %w = arith.constant dense_resource<blob> : tensor<1x2x2xi32>
  %e = tensor.empty() : tensor<2x1x2xi32>
  %t = linalg.transpose ins(%w : tensor<1x2x2xi32>) outs(%e : tensor<2x1x2xi32>) permutation = [2, 0, 1]
  return %t : tensor<2x1x2xi32>
}

{-#
  dialect_resources: {
    builtin: {
      blob: "0x0400000001000000020000000300000004000000"
    }
  }
#-}

// -----

// A transpose of a function argument stays.
// CHECK-LABEL: func.func @argument
// CHECK: linalg.transpose
func.func @argument(%w: tensor<2x3xf32>) -> tensor<3x2xf32> {
  %e = tensor.empty() : tensor<3x2xf32>
  %t = linalg.transpose ins(%w : tensor<2x3xf32>) outs(%e : tensor<3x2xf32>) permutation = [1, 0]
  return %t : tensor<3x2xf32>
}

// -----

// Element reads of a constant also transposed (an embedding table that is
// the output projection too) read the transposed constant, defined where
// the source was (before the read), which is then unused: stored once.
// CHECK-LABEL: func.func @reads_follow
// CHECK-SAME: (%[[I:.*]]: index, %[[J:.*]]: index)
// CHECK: %[[T:.*]] = arith.constant dense<{{\[\[}}1.000000e+00, 4.000000e+00], [2.000000e+00, 5.000000e+00], [3.000000e+00, 6.000000e+00]]> : tensor<3x2xf32>
// CHECK-NOT: tensor<2x3xf32>
// CHECK: %[[X:.*]] = tensor.extract %[[T]][%[[J]], %[[I]]] : tensor<3x2xf32>
// CHECK-NOT: linalg.transpose
// CHECK: return %[[X]], %[[T]]
func.func @reads_follow(%i: index, %j: index) -> (f32, tensor<3x2xf32>) {
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %x = tensor.extract %w[%i, %j] : tensor<2x3xf32>
  %e = tensor.empty() : tensor<3x2xf32>
  %t = linalg.transpose ins(%w : tensor<2x3xf32>) outs(%e : tensor<3x2xf32>) permutation = [1, 0]
  return %x, %t : f32, tensor<3x2xf32>
}

// -----

// A constant with another use than element reads keeps it: both stay.
// CHECK-LABEL: func.func @other_use_keeps_source
// CHECK-DAG: arith.constant dense<{{.*}}> : tensor<3x2xf32>
// CHECK-DAG: %[[W:.*]] = arith.constant dense<{{.*}}> : tensor<2x3xf32>
// CHECK: tensor.extract %[[W]]
func.func @other_use_keeps_source(%i: index, %j: index) -> (f32, tensor<3x2xf32>, tensor<2x3xf32>) {
  %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %x = tensor.extract %w[%i, %j] : tensor<2x3xf32>
  %e = tensor.empty() : tensor<3x2xf32>
  %t = linalg.transpose ins(%w : tensor<2x3xf32>) outs(%e : tensor<3x2xf32>) permutation = [1, 0]
  return %x, %t, %w : f32, tensor<3x2xf32>, tensor<2x3xf32>
}
