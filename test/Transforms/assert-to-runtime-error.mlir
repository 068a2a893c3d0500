// RUN: nnforge-opt %s --nnf-assert-to-runtime-error | FileCheck %s

// Each assertion becomes a call to nnforge's runtime when its condition is
// false, with its message as a NUL-terminated global; no cf.assert is left
// for the LLVM lowering to turn into abort().
// CHECK-DAG: llvm.func @nnforge_check_failed(!llvm.ptr)
// CHECK-DAG: llvm.mlir.global internal constant @nnforge_check_message_0("index must be smaller than dim size\00")
// CHECK-DAG: llvm.mlir.global internal constant @nnforge_check_message_1("index must be larger or equal to 0\00")
// CHECK-LABEL: func.func @gather
// CHECK-NOT: cf.assert
// CHECK: %[[BELOW:.*]] = arith.cmpi slt
// CHECK: scf.if %[[BELOW]] {
// CHECK-NEXT: } else {
// CHECK: llvm.mlir.addressof @nnforge_check_message_0
// CHECK: llvm.call @nnforge_check_failed({{.*}}) : (!llvm.ptr) -> ()
// CHECK: scf.if
// CHECK: llvm.call @nnforge_check_failed
// CHECK: memref.load
func.func @gather(%table: memref<5xf32>, %index: index) -> f32 {
  %c0 = arith.constant 0 : index
  %c5 = arith.constant 5 : index
  %below = arith.cmpi slt, %index, %c5 : index
  cf.assert %below, "index must be smaller than dim size"
  %above = arith.cmpi sge, %index, %c0 : index
  cf.assert %above, "index must be larger or equal to 0"
  %value = memref.load %table[%index] : memref<5xf32>
  return %value : f32
}
