// RUN: nnforge-opt %s --nnf-expand-shapes-as-casts --split-input-file | FileCheck %s
// RUN: nnforge-opt %s --nnf-expand-shapes-as-casts --expand-strided-metadata --split-input-file | FileCheck %s --check-prefix=EXPANDED

// One dimension split into two of unknown size: a reinterpret cast of the
// base buffer, sizes from output_shape, the outer stride the inner size
// times the inner stride. expand-strided-metadata (which asserted on the
// expand_shape) then takes the cast.
// CHECK-LABEL: func.func @two_dynamic_sizes
// CHECK-SAME: (%[[X:.*]]: memref<?x4xf32>, %[[A:.*]]: index, %[[B:.*]]: index)
// CHECK: %[[BASE:.*]], %{{.*}}, %{{.*}}:2, %{{.*}}:2 = memref.extract_strided_metadata %[[X]]
// CHECK: %[[C4:.*]] = arith.constant 4 : index
// CHECK: %[[OUTER:.*]] = arith.muli %[[C4]], %[[B]] : index
// CHECK: %[[CAST:.*]] = memref.reinterpret_cast %[[BASE]] to offset: [0], sizes: [%[[A]], %[[B]], 4], strides: [%[[OUTER]], 4, 1]
// CHECK-SAME: : memref<f32> to memref<?x?x4xf32>
// CHECK-NOT: memref.expand_shape
// CHECK: return %[[CAST]]
// EXPANDED-LABEL: func.func @two_dynamic_sizes
// EXPANDED-NOT: memref.expand_shape
// EXPANDED: memref.reinterpret_cast
func.func @two_dynamic_sizes(%x: memref<?x4xf32>, %a: index, %b: index) -> memref<?x?x4xf32> {
  %e = memref.expand_shape %x [[0, 1], [2]] output_shape [%a, %b, 4] : memref<?x4xf32> into memref<?x?x4xf32>
  return %e : memref<?x?x4xf32>
}

// -----

// A strided source (a column slice): the group's innermost dimension keeps
// the source dimension's stride and the offset is the source's.
// CHECK-LABEL: func.func @strided_source
// CHECK: %[[BASE:.*]], %[[OFFSET:.*]], %{{.*}}:2, %[[STRIDES:.*]]:2 = memref.extract_strided_metadata
// CHECK: %[[OUTER:.*]] = arith.muli %[[STRIDES]]#0, %{{.*}} : index
// CHECK: memref.reinterpret_cast %[[BASE]] to offset: [%[[OFFSET]]], sizes: [%{{.*}}, %{{.*}}, 2], strides: [%[[OUTER]], %[[STRIDES]]#0, 1]
func.func @strided_source(%x: memref<?x2xf32, strided<[?, 1], offset: ?>>, %a: index, %b: index)
    -> memref<?x?x2xf32, strided<[?, ?, 1], offset: ?>> {
  %e = memref.expand_shape %x [[0, 1], [2]] output_shape [%a, %b, 2]
      : memref<?x2xf32, strided<[?, 1], offset: ?>> into memref<?x?x2xf32, strided<[?, ?, 1], offset: ?>>
  return %e : memref<?x?x2xf32, strided<[?, ?, 1], offset: ?>>
}

// -----

// At most one dynamic size per group: left to expand-strided-metadata.
// CHECK-LABEL: func.func @one_dynamic_size
// CHECK: memref.expand_shape
// CHECK-NOT: memref.reinterpret_cast
func.func @one_dynamic_size(%x: memref<?x4xf32>, %a: index) -> memref<?x2x4xf32> {
  %e = memref.expand_shape %x [[0, 1], [2]] output_shape [%a, 2, 4] : memref<?x4xf32> into memref<?x2x4xf32>
  return %e : memref<?x2x4xf32>
}
