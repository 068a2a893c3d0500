// MLIR's linalg.broadcast parser asserts on `dimensions = [nan]` after its
// errors (an upstream defect, found by test/fuzz): nnforge-opt's child dies,
// the tool prints one error and exits 1, no stack dump.
// RUN: not nnforge-opt %s -o %t 2>&1 | FileCheck %s

// CHECK: error: custom op 'linalg.broadcast' expected integer value
// CHECK: Assertion `value && "attributes may never be null"' failed.
// CHECK-NEXT: nnforge-opt: error: MLIR aborted (SIGABRT) while parsing/verifying {{.*}}crash-in-parser.mlir (an upstream MLIR defect; the input is invalid or unsupported)
// CHECK-NOT: Stack dump

func.func @main(%b: tensor<3xf32>) -> tensor<2x3xf32> {
  %e = tensor.empty() : tensor<2x3xf32>
  %r = linalg.broadcast ins(%b : tensor<3xf32>) outs(%e : tensor<2x3xf32>) dimensions = [nan]
  return %r : tensor<2x3xf32>
}
