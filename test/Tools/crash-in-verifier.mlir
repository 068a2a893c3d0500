// MLIR's linalg verifier asserts on a convolution's dilation of 2^63 - 1
// (AffineMap::compose; an upstream defect, found by test/fuzz).
// RUN: not nnforge-opt %s 2>&1 | FileCheck %s

// CHECK: Assertion {{.*}} failed.
// CHECK-NEXT: nnforge-opt: error: MLIR aborted (SIGABRT) while parsing/verifying {{.*}}crash-in-verifier.mlir (an upstream MLIR defect; the input is invalid or unsupported)
// CHECK-NOT: Stack dump

func.func @main(%x: tensor<1x2x6x6xi16>, %w: tensor<3x2x3x3xi16>) -> tensor<1x3x4x4xi16> {
  %zero = arith.constant 0 : i16
  %e = tensor.empty() : tensor<1x3x4x4xi16>
  %f = linalg.fill ins(%zero : i16) outs(%e : tensor<1x3x4x4xi16>) -> tensor<1x3x4x4xi16>
  %c = linalg.conv_2d_nchw_fchw {dilations = dense<9223372036854775807> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x2x6x6xi16>, tensor<3x2x3x3xi16>) outs(%f : tensor<1x3x4x4xi16>) -> tensor<1x3x4x4xi16>
  return %c : tensor<1x3x4x4xi16>
}
