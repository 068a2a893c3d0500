// Upstream's finalize-memref-to-llvm asserts on loads of i3 (only i1 buffers
// are widened before it in nnforge's pipelines): the error names the pass
// and the op it ran on, and the half-written output file is removed.
// RUN: rm -f %t
// RUN: not nnforge-opt %s --pass-pipeline="builtin.module(func.func(cse),finalize-memref-to-llvm)" -o %t 2>&1 | FileCheck %s
// RUN: not ls %t

// CHECK: Assertion `integralElementType.getWidth() >= 8' failed.
// CHECK-NEXT: nnforge-opt: error: MLIR aborted (SIGABRT) in pass 'finalize-memref-to-llvm' on 'builtin.module' of {{.*}}crash-in-pass.mlir (a defect in the pass; the input may be invalid or unsupported)

func.func @load(%m: memref<4xi3>) -> i3 {
  %c = arith.constant 0 : index
  %v = memref.load %m[%c] : memref<4xi3>
  return %v : i3
}
