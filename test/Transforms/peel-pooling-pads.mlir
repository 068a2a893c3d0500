// RUN: nnforge-opt %s --nnf-peel-pooling-pads --split-input-file | FileCheck %s
// RUN: nnforge-opt %s --nnf-peel-pooling-pads=border-width=2 --split-input-file | FileCheck %s --check-prefix=WIDE

// ResNet's stem pool (3x3, stride 2, padding 1, 8x8 -> 4x4): outputs
// [1, 4) x [1, 4) read the input as it is; row 0 reads a pad of input rows
// 0-1, column 0 of rows 1-3 a pad of input columns 0-1. No pad of the whole
// input is left.
// CHECK-LABEL: func.func @stem_pool
// CHECK-SAME: (%[[X:.*]]: tensor<1x2x8x8xf32>, %[[INIT:.*]]: tensor<1x2x4x4xf32>)
// CHECK-NOT: tensor.pad %[[X]]
// CHECK: %[[INTERIOR_IN:.*]] = tensor.extract_slice %[[X]][0, 0, 1, 1] [1, 2, 7, 7] [1, 1, 1, 1]
// CHECK: %[[INTERIOR_OUT:.*]] = tensor.extract_slice %[[INIT]][0, 0, 1, 1] [1, 2, 3, 3] [1, 1, 1, 1]
// CHECK: %[[INTERIOR:.*]] = linalg.pooling_nchw_max {dilations = dense<1> : vector<2xi64>, strides = dense<2> : vector<2xi64>} ins(%[[INTERIOR_IN]], %{{.*}} : tensor<1x2x7x7xf32>, tensor<3x3xf32>) outs(%[[INTERIOR_OUT]] : tensor<1x2x3x3xf32>)
// CHECK: %[[R1:.*]] = tensor.insert_slice %[[INTERIOR]] into %[[INIT]][0, 0, 1, 1] [1, 2, 3, 3] [1, 1, 1, 1]
// CHECK: %[[TOP_IN:.*]] = tensor.extract_slice %[[X]][0, 0, 0, 0] [1, 2, 2, 8] [1, 1, 1, 1]
// CHECK: %[[TOP_PAD:.*]] = tensor.pad %[[TOP_IN]] low[0, 0, 1, 1] high[0, 0, 0, 0]
// CHECK: tensor<1x2x2x8xf32> to tensor<1x2x3x9xf32>
// CHECK: %[[TOP_OUT:.*]] = tensor.extract_slice %[[R1]][0, 0, 0, 0] [1, 2, 1, 4] [1, 1, 1, 1]
// CHECK: %[[TOP:.*]] = linalg.pooling_nchw_max {{.*}} ins(%[[TOP_PAD]], %{{.*}} : tensor<1x2x3x9xf32>, tensor<3x3xf32>) outs(%[[TOP_OUT]] : tensor<1x2x1x4xf32>)
// CHECK: %[[R2:.*]] = tensor.insert_slice %[[TOP]] into %[[R1]][0, 0, 0, 0] [1, 2, 1, 4] [1, 1, 1, 1]
// CHECK: %[[LEFT_IN:.*]] = tensor.extract_slice %[[X]][0, 0, 1, 0] [1, 2, 7, 2] [1, 1, 1, 1]
// CHECK: %[[LEFT_PAD:.*]] = tensor.pad %[[LEFT_IN]] low[0, 0, 0, 1] high[0, 0, 0, 0]
// CHECK: %[[LEFT_OUT:.*]] = tensor.extract_slice %[[R2]][0, 0, 1, 0] [1, 2, 3, 1] [1, 1, 1, 1]
// CHECK: %[[LEFT:.*]] = linalg.pooling_nchw_max {{.*}} ins(%[[LEFT_PAD]], %{{.*}} : tensor<1x2x7x3xf32>, tensor<3x3xf32>) outs(%[[LEFT_OUT]] : tensor<1x2x3x1xf32>)
// CHECK: %[[R3:.*]] = tensor.insert_slice %[[LEFT]] into %[[R2]][0, 0, 1, 0] [1, 2, 3, 1] [1, 1, 1, 1]
// CHECK: return %[[R3]]
// With border-width=2 the left box takes two columns, the interior the
// other two:
// WIDE-LABEL: func.func @stem_pool
// WIDE: tensor.extract_slice %{{.*}}[0, 0, 1, 3] [1, 2, 7, 5]
// WIDE: linalg.pooling_nchw_max {{.*}} outs(%{{.*}} : tensor<1x2x3x2xf32>)
// WIDE: tensor.extract_slice %{{.*}}[0, 0, 1, 0] [1, 2, 7, 4]
// WIDE: tensor.pad %{{.*}} low[0, 0, 0, 1] high[0, 0, 0, 0]
// WIDE: linalg.pooling_nchw_max {{.*}} outs(%{{.*}} : tensor<1x2x3x2xf32>)
func.func @stem_pool(%x: tensor<1x2x8x8xf32>, %init: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %ninf = arith.constant 0xFF800000 : f32
  %p = tensor.pad %x low[0, 0, 1, 1] high[0, 0, 1, 1] {
  ^bb0(%a: index, %b: index, %c: index, %d: index):
    tensor.yield %ninf : f32
  } : tensor<1x2x8x8xf32> to tensor<1x2x10x10xf32>
  %w = tensor.empty() : tensor<3x3xf32>
  %y = linalg.pooling_nchw_max {dilations = dense<1> : vector<2xi64>, strides = dense<2> : vector<2xi64>}
      ins(%p, %w : tensor<1x2x10x10xf32>, tensor<3x3xf32>) outs(%init : tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  return %y : tensor<1x2x4x4xf32>
}

// -----

// A sum pool (3x3, stride 1, padding 1 on every side: 6x6 -> 6x6): the
// interior [1, 5) x [1, 5) from the input itself, rows 0 and 5, then
// columns 0 and 5 of rows 1-4, each from a pad of the slice it reads.
// CHECK-LABEL: func.func @sum_pool_all_sides
// CHECK: tensor.extract_slice %{{.*}}[0, 0, 1, 1] [1, 1, 4, 4]
// CHECK: linalg.pooling_nchw_sum
// CHECK: tensor.extract_slice %{{.*}}[0, 0, 0, 0] [1, 1, 1, 6]
// CHECK: linalg.pooling_nchw_sum
// CHECK: tensor.extract_slice %{{.*}}[0, 0, 5, 0] [1, 1, 1, 6]
// CHECK: linalg.pooling_nchw_sum
// CHECK: tensor.extract_slice %{{.*}}[0, 0, 1, 0] [1, 1, 4, 1]
// CHECK: linalg.pooling_nchw_sum
// CHECK: tensor.extract_slice %{{.*}}[0, 0, 1, 5] [1, 1, 4, 1]
// CHECK: linalg.pooling_nchw_sum
// CHECK-NOT: linalg.pooling_nchw_sum
// CHECK: return
func.func @sum_pool_all_sides(%x: tensor<1x1x6x6xf32>, %init: tensor<1x1x6x6xf32>) -> tensor<1x1x6x6xf32> {
  %zero = arith.constant 0.0 : f32
  %p = tensor.pad %x low[0, 0, 1, 1] high[0, 0, 1, 1] {
  ^bb0(%a: index, %b: index, %c: index, %d: index):
    tensor.yield %zero : f32
  } : tensor<1x1x6x6xf32> to tensor<1x1x8x8xf32>
  %w = tensor.empty() : tensor<3x3xf32>
  %y = linalg.pooling_nchw_sum {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>}
      ins(%p, %w : tensor<1x1x8x8xf32>, tensor<3x3xf32>) outs(%init : tensor<1x1x6x6xf32>) -> tensor<1x1x6x6xf32>
  return %y : tensor<1x1x6x6xf32>
}

// -----

// A window wider than the input: no output reads the input alone; the
// pooling stays as it is.
// CHECK-LABEL: func.func @no_interior
// CHECK: tensor.pad
// CHECK: linalg.pooling_nchw_max
// CHECK-NOT: linalg.pooling_nchw_max
func.func @no_interior(%x: tensor<1x1x2x2xf32>, %init: tensor<1x1x2x2xf32>) -> tensor<1x1x2x2xf32> {
  %ninf = arith.constant 0xFF800000 : f32
  %p = tensor.pad %x low[0, 0, 1, 1] high[0, 0, 1, 1] {
  ^bb0(%a: index, %b: index, %c: index, %d: index):
    tensor.yield %ninf : f32
  } : tensor<1x1x2x2xf32> to tensor<1x1x4x4xf32>
  %w = tensor.empty() : tensor<3x3xf32>
  %y = linalg.pooling_nchw_max {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>}
      ins(%p, %w : tensor<1x1x4x4xf32>, tensor<3x3xf32>) outs(%init : tensor<1x1x2x2xf32>) -> tensor<1x1x2x2xf32>
  return %y : tensor<1x1x2x2xf32>
}
