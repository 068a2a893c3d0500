// RUN: nnforge-opt %s --canonicalize --split-input-file | FileCheck %s

// CHECK-LABEL: func @activation_none_folds
// CHECK-SAME: (%[[X:.*]]: tensor<4x?xf32>)
// CHECK-NEXT: return %[[X]]
func.func @activation_none_folds(%x: tensor<4x?xf32>) -> tensor<4x?xf32> {
  %0 = nnf.activation none %x : tensor<4x?xf32>
  return %0 : tensor<4x?xf32>
}

// -----

// CHECK-LABEL: func @activation_into_linear
// CHECK: %[[Y:.*]] = nnf.linear %{{.*}}, %{{.*}}, %{{.*}} activation gelu :
// CHECK-NOT: nnf.activation
// CHECK: return %[[Y]]
func.func @activation_into_linear(%x: tensor<2x8xf32>, %w: tensor<4x8xf32>, %b: tensor<4xf32>) -> tensor<2x4xf32> {
  %0 = nnf.linear %x, %w, %b : (tensor<2x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  %1 = nnf.activation gelu %0 : tensor<2x4xf32>
  return %1 : tensor<2x4xf32>
}

// -----

// CHECK-LABEL: func @activation_into_conv2d
// CHECK: %[[Y:.*]] = nnf.conv2d %{{.*}}, %{{.*}} padding [1, 1, 1, 1] activation relu6 :
// CHECK-NOT: nnf.activation
// CHECK: return %[[Y]]
func.func @activation_into_conv2d(%x: tensor<1x3x8x8xf16>, %f: tensor<4x3x3x3xf16>) -> tensor<1x4x8x8xf16> {
  %0 = nnf.conv2d %x, %f padding [1, 1, 1, 1] : (tensor<1x3x8x8xf16>, tensor<4x3x3x3xf16>) -> tensor<1x4x8x8xf16>
  %1 = nnf.activation relu6 %0 : tensor<1x4x8x8xf16>
  return %1 : tensor<1x4x8x8xf16>
}

// -----

// The linear result is used twice: fusing would change the other user.
// CHECK-LABEL: func @shared_producer_not_fused
// CHECK: %[[Y:.*]] = nnf.linear %{{.*}}, %{{.*}} :
// CHECK: %[[A:.*]] = nnf.activation relu %[[Y]]
// CHECK: return %[[A]], %[[Y]]
func.func @shared_producer_not_fused(%x: tensor<2x8xf32>, %w: tensor<4x8xf32>) -> (tensor<2x4xf32>, tensor<2x4xf32>) {
  %0 = nnf.linear %x, %w : (tensor<2x8xf32>, tensor<4x8xf32>) -> tensor<2x4xf32>
  %1 = nnf.activation relu %0 : tensor<2x4xf32>
  return %1, %0 : tensor<2x4xf32>, tensor<2x4xf32>
}

// -----

// A producer that already has an activation keeps it: the two do not compose.
// CHECK-LABEL: func @activated_producer_not_fused
// CHECK: nnf.linear %{{.*}}, %{{.*}} activation tanh
// CHECK: nnf.activation sigmoid
func.func @activated_producer_not_fused(%x: tensor<2x8xf32>, %w: tensor<4x8xf32>) -> tensor<2x4xf32> {
  %0 = nnf.linear %x, %w activation tanh : (tensor<2x8xf32>, tensor<4x8xf32>) -> tensor<2x4xf32>
  %1 = nnf.activation sigmoid %0 : tensor<2x4xf32>
  return %1 : tensor<2x4xf32>
}

// -----

// Other producers are left alone.
// CHECK-LABEL: func @softmax_producer_not_fused
// CHECK: nnf.softmax
// CHECK: nnf.activation silu
func.func @softmax_producer_not_fused(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %0 = nnf.softmax %x axis 1 : tensor<2x8xf32>
  %1 = nnf.activation silu %0 : tensor<2x8xf32>
  return %1 : tensor<2x8xf32>
}

// -----

// Unused nnf ops are pure and get erased.
// CHECK-LABEL: func @dead_ops_erased
// CHECK-NOT: nnf.
// CHECK: return
func.func @dead_ops_erased(%x: tensor<2x8xf32>, %w: tensor<4x8xf32>) {
  %0 = nnf.linear %x, %w : (tensor<2x8xf32>, tensor<4x8xf32>) -> tensor<2x4xf32>
  %1 = nnf.softmax %x axis 0 : tensor<2x8xf32>
  return
}
