// RUN: nnforge-opt %s | nnforge-opt | FileCheck %s

// CHECK-LABEL: func @linear
func.func @linear(%x: tensor<?x8xf32>, %w: tensor<16x8xf32>, %b: tensor<16xf32>) -> tensor<?x16xf32> {
  // CHECK: nnf.linear %{{.*}}, %{{.*}}, %{{.*}} activation relu : (tensor<?x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<?x16xf32>
  %0 = nnf.linear %x, %w, %b activation relu : (tensor<?x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}
