// nnforge-opt is mlir-opt with nnforge's dialect and passes registered.
// RUN: nnforge-opt --help | FileCheck %s --check-prefix=HELP
// RUN: nnforge-opt %s --canonicalize --mlir-timing 2>&1 | FileCheck %s --check-prefix=TIMING
// RUN: nnforge-opt %s --canonicalize --mlir-print-ir-after-all -o %t 2>&1 | FileCheck %s --check-prefix=AFTER
// RUN: FileCheck %s --check-prefix=OUT < %t
// RUN: not nnforge-opt %s --pass-pipeline="builtin.module(no-such-pass)" 2>&1 | FileCheck %s --check-prefix=BADPASS

// HELP-DAG: --convert-nnf-to-linalg
// HELP-DAG: --one-shot-bufferize
// TIMING: Execution time report
// TIMING: Canonicalizer
// AFTER: IR Dump After Canonicalizer
// OUT: nnf.linear %{{.*}}, %{{.*}} activation sigmoid
// BADPASS: 'no-such-pass' does not refer to a registered pass or pass pipeline

func.func @f(%x: tensor<2x8xf32>, %w: tensor<4x8xf32>) -> tensor<2x4xf32> {
  %0 = nnf.linear %x, %w : (tensor<2x8xf32>, tensor<4x8xf32>) -> tensor<2x4xf32>
  %1 = nnf.activation sigmoid %0 : tensor<2x4xf32>
  return %1 : tensor<2x4xf32>
}
