// RUN: nnforge-opt %s --split-input-file --nnf-profile-dispatch-regions --verify-diagnostics | FileCheck %s

// The public function is region 0, timed from its entry to its return; the
// dispatch region is region 1 and the linalg op outside it region 2, each
// between a start and a stop call; the tensor.empty computes nothing and is
// not a region. The counters are the module's own: two per region.
// CHECK-DAG: llvm.func @nnforge_profile_start() -> i64
// CHECK-DAG: llvm.func @nnforge_profile_stop(!llvm.ptr, i64, i64)
// CHECK-LABEL: func.func @main
// CHECK-SAME: nnf.profile_region = 0 : i64
// CHECK-NEXT: %[[T0:.*]] = llvm.call @nnforge_profile_start() : () -> i64
// CHECK-NEXT: %[[T1:.*]] = llvm.call @nnforge_profile_start() : () -> i64
// CHECK-NEXT: %[[D:.*]] = nnf.dispatch {{.*}} attributes {nnf.profile_region = 1 : i64}
// CHECK: nnf.yield
// CHECK-NEXT: }
// CHECK-NEXT: %[[P1:.*]] = llvm.mlir.addressof @nnf_profile_counters : !llvm.ptr
// CHECK-NEXT: %[[C1:.*]] = arith.constant 1 : i64
// CHECK-NEXT: llvm.call @nnforge_profile_stop(%[[P1]], %[[C1]], %[[T1]]) : (!llvm.ptr, i64, i64) -> ()
// CHECK-NEXT: tensor.empty
// CHECK-NEXT: %[[T2:.*]] = llvm.call @nnforge_profile_start() : () -> i64
// CHECK-NEXT: %[[G:.*]] = linalg.generic {{.*}} attrs = {nnf.profile_region = 2 : i64}
// CHECK: } -> tensor<8xf32>
// CHECK-NEXT: %[[P2:.*]] = llvm.mlir.addressof @nnf_profile_counters : !llvm.ptr
// CHECK-NEXT: %[[C2:.*]] = arith.constant 2 : i64
// CHECK-NEXT: llvm.call @nnforge_profile_stop(%[[P2]], %[[C2]], %[[T2]])
// CHECK-NEXT: %[[P0:.*]] = llvm.mlir.addressof @nnf_profile_counters : !llvm.ptr
// CHECK-NEXT: %[[C0:.*]] = arith.constant 0 : i64
// CHECK-NEXT: llvm.call @nnforge_profile_stop(%[[P0]], %[[C0]], %[[T0]])
// CHECK-NEXT: return %[[G]]
// The private helper is not profiled (its caller's regions time it).
// CHECK-LABEL: func.func private @helper
// CHECK-NOT: llvm.call
// CHECK: return
// CHECK: llvm.mlir.global internal @nnf_profile_counters(dense<0> : tensor<6xi64>) {{.*}} : !llvm.array<6 x i64>
// CHECK-LABEL: func.func @nnf_profile_counters_address() -> !llvm.ptr
// CHECK-NEXT: %[[A:.*]] = llvm.mlir.addressof @nnf_profile_counters : !llvm.ptr
// CHECK-NEXT: return %[[A]] : !llvm.ptr
#map = affine_map<(d0) -> (d0)>
func.func @main(%x: tensor<8xf32>, %y: tensor<8xf32>) -> tensor<8xf32> {
  %d = nnf.dispatch ins(%x, %y : tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32> {
  ^bb0(%a: tensor<8xf32>, %b: tensor<8xf32>):
    %s = arith.addf %a, %b : tensor<8xf32>
    %e = math.exp %s : tensor<8xf32>
    nnf.yield %e : tensor<8xf32>
  }
  %empty = tensor.empty() : tensor<8xf32>
  %g = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel"]}
      ins(%d : tensor<8xf32>) outs(%empty : tensor<8xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<8xf32>
  return %g : tensor<8xf32>
}
func.func private @helper(%x: tensor<8xf32>) -> tensor<8xf32> {
  %e = math.exp %x : tensor<8xf32>
  return %e : tensor<8xf32>
}

// -----

// A function with several returns stops its timer before each.
// CHECK-LABEL: func.func @branches
// CHECK: %[[T0:.*]] = llvm.call @nnforge_profile_start()
// CHECK: cf.cond_br
// CHECK: ^bb1:
// CHECK: llvm.call @nnforge_profile_stop({{.*}}, {{.*}}, %[[T0]])
// CHECK-NEXT: return
// CHECK: ^bb2:
// CHECK: llvm.call @nnforge_profile_stop({{.*}}, {{.*}}, %[[T0]])
// CHECK-NEXT: return
func.func @branches(%c: i1, %x: f32, %y: f32) -> f32 {
  cf.cond_br %c, ^bb1, ^bb2
^bb1:
  return %x : f32
^bb2:
  return %y : f32
}

// -----

// A module profiled already is refused: its regions would be timed twice.
// expected-error @below {{the module is profiled already (it has @nnf_profile_counters)}}
module {
  llvm.mlir.global internal @nnf_profile_counters(dense<0> : tensor<2xi64>) : !llvm.array<2 x i64>
  func.func @main(%x: f32) -> f32 {
    return %x : f32
  }
}
