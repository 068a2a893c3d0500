// RUN: nnforge-opt %s --nnf-approximate-math --split-input-file | FileCheck %s

// exp on a vector becomes a polynomial (FMAs) with exponent bit tricks: no
// math.exp is left for math-to-llvm to turn into libm calls. The input is
// clamped (NaN kept: select on an ordered comparison), one FMA with
// 1.5 * 2^23 + 126 rounds x / ln 2 and holds 2^(n - 1)'s exponent bits,
// a degree-6 polynomial in the reduced argument is scaled by 2^(n - 1), then 2.
// CHECK-LABEL: func.func @exp_vector
// CHECK-SAME: (%[[X:.*]]: vector<16xf32>)
// CHECK-NOT: math.exp
// CHECK-DAG: %[[LOW:.*]] = arith.constant dense<-8.760000e+01> : vector<16xf32>
// CHECK-DAG: %[[ROUNDER:.*]] = arith.constant dense<0x4B40007E> : vector<16xf32>
// CHECK: %[[BELOW:.*]] = arith.cmpf olt, %[[X]], %[[LOW]]
// CHECK: %[[RAISED:.*]] = arith.select %[[BELOW]], %[[LOW]], %[[X]]
// CHECK: %[[CLAMPED:.*]] = arith.select
// CHECK: %[[SHIFTED:.*]] = math.fma %[[CLAMPED]], %{{.*}}, %[[ROUNDER]] : vector<16xf32>
// CHECK: arith.subf %[[SHIFTED]], %[[ROUNDER]]
// CHECK-COUNT-8: math.fma
// CHECK: %[[BITS:.*]] = arith.bitcast %[[SHIFTED]] : vector<16xf32> to vector<16xi32>
// CHECK: arith.shli %[[BITS]], %{{.*}} : vector<16xi32>
// CHECK-NOT: math.exp
func.func @exp_vector(%x: vector<16xf32>) -> vector<16xf32> {
  %e = math.exp %x : vector<16xf32>
  return %e : vector<16xf32>
}

// -----

// Scalars too: exp, erf (GELU), tanh, log.
// CHECK-LABEL: func.func @scalars
// CHECK-NOT: math.exp
// CHECK-NOT: math.erf
// CHECK-NOT: math.tanh
// CHECK-NOT: math.log
// CHECK: return
func.func @scalars(%x: f32) -> (f32, f32, f32, f32) {
  %x2 = math.exp %x : f32
  %e = math.erf %x : f32
  %t = math.tanh %x : f32
  %l = math.log %x : f32
  return %x2, %e, %t, %l : f32, f32, f32, f32
}

// -----

// f16 is computed in f32 and rounded once.
// CHECK-LABEL: func.func @half
// CHECK: arith.extf {{.*}} : vector<8xf16> to vector<8xf32>
// CHECK: math.fma {{.*}} : vector<8xf32>
// CHECK: arith.truncf {{.*}} : vector<8xf32> to vector<8xf16>
func.func @half(%x: vector<8xf16>) -> vector<8xf16> {
  %t = math.tanh %x : vector<8xf16>
  return %t : vector<8xf16>
}

// -----

// Functions whose approximations lose accuracy away from small inputs stay
// libm calls; f64 has no approximation.
// CHECK-LABEL: func.func @kept
// CHECK: math.sin {{.*}} : f32
// CHECK: math.exp {{.*}} : f64
func.func @kept(%x: f32, %y: f64) -> (f32, f64) {
  %s = math.sin %x : f32
  %e = math.exp %y : f64
  return %s, %e : f32, f64
}
