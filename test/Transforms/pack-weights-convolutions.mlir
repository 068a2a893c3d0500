// RUN: nnforge-opt %s --nnf-pack-weights="panel=4 convolution-panel=4" --split-input-file | FileCheck %s
// RUN: nnforge-opt %s --nnf-pack-weights="panel=4 convolution-panel=4 convolution-min-bytes=65" --split-input-file | FileCheck %s --check-prefix=SMALL
// RUN: nnforge-opt %s --nnf-pack-weights="panel=4" --split-input-file | FileCheck %s --check-prefix=OFF

// A convolution computed from its input directly (NHWC/HWCF, unit strides
// and dilations) by a constant filter [KH=2, KW=1, C=1, F=8]: the filter
// stored as two panels of 4 output channels, [2, 2, 1, 1, 4], the
// convolution a generic with the column within a panel as its last loop,
// its result split likewise and collapsed back.
// CHECK-DAG: #[[IN_MAP:.*]] = affine_map<(d0, d1, d2, d3, d4, d5, d6, d7) -> (d0, d1 + d4, d2 + d5, d6)>
// CHECK-DAG: #[[FILTER_MAP:.*]] = affine_map<(d0, d1, d2, d3, d4, d5, d6, d7) -> (d3, d4, d5, d6, d7)>
// CHECK-DAG: #[[OUT_MAP:.*]] = affine_map<(d0, d1, d2, d3, d4, d5, d6, d7) -> (d0, d1, d2, d3, d7)>
// CHECK-LABEL: func.func @direct
// CHECK-SAME: (%[[X:.*]]: tensor<1x3x2x1xf32>, %[[ACC:.*]]: tensor<1x2x2x8xf32>)
// CHECK: %[[PANELS:.*]] = arith.constant dense<{{\[\[\[\[\[}}0.000000e+00, 1.000000e+00, 2.000000e+00, 3.000000e+00]]], {{\[\[\[}}8.000000e+00, 9.000000e+00, 1.000000e+01, 1.100000e+01]]]], {{\[\[\[\[}}4.000000e+00, 5.000000e+00, 6.000000e+00, 7.000000e+00]]], {{\[\[\[}}1.200000e+01, 1.300000e+01, 1.400000e+01, 1.500000e+01]]]]]> : tensor<2x2x1x1x4xf32>
// CHECK: %[[SPLIT:.*]] = tensor.expand_shape %[[ACC]] {{\[\[}}0], [1], [2], [3, 4]] output_shape [1, 2, 2, 2, 4]
// CHECK: %[[R:.*]] = linalg.generic {indexing_maps = [#[[IN_MAP]], #[[FILTER_MAP]], #[[OUT_MAP]]], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction", "reduction", "reduction", "parallel"]}
// CHECK-SAME: ins(%[[X]], %[[PANELS]] : tensor<1x3x2x1xf32>, tensor<2x2x1x1x4xf32>) outs(%[[SPLIT]] : tensor<1x2x2x2x4xf32>)
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK: %[[FLAT:.*]] = tensor.collapse_shape %[[R]] {{\[\[}}0], [1], [2], [3, 4]] : tensor<1x2x2x2x4xf32> into tensor<1x2x2x8xf32>
// CHECK: return %[[FLAT]]
// Smaller than convolution-min-bytes, or convolution-panel unset: left alone.
// SMALL-LABEL: func.func @direct
// SMALL: linalg.conv_2d_nhwc_hwcf
// OFF-LABEL: func.func @direct
// OFF: linalg.conv_2d_nhwc_hwcf
func.func @direct(%x: tensor<1x3x2x1xf32>, %acc: tensor<1x2x2x8xf32>) -> tensor<1x2x2x8xf32> {
  %w = arith.constant dense<[[[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]], [[[8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0]]]]> : tensor<2x1x1x8xf32>
  %r = linalg.conv_2d_nhwc_hwcf {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x3x2x1xf32>, tensor<2x1x1x8xf32>) outs(%acc : tensor<1x2x2x8xf32>) -> tensor<1x2x2x8xf32>
  return %r : tensor<1x2x2x8xf32>
}

// -----

// Left alone: strides (such a convolution is an im2col product, whose
// filter is packed as a contraction's), a filter computed at run time, and
// a filter of one panel.
// CHECK-LABEL: func.func @strided
// CHECK: linalg.conv_2d_nhwc_hwcf
// CHECK-LABEL: func.func @argument
// CHECK: linalg.conv_2d_nhwc_hwcf
// CHECK-LABEL: func.func @one_panel
// CHECK: linalg.conv_2d_nhwc_hwcf
func.func @strided(%x: tensor<1x3x3x1xf32>, %acc: tensor<1x1x2x8xf32>) -> tensor<1x1x2x8xf32> {
  %w = arith.constant dense<[[[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]], [[[8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0]]]]> : tensor<2x1x1x8xf32>
  %r = linalg.conv_2d_nhwc_hwcf {dilations = dense<1> : tensor<2xi64>, strides = dense<2> : tensor<2xi64>}
      ins(%x, %w : tensor<1x3x3x1xf32>, tensor<2x1x1x8xf32>) outs(%acc : tensor<1x1x2x8xf32>) -> tensor<1x1x2x8xf32>
  return %r : tensor<1x1x2x8xf32>
}
func.func @argument(%x: tensor<1x3x2x1xf32>, %w: tensor<2x1x1x8xf32>, %acc: tensor<1x2x2x8xf32>) -> tensor<1x2x2x8xf32> {
  %r = linalg.conv_2d_nhwc_hwcf {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x3x2x1xf32>, tensor<2x1x1x8xf32>) outs(%acc : tensor<1x2x2x8xf32>) -> tensor<1x2x2x8xf32>
  return %r : tensor<1x2x2x8xf32>
}
func.func @one_panel(%x: tensor<1x3x2x1xf32>, %acc: tensor<1x2x2x4xf32>) -> tensor<1x2x2x4xf32> {
  %w = arith.constant dense<[[[[0.0, 1.0, 2.0, 3.0]]], [[[8.0, 9.0, 10.0, 11.0]]]]> : tensor<2x1x1x4xf32>
  %r = linalg.conv_2d_nhwc_hwcf {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
      ins(%x, %w : tensor<1x3x2x1xf32>, tensor<2x1x1x4xf32>) outs(%acc : tensor<1x2x2x4xf32>) -> tensor<1x2x2x4xf32>
  return %r : tensor<1x2x2x4xf32>
}
