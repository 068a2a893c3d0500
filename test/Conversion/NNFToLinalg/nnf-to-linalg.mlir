// RUN: nnforge-opt %s --convert-nnf-to-linalg --split-input-file | FileCheck %s

// A linear layer is one linalg.matmul reading the weight transposed, on the
// input flattened to 2-D, accumulating onto the broadcast bias.
// CHECK-DAG: #[[LHS:.*]] = affine_map<(d0, d1, d2) -> (d0, d2)>
// CHECK-DAG: #[[RHS:.*]] = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-DAG: #[[OUT:.*]] = affine_map<(d0, d1, d2) -> (d0, d1)>
// CHECK-LABEL: func.func @linear_rank3_dynamic
// CHECK-SAME: (%[[X:.*]]: tensor<?x3x8xf32>, %[[W:.*]]: tensor<16x8xf32>, %[[B:.*]]: tensor<16xf32>)
// CHECK: %[[FLAT:.*]] = tensor.collapse_shape %[[X]] {{\[\[}}0, 1], [2]] : tensor<?x3x8xf32> into tensor<?x8xf32>
// CHECK: %[[ACC:.*]] = linalg.generic {{.*}} ins(%[[B]] : tensor<16xf32>) outs(%{{.*}} : tensor<?x16xf32>)
// CHECK: %[[MM:.*]] = linalg.matmul indexing_maps = [#[[LHS]], #[[RHS]], #[[OUT]]] ins(%[[FLAT]], %[[W]] : tensor<?x8xf32>, tensor<16x8xf32>) outs(%[[ACC]] : tensor<?x16xf32>)
// CHECK: %[[ACT:.*]] = linalg.generic {{.*}} ins(%[[MM]] : tensor<?x16xf32>)
// CHECK: math.erf
// CHECK: tensor.expand_shape %[[ACT]] {{\[\[}}0, 1], [2]] output_shape [%{{.*}}, 3, 16] : tensor<?x16xf32> into tensor<?x3x16xf32>
func.func @linear_rank3_dynamic(%x: tensor<?x3x8xf32>, %w: tensor<16x8xf32>, %b: tensor<16xf32>) -> tensor<?x3x16xf32> {
  %y = nnf.linear %x, %w, %b activation gelu : (tensor<?x3x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<?x3x16xf32>
  return %y : tensor<?x3x16xf32>
}

// -----

// f16 accumulates in f32 and rounds once; without activation or bias there
// is no other generic.
// CHECK-LABEL: func.func @linear_f16
// CHECK: %[[ZERO:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<4x16xf32>)
// CHECK: %[[MM:.*]] = linalg.matmul {{.*}} ins(%{{.*}}, %{{.*}} : tensor<4x8xf16>, tensor<16x8xf16>) outs(%[[ZERO]] : tensor<4x16xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[MM]] : tensor<4x16xf32>) outs(%{{.*}} : tensor<4x16xf16>)
// CHECK: arith.truncf %{{.*}} : f32 to f16
// CHECK-NOT: linalg.generic
func.func @linear_f16(%x: tensor<4x8xf16>, %w: tensor<16x8xf16>) -> tensor<4x16xf16> {
  %y = nnf.linear %x, %w : (tensor<4x8xf16>, tensor<16x8xf16>) -> tensor<4x16xf16>
  return %y : tensor<4x16xf16>
}

// -----

// A rank-1 input is viewed as one row.
// CHECK-LABEL: func.func @linear_vector
// CHECK: tensor.expand_shape %{{.*}} {{\[\[}}0, 1]] output_shape [1, 8] : tensor<8xf32> into tensor<1x8xf32>
// CHECK: linalg.matmul
// CHECK: tensor.collapse_shape %{{.*}} {{\[\[}}0, 1]] : tensor<1x16xf32> into tensor<16xf32>
func.func @linear_vector(%x: tensor<8xf32>, %w: tensor<16x8xf32>) -> tensor<16xf32> {
  %y = nnf.linear %x, %w : (tensor<8xf32>, tensor<16x8xf32>) -> tensor<16xf32>
  return %y : tensor<16xf32>
}

// -----

// Padding is a tensor.pad of zeros; strides and dilations go to the named op.
// CHECK-LABEL: func.func @conv2d
// CHECK: %[[PAD:.*]] = tensor.pad %{{.*}} low[0, 0, 1, 2] high[0, 0, 3, 4]
// CHECK: tensor.yield %{{.*}} : f32
// CHECK: %[[ACC:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<?x8x6x6xf32>)
// CHECK: linalg.conv_2d_nchw_fchw {dilations = dense<[1, 2]> : tensor<2xi64>, strides = dense<2> : tensor<2xi64>} ins(%[[PAD]], %{{.*}} : tensor<?x4x13x16xf32>, tensor<8x4x3x3xf32>) outs(%[[ACC]] : tensor<?x8x6x6xf32>)
// CHECK: arith.maximumf
func.func @conv2d(%x: tensor<?x4x9x10xf32>, %f: tensor<8x4x3x3xf32>, %b: tensor<8xf32>) -> tensor<?x8x6x6xf32> {
  %y = nnf.conv2d %x, %f, %b strides [2, 2] padding [1, 2, 3, 4] dilations [1, 2] activation relu : (tensor<?x4x9x10xf32>, tensor<8x4x3x3xf32>, tensor<8xf32>) -> tensor<?x8x6x6xf32>
  return %y : tensor<?x8x6x6xf32>
}

// -----

// Groups split the channels: [N, G, C/G, H, W] x [G, O/G, C/G, KH, KW].
// CHECK-LABEL: func.func @conv2d_grouped
// CHECK: tensor.expand_shape %{{.*}} {{\[\[}}0], [1, 2], [3], [4]] output_shape [1, 2, 2, 9, 9] : tensor<1x4x9x9xf32> into tensor<1x2x2x9x9xf32>
// CHECK: tensor.expand_shape %{{.*}} {{\[\[}}0, 1], [2], [3], [4]] output_shape [2, 4, 2, 3, 3] : tensor<8x2x3x3xf32> into tensor<2x4x2x3x3xf32>
// CHECK: linalg.conv_2d_ngchw_gfchw
// CHECK-SAME: outs(%{{.*}} : tensor<1x2x4x7x7xf32>)
// CHECK: tensor.collapse_shape %{{.*}} {{\[\[}}0], [1, 2], [3], [4]] : tensor<1x2x4x7x7xf32> into tensor<1x8x7x7xf32>
func.func @conv2d_grouped(%x: tensor<1x4x9x9xf32>, %f: tensor<8x2x3x3xf32>) -> tensor<1x8x7x7xf32> {
  %y = nnf.conv2d %x, %f groups 2 : (tensor<1x4x9x9xf32>, tensor<8x2x3x3xf32>) -> tensor<1x8x7x7xf32>
  return %y : tensor<1x8x7x7xf32>
}

// -----

// Softmax: the row maximum (maxnumf), the shifted exponentials stored once,
// their sum, its reciprocal per row, a multiplication; bf16 computes in f32.
// CHECK-LABEL: func.func @softmax
// CHECK: linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<?xf32>)
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "reduction"]
// CHECK: arith.maxnumf
// CHECK: %[[E:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel"]
// CHECK: math.exp
// CHECK: -> tensor<?x10xf32>
// CHECK: %[[SUM:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "reduction"]{{.*}} ins(%[[E]] :
// CHECK: arith.addf
// CHECK: %[[INV:.*]] = linalg.generic {{.*}} iterator_types = ["parallel"]{{.*}} ins(%[[SUM]] : tensor<?xf32>)
// CHECK: arith.divf %{{.*}}, %{{.*}} : f32
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel"]{{.*}} ins(%[[E]], %[[INV]] :
// CHECK-NOT: math.exp
// CHECK-NOT: arith.divf
// CHECK: arith.mulf
// CHECK: arith.truncf %{{.*}} : f32 to bf16
func.func @softmax(%x: tensor<?x10xbf16>) -> tensor<?x10xbf16> {
  %y = nnf.softmax %x axis -1 : tensor<?x10xbf16>
  return %y : tensor<?x10xbf16>
}

// -----

// Layer norm over the last two dims: two reductions (sum, squared
// deviations) then the normalization, scale and bias indexed by those dims.
// CHECK-DAG: #[[TRAILING:.*]] = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-LABEL: func.func @layer_norm
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "reduction", "reduction"]
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "reduction", "reduction"]
// CHECK: linalg.generic {indexing_maps = [{{.*}}, #[[TRAILING]], #[[TRAILING]], {{.*}}], iterator_types = ["parallel", "parallel", "parallel"]}
// CHECK: math.rsqrt
func.func @layer_norm(%x: tensor<2x?x8xf32>, %s: tensor<?x8xf32>, %b: tensor<?x8xf32>) -> tensor<2x?x8xf32> {
  %y = nnf.layer_norm %x scale %s bias %b axis 1 epsilon 1.0e-05 : (tensor<2x?x8xf32>, tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<2x?x8xf32>
  return %y : tensor<2x?x8xf32>
}

// -----

// Attention: scores contract over D, masking (boolean mask, causal) sets
// -inf, softmax along S, then a contraction over S with the values.
// CHECK-DAG: #[[MASK:.*]] = affine_map<(d0, d1, d2, d3) -> (d2, d3)>
// CHECK-LABEL: func.func @attention
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]
// CHECK: %[[SCALE:.*]] = arith.constant 2.500000e-01 : f32
// CHECK: linalg.generic {indexing_maps = [{{.*}}, #[[MASK]], {{.*}}]
// CHECK: arith.mulf %{{.*}}, %[[SCALE]] : f32
// CHECK: arith.select %{{.*}}, %{{.*}}, %{{.*}} : f32
// CHECK: linalg.index 2
// CHECK: linalg.index 3
// CHECK: arith.cmpi ugt
// CHECK: math.exp
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "parallel", "reduction", "parallel"]
func.func @attention(%q: tensor<2x4x8x16xf32>, %k: tensor<2x4x6x16xf32>, %v: tensor<2x4x6x8xf32>, %m: tensor<8x6xi1>) -> tensor<2x4x8x8xf32> {
  %y = nnf.attention %q, %k, %v mask %m causal : (tensor<2x4x8x16xf32>, tensor<2x4x6x16xf32>, tensor<2x4x6x8xf32>, tensor<8x6xi1>) -> tensor<2x4x8x8xf32>
  return %y : tensor<2x4x8x8xf32>
}

// -----

// Each activation kind in scalar arithmetic.
// CHECK-LABEL: func.func @activations
// CHECK: arith.minimumf
// CHECK: math.tanh
// CHECK: math.exp
// CHECK: arith.divf
// CHECK: arith.mulf
func.func @activations(%x: tensor<?xf16>) -> (tensor<?xf16>, tensor<?xf16>, tensor<?xf16>) {
  %a = nnf.activation relu6 %x : tensor<?xf16>
  %b = nnf.activation gelu_tanh %x : tensor<?xf16>
  %c = nnf.activation silu %x : tensor<?xf16>
  return %a, %b, %c : tensor<?xf16>, tensor<?xf16>, tensor<?xf16>
}
