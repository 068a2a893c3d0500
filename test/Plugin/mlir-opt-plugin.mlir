// The wheel's own mlir-opt loads nnforge as a plugin. Plugin passes are
// reached through --pass-pipeline: mlir-opt parses its flags before plugins load.
// RUN: mlir-opt %s --load-dialect-plugin=%nnforge_plugin --load-pass-plugin=%nnforge_plugin | FileCheck %s --check-prefix=PARSE
// RUN: mlir-opt %s --load-dialect-plugin=%nnforge_plugin --load-pass-plugin=%nnforge_plugin \
// RUN:   --pass-pipeline="builtin.module(canonicalize)" | FileCheck %s --check-prefix=CANON
// RUN: not mlir-opt %s 2>&1 | FileCheck %s --check-prefix=NOPLUGIN

// PARSE: nnf.linear %{{.*}}, %{{.*}} : (tensor<2x8xf32>, tensor<4x8xf32>) -> tensor<2x4xf32>
// PARSE: nnf.activation relu
// CANON: nnf.linear %{{.*}}, %{{.*}} activation relu
// CANON-NOT: nnf.activation
// NOPLUGIN: Dialect `nnf' not found
func.func @linear_relu(%x: tensor<2x8xf32>, %w: tensor<4x8xf32>) -> tensor<2x4xf32> {
  %0 = nnf.linear %x, %w : (tensor<2x8xf32>, tensor<4x8xf32>) -> tensor<2x4xf32>
  %1 = nnf.activation relu %0 : tensor<2x4xf32>
  return %1 : tensor<2x4xf32>
}
