// RUN: nnforge-opt %s --nnf-conv-to-im2col --split-input-file | FileCheck %s
// RUN: nnforge-opt %s --nnf-conv-to-im2col=direct-min-width=7 --split-input-file | FileCheck %s --check-prefix=WIDTH7
// RUN: nnforge-opt %s --nnf-conv-to-im2col="row-tile-min=4 row-tile-max=4" --split-input-file | FileCheck %s --check-prefix=AVX2

// A 3x3 convolution: the windows are copied into a 6-D tensor through the
// convolution's input map (no floordiv/mod), collapsed into the matmul
// operand; the filter is collapsed to a matrix.
// CHECK-DAG: #[[WINDOW:.*]] = affine_map<(d0, d1, d2, d3, d4, d5) -> (d0, d1, d2 + d4, d3 + d5)>
// CHECK-DAG: #[[FILTER:.*]] = affine_map<(d0, d1, d2, d3) -> (d1, d3)>
// CHECK-DAG: #[[COLUMNS:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d3, d2)>
// CHECK-LABEL: func.func @conv3x3
// CHECK: %[[WINDOWS:.*]] = linalg.generic {indexing_maps = [#[[WINDOW]], {{.*}}], iterator_types = ["parallel", "parallel", "parallel", "parallel", "parallel", "parallel"]}
// CHECK-SAME: outs(%{{.*}} : tensor<1x8x3x3x6x6xf32>)
// CHECK-NEXT: ^bb0(%[[IN:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: linalg.yield %[[IN]] : f32
// CHECK: %[[COLUMNS_VALUE:.*]] = tensor.collapse_shape %[[WINDOWS]] {{\[}}[0], [1, 2, 3], [4, 5]] : tensor<1x8x3x3x6x6xf32> into tensor<1x72x36xf32>
// CHECK: %[[MATRIX:.*]] = tensor.collapse_shape %{{.*}} {{\[}}[0], [1, 2, 3]] : tensor<16x8x3x3xf32> into tensor<16x72xf32>
// CHECK: %[[PRODUCT:.*]] = linalg.generic {indexing_maps = [#[[FILTER]], #[[COLUMNS]], {{.*}}], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%[[MATRIX]], %[[COLUMNS_VALUE]] : tensor<16x72xf32>, tensor<1x72x36xf32>)
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK: tensor.expand_shape %[[PRODUCT]] {{\[}}[0], [1], [2, 3]] {{.*}} : tensor<1x16x36xf32> into tensor<1x16x6x6xf32>
// CHECK-NOT: linalg.conv_2d_nchw_fchw
func.func @conv3x3(%x: tensor<1x8x8x8xf32>, %w: tensor<16x8x3x3xf32>, %init: tensor<1x16x6x6xf32>) -> tensor<1x16x6x6xf32> {
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x8x8x8xf32>, tensor<16x8x3x3xf32>) outs(%init : tensor<1x16x6x6xf32>) -> tensor<1x16x6x6xf32>
  return %y : tensor<1x16x6x6xf32>
}

// -----

// Strides and dilations scale the window map.
// CHECK: affine_map<(d0, d1, d2, d3, d4, d5) -> (d0, d1, d4 * 2 + d2 * 3, d5 * 2 + d3 * 3)>
// CHECK-LABEL: func.func @strided_dilated
func.func @strided_dilated(%x: tensor<2x4x16x16xf32>, %w: tensor<8x4x3x3xf32>, %init: tensor<2x8x5x5xf32>) -> tensor<2x8x5x5xf32> {
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<3> : tensor<2xi64>, strides = dense<2> : tensor<2xi64>}
      ins(%x, %w : tensor<2x4x16x16xf32>, tensor<8x4x3x3xf32>) outs(%init : tensor<2x8x5x5xf32>) -> tensor<2x8x5x5xf32>
  return %y : tensor<2x8x5x5xf32>
}

// -----

// Dynamic shapes are left to upstream's lowering.
// CHECK-LABEL: func.func @dynamic
// CHECK: linalg.conv_2d_nchw_fchw
func.func @dynamic(%x: tensor<?x8x8x8xf32>, %w: tensor<16x8x3x3xf32>, %init: tensor<?x16x6x6xf32>) -> tensor<?x16x6x6xf32> {
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<?x8x8x8xf32>, tensor<16x8x3x3xf32>) outs(%init : tensor<?x16x6x6xf32>) -> tensor<?x16x6x6xf32>
  return %y : tensor<?x16x6x6xf32>
}

// -----

// A 1x1 convolution with unit strides needs no window copy: the input,
// spatial dims collapsed, is the matmul operand.
// CHECK-LABEL: func.func @pointwise
// CHECK-NOT: tensor.empty
// CHECK: %[[COLUMNS:.*]] = tensor.collapse_shape %{{.*}} {{\[}}[0], [1], [2, 3]] : tensor<1x32x7x7xf32> into tensor<1x32x49xf32>
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[COLUMNS]] : tensor<192x32xf32>, tensor<1x32x49xf32>)
func.func @pointwise(%x: tensor<1x32x7x7xf32>, %w: tensor<192x32x1x1xf32>, %init: tensor<1x192x7x7xf32>) -> tensor<1x192x7x7xf32> {
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x32x7x7xf32>, tensor<192x32x1x1xf32>) outs(%init : tensor<1x192x7x7xf32>) -> tensor<1x192x7x7xf32>
  return %y : tensor<1x192x7x7xf32>
}

// -----

// A 7x7 output (49 pixels, no multiple of 16) of 32 channels from a constant
// filter: computed transposed, channels innermost, from the windows of each
// output row ([1, OH, C*KH*KW, OW]: a row's pixels side by side at each k),
// [1, 7, 7, 32] = rows x filter^T, the filter and accumulator transposed
// in, the product out.
// CHECK-DAG: #[[WINDOWS:.*]] = affine_map<(d0, d1, d2, d3, d4, d5) -> (d0, d1, d2 + d4, d3 + d5)>
// CHECK-DAG: #[[ROW_MAJOR:.*]] = affine_map<(d0, d1, d2, d3, d4, d5) -> (d0, d4, d1, d2, d3, d5)>
// CHECK-DAG: #[[ROWS_T:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d4, d2)>
// CHECK-DAG: #[[FILTER_T:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d4, d3)>
// CHECK-DAG: #[[OUT_T:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d3)>
// CHECK-LABEL: func.func @channels_innermost
// With direct-min-width=7 its rows of 7 pixels are computed directly instead.
// WIDTH7-LABEL: func.func @channels_innermost
// WIDTH7-NOT: tensor.collapse_shape
// WIDTH7: linalg.conv_2d_nhwc_hwcf {{.*}} -> tensor<1x7x7x32xf32>
// With register tiles of 4 rows only (AVX2), which do not divide its rows
// of 7 pixels, its windows are copied as one matrix of 49 pixels.
// AVX2-LABEL: func.func @channels_innermost
// AVX2: %[[COLUMNS:.*]] = tensor.collapse_shape %{{.*}} {{\[}}[0], [1, 2, 3], [4, 5]] : tensor<1x4x3x3x7x7xf32> into tensor<1x36x49xf32>
// AVX2: linalg.generic {{.*}} ins(%[[COLUMNS]], %{{.*}} : tensor<1x36x49xf32>, tensor<36x32xf32>) outs(%{{.*}} : tensor<1x49x32xf32>)
// CHECK: %[[WINDOW_COPY:.*]] = linalg.generic {indexing_maps = [#[[WINDOWS]], #[[ROW_MAJOR]]]{{.*}} outs(%{{.*}} : tensor<1x7x4x3x3x7xf32>)
// CHECK: %[[ROWS:.*]] = tensor.collapse_shape %[[WINDOW_COPY]] {{\[}}[0], [1], [2, 3, 4], [5]] : tensor<1x7x4x3x3x7xf32> into tensor<1x7x36x7xf32>
// CHECK: %[[INIT:.*]] = linalg.transpose ins(%{{.*}} : tensor<1x32x49xf32>) outs(%{{.*}} : tensor<1x49x32xf32>) permutation = [0, 2, 1]
// CHECK: %[[INIT_ROWS:.*]] = tensor.expand_shape %[[INIT]] {{\[}}[0], [1, 2], [3]] {{.*}} : tensor<1x49x32xf32> into tensor<1x7x7x32xf32>
// CHECK: %[[FILTER:.*]] = linalg.transpose ins(%{{.*}} : tensor<32x4x3x3xf32>) outs(%{{.*}} : tensor<4x3x3x32xf32>) permutation = [1, 2, 3, 0]
// CHECK: %[[MATRIX:.*]] = tensor.collapse_shape %[[FILTER]] {{\[}}[0, 1, 2], [3]] : tensor<4x3x3x32xf32> into tensor<36x32xf32>
// CHECK: %[[PRODUCT:.*]] = linalg.generic {indexing_maps = [#[[ROWS_T]], #[[FILTER_T]], #[[OUT_T]]], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]} ins(%[[ROWS]], %[[MATRIX]] : tensor<1x7x36x7xf32>, tensor<36x32xf32>) outs(%[[INIT_ROWS]] : tensor<1x7x7x32xf32>)
// CHECK: %[[PIXELS:.*]] = tensor.collapse_shape %[[PRODUCT]] {{\[}}[0], [1, 2], [3]] : tensor<1x7x7x32xf32> into tensor<1x49x32xf32>
// CHECK: %[[BACK:.*]] = linalg.transpose ins(%[[PIXELS]] : tensor<1x49x32xf32>) outs(%{{.*}} : tensor<1x32x49xf32>) permutation = [0, 2, 1]
// CHECK: tensor.expand_shape %[[BACK]] {{\[}}[0], [1], [2, 3]] {{.*}} : tensor<1x32x49xf32> into tensor<1x32x7x7xf32>
func.func @channels_innermost(%x: tensor<1x4x9x9xf32>, %init: tensor<1x32x7x7xf32>) -> tensor<1x32x7x7xf32> {
  %w = arith.constant dense<0.5> : tensor<32x4x3x3xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x4x9x9xf32>, tensor<32x4x3x3xf32>) outs(%init : tensor<1x32x7x7xf32>) -> tensor<1x32x7x7xf32>
  return %y : tensor<1x32x7x7xf32>
}

// -----

// Pixels a multiple of 16 (4x4), channels no multiple of 32, or a filter
// that is no constant: the product keeps the pixels innermost.
// CHECK-LABEL: func.func @pixels_innermost
// CHECK-NOT: linalg.transpose
// CHECK-LABEL: func.func @few_channels
// CHECK-NOT: linalg.transpose
// CHECK-LABEL: func.func @runtime_filter
// CHECK-NOT: linalg.transpose
func.func @pixels_innermost(%x: tensor<1x4x6x6xf32>, %init: tensor<1x32x4x4xf32>) -> tensor<1x32x4x4xf32> {
  %w = arith.constant dense<0.5> : tensor<32x4x3x3xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x4x6x6xf32>, tensor<32x4x3x3xf32>) outs(%init : tensor<1x32x4x4xf32>) -> tensor<1x32x4x4xf32>
  return %y : tensor<1x32x4x4xf32>
}
func.func @few_channels(%x: tensor<1x4x9x9xf32>, %init: tensor<1x16x7x7xf32>) -> tensor<1x16x7x7xf32> {
  %w = arith.constant dense<0.5> : tensor<16x4x3x3xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x4x9x9xf32>, tensor<16x4x3x3xf32>) outs(%init : tensor<1x16x7x7xf32>) -> tensor<1x16x7x7xf32>
  return %y : tensor<1x16x7x7xf32>
}
func.func @runtime_filter(%x: tensor<1x4x9x9xf32>, %w: tensor<32x4x3x3xf32>, %init: tensor<1x32x7x7xf32>) -> tensor<1x32x7x7xf32> {
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x4x9x9xf32>, tensor<32x4x3x3xf32>) outs(%init : tensor<1x32x7x7xf32>) -> tensor<1x32x7x7xf32>
  return %y : tensor<1x32x7x7xf32>
}

// -----

// Unit strides, output rows of 8 pixels or more, whole vectors of output
// channels and a constant filter: an NHWC/HWCF convolution (computed from
// the input directly) between transposing copies; the zero accumulator is
// filled in NHWC, the filter transposed to HWCF, the padding done in NHWC
// after the copy of the unpadded input.
// CHECK-DAG: #[[TO_NHWC:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d3, d1, d2)>
// CHECK-DAG: #[[TO_NCHW:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d2, d3, d1)>
// CHECK-LABEL: func.func @direct
// CHECK: %[[FILL:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<1x8x8x32xf32>)
// CHECK: %[[COPY:.*]] = linalg.generic {indexing_maps = [#[[TO_NHWC]], {{.*}}]{{.*}} ins(%{{.*}} : tensor<1x4x8x8xf32>) outs(%{{.*}} : tensor<1x8x8x4xf32>)
// CHECK: %[[INPUT:.*]] = tensor.pad %[[COPY]] low[0, 1, 1, 0] high[0, 1, 1, 0]
// CHECK: tensor<1x8x8x4xf32> to tensor<1x10x10x4xf32>
// CHECK: %[[FILTER:.*]] = linalg.transpose ins(%{{.*}} : tensor<32x4x3x3xf32>) outs(%{{.*}} : tensor<3x3x4x32xf32>) permutation = [2, 3, 1, 0]
// CHECK: %[[CONV:.*]] = linalg.conv_2d_nhwc_hwcf {{.*}} ins(%[[INPUT]], %[[FILTER]] : {{.*}}) outs(%[[FILL]] : tensor<1x8x8x32xf32>)
// CHECK: linalg.generic {indexing_maps = [#[[TO_NCHW]], {{.*}}]{{.*}} ins(%[[CONV]] : tensor<1x8x8x32xf32>) outs(%{{.*}} : tensor<1x32x8x8xf32>)
// CHECK-NOT: linalg.conv_2d_nchw_fchw
func.func @direct(%source: tensor<1x4x8x8xf32>) -> tensor<1x32x8x8xf32> {
  %zero = arith.constant 0.0 : f32
  %x = tensor.pad %source low[0, 0, 1, 1] high[0, 0, 1, 1] {
  ^bb0(%i: index, %j: index, %k: index, %l: index):
    tensor.yield %zero : f32
  } : tensor<1x4x8x8xf32> to tensor<1x4x10x10xf32>
  %empty = tensor.empty() : tensor<1x32x8x8xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<1x32x8x8xf32>) -> tensor<1x32x8x8xf32>
  %w = arith.constant dense<0.5> : tensor<32x4x3x3xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x4x10x10xf32>, tensor<32x4x3x3xf32>) outs(%init : tensor<1x32x8x8xf32>) -> tensor<1x32x8x8xf32>
  return %y : tensor<1x32x8x8xf32>
}

// -----

// An accumulator that is no fill (a bias) is copied into NHWC.
// CHECK-DAG: #[[INIT_TO_NHWC:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d3, d1, d2)>
// CHECK-LABEL: func.func @direct_accumulator
// CHECK: %[[INIT:.*]] = linalg.generic {indexing_maps = [#[[INIT_TO_NHWC]], {{.*}}]{{.*}} ins(%{{.*}} : tensor<1x16x8x8xf32>) outs(%{{.*}} : tensor<1x8x8x16xf32>)
// CHECK: linalg.conv_2d_nhwc_hwcf {{.*}} outs(%[[INIT]] : tensor<1x8x8x16xf32>)
func.func @direct_accumulator(%x: tensor<1x4x10x10xf32>, %init: tensor<1x16x8x8xf32>) -> tensor<1x16x8x8xf32> {
  %w = arith.constant dense<0.5> : tensor<16x4x3x3xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x4x10x10xf32>, tensor<16x4x3x3xf32>) outs(%init : tensor<1x16x8x8xf32>) -> tensor<1x16x8x8xf32>
  return %y : tensor<1x16x8x8xf32>
}

// -----

// A broadcast of the channels (a bias, as ONNX's importer writes it) is
// broadcast into NHWC instead.
// CHECK-LABEL: func.func @direct_bias
// CHECK: %[[BIAS:.*]] = linalg.broadcast ins(%{{.*}} : tensor<16xf32>) outs(%{{.*}} : tensor<1x8x8x16xf32>) dimensions = [0, 1, 2]
// CHECK: linalg.conv_2d_nhwc_hwcf {{.*}} outs(%[[BIAS]] : tensor<1x8x8x16xf32>)
func.func @direct_bias(%x: tensor<1x4x10x10xf32>, %b: tensor<16xf32>) -> tensor<1x16x8x8xf32> {
  %w = arith.constant dense<0.5> : tensor<16x4x3x3xf32>
  %empty = tensor.empty() : tensor<1x16x8x8xf32>
  %init = linalg.broadcast ins(%b : tensor<16xf32>) outs(%empty : tensor<1x16x8x8xf32>) dimensions = [0, 2, 3]
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x4x10x10xf32>, tensor<16x4x3x3xf32>) outs(%init : tensor<1x16x8x8xf32>) -> tensor<1x16x8x8xf32>
  return %y : tensor<1x16x8x8xf32>
}

// -----

// NHWC/HWCF (jax's layout): the windows [N, OH, OW, KH, KW, C] copied through
// the convolution's input map with channels innermost, collapsed to
// [N, OH*OW, KH*KW*C]; the filter collapsed to [KH*KW*C, F] as it is; the
// product [N, OH*OW, F] has the output channels innermost, nothing transposed.
// CHECK-DAG: #[[NHWC_WINDOW:.*]] = affine_map<(d0, d1, d2, d3, d4, d5) -> (d0, d1 * 2 + d3, d2 * 2 + d4, d5)>
// CHECK-DAG: #[[NHWC_COLUMNS:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>
// CHECK-DAG: #[[NHWC_FILTER:.*]] = affine_map<(d0, d1, d2, d3) -> (d3, d2)>
// CHECK-DAG: #[[NHWC_OUT:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @nhwc
// CHECK-NOT: linalg.transpose
// CHECK: %[[WINDOWS:.*]] = linalg.generic {indexing_maps = [#[[NHWC_WINDOW]], {{.*}}], iterator_types = ["parallel", "parallel", "parallel", "parallel", "parallel", "parallel"]}
// CHECK-SAME: outs(%{{.*}} : tensor<2x3x3x3x3x8xf32>)
// CHECK-NEXT: ^bb0(%[[IN:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: linalg.yield %[[IN]] : f32
// CHECK: %[[COLUMNS:.*]] = tensor.collapse_shape %[[WINDOWS]] {{\[}}[0], [1, 2], [3, 4, 5]] : tensor<2x3x3x3x3x8xf32> into tensor<2x9x72xf32>
// CHECK: %[[MATRIX:.*]] = tensor.collapse_shape %{{.*}} {{\[}}[0, 1, 2], [3]] : tensor<3x3x8x16xf32> into tensor<72x16xf32>
// CHECK: %[[INIT:.*]] = tensor.collapse_shape %{{.*}} {{\[}}[0], [1, 2], [3]] : tensor<2x3x3x16xf32> into tensor<2x9x16xf32>
// CHECK: %[[PRODUCT:.*]] = linalg.generic {indexing_maps = [#[[NHWC_COLUMNS]], #[[NHWC_FILTER]], #[[NHWC_OUT]]], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%[[COLUMNS]], %[[MATRIX]] : tensor<2x9x72xf32>, tensor<72x16xf32>) outs(%[[INIT]] : tensor<2x9x16xf32>)
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK: tensor.expand_shape %[[PRODUCT]] {{\[}}[0], [1, 2], [3]] {{.*}} : tensor<2x9x16xf32> into tensor<2x3x3x16xf32>
// CHECK-NOT: linalg.conv_2d_nhwc_hwcf
func.func @nhwc(%x: tensor<2x7x7x8xf32>, %w: tensor<3x3x8x16xf32>, %init: tensor<2x3x3x16xf32>) -> tensor<2x3x3x16xf32> {
  %y = linalg.conv_2d_nhwc_hwcf {dilations = dense<1> : tensor<2xi64>, strides = dense<2> : tensor<2xi64>}
      ins(%x, %w : tensor<2x7x7x8xf32>, tensor<3x3x8x16xf32>) outs(%init : tensor<2x3x3x16xf32>) -> tensor<2x3x3x16xf32>
  return %y : tensor<2x3x3x16xf32>
}

// -----

// A 1x1 NHWC convolution with unit strides: the input, spatial dims
// collapsed, is the matmul operand.
// CHECK-LABEL: func.func @nhwc_pointwise
// CHECK-NOT: tensor.empty
// CHECK: %[[COLUMNS:.*]] = tensor.collapse_shape %{{.*}} {{\[}}[0], [1, 2], [3]] : tensor<1x7x7x32xf32> into tensor<1x49x32xf32>
// CHECK: linalg.generic {{.*}} ins(%[[COLUMNS]], %{{.*}} : tensor<1x49x32xf32>, tensor<32x64xf32>)
func.func @nhwc_pointwise(%x: tensor<1x7x7x32xf32>, %w: tensor<1x1x32x64xf32>, %init: tensor<1x7x7x64xf32>) -> tensor<1x7x7x64xf32> {
  %y = linalg.conv_2d_nhwc_hwcf {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x7x7x32xf32>, tensor<1x1x32x64xf32>) outs(%init : tensor<1x7x7x64xf32>) -> tensor<1x7x7x64xf32>
  return %y : tensor<1x7x7x64xf32>
}

// -----

// Mixed element types (f16 in, f32 out) and dynamic shapes are left alone.
// CHECK-LABEL: func.func @nhwc_mixed
// CHECK: linalg.conv_2d_nhwc_hwcf
// CHECK-LABEL: func.func @nhwc_dynamic
// CHECK: linalg.conv_2d_nhwc_hwcf
func.func @nhwc_mixed(%x: tensor<1x5x5x4xf16>, %w: tensor<3x3x4x8xf16>, %init: tensor<1x3x3x8xf32>) -> tensor<1x3x3x8xf32> {
  %y = linalg.conv_2d_nhwc_hwcf {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x5x5x4xf16>, tensor<3x3x4x8xf16>) outs(%init : tensor<1x3x3x8xf32>) -> tensor<1x3x3x8xf32>
  return %y : tensor<1x3x3x8xf32>
}
func.func @nhwc_dynamic(%x: tensor<?x5x5x4xf32>, %w: tensor<3x3x4x8xf32>, %init: tensor<?x3x3x8xf32>) -> tensor<?x3x3x8xf32> {
  %y = linalg.conv_2d_nhwc_hwcf {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<?x5x5x4xf32>, tensor<3x3x4x8xf32>) outs(%init : tensor<?x3x3x8xf32>) -> tensor<?x3x3x8xf32>
  return %y : tensor<?x3x3x8xf32>
}

// -----

// A 3x3 NHWC convolution with unit strides and dilations stays: the CPU code
// generation computes it from the input directly, without a window copy.
// CHECK-LABEL: func.func @nhwc_unit_strides
// CHECK-NOT: linalg.generic
// CHECK: linalg.conv_2d_nhwc_hwcf
func.func @nhwc_unit_strides(%x: tensor<1x9x9x8xf32>, %w: tensor<3x3x8x16xf32>, %init: tensor<1x7x7x16xf32>) -> tensor<1x7x7x16xf32> {
  %y = linalg.conv_2d_nhwc_hwcf {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x9x9x8xf32>, tensor<3x3x8x16xf32>) outs(%init : tensor<1x7x7x16xf32>) -> tensor<1x7x7x16xf32>
  return %y : tensor<1x7x7x16xf32>
}
