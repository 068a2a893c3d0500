// RUN: nnforge-opt %s | nnforge-opt | FileCheck %s
// RUN: nnforge-opt %s --mlir-print-op-generic | nnforge-opt | FileCheck %s

// CHECK-LABEL: func @linear
func.func @linear(%x: tensor<?x8xf32>, %w: tensor<16x8xf32>, %b: tensor<16xf32>) -> (tensor<?x16xf32>, tensor<2x3x16xbf16>) {
  // CHECK: nnf.linear %{{.*}}, %{{.*}}, %{{.*}} activation relu : (tensor<?x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<?x16xf32>
  %0 = nnf.linear %x, %w, %b activation relu : (tensor<?x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<?x16xf32>
  %x3 = tensor.empty() : tensor<2x3x8xbf16>
  %w3 = tensor.empty() : tensor<16x8xbf16>
  // CHECK: nnf.linear %{{.*}}, %{{.*}} : (tensor<2x3x8xbf16>, tensor<16x8xbf16>) -> tensor<2x3x16xbf16>
  %1 = nnf.linear %x3, %w3 : (tensor<2x3x8xbf16>, tensor<16x8xbf16>) -> tensor<2x3x16xbf16>
  return %0, %1 : tensor<?x16xf32>, tensor<2x3x16xbf16>
}

// CHECK-LABEL: func @conv2d
func.func @conv2d(%x: tensor<1x4x32x32xf16>, %f: tensor<8x2x3x3xf16>, %b: tensor<8xf16>, %d: tensor<?x4x?x?xf32>, %g: tensor<4x1x5x5xf32>) -> (tensor<1x8x16x16xf16>, tensor<?x4x?x?xf32>) {
  // CHECK: nnf.conv2d %{{.*}}, %{{.*}}, %{{.*}} strides [2, 2] padding [1, 1, 1, 1] groups 2 activation silu
  // CHECK-SAME: -> tensor<1x8x16x16xf16>
  %0 = nnf.conv2d %x, %f, %b strides [2, 2] padding [1, 1, 1, 1] groups 2 activation silu : (tensor<1x4x32x32xf16>, tensor<8x2x3x3xf16>, tensor<8xf16>) -> tensor<1x8x16x16xf16>
  // CHECK: nnf.conv2d %{{.*}}, %{{.*}} dilations [2, 2] groups 4 : (tensor<?x4x?x?xf32>, tensor<4x1x5x5xf32>) -> tensor<?x4x?x?xf32>
  %1 = nnf.conv2d %d, %g dilations [2, 2] groups 4 : (tensor<?x4x?x?xf32>, tensor<4x1x5x5xf32>) -> tensor<?x4x?x?xf32>
  return %0, %1 : tensor<1x8x16x16xf16>, tensor<?x4x?x?xf32>
}

// CHECK-LABEL: func @softmax
func.func @softmax(%x: tensor<?x1000xf32>) -> tensor<?x1000xf32> {
  // CHECK: nnf.softmax %{{.*}} axis -1 : tensor<?x1000xf32>
  %0 = nnf.softmax %x axis -1 : tensor<?x1000xf32>
  return %0 : tensor<?x1000xf32>
}

// CHECK-LABEL: func @layer_norm
func.func @layer_norm(%x: tensor<2x?x256xf32>, %s: tensor<256xf32>, %b: tensor<256xf32>) -> (tensor<2x?x256xf32>, tensor<2x?x256xf32>) {
  // CHECK: nnf.layer_norm %{{.*}} scale %{{.*}} bias %{{.*}} axis -1 : (tensor<2x?x256xf32>, tensor<256xf32>, tensor<256xf32>) -> tensor<2x?x256xf32>
  %0 = nnf.layer_norm %x scale %s bias %b axis -1 : (tensor<2x?x256xf32>, tensor<256xf32>, tensor<256xf32>) -> tensor<2x?x256xf32>
  // CHECK: nnf.layer_norm %{{.*}} axis 1 epsilon 1.000000e-03 : (tensor<2x?x256xf32>) -> tensor<2x?x256xf32>
  %1 = nnf.layer_norm %x axis 1 epsilon 1.0e-3 : (tensor<2x?x256xf32>) -> tensor<2x?x256xf32>
  return %0, %1 : tensor<2x?x256xf32>, tensor<2x?x256xf32>
}

// CHECK-LABEL: func @attention
func.func @attention(%q: tensor<2x4x?x64xf32>, %k: tensor<2x4x128x64xf32>, %v: tensor<2x4x128x32xf32>, %m: tensor<?x128xi1>) -> (tensor<2x4x?x32xf32>, tensor<2x4x?x32xf32>) {
  // CHECK: nnf.attention %{{.*}}, %{{.*}}, %{{.*}} causal : (tensor<2x4x?x64xf32>, tensor<2x4x128x64xf32>, tensor<2x4x128x32xf32>) -> tensor<2x4x?x32xf32>
  %0 = nnf.attention %q, %k, %v causal : (tensor<2x4x?x64xf32>, tensor<2x4x128x64xf32>, tensor<2x4x128x32xf32>) -> tensor<2x4x?x32xf32>
  // CHECK: nnf.attention %{{.*}}, %{{.*}}, %{{.*}} mask %{{.*}} scale 1.250000e-01 :
  %1 = nnf.attention %q, %k, %v mask %m scale 0.125 : (tensor<2x4x?x64xf32>, tensor<2x4x128x64xf32>, tensor<2x4x128x32xf32>, tensor<?x128xi1>) -> tensor<2x4x?x32xf32>
  return %0, %1 : tensor<2x4x?x32xf32>, tensor<2x4x?x32xf32>
}

// CHECK-LABEL: func @activation
func.func @activation(%x: tensor<4x?xbf16>) -> tensor<4x?xbf16> {
  // CHECK: nnf.activation gelu_tanh %{{.*}} : tensor<4x?xbf16>
  %0 = nnf.activation gelu_tanh %x : tensor<4x?xbf16>
  return %0 : tensor<4x?xbf16>
}

// CHECK-LABEL: func @dispatch
func.func @dispatch(%x: tensor<8xf32>) -> tensor<8xf32> {
  // CHECK: %[[R:.*]] = nnf.dispatch ins(%{{.*}} : tensor<8xf32>) -> tensor<8xf32> {
  // CHECK-NEXT: ^bb0(%[[IN:.*]]: tensor<8xf32>):
  // CHECK-NEXT: %[[E:.*]] = math.exp %[[IN]] : tensor<8xf32>
  // CHECK-NEXT: nnf.yield %[[E]] : tensor<8xf32>
  // CHECK-NEXT: }
  %0 = nnf.dispatch ins(%x : tensor<8xf32>) -> tensor<8xf32> {
  ^bb0(%in: tensor<8xf32>):
    %e = math.exp %in : tensor<8xf32>
    nnf.yield %e : tensor<8xf32>
  }
  return %0 : tensor<8xf32>
}
