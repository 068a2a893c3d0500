// RUN: nnforge-opt %s --nnf-inline-dispatch-regions | FileCheck %s
// RUN: nnforge-opt %s --nnf-form-dispatch-regions --nnf-inline-dispatch-regions | FileCheck %s --check-prefix=ROUNDTRIP

// The region's ops move in front of it, its arguments become its inputs and
// its results the yielded values.
// CHECK-LABEL: func.func @inline
// CHECK-SAME: (%[[X:.*]]: tensor<8xf32>, %[[Y:.*]]: tensor<8xf32>)
// CHECK-NEXT: %[[A:.*]] = arith.addf %[[X]], %[[Y]] : tensor<8xf32>
// CHECK-NEXT: %[[E:.*]] = math.exp %[[A]] : tensor<8xf32>
// CHECK-NEXT: return %[[E]], %[[A]]
// ROUNDTRIP-LABEL: func.func @inline
// ROUNDTRIP-NOT: nnf.dispatch
func.func @inline(%x: tensor<8xf32>, %y: tensor<8xf32>) -> (tensor<8xf32>, tensor<8xf32>) {
  %0:2 = nnf.dispatch ins(%x, %y : tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32>, tensor<8xf32> {
  ^bb0(%a: tensor<8xf32>, %b: tensor<8xf32>):
    %s = arith.addf %a, %b : tensor<8xf32>
    %e = math.exp %s : tensor<8xf32>
    nnf.yield %e, %s : tensor<8xf32>, tensor<8xf32>
  }
  return %0#0, %0#1 : tensor<8xf32>, tensor<8xf32>
}
