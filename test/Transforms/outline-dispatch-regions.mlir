// RUN: nnforge-opt %s --nnf-outline-dispatch-regions --split-input-file | FileCheck %s

// Each region becomes a private function called in its place; the two
// equivalent regions (same ops and types, other inputs and locations) share
// one, the third (exp instead of tanh) gets its own. The dispatch's
// attributes move to the call.
// CHECK-LABEL: func.func @main
// CHECK-SAME: (%[[X:.*]]: tensor<8xf32>, %[[Y:.*]]: tensor<8xf32>)
// CHECK-NEXT: %[[A:.*]] = call @main_dispatch_0(%[[X]], %[[Y]]) {nnf.profile_region = 1 : i64} : (tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32>
// CHECK-NEXT: %[[B:.*]] = call @main_dispatch_0(%[[A]], %[[X]]) : (tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32>
// CHECK-NEXT: %[[C:.*]] = call @main_dispatch_1(%[[B]], %[[Y]]) : (tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32>
// CHECK-NEXT: return %[[C]]
// CHECK-NOT: nnf.dispatch
// CHECK: func.func private @main_dispatch_0(%[[P:.*]]: tensor<8xf32>, %[[Q:.*]]: tensor<8xf32>) -> tensor<8xf32> attributes {nnf.dispatch_function} {
// CHECK-NEXT: %[[S:.*]] = arith.addf %[[P]], %[[Q]] : tensor<8xf32>
// CHECK-NEXT: %[[T:.*]] = math.tanh %[[S]] : tensor<8xf32>
// CHECK-NEXT: return %[[T]] : tensor<8xf32>
// CHECK: func.func private @main_dispatch_1(
// CHECK: math.exp
func.func @main(%x: tensor<8xf32>, %y: tensor<8xf32>) -> tensor<8xf32> {
  %0 = nnf.dispatch ins(%x, %y : tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32> attributes {nnf.profile_region = 1 : i64} {
  ^bb0(%a: tensor<8xf32>, %b: tensor<8xf32>):
    %s = arith.addf %a, %b : tensor<8xf32>
    %t = math.tanh %s : tensor<8xf32>
    nnf.yield %t : tensor<8xf32>
  }
  %1 = nnf.dispatch ins(%0, %x : tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32> {
  ^bb0(%a: tensor<8xf32>, %b: tensor<8xf32>):
    %s = arith.addf %a, %b : tensor<8xf32> loc("elsewhere")
    %t = math.tanh %s : tensor<8xf32>
    nnf.yield %t : tensor<8xf32>
  }
  %2 = nnf.dispatch ins(%1, %y : tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32> {
  ^bb0(%a: tensor<8xf32>, %b: tensor<8xf32>):
    %s = arith.addf %a, %b : tensor<8xf32>
    %t = math.exp %s : tensor<8xf32>
    nnf.yield %t : tensor<8xf32>
  }
  return %2 : tensor<8xf32>
}

// -----

// Tensor constants holding data become inputs (weights differ from block to
// block, the code does not); splats, and constants written into, stay in.
// CHECK-LABEL: func.func @weights
// CHECK: %[[W1:.*]] = arith.constant dense<[1.000000e+00, 2.000000e+00, 3.000000e+00, 4.000000e+00]> : tensor<4xf32>
// CHECK: %[[A:.*]] = call @weights_dispatch_0(%{{.*}}, %[[W1]])
// CHECK: %[[W2:.*]] = arith.constant dense<[5.000000e+00, 6.000000e+00, 7.000000e+00, 8.000000e+00]> : tensor<4xf32>
// CHECK: call @weights_dispatch_0(%[[A]], %[[W2]])
// CHECK: func.func private @weights_dispatch_0(%{{.*}}: tensor<4xf32>, %[[W:.*]]: tensor<4xf32>)
// CHECK: arith.constant dense<2.000000e+00> : tensor<4xf32>
// CHECK: arith.mulf %{{.*}}, %[[W]]
func.func @weights(%x: tensor<4xf32>) -> tensor<4xf32> {
  %0 = nnf.dispatch ins(%x : tensor<4xf32>) -> tensor<4xf32> {
  ^bb0(%a: tensor<4xf32>):
    %w = arith.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
    %two = arith.constant dense<2.0> : tensor<4xf32>
    %s = arith.addf %a, %two : tensor<4xf32>
    %t = arith.mulf %s, %w : tensor<4xf32>
    nnf.yield %t : tensor<4xf32>
  }
  %1 = nnf.dispatch ins(%0 : tensor<4xf32>) -> tensor<4xf32> {
  ^bb0(%a: tensor<4xf32>):
    %w = arith.constant dense<[5.0, 6.0, 7.0, 8.0]> : tensor<4xf32>
    %two = arith.constant dense<2.0> : tensor<4xf32>
    %s = arith.addf %a, %two : tensor<4xf32>
    %t = arith.mulf %s, %w : tensor<4xf32>
    nnf.yield %t : tensor<4xf32>
  }
  return %1 : tensor<4xf32>
}

// -----

// A region reading a slice (a strided view once bufferized) stays in place.
// CHECK-LABEL: func.func @slice
// CHECK: tensor.extract_slice
// CHECK-NEXT: nnf.dispatch
// CHECK-NOT: func.func private
func.func @slice(%x: tensor<8x8xf32>) -> tensor<8x4xf32> {
  %s = tensor.extract_slice %x[0, 0] [8, 4] [1, 1] : tensor<8x8xf32> to tensor<8x4xf32>
  %0 = nnf.dispatch ins(%s : tensor<8x4xf32>) -> tensor<8x4xf32> {
  ^bb0(%a: tensor<8x4xf32>):
    %t = math.tanh %a : tensor<8x4xf32>
    nnf.yield %t : tensor<8x4xf32>
  }
  return %0 : tensor<8x4xf32>
}
