// RUN: nnforge-opt %s --nnf-raise --split-input-file | FileCheck %s
// RUN: nnforge-opt %s --nnf-raise="ops=softmax" --split-input-file | FileCheck %s --check-prefix=SOFTMAX
// RUN: not nnforge-opt %s --nnf-raise="ops=softmax,lstm" --split-input-file 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// UNKNOWN: error: nnf-raise: unknown op kind 'lstm' (expected linear, conv2d, softmax or activation)

// Linear + bias + ReLU as torch-mlir emits nn.Linear(8, 16) + nn.ReLU().

#map = affine_map<(d0, d1) -> (d0, d1)>
#map1 = affine_map<(d0, d1) -> (d1)>
// CHECK-LABEL: func.func @linear_bias_relu
// CHECK-SAME: (%[[X:.*]]: tensor<4x8xf32>, %[[W:.*]]: tensor<16x8xf32>, %[[B:.*]]: tensor<16xf32>)
// CHECK-NEXT: %[[Y:.*]] = nnf.linear %[[X]], %[[W]], %[[B]] activation relu : (tensor<4x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<4x16xf32>
// CHECK-NEXT: return %[[Y]]
// Raising only softmax leaves the layer alone.
// SOFTMAX-LABEL: func.func @linear_bias_relu
// SOFTMAX-NOT: nnf.
// SOFTMAX: linalg.matmul
// SOFTMAX-NOT: nnf.
// SOFTMAX: return
func.func @linear_bias_relu(%arg0: tensor<4x8xf32>, %w: tensor<16x8xf32>, %b: tensor<16xf32>) -> tensor<4x16xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<8x16xf32>
  %transposed = linalg.transpose ins(%w : tensor<16x8xf32>) outs(%0 : tensor<8x16xf32>) permutation = [1, 0]
  %1 = tensor.empty() : tensor<4x16xf32>
  %2 = linalg.fill ins(%cst : f32) outs(%1 : tensor<4x16xf32>) -> tensor<4x16xf32>
  %3 = linalg.matmul ins(%arg0, %transposed : tensor<4x8xf32>, tensor<8x16xf32>) outs(%2 : tensor<4x16xf32>) -> tensor<4x16xf32>
  %4 = linalg.generic {indexing_maps = [#map, #map1, #map], iterator_types = ["parallel", "parallel"]} ins(%3, %b : tensor<4x16xf32>, tensor<16xf32>) outs(%1 : tensor<4x16xf32>) {
  ^bb0(%in: f32, %in_2: f32, %out: f32):
    %6 = arith.addf %in, %in_2 : f32
    linalg.yield %6 : f32
  } -> tensor<4x16xf32>
  %5 = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]} ins(%4 : tensor<4x16xf32>) outs(%1 : tensor<4x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %6 = arith.cmpf ugt, %in, %cst : f32
    %7 = arith.select %6, %in, %cst : f32
    linalg.yield %7 : f32
  } -> tensor<4x16xf32>
  return %5 : tensor<4x16xf32>
}

// -----

// Linear without bias.

// CHECK-LABEL: func.func @linear_no_bias
// CHECK: nnf.linear %{{.*}}, %{{.*}} : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
// CHECK-NOT: linalg.
func.func @linear_no_bias(%arg0: tensor<4x8xf32>, %w: tensor<16x8xf32>) -> tensor<4x16xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<8x16xf32>
  %transposed = linalg.transpose ins(%w : tensor<16x8xf32>) outs(%0 : tensor<8x16xf32>) permutation = [1, 0]
  %1 = tensor.empty() : tensor<4x16xf32>
  %2 = linalg.fill ins(%cst : f32) outs(%1 : tensor<4x16xf32>) -> tensor<4x16xf32>
  %3 = linalg.matmul ins(%arg0, %transposed : tensor<4x8xf32>, tensor<8x16xf32>) outs(%2 : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %3 : tensor<4x16xf32>
}

// -----

// Linear of a 3-D input (flattened and expanded back) + GELU (erf form): the
// activation moves through the expand_shape into the linear.

#map = affine_map<(d0, d1) -> (d0, d1)>
#map1 = affine_map<(d0, d1) -> (d1)>
#map2 = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @linear_3d_gelu
// CHECK: %[[C:.*]] = tensor.collapse_shape
// CHECK-NEXT: %[[Y:.*]] = nnf.linear %[[C]], %{{.*}}, %{{.*}} activation gelu : (tensor<6x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<6x16xf32>
// CHECK-NEXT: %[[E:.*]] = tensor.expand_shape %[[Y]]
// CHECK-NEXT: return %[[E]]
func.func @linear_3d_gelu(%arg0: tensor<2x3x8xf32>, %w: tensor<16x8xf32>, %b: tensor<16xf32>) -> tensor<2x3x16xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %cst_0 = arith.constant 1.000000e+00 : f32
  %cst_1 = arith.constant 5.000000e-01 : f32
  %cst_4 = arith.constant 1.41421354 : f32
  %collapsed = tensor.collapse_shape %arg0 [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %0 = tensor.empty() : tensor<8x16xf32>
  %transposed = linalg.transpose ins(%w : tensor<16x8xf32>) outs(%0 : tensor<8x16xf32>) permutation = [1, 0]
  %1 = tensor.empty() : tensor<6x16xf32>
  %2 = linalg.fill ins(%cst : f32) outs(%1 : tensor<6x16xf32>) -> tensor<6x16xf32>
  %3 = linalg.matmul ins(%collapsed, %transposed : tensor<6x8xf32>, tensor<8x16xf32>) outs(%2 : tensor<6x16xf32>) -> tensor<6x16xf32>
  %4 = linalg.generic {indexing_maps = [#map, #map1, #map], iterator_types = ["parallel", "parallel"]} ins(%3, %b : tensor<6x16xf32>, tensor<16xf32>) outs(%1 : tensor<6x16xf32>) {
  ^bb0(%in: f32, %in_5: f32, %out: f32):
    %7 = arith.addf %in, %in_5 : f32
    linalg.yield %7 : f32
  } -> tensor<6x16xf32>
  %expanded = tensor.expand_shape %4 [[0, 1], [2]] output_shape [2, 3, 16] : tensor<6x16xf32> into tensor<2x3x16xf32>
  %5 = tensor.empty() : tensor<2x3x16xf32>
  %6 = linalg.generic {indexing_maps = [#map2, #map2], iterator_types = ["parallel", "parallel", "parallel"]} ins(%expanded : tensor<2x3x16xf32>) outs(%5 : tensor<2x3x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %7 = arith.divf %in, %cst_4 : f32
    %8 = math.erf %7 : f32
    %9 = arith.addf %8, %cst_0 : f32
    %10 = arith.mulf %9, %cst_1 : f32
    %11 = arith.mulf %in, %10 : f32
    linalg.yield %11 : f32
  } -> tensor<2x3x16xf32>
  return %6 : tensor<2x3x16xf32>
}

// -----

// The batch_matmul form of a linear (MultiheadAttention's in_proj): the
// transposed weight broadcast along the batch by an identity generic.

#map = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
#map1 = affine_map<(d0, d1, d2) -> (d1, d2)>
#map2 = affine_map<(d0, d1, d2) -> (d2)>
// CHECK-LABEL: func.func @linear_batch_matmul
// CHECK-SAME: (%[[X:.*]]: tensor<5x2x32xf32>, %[[W:.*]]: tensor<96x32xf32>, %[[B:.*]]: tensor<96xf32>)
// CHECK-NEXT: %[[Y:.*]] = nnf.linear %[[X]], %[[W]], %[[B]] : (tensor<5x2x32xf32>, tensor<96x32xf32>, tensor<96xf32>) -> tensor<5x2x96xf32>
// CHECK-NEXT: return %[[Y]]
func.func @linear_batch_matmul(%x: tensor<5x2x32xf32>, %w: tensor<96x32xf32>, %b: tensor<96xf32>) -> tensor<5x2x96xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %1 = tensor.empty() : tensor<32x96xf32>
  %transposed_20 = linalg.transpose ins(%w : tensor<96x32xf32>) outs(%1 : tensor<32x96xf32>) permutation = [1, 0]
  %2 = tensor.empty() : tensor<5x32x96xf32>
  %3 = linalg.generic {indexing_maps = [#map1, #map], iterator_types = ["parallel", "parallel", "parallel"]} ins(%transposed_20 : tensor<32x96xf32>) outs(%2 : tensor<5x32x96xf32>) {
  ^bb0(%in: f32, %out: f32):
    linalg.yield %in : f32
  } -> tensor<5x32x96xf32>
  %4 = tensor.empty() : tensor<5x2x96xf32>
  %5 = linalg.fill ins(%cst : f32) outs(%4 : tensor<5x2x96xf32>) -> tensor<5x2x96xf32>
  %6 = linalg.batch_matmul ins(%x, %3 : tensor<5x2x32xf32>, tensor<5x32x96xf32>) outs(%5 : tensor<5x2x96xf32>) -> tensor<5x2x96xf32>
  %7 = linalg.generic {indexing_maps = [#map, #map2, #map], iterator_types = ["parallel", "parallel", "parallel"]} ins(%6, %b : tensor<5x2x96xf32>, tensor<96xf32>) outs(%4 : tensor<5x2x96xf32>) {
  ^bb0(%in: f32, %in_53: f32, %out: f32):
    %93 = arith.addf %in, %in_53 : f32
    linalg.yield %93 : f32
  } -> tensor<5x2x96xf32>
  return %7 : tensor<5x2x96xf32>
}

// -----

// Conv2d(3, 8, 3, stride=2, padding=1) + ReLU: tensor.pad, bias broadcast as
// the accumulator.

#map = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
// CHECK-LABEL: func.func @conv2d_bias_relu
// CHECK-SAME: (%[[X:.*]]: tensor<1x3x16x16xf32>, %[[F:.*]]: tensor<8x3x3x3xf32>, %[[B:.*]]: tensor<8xf32>)
// CHECK-NEXT: %[[Y:.*]] = nnf.conv2d %[[X]], %[[F]], %[[B]] strides [2, 2] padding [1, 1, 1, 1] activation relu : (tensor<1x3x16x16xf32>, tensor<8x3x3x3xf32>, tensor<8xf32>) -> tensor<1x8x8x8xf32>
// CHECK-NEXT: return %[[Y]]
func.func @conv2d_bias_relu(%arg0: tensor<1x3x16x16xf32>, %f: tensor<8x3x3x3xf32>, %b: tensor<8xf32>) -> tensor<1x8x8x8xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %padded = tensor.pad %arg0 low[0, 0, 1, 1] high[0, 0, 1, 1] {
  ^bb0(%arg1: index, %arg2: index, %arg3: index, %arg4: index):
    tensor.yield %cst : f32
  } : tensor<1x3x16x16xf32> to tensor<1x3x18x18xf32>
  %0 = tensor.empty() : tensor<1x8x8x8xf32>
  %broadcasted = linalg.broadcast ins(%b : tensor<8xf32>) outs(%0 : tensor<1x8x8x8xf32>) dimensions = [0, 2, 3]
  %1 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<2> : vector<2xi64>} ins(%padded, %f : tensor<1x3x18x18xf32>, tensor<8x3x3x3xf32>) outs(%broadcasted : tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %2 = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%1 : tensor<1x8x8x8xf32>) outs(%0 : tensor<1x8x8x8xf32>) {
  ^bb0(%in: f32, %out: f32):
    %3 = arith.cmpf ugt, %in, %cst : f32
    %4 = arith.select %3, %in, %cst : f32
    linalg.yield %4 : f32
  } -> tensor<1x8x8x8xf32>
  return %2 : tensor<1x8x8x8xf32>
}

// -----

// Grouped, dilated Conv2d(4, 8, 3, groups=2, dilation=2, bias=False).

// CHECK-LABEL: func.func @conv2d_grouped
// CHECK-SAME: (%[[X:.*]]: tensor<1x4x16x16xf32>, %[[F:.*]]: tensor<8x2x3x3xf32>)
// CHECK-NEXT: %[[Y:.*]] = nnf.conv2d %[[X]], %[[F]] dilations [2, 2] groups 2 : (tensor<1x4x16x16xf32>, tensor<8x2x3x3xf32>) -> tensor<1x8x12x12xf32>
// CHECK-NEXT: return %[[Y]]
func.func @conv2d_grouped(%arg0: tensor<1x4x16x16xf32>, %f: tensor<8x2x3x3xf32>) -> tensor<1x8x12x12xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<1x8x12x12xf32>
  %expanded = tensor.expand_shape %arg0 [[0], [1, 2], [3], [4]] output_shape [1, 2, 2, 16, 16] : tensor<1x4x16x16xf32> into tensor<1x2x2x16x16xf32>
  %expanded_1 = tensor.expand_shape %f [[0, 1], [2], [3], [4]] output_shape [2, 4, 2, 3, 3] : tensor<8x2x3x3xf32> into tensor<2x4x2x3x3xf32>
  %expanded_2 = tensor.expand_shape %0 [[0], [1, 2], [3], [4]] output_shape [1, 2, 4, 12, 12] : tensor<1x8x12x12xf32> into tensor<1x2x4x12x12xf32>
  %1 = linalg.fill ins(%cst : f32) outs(%expanded_2 : tensor<1x2x4x12x12xf32>) -> tensor<1x2x4x12x12xf32>
  %2 = linalg.conv_2d_ngchw_gfchw {dilations = dense<2> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%expanded, %expanded_1 : tensor<1x2x2x16x16xf32>, tensor<2x4x2x3x3xf32>) outs(%1 : tensor<1x2x4x12x12xf32>) -> tensor<1x2x4x12x12xf32>
  %collapsed = tensor.collapse_shape %2 [[0], [1, 2], [3], [4]] : tensor<1x2x4x12x12xf32> into tensor<1x8x12x12xf32>
  return %collapsed : tensor<1x8x12x12xf32>
}

// -----

// torch.softmax(x, -1): max / subtract / exp / sum / divide.

#map = affine_map<(d0, d1) -> (d0, d1)>
#map1 = affine_map<(d0, d1) -> (d0)>
#map2 = affine_map<(d0, d1) -> (d0, 0)>
// CHECK-LABEL: func.func @softmax_chain
// CHECK-SAME: (%[[X:.*]]: tensor<4x10xf32>)
// CHECK-NEXT: %[[Y:.*]] = nnf.softmax %[[X]] axis -1 : tensor<4x10xf32>
// CHECK-NEXT: return %[[Y]]
// SOFTMAX-LABEL: func.func @softmax_chain
// SOFTMAX-NEXT: nnf.softmax
func.func @softmax_chain(%arg0: tensor<4x10xf32>) -> tensor<4x10xf32> {
  %c0_i64 = arith.constant 0 : i64
  %cst = arith.constant 0xFF800000 : f32
  %cst_0 = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<4xi64>
  %1 = linalg.fill ins(%c0_i64 : i64) outs(%0 : tensor<4xi64>) -> tensor<4xi64>
  %2 = tensor.empty() : tensor<4xf32>
  %3 = linalg.fill ins(%cst : f32) outs(%2 : tensor<4xf32>) -> tensor<4xf32>
  %4:2 = linalg.generic {indexing_maps = [#map, #map1, #map1], iterator_types = ["parallel", "reduction"]} ins(%arg0 : tensor<4x10xf32>) outs(%3, %1 : tensor<4xf32>, tensor<4xi64>) {
  ^bb0(%in: f32, %out: f32, %out_1: i64):
    %12 = linalg.index 1 : index
    %13 = arith.index_cast %12 : index to i64
    %14 = arith.maximumf %in, %out : f32
    %15 = arith.cmpf ogt, %in, %out : f32
    %16 = arith.select %15, %13, %out_1 : i64
    linalg.yield %14, %16 : f32, i64
  } -> (tensor<4xf32>, tensor<4xi64>)
  %expanded = tensor.expand_shape %4#0 [[0, 1]] output_shape [4, 1] : tensor<4xf32> into tensor<4x1xf32>
  %5 = tensor.empty() : tensor<4x10xf32>
  %6 = linalg.generic {indexing_maps = [#map, #map2, #map], iterator_types = ["parallel", "parallel"]} ins(%arg0, %expanded : tensor<4x10xf32>, tensor<4x1xf32>) outs(%5 : tensor<4x10xf32>) {
  ^bb0(%in: f32, %in_1: f32, %out: f32):
    %12 = arith.subf %in, %in_1 : f32
    linalg.yield %12 : f32
  } -> tensor<4x10xf32>
  %7 = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]} ins(%6 : tensor<4x10xf32>) outs(%5 : tensor<4x10xf32>) {
  ^bb0(%in: f32, %out: f32):
    %12 = math.exp %in : f32
    linalg.yield %12 : f32
  } -> tensor<4x10xf32>
  %8 = tensor.empty() : tensor<4x1xf32>
  %9 = linalg.fill ins(%cst_0 : f32) outs(%8 : tensor<4x1xf32>) -> tensor<4x1xf32>
  %10 = linalg.generic {indexing_maps = [#map, #map2], iterator_types = ["parallel", "reduction"]} ins(%7 : tensor<4x10xf32>) outs(%9 : tensor<4x1xf32>) {
  ^bb0(%in: f32, %out: f32):
    %12 = arith.addf %in, %out : f32
    linalg.yield %12 : f32
  } -> tensor<4x1xf32>
  %11 = linalg.generic {indexing_maps = [#map, #map2, #map], iterator_types = ["parallel", "parallel"]} ins(%7, %10 : tensor<4x10xf32>, tensor<4x1xf32>) outs(%5 : tensor<4x10xf32>) {
  ^bb0(%in: f32, %in_1: f32, %out: f32):
    %12 = arith.divf %in, %in_1 : f32
    linalg.yield %12 : f32
  } -> tensor<4x10xf32>
  return %11 : tensor<4x10xf32>
}

// -----

// linalg.softmax along dimension 1 of a rank-3 tensor.

// CHECK-LABEL: func.func @linalg_softmax
// CHECK: nnf.softmax %{{.*}} axis -2 : tensor<2x3x4xf32>
// CHECK-NOT: linalg.softmax
func.func @linalg_softmax(%x: tensor<2x3x4xf32>) -> tensor<2x3x4xf32> {
  %0 = tensor.empty() : tensor<2x3x4xf32>
  %1 = linalg.softmax dimension(1) ins(%x : tensor<2x3x4xf32>) outs(%0 : tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  return %1 : tensor<2x3x4xf32>
}

// -----

// Standalone activations: sigmoid, tanh, and silu (x * sigmoid(x)).

#map = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-LABEL: func.func @activations
// CHECK-SAME: (%[[X:.*]]: tensor<4x10xf32>)
// CHECK-DAG: nnf.activation tanh %[[X]] : tensor<4x10xf32>
// CHECK-DAG: nnf.activation silu %[[X]] : tensor<4x10xf32>
// CHECK-NOT: nnf.activation sigmoid
// CHECK-NOT: linalg.generic
func.func @activations(%arg0: tensor<4x10xf32>) -> (tensor<4x10xf32>, tensor<4x10xf32>) {
  %cst = arith.constant 1.000000e+00 : f32
  %0 = tensor.empty() : tensor<4x10xf32>
  %1 = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]} ins(%arg0 : tensor<4x10xf32>) outs(%0 : tensor<4x10xf32>) {
  ^bb0(%in: f32, %out: f32):
    %3 = arith.negf %in : f32
    %4 = math.exp %3 : f32
    %5 = arith.addf %4, %cst : f32
    %6 = arith.divf %cst, %5 : f32
    linalg.yield %6 : f32
  } -> tensor<4x10xf32>
  %2 = linalg.generic {indexing_maps = [#map, #map, #map], iterator_types = ["parallel", "parallel"]} ins(%arg0, %1 : tensor<4x10xf32>, tensor<4x10xf32>) outs(%0 : tensor<4x10xf32>) {
  ^bb0(%in: f32, %in_0: f32, %out: f32):
    %3 = arith.mulf %in, %in_0 : f32
    linalg.yield %3 : f32
  } -> tensor<4x10xf32>
  %t = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]} ins(%arg0 : tensor<4x10xf32>) outs(%0 : tensor<4x10xf32>) {
  ^bb0(%in: f32, %out: f32):
    %3 = math.tanh %in : f32
    linalg.yield %3 : f32
  } -> tensor<4x10xf32>
  return %2, %t : tensor<4x10xf32>, tensor<4x10xf32>
}

// -----

// Negative: the bias is broadcast along the rows (d0), not the output
// features: the linear is raised without it and the add stays a generic.

#map = affine_map<(d0, d1) -> (d0, d1)>
#map1 = affine_map<(d0, d1) -> (d0)>
// CHECK-LABEL: func.func @bias_wrong_dim
// CHECK: %[[Y:.*]] = nnf.linear %{{.*}}, %{{.*}} : (tensor<16x8xf32>, tensor<16x8xf32>) -> tensor<16x16xf32>
// CHECK: linalg.generic
// CHECK-SAME: ins(%[[Y]], %{{.*}} : tensor<16x16xf32>, tensor<16xf32>)
// CHECK: arith.addf
func.func @bias_wrong_dim(%arg0: tensor<16x8xf32>, %w: tensor<16x8xf32>, %b: tensor<16xf32>) -> tensor<16x16xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<8x16xf32>
  %transposed = linalg.transpose ins(%w : tensor<16x8xf32>) outs(%0 : tensor<8x16xf32>) permutation = [1, 0]
  %1 = tensor.empty() : tensor<16x16xf32>
  %2 = linalg.fill ins(%cst : f32) outs(%1 : tensor<16x16xf32>) -> tensor<16x16xf32>
  %3 = linalg.matmul ins(%arg0, %transposed : tensor<16x8xf32>, tensor<8x16xf32>) outs(%2 : tensor<16x16xf32>) -> tensor<16x16xf32>
  %4 = linalg.generic {indexing_maps = [#map, #map1, #map], iterator_types = ["parallel", "parallel"]} ins(%3, %b : tensor<16x16xf32>, tensor<16xf32>) outs(%1 : tensor<16x16xf32>) {
  ^bb0(%in: f32, %in_2: f32, %out: f32):
    %6 = arith.addf %in, %in_2 : f32
    linalg.yield %6 : f32
  } -> tensor<16x16xf32>
  return %4 : tensor<16x16xf32>
}

// -----

// Negative: the matmul result has a second user, so neither the bias add nor
// the ReLU is folded into the linear.

#map = affine_map<(d0, d1) -> (d0, d1)>
#map1 = affine_map<(d0, d1) -> (d1)>
// CHECK-LABEL: func.func @two_uses
// CHECK: %[[Y:.*]] = nnf.linear %{{.*}}, %{{.*}} : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
// CHECK: %[[A:.*]] = linalg.generic {{.*}} ins(%[[Y]], %{{.*}} : tensor<4x16xf32>, tensor<16xf32>)
// CHECK: %[[R:.*]] = nnf.activation relu %[[A]] : tensor<4x16xf32>
// CHECK: return %[[R]], %[[Y]]
func.func @two_uses(%arg0: tensor<4x8xf32>, %w: tensor<16x8xf32>, %b: tensor<16xf32>) -> (tensor<4x16xf32>, tensor<4x16xf32>) {
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<8x16xf32>
  %transposed = linalg.transpose ins(%w : tensor<16x8xf32>) outs(%0 : tensor<8x16xf32>) permutation = [1, 0]
  %1 = tensor.empty() : tensor<4x16xf32>
  %2 = linalg.fill ins(%cst : f32) outs(%1 : tensor<4x16xf32>) -> tensor<4x16xf32>
  %3 = linalg.matmul ins(%arg0, %transposed : tensor<4x8xf32>, tensor<8x16xf32>) outs(%2 : tensor<4x16xf32>) -> tensor<4x16xf32>
  %4 = linalg.generic {indexing_maps = [#map, #map1, #map], iterator_types = ["parallel", "parallel"]} ins(%3, %b : tensor<4x16xf32>, tensor<16xf32>) outs(%1 : tensor<4x16xf32>) {
  ^bb0(%in: f32, %in_2: f32, %out: f32):
    %6 = arith.addf %in, %in_2 : f32
    linalg.yield %6 : f32
  } -> tensor<4x16xf32>
  %5 = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]} ins(%4 : tensor<4x16xf32>) outs(%1 : tensor<4x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %6 = arith.cmpf ugt, %in, %cst : f32
    %7 = arith.select %6, %in, %cst : f32
    linalg.yield %7 : f32
  } -> tensor<4x16xf32>
  return %5, %3 : tensor<4x16xf32>, tensor<4x16xf32>
}

// -----

// Negative: a matmul whose right operand is not a transposed weight, a matmul
// accumulating into a non-zero fill, and a conv padded with 1.0 (the pad is
// kept as the conv's input) are not raised to something else.

// CHECK-LABEL: func.func @not_raised
// CHECK: linalg.matmul
// CHECK: linalg.matmul
// CHECK: %[[P:.*]] = tensor.pad
// CHECK: nnf.conv2d %[[P]], %{{.*}} : (tensor<1x3x10x10xf32>, tensor<8x3x3x3xf32>) -> tensor<1x8x8x8xf32>
func.func @not_raised(%x: tensor<4x8xf32>, %y: tensor<8x16xf32>, %w: tensor<16x8xf32>, %img: tensor<1x3x8x8xf32>, %f: tensor<8x3x3x3xf32>) -> (tensor<4x16xf32>, tensor<4x16xf32>, tensor<1x8x8x8xf32>) {
  %zero = arith.constant 0.000000e+00 : f32
  %one = arith.constant 1.000000e+00 : f32
  %e = tensor.empty() : tensor<4x16xf32>
  %z = linalg.fill ins(%zero : f32) outs(%e : tensor<4x16xf32>) -> tensor<4x16xf32>
  %0 = linalg.matmul ins(%x, %y : tensor<4x8xf32>, tensor<8x16xf32>) outs(%z : tensor<4x16xf32>) -> tensor<4x16xf32>
  %et = tensor.empty() : tensor<8x16xf32>
  %t = linalg.transpose ins(%w : tensor<16x8xf32>) outs(%et : tensor<8x16xf32>) permutation = [1, 0]
  %o = linalg.fill ins(%one : f32) outs(%e : tensor<4x16xf32>) -> tensor<4x16xf32>
  %1 = linalg.matmul ins(%x, %t : tensor<4x8xf32>, tensor<8x16xf32>) outs(%o : tensor<4x16xf32>) -> tensor<4x16xf32>
  %padded = tensor.pad %img low[0, 0, 1, 1] high[0, 0, 1, 1] {
  ^bb0(%a: index, %b: index, %c: index, %d: index):
    tensor.yield %one : f32
  } : tensor<1x3x8x8xf32> to tensor<1x3x10x10xf32>
  %ec = tensor.empty() : tensor<1x8x8x8xf32>
  %zc = linalg.fill ins(%zero : f32) outs(%ec : tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %2 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%padded, %f : tensor<1x3x10x10xf32>, tensor<8x3x3x3xf32>) outs(%zc : tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  return %0, %1, %2 : tensor<4x16xf32>, tensor<4x16xf32>, tensor<1x8x8x8xf32>
}

// -----

// Negative: activation look-alikes. A "relu" comparing against 1.0, and
// torch-mlir's tanh-GELU chain, whose constant 0.797724 is not sqrt(2 / pi),
// stay generics.

#map = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-LABEL: func.func @activation_lookalikes
// CHECK-NOT: nnf.
// CHECK: linalg.generic
// CHECK: arith.select
// CHECK: linalg.generic
// CHECK: math.tanh
// CHECK-NOT: nnf.
func.func @activation_lookalikes(%arg0: tensor<4x10xf32>) -> (tensor<4x10xf32>, tensor<4x10xf32>) {
  %cst = arith.constant 1.000000e+00 : f32
  %c3_i64 = arith.constant 3 : i64
  %cst_0 = arith.constant 4.471500e-02 : f32
  %cst_1 = arith.constant 7.977240e-01 : f32
  %cst_2 = arith.constant 5.000000e-01 : f32
  %0 = tensor.empty() : tensor<4x10xf32>
  %1 = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]} ins(%arg0 : tensor<4x10xf32>) outs(%0 : tensor<4x10xf32>) {
  ^bb0(%in: f32, %out: f32):
    %3 = arith.cmpf ugt, %in, %cst : f32
    %4 = arith.select %3, %in, %cst : f32
    linalg.yield %4 : f32
  } -> tensor<4x10xf32>
  %9 = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]} ins(%arg0 : tensor<4x10xf32>) outs(%0 : tensor<4x10xf32>) {
  ^bb0(%in: f32, %out: f32):
    %11 = math.fpowi %in, %c3_i64 : f32, i64
    %12 = arith.mulf %11, %cst_0 : f32
    %13 = arith.addf %in, %12 : f32
    %14 = arith.mulf %13, %cst_1 : f32
    %15 = math.tanh %14 : f32
    %16 = arith.addf %15, %cst : f32
    %17 = arith.mulf %16, %cst_2 : f32
    %18 = arith.mulf %in, %17 : f32
    linalg.yield %18 : f32
  } -> tensor<4x10xf32>
  return %1, %9 : tensor<4x10xf32>, tensor<4x10xf32>
}

// -----

// Negative: the exponentials have a third user, so the softmax chain is left
// alone.

#map = affine_map<(d0, d1) -> (d0, d1)>
#map1 = affine_map<(d0, d1) -> (d0)>
#map2 = affine_map<(d0, d1) -> (d0, 0)>
// CHECK-LABEL: func.func @softmax_extra_use
// CHECK-NOT: nnf.softmax
// CHECK: arith.divf
func.func @softmax_extra_use(%arg0: tensor<4x10xf32>) -> (tensor<4x10xf32>, tensor<4x10xf32>) {
  %cst = arith.constant 0xFF800000 : f32
  %cst_0 = arith.constant 0.000000e+00 : f32
  %2 = tensor.empty() : tensor<4xf32>
  %3 = linalg.fill ins(%cst : f32) outs(%2 : tensor<4xf32>) -> tensor<4xf32>
  %4 = linalg.generic {indexing_maps = [#map, #map1], iterator_types = ["parallel", "reduction"]} ins(%arg0 : tensor<4x10xf32>) outs(%3 : tensor<4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %14 = arith.maximumf %in, %out : f32
    linalg.yield %14 : f32
  } -> tensor<4xf32>
  %expanded = tensor.expand_shape %4 [[0, 1]] output_shape [4, 1] : tensor<4xf32> into tensor<4x1xf32>
  %5 = tensor.empty() : tensor<4x10xf32>
  %6 = linalg.generic {indexing_maps = [#map, #map2, #map], iterator_types = ["parallel", "parallel"]} ins(%arg0, %expanded : tensor<4x10xf32>, tensor<4x1xf32>) outs(%5 : tensor<4x10xf32>) {
  ^bb0(%in: f32, %in_1: f32, %out: f32):
    %12 = arith.subf %in, %in_1 : f32
    linalg.yield %12 : f32
  } -> tensor<4x10xf32>
  %7 = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]} ins(%6 : tensor<4x10xf32>) outs(%5 : tensor<4x10xf32>) {
  ^bb0(%in: f32, %out: f32):
    %12 = math.exp %in : f32
    linalg.yield %12 : f32
  } -> tensor<4x10xf32>
  %8 = tensor.empty() : tensor<4x1xf32>
  %9 = linalg.fill ins(%cst_0 : f32) outs(%8 : tensor<4x1xf32>) -> tensor<4x1xf32>
  %10 = linalg.generic {indexing_maps = [#map, #map2], iterator_types = ["parallel", "reduction"]} ins(%7 : tensor<4x10xf32>) outs(%9 : tensor<4x1xf32>) {
  ^bb0(%in: f32, %out: f32):
    %12 = arith.addf %in, %out : f32
    linalg.yield %12 : f32
  } -> tensor<4x1xf32>
  %11 = linalg.generic {indexing_maps = [#map, #map2, #map], iterator_types = ["parallel", "parallel"]} ins(%7, %10 : tensor<4x10xf32>, tensor<4x1xf32>) outs(%5 : tensor<4x10xf32>) {
  ^bb0(%in: f32, %in_1: f32, %out: f32):
    %12 = arith.divf %in, %in_1 : f32
    linalg.yield %12 : f32
  } -> tensor<4x10xf32>
  return %11, %7 : tensor<4x10xf32>, tensor<4x10xf32>
}
