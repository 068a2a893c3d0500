// RUN: nnforge-opt %s --nnf-widen-bool-memrefs --split-input-file | FileCheck %s
// Lowering the result to LLVM must not abort (memref-to-LLVM asserts on i1
// loads and stores) and must leave no memref or cast behind.
// RUN: nnforge-opt %s --split-input-file --pass-pipeline='builtin.module(convert-bufferization-to-memref,nnf-widen-bool-memrefs,expand-strided-metadata,convert-scf-to-cf,finalize-memref-to-llvm,convert-to-llvm,reconcile-unrealized-casts)' | FileCheck %s --check-prefix=LLVM

// Loads truncate, stores extend; alloc and dealloc are retyped.

// CHECK-LABEL: func.func @load_store
// CHECK-SAME:      (%[[I:.*]]: index, %[[V:.*]]: i1) -> i1
// CHECK:         %[[M:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4xi8>
// CHECK:         %[[BYTE:.*]] = arith.extui %[[V]] : i1 to i8
// CHECK:         memref.store %[[BYTE]], %[[M]][%[[I]]] : memref<4xi8>
// CHECK:         %[[LOADED:.*]] = memref.load %[[M]][%[[I]]] : memref<4xi8>
// CHECK:         %[[BIT:.*]] = arith.trunci %[[LOADED]] : i8 to i1
// CHECK:         memref.dealloc %[[M]] : memref<4xi8>
// CHECK:         return %[[BIT]] : i1
// LLVM-LABEL:  llvm.func @load_store
// LLVM-NOT:      memref
// LLVM-NOT:      unrealized_conversion_cast
func.func @load_store(%i: index, %v: i1) -> i1 {
  %m = memref.alloc() {alignment = 64 : i64} : memref<4xi1>
  memref.store %v, %m[%i] : memref<4xi1>
  %r = memref.load %m[%i] : memref<4xi1>
  memref.dealloc %m : memref<4xi1>
  return %r : i1
}

// -----

// Function arguments, results and calls carry i8 memrefs; other memrefs keep
// their type.

// CHECK-LABEL: func.func private @callee(memref<2x3xi8>) -> memref<2x3xi8>
// CHECK-LABEL: func.func @boundary
// CHECK-SAME:      (%[[M:.*]]: memref<2x3xi8>, %[[F:.*]]: memref<2xf32>) -> (memref<2x3xi8>, memref<2xf32>)
// CHECK:         %[[R:.*]] = call @callee(%[[M]]) : (memref<2x3xi8>) -> memref<2x3xi8>
// CHECK:         return %[[R]], %[[F]] : memref<2x3xi8>, memref<2xf32>
// LLVM-LABEL:  llvm.func @boundary
// LLVM-NOT:      memref
// LLVM-NOT:      unrealized_conversion_cast
func.func private @callee(%m: memref<2x3xi1>) -> memref<2x3xi1>

func.func @boundary(%m: memref<2x3xi1>, %f: memref<2xf32>) -> (memref<2x3xi1>, memref<2xf32>) {
  %r = call @callee(%m) : (memref<2x3xi1>) -> memref<2x3xi1>
  return %r, %f : memref<2x3xi1>, memref<2xf32>
}

// -----

// Globals widen their initial value (true is 1); uninitialized ones are only
// retyped.

// CHECK:       memref.global "private" constant @mask : memref<4xi8> = dense<[1, 0, 1, 1]>
// CHECK:       memref.global "private" constant @all_true : memref<2x2xi8> = dense<1>
// CHECK:       memref.global @scratch : memref<3xi8> = uninitialized
// CHECK-LABEL: func.func @globals() -> (i1, memref<2x2xi8>, memref<3xi8>)
// CHECK:         %[[MASK:.*]] = memref.get_global @mask : memref<4xi8>
// CHECK:         %[[BYTE:.*]] = memref.load %[[MASK]][%{{.*}}] : memref<4xi8>
// CHECK:         %[[BIT:.*]] = arith.trunci %[[BYTE]] : i8 to i1
// CHECK:         %[[ALL:.*]] = memref.get_global @all_true : memref<2x2xi8>
// CHECK:         %[[SCRATCH:.*]] = memref.get_global @scratch : memref<3xi8>
// CHECK:         return %[[BIT]], %[[ALL]], %[[SCRATCH]]
// LLVM:        llvm.mlir.global private constant @mask(dense<[1, 0, 1, 1]> : tensor<4xi8>) {{.*}} : !llvm.array<4 x i8>
// LLVM-LABEL:  llvm.func @globals
// LLVM-NOT:      memref
// LLVM-NOT:      unrealized_conversion_cast
memref.global "private" constant @mask : memref<4xi1> = dense<[true, false, true, true]>
memref.global "private" constant @all_true : memref<2x2xi1> = dense<true>
memref.global @scratch : memref<3xi1> = uninitialized

func.func @globals() -> (i1, memref<2x2xi1>, memref<3xi1>) {
  %c1 = arith.constant 1 : index
  %g = memref.get_global @mask : memref<4xi1>
  %v = memref.load %g[%c1] : memref<4xi1>
  %t = memref.get_global @all_true : memref<2x2xi1>
  %s = memref.get_global @scratch : memref<3xi1>
  return %v, %t, %s : i1, memref<2x2xi1>, memref<3xi1>
}

// -----

// Views, reshapes, copies and metadata ops keep their shape and layout with
// i8 elements.

// CHECK-LABEL: func.func @views
// CHECK-SAME:      (%[[M:.*]]: memref<4x6xi8>, %[[OUT:.*]]: memref<12xi8>, %[[DYN:.*]]: memref<?xi8>) -> index
// CHECK:         %[[SV:.*]] = memref.subview %[[M]][1, 2] [2, 3] [1, 1] : memref<4x6xi8> to memref<2x3xi8, strided<[6, 1], offset: 8>>
// CHECK:         memref.cast %[[SV]] : memref<2x3xi8, strided<[6, 1], offset: 8>> to memref<?x?xi8, strided<[?, ?], offset: ?>>
// CHECK:         memref.dim %[[DYN]], %{{.*}} : memref<?xi8>
// CHECK:         %[[FLAT:.*]] = memref.collapse_shape %[[M]] {{\[\[}}0, 1]] : memref<4x6xi8> into memref<24xi8>
// CHECK:         memref.expand_shape %[[FLAT]] {{\[\[}}0, 1, 2]] output_shape [2, 3, 4] : memref<24xi8> into memref<2x3x4xi8>
// CHECK:         %[[RE:.*]] = memref.reinterpret_cast %[[M]] to offset: [0], sizes: [12], strides: [1] : memref<4x6xi8> to memref<12xi8>
// CHECK:         memref.copy %[[RE]], %[[OUT]] : memref<12xi8> to memref<12xi8>
// CHECK:         %[[BASE:.*]], %{{.*}}, %{{.*}}:2, %{{.*}}:2 = memref.extract_strided_metadata %{{.*}} : memref<{{.*}}xi8, strided<{{.*}}>> -> memref<i8>, index, index, index, index, index
// CHECK:         memref.extract_aligned_pointer_as_index %[[BASE]] : memref<i8> -> index
// LLVM-LABEL:  llvm.func @views
// LLVM-NOT:      memref
// LLVM-NOT:      unrealized_conversion_cast
func.func @views(%m: memref<4x6xi1>, %o: memref<12xi1>, %dyn: memref<?xi1>) -> index {
  %c0 = arith.constant 0 : index
  %sv = memref.subview %m[1, 2] [2, 3] [1, 1] : memref<4x6xi1> to memref<2x3xi1, strided<[6, 1], offset: 8>>
  %any = memref.cast %sv : memref<2x3xi1, strided<[6, 1], offset: 8>> to memref<?x?xi1, strided<[?, ?], offset: ?>>
  %d = memref.dim %dyn, %c0 : memref<?xi1>
  %flat = memref.collapse_shape %m [[0, 1]] : memref<4x6xi1> into memref<24xi1>
  %cube = memref.expand_shape %flat [[0, 1, 2]] output_shape [2, 3, 4] : memref<24xi1> into memref<2x3x4xi1>
  %re = memref.reinterpret_cast %m to offset: [0], sizes: [12], strides: [1] : memref<4x6xi1> to memref<12xi1>
  memref.copy %re, %o : memref<12xi1> to memref<12xi1>
  %base, %off, %sizes:2, %strides:2 = memref.extract_strided_metadata %any : memref<?x?xi1, strided<[?, ?], offset: ?>> -> memref<i1>, index, index, index, index, index
  %p = memref.extract_aligned_pointer_as_index %base : memref<i1> -> index
  %sum = arith.addi %d, %p : index
  return %sum : index
}

// -----

// scf.if and scf.for results, yields and iteration arguments are retyped.

// CHECK-LABEL: func.func @loops
// CHECK-SAME:      (%[[M:.*]]: memref<8xi8>, %[[N:.*]]: memref<8xi8>, %[[C:.*]]: i1) -> memref<8xi8>
// CHECK:         %[[PICKED:.*]] = scf.if %[[C]] -> (memref<8xi8>)
// CHECK:           scf.yield %[[M]] : memref<8xi8>
// CHECK:           scf.yield %[[N]] : memref<8xi8>
// CHECK:         %[[LAST:.*]] = scf.for %[[I:.*]] = %{{.*}} iter_args(%[[ACC:.*]] = %[[PICKED]]) -> (memref<8xi8>)
// CHECK:           %[[BYTE:.*]] = memref.load %[[ACC]][%[[I]]] : memref<8xi8>
// CHECK:           %[[BIT:.*]] = arith.trunci %[[BYTE]] : i8 to i1
// CHECK:           %[[FLIPPED:.*]] = arith.xori %[[BIT]], %[[C]] : i1
// CHECK:           %[[STORED:.*]] = arith.extui %[[FLIPPED]] : i1 to i8
// CHECK:           memref.store %[[STORED]], %[[ACC]][%[[I]]] : memref<8xi8>
// CHECK:           scf.yield %[[ACC]] : memref<8xi8>
// CHECK:         return %[[LAST]] : memref<8xi8>
// LLVM-LABEL:  llvm.func @loops
// LLVM-NOT:      memref
// LLVM-NOT:      unrealized_conversion_cast
func.func @loops(%m: memref<8xi1>, %n: memref<8xi1>, %c: i1) -> memref<8xi1> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %picked = scf.if %c -> memref<8xi1> {
    scf.yield %m : memref<8xi1>
  } else {
    scf.yield %n : memref<8xi1>
  }
  %last = scf.for %i = %c0 to %c8 step %c1 iter_args(%acc = %picked) -> memref<8xi1> {
    %b = memref.load %acc[%i] : memref<8xi1>
    %nb = arith.xori %b, %c : i1
    memref.store %nb, %acc[%i] : memref<8xi1>
    scf.yield %acc : memref<8xi1>
  }
  return %last : memref<8xi1>
}

// -----

// The deallocation helper that convert-bufferization-to-memref emits keeps
// its conditions in i1 memrefs: the lowering checked by the LLVM run goes
// through it. This pass alone leaves bufferization.dealloc as it is.

// CHECK-LABEL: func.func @dealloc_conditions
// CHECK:         bufferization.dealloc (%{{.*}}, %{{.*}} : memref<2xf32>, memref<2xf32>) if (%{{.*}}, %{{.*}}) retain (%{{.*}}, %{{.*}} : memref<2xf32>, memref<2xf32>)
// LLVM-LABEL:  llvm.func @dealloc_conditions
// LLVM-NOT:      memref
// LLVM-NOT:      unrealized_conversion_cast
// LLVM-LABEL:  llvm.func @dealloc_helper
// LLVM-NOT:      memref
// LLVM-NOT:      unrealized_conversion_cast
func.func @dealloc_conditions(%a: memref<2xf32>, %b: memref<2xf32>, %c1: i1, %c2: i1, %r: memref<2xf32>) -> (i1, i1) {
  %0:2 = bufferization.dealloc (%a, %b : memref<2xf32>, memref<2xf32>) if (%c1, %c2) retain (%r, %a : memref<2xf32>, memref<2xf32>)
  return %0#0, %0#1 : i1, i1
}

// -----

// Without i1 memrefs nothing changes (i1 scalars included).

// CHECK-LABEL: func.func @no_bools
// CHECK-SAME:      (%[[M:.*]]: memref<4xi32>, %[[I:.*]]: index) -> i32
// CHECK:         %[[V:.*]] = memref.load %[[M]][%[[I]]] : memref<4xi32>
// CHECK:         %[[B:.*]] = arith.cmpi sgt, %[[V]], %[[V]] : i32
// CHECK:         %[[R:.*]] = arith.extui %[[B]] : i1 to i32
// CHECK:         return %[[R]] : i32
// LLVM-LABEL:  llvm.func @no_bools
func.func @no_bools(%m: memref<4xi32>, %i: index) -> i32 {
  %v = memref.load %m[%i] : memref<4xi32>
  %b = arith.cmpi sgt, %v, %v : i32
  %r = arith.extui %b : i1 to i32
  return %r : i32
}

// -----

// Vector transfers of i1 read and write bytes (LLVM would pack i1 lanes
// into bits).
// CHECK-LABEL: func.func @vector_transfers
// CHECK-SAME: (%[[A:.*]]: memref<8xi8>, %[[B:.*]]: memref<8xi8>)
// CHECK: %[[PAD:.*]] = arith.extui %{{.*}} : i1 to i8
// CHECK: %[[READ:.*]] = vector.transfer_read %[[A]][%{{.*}}], %[[PAD]] {in_bounds = [true]} : memref<8xi8>, vector<8xi8>
// CHECK: %[[BITS:.*]] = arith.trunci %[[READ]] : vector<8xi8> to vector<8xi1>
// CHECK: %[[NOT:.*]] = arith.xori %[[BITS]]
// CHECK: %[[BYTES:.*]] = arith.extui %[[NOT]] : vector<8xi1> to vector<8xi8>
// CHECK: vector.transfer_write %[[BYTES]], %[[B]][%{{.*}}] {in_bounds = [true]} : vector<8xi8>, memref<8xi8>
func.func @vector_transfers(%a: memref<8xi1>, %b: memref<8xi1>) {
  %c0 = arith.constant 0 : index
  %false = arith.constant false
  %ones = arith.constant dense<true> : vector<8xi1>
  %v = vector.transfer_read %a[%c0], %false {in_bounds = [true]} : memref<8xi1>, vector<8xi1>
  %n = arith.xori %v, %ones : vector<8xi1>
  vector.transfer_write %n, %b[%c0] {in_bounds = [true]} : vector<8xi1>, memref<8xi1>
  return
}

// -----

// CHECK-LABEL: func.func @vector_load_store
// CHECK: %[[L:.*]] = vector.load %{{.*}}[%{{.*}}] : memref<8xi8>, vector<4xi8>
// CHECK: %[[T:.*]] = arith.trunci %[[L]] : vector<4xi8> to vector<4xi1>
// CHECK: %[[E:.*]] = arith.extui %[[T]] : vector<4xi1> to vector<4xi8>
// CHECK: vector.store %[[E]], %{{.*}}[%{{.*}}] : memref<8xi8>, vector<4xi8>
func.func @vector_load_store(%a: memref<8xi1>) {
  %c0 = arith.constant 0 : index
  %c4 = arith.constant 4 : index
  %v = vector.load %a[%c0] : memref<8xi1>, vector<4xi1>
  vector.store %v, %a[%c4] : memref<8xi1>, vector<4xi1>
  return
}

// -----

// Other sub-byte integers are widened the same way: a matrix product over
// i3 (what convert-linalg-to-loops makes of a linalg.matmul), a global of i4
// zero-extended, vector lanes of i2. LLVM's memref lowering aborted on each.

// CHECK:       memref.global "private" constant @nibbles : memref<3xi8> = dense<[15, 1, 8]>
// CHECK-LABEL: func.func @sub_byte_matmul
// CHECK-SAME:      (%[[A:.*]]: memref<2x3xi8>, %[[B:.*]]: memref<3x2xi8>, %[[C:.*]]: memref<2x2xi8>)
// CHECK:         %[[AB:.*]] = memref.load %[[A]][%{{.*}}, %{{.*}}] : memref<2x3xi8>
// CHECK:         %[[A3:.*]] = arith.trunci %[[AB]] : i8 to i3
// CHECK:         %[[SUM:.*]] = arith.addi %{{.*}}, %{{.*}} : i3
// CHECK:         %[[SB:.*]] = arith.extui %[[SUM]] : i3 to i8
// CHECK:         memref.store %[[SB]], %[[C]][%{{.*}}, %{{.*}}] : memref<2x2xi8>
// LLVM:        llvm.mlir.global private constant @nibbles(dense<[15, 1, 8]> : tensor<3xi8>)
// LLVM-LABEL:  llvm.func @sub_byte_matmul
// LLVM:          llvm.load %{{.*}} : !llvm.ptr -> i8
// LLVM:          llvm.trunc %{{.*}} : i8 to i3
// LLVM-NOT:      memref
// LLVM-NOT:      unrealized_conversion_cast
memref.global "private" constant @nibbles : memref<3xi4> = dense<[-1, 1, -8]>

func.func @sub_byte_matmul(%a: memref<2x3xi3>, %b: memref<3x2xi3>, %c: memref<2x2xi3>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  scf.for %i = %c0 to %c2 step %c1 {
    scf.for %j = %c0 to %c2 step %c1 {
      scf.for %k = %c0 to %c3 step %c1 {
        %x = memref.load %a[%i, %k] : memref<2x3xi3>
        %y = memref.load %b[%k, %j] : memref<3x2xi3>
        %acc = memref.load %c[%i, %j] : memref<2x2xi3>
        %p = arith.muli %x, %y : i3
        %s = arith.addi %acc, %p : i3
        memref.store %s, %c[%i, %j] : memref<2x2xi3>
      }
    }
  }
  return
}

// CHECK-LABEL: func.func @sub_byte_global
// LLVM-LABEL:  llvm.func @sub_byte_global
// CHECK:         %[[G:.*]] = memref.get_global @nibbles : memref<3xi8>
// CHECK:         %[[V:.*]] = memref.load %[[G]][%{{.*}}] : memref<3xi8>
// CHECK:         arith.trunci %[[V]] : i8 to i4
func.func @sub_byte_global(%i: index) -> i4 {
  %g = memref.get_global @nibbles : memref<3xi4>
  %v = memref.load %g[%i] : memref<3xi4>
  return %v : i4
}

// -----

// CHECK-LABEL: func.func @sub_byte_vectors
// CHECK: %[[R:.*]] = vector.transfer_read %{{.*}}[%{{.*}}], %{{.*}} {in_bounds = [true]} : memref<8xi8>, vector<8xi8>
// CHECK: arith.trunci %[[R]] : vector<8xi8> to vector<8xi2>
// CHECK: arith.extui %{{.*}} : vector<8xi2> to vector<8xi8>
// CHECK: vector.transfer_write %{{.*}} : vector<8xi8>, memref<8xi8>
func.func @sub_byte_vectors(%a: memref<8xi2>) {
  %c0 = arith.constant 0 : index
  %zero = arith.constant 0 : i2
  %v = vector.transfer_read %a[%c0], %zero {in_bounds = [true]} : memref<8xi2>, vector<8xi2>
  %d = arith.addi %v, %v : vector<8xi2>
  vector.transfer_write %d, %a[%c0] {in_bounds = [true]} : vector<8xi2>, memref<8xi2>
  return
}
