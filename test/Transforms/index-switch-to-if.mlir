// RUN: nnforge-opt %s --nnf-index-switch-to-if --split-input-file | FileCheck %s
// RUN: mlir-opt %s --load-pass-plugin=%nnforge_plugin --split-input-file \
// RUN:   --pass-pipeline="builtin.module(nnf-index-switch-to-if)" | FileCheck %s
// RUN: nnforge-opt %s --split-input-file --nnf-index-switch-to-if \
// RUN:   --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" \
// RUN:   | FileCheck %s --check-prefix=BUFFERS

// Cases tested in order, the default region last (also for an index no case
// names).
// CHECK-LABEL: func.func @two_cases
// CHECK-SAME: (%[[I:.*]]: index, %[[A:.*]]: tensor<4xf32>, %[[B:.*]]: tensor<4xf32>, %[[C:.*]]: tensor<4xf32>)
// CHECK-NOT: scf.index_switch
// CHECK: %[[C2:.*]] = arith.constant 2 : index
// CHECK: %[[IS2:.*]] = arith.cmpi eq, %[[I]], %[[C2]] : index
// CHECK: %[[R:.*]] = scf.if %[[IS2]] -> (tensor<4xf32>) {
// CHECK:   scf.yield %[[A]] : tensor<4xf32>
// CHECK: } else {
// CHECK:   %[[C5:.*]] = arith.constant 5 : index
// CHECK:   %[[IS5:.*]] = arith.cmpi eq, %[[I]], %[[C5]] : index
// CHECK:   %[[R5:.*]] = scf.if %[[IS5]] -> (tensor<4xf32>) {
// CHECK:     scf.yield %[[B]] : tensor<4xf32>
// CHECK:   } else {
// CHECK:     scf.yield %[[C]] : tensor<4xf32>
// CHECK:   }
// CHECK:   scf.yield %[[R5]] : tensor<4xf32>
// CHECK: }
// CHECK: return %[[R]]
func.func @two_cases(%i: index, %a: tensor<4xf32>, %b: tensor<4xf32>, %c: tensor<4xf32>) -> tensor<4xf32> {
  %r = scf.index_switch %i -> tensor<4xf32>
  case 2 {
    scf.yield %a : tensor<4xf32>
  }
  case 5 {
    scf.yield %b : tensor<4xf32>
  }
  default {
    scf.yield %c : tensor<4xf32>
  }
  return %r : tensor<4xf32>
}

// -----

// No case: the default region's body in place of the switch.
// CHECK-LABEL: func.func @default_only
// CHECK-NOT: scf.index_switch
// CHECK-NOT: scf.if
// CHECK: %[[E:.*]] = tensor.empty() : tensor<4xf32>
// CHECK: %[[F:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%[[E]] : tensor<4xf32>)
// CHECK: return %[[F]]
func.func @default_only(%i: index, %v: f32) -> tensor<4xf32> {
  %r = scf.index_switch %i -> tensor<4xf32>
  default {
    %e = tensor.empty() : tensor<4xf32>
    %f = linalg.fill ins(%v : f32) outs(%e : tensor<4xf32>) -> tensor<4xf32>
    scf.yield %f : tensor<4xf32>
  }
  return %r : tensor<4xf32>
}

// -----

// A switch in a case: both become scf.if, with a tensor and a scalar result.
// CHECK-LABEL: func.func @nested
// CHECK-NOT: scf.index_switch
// CHECK: scf.if %{{.*}} -> (tensor<4xf32>, f32) {
// CHECK:   scf.if %{{.*}} -> (tensor<4xf32>, f32) {
func.func @nested(%i: index, %j: index, %a: tensor<4xf32>, %b: tensor<4xf32>, %x: f32, %y: f32) -> (tensor<4xf32>, f32) {
  %r:2 = scf.index_switch %i -> tensor<4xf32>, f32
  case 0 {
    %s:2 = scf.index_switch %j -> tensor<4xf32>, f32
    case 1 {
      scf.yield %b, %y : tensor<4xf32>, f32
    }
    default {
      scf.yield %a, %x : tensor<4xf32>, f32
    }
    scf.yield %s#0, %s#1 : tensor<4xf32>, f32
  }
  default {
    scf.yield %a, %y : tensor<4xf32>, f32
  }
  return %r#0, %r#1 : tensor<4xf32>, f32
}

// -----

// Without tensor results bufferization analyzes nothing: left as it is.
// CHECK-LABEL: func.func @scalars
// CHECK: scf.index_switch
func.func @scalars(%i: index, %x: f32, %y: f32) -> f32 {
  %r = scf.index_switch %i -> f32
  case 1 {
    scf.yield %x : f32
  }
  default {
    scf.yield %y : f32
  }
  return %r : f32
}

// -----

// What upstream's one-shot bufferization gets wrong with the switch: the
// cases write into %e and yield it, and a later op writes %e in place too.
// Without the rewrite the analysis does not see %r alias %e's buffer: the
// cases and the later fill all write one buffer, returned twice, and the
// fill overwrites the switch's result. As scf.if, each branch writes a
// buffer of its own.
// BUFFERS-LABEL: func.func @shared_destination
// BUFFERS-NOT: scf.index_switch
// BUFFERS: %[[E:.*]] = memref.alloc() {{.*}}: memref<4xf32>
// BUFFERS: %[[R:.*]] = scf.if %{{.*}} -> (memref<4xf32>) {
// BUFFERS:   %[[THEN:.*]] = memref.alloc() {{.*}}: memref<4xf32>
// BUFFERS:   linalg.fill ins(%{{.*}} : f32) outs(%[[THEN]] : memref<4xf32>)
// BUFFERS:   scf.yield %[[THEN]]
// BUFFERS: } else {
// BUFFERS:   %[[ELSE:.*]] = memref.alloc() {{.*}}: memref<4xf32>
// BUFFERS:   linalg.fill ins(%{{.*}} : f32) outs(%[[ELSE]] : memref<4xf32>)
// BUFFERS:   scf.yield %[[ELSE]]
// BUFFERS: }
// BUFFERS: linalg.fill ins(%{{.*}} : f32) outs(%[[E]] : memref<4xf32>)
// BUFFERS: return %[[R]], %[[E]]
func.func @shared_destination(%i: index, %x: f32, %y: f32, %z: f32) -> (tensor<4xf32>, tensor<4xf32>) {
  %e = tensor.empty() : tensor<4xf32>
  %r = scf.index_switch %i -> tensor<4xf32>
  case 0 {
    %f = linalg.fill ins(%x : f32) outs(%e : tensor<4xf32>) -> tensor<4xf32>
    scf.yield %f : tensor<4xf32>
  }
  default {
    %f = linalg.fill ins(%y : f32) outs(%e : tensor<4xf32>) -> tensor<4xf32>
    scf.yield %f : tensor<4xf32>
  }
  %later = linalg.fill ins(%z : f32) outs(%e : tensor<4xf32>) -> tensor<4xf32>
  return %r, %later : tensor<4xf32>, tensor<4xf32>
}
