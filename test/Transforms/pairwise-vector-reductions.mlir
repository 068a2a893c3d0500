// RUN: nnforge-opt %s --nnf-pairwise-vector-reductions --split-input-file | FileCheck %s

// A 64-lane maximum is halved five times (elementwise maxima of the two
// halves) and the last two lanes reduced, with the accumulator.
// CHECK-LABEL: func.func @maxnumf_64
// CHECK-SAME: (%[[V:.*]]: vector<64xf32>, %[[ACC:.*]]: f32)
// CHECK-DAG: %[[HI:.*]] = vector.extract_strided_slice %[[V]] {offsets = [32], sizes = [32], strides = [1]}
// CHECK-DAG: %[[LO:.*]] = vector.extract_strided_slice %[[V]] {offsets = [0], sizes = [32], strides = [1]}
// CHECK: arith.maxnumf %[[LO]], %[[HI]] : vector<32xf32>
// CHECK: arith.maxnumf {{.*}} : vector<16xf32>
// CHECK: arith.maxnumf {{.*}} : vector<8xf32>
// CHECK: arith.maxnumf {{.*}} : vector<4xf32>
// CHECK: %[[LAST:.*]] = arith.maxnumf {{.*}} : vector<2xf32>
// CHECK: vector.reduction <maxnumf>, %[[LAST]], %[[ACC]] : vector<2xf32> into f32
func.func @maxnumf_64(%v: vector<64xf32>, %acc: f32) -> f32 {
  %m = vector.reduction <maxnumf>, %v, %acc : vector<64xf32> into f32
  return %m : f32
}

// -----

// NaN-propagating minima likewise; fast-math flags are kept.
// CHECK-LABEL: func.func @minimumf_8
// CHECK: arith.minimumf {{.*}} fastmath<nsz> : vector<4xf32>
// CHECK: arith.minimumf {{.*}} fastmath<nsz> : vector<2xf32>
// CHECK: vector.reduction <minimumf>, {{.*}} fastmath<nsz> : vector<2xf32> into f32
func.func @minimumf_8(%v: vector<8xf32>) -> f32 {
  %m = vector.reduction <minimumf>, %v fastmath<nsz> : vector<8xf32> into f32
  return %m : f32
}

// -----

// Sums (LLVM reassociates them when allowed), integer reductions, odd
// widths and two lanes are left alone.
// CHECK-LABEL: func.func @left_alone
// CHECK-NOT: vector.extract_strided_slice
// CHECK: vector.reduction <add>, {{.*}} : vector<64xf32> into f32
// CHECK: vector.reduction <maxsi>, {{.*}} : vector<16xi32> into i32
// CHECK: vector.reduction <maxnumf>, {{.*}} : vector<7xf32> into f32
// CHECK: vector.reduction <maxnumf>, {{.*}} : vector<2xf32> into f32
func.func @left_alone(%a: vector<64xf32>, %b: vector<16xi32>, %c: vector<7xf32>, %d: vector<2xf32>) -> (f32, i32, f32, f32) {
  %s = vector.reduction <add>, %a : vector<64xf32> into f32
  %i = vector.reduction <maxsi>, %b : vector<16xi32> into i32
  %o = vector.reduction <maxnumf>, %c : vector<7xf32> into f32
  %t = vector.reduction <maxnumf>, %d : vector<2xf32> into f32
  return %s, %i, %o, %t : f32, i32, f32, f32
}
