// RUN: nnforge-opt %s --nnf-deallocate-after-last-use --split-input-file | FileCheck %s

// A buffer is freed after its last use, a view's included, before the next
// allocation (which the buffer cache can then serve with the same memory).
// CHECK-LABEL: func.func @after_last_use
// CHECK: %[[A:.*]] = memref.alloc() : memref<4x16xf32>
// CHECK: linalg.fill {{.*}} outs(%[[A]]
// CHECK: %[[FLAT:.*]] = memref.collapse_shape %[[A]]
// CHECK: memref.copy %[[FLAT]], %{{.*}}
// CHECK-NEXT: memref.dealloc %[[A]]
// CHECK-NEXT: %[[B:.*]] = memref.alloc() : memref<64xf32>
// CHECK: memref.copy %[[B]]
// CHECK-NEXT: memref.dealloc %[[B]]
// CHECK-NEXT: return
func.func @after_last_use(%out: memref<64xf32>) {
  %zero = arith.constant 0.0 : f32
  %one = arith.constant 1.0 : f32
  %a = memref.alloc() : memref<4x16xf32>
  linalg.fill ins(%zero : f32) outs(%a : memref<4x16xf32>)
  %flat = memref.collapse_shape %a [[0, 1]] : memref<4x16xf32> into memref<64xf32>
  memref.copy %flat, %out : memref<64xf32> to memref<64xf32>
  %b = memref.alloc() : memref<64xf32>
  linalg.fill ins(%one : f32) outs(%b : memref<64xf32>)
  memref.copy %b, %out : memref<64xf32> to memref<64xf32>
  memref.dealloc %a : memref<4x16xf32>
  memref.dealloc %b : memref<64xf32>
  return
}

// -----

// A use inside a loop keeps the buffer until the loop is done.
// CHECK-LABEL: func.func @used_in_loop
// CHECK: %[[A:.*]] = memref.alloc()
// CHECK: scf.for
// CHECK: memref.load %[[A]]
// CHECK: }
// CHECK-NEXT: memref.dealloc %[[A]]
// CHECK-NEXT: arith.addf
func.func @used_in_loop(%out: memref<16xf32>, %x: f32) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c16 = arith.constant 16 : index
  %a = memref.alloc() : memref<16xf32>
  memref.copy %out, %a : memref<16xf32> to memref<16xf32>
  scf.for %i = %c0 to %c16 step %c1 {
    %v = memref.load %a[%i] : memref<16xf32>
    memref.store %v, %out[%i] : memref<16xf32>
  }
  %y = arith.addf %x, %x : f32
  memref.dealloc %a : memref<16xf32>
  return %y : f32
}

// -----

// Buffers that may be reached otherwise stay where they are: a view yielded
// out of a region, one read as a raw pointer.
// CHECK-LABEL: func.func @escaping
// CHECK: arith.addf
// CHECK-NEXT: memref.dealloc %{{.*}} : memref<16xf32>
// CHECK-NEXT: memref.dealloc %{{.*}} : memref<16xf32>
// CHECK-NEXT: return
func.func @escaping(%out: memref<16xf32>, %c: i1, %x: f32) -> (f32, index) {
  %a = memref.alloc() : memref<16xf32>
  %b = memref.alloc() : memref<16xf32>
  %chosen = scf.if %c -> memref<16xf32> {
    scf.yield %a : memref<16xf32>
  } else {
    scf.yield %out : memref<16xf32>
  }
  memref.copy %chosen, %out : memref<16xf32> to memref<16xf32>
  %pointer = memref.extract_aligned_pointer_as_index %b : memref<16xf32> -> index
  %y = arith.addf %x, %x : f32
  memref.dealloc %a : memref<16xf32>
  memref.dealloc %b : memref<16xf32>
  return %y, %pointer : f32, index
}
