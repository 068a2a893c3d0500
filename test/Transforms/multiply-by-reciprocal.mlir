// RUN: nnforge-opt %s --nnf-multiply-by-reciprocal --split-input-file | FileCheck %s

// A vector divided by a broadcast scalar (a softmax row by its sum): one
// scalar division, then a multiplication per vector.
// CHECK-LABEL: func.func @broadcast_divisor
// CHECK-SAME: (%[[X:.*]]: vector<16xf32>, %[[S:.*]]: f32)
// CHECK: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK: %[[R:.*]] = arith.divf %[[ONE]], %[[S]] : f32
// CHECK: %[[RB:.*]] = vector.broadcast %[[R]] : f32 to vector<16xf32>
// CHECK: %[[Q:.*]] = arith.mulf %[[X]], %[[RB]] : vector<16xf32>
// CHECK-NOT: arith.divf {{.*}} : vector
// CHECK: return %[[Q]]
func.func @broadcast_divisor(%x: vector<16xf32>, %s: f32) -> vector<16xf32> {
  %d = vector.broadcast %s : f32 to vector<16xf32>
  %q = arith.divf %x, %d : vector<16xf32>
  return %q : vector<16xf32>
}

// -----

// A splat constant divisor: its reciprocal, where that is a normal number.
// CHECK-LABEL: func.func @splat_divisors
// CHECK-DAG: %[[QUARTER:.*]] = arith.constant dense<2.500000e-01> : vector<8xf32>
// CHECK-DAG: %[[ZERO:.*]] = arith.constant dense<0.000000e+00> : vector<8xf32>
// CHECK-DAG: %[[TINY:.*]] = arith.constant dense<1.000000e-39> : vector<8xf32>
// CHECK: %[[A:.*]] = arith.mulf %{{.*}}, %[[QUARTER]] : vector<8xf32>
// CHECK: %[[B:.*]] = arith.divf %{{.*}}, %[[ZERO]] : vector<8xf32>
// CHECK: %[[C:.*]] = arith.divf %{{.*}}, %[[TINY]] : vector<8xf32>
func.func @splat_divisors(%x: vector<8xf32>) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>) {
  %four = arith.constant dense<4.0> : vector<8xf32>
  %zero = arith.constant dense<0.0> : vector<8xf32>
  %tiny = arith.constant dense<1.0e-39> : vector<8xf32>
  %a = arith.divf %x, %four : vector<8xf32>
  %b = arith.divf %x, %zero : vector<8xf32>
  %c = arith.divf %x, %tiny : vector<8xf32>
  return %a, %b, %c : vector<8xf32>, vector<8xf32>, vector<8xf32>
}

// -----

// Divisors that differ between lanes, and scalar divisions, stay divisions.
// CHECK-LABEL: func.func @left_alone
// CHECK: arith.divf %{{.*}}, %{{.*}} : vector<4xf32>
// CHECK: arith.divf %{{.*}}, %{{.*}} : vector<4xf32>
// CHECK: arith.divf %{{.*}}, %{{.*}} : f32
func.func @left_alone(%x: vector<4xf32>, %y: vector<4xf32>, %s: f32, %t: f32) -> (vector<4xf32>, vector<4xf32>, f32) {
  %c = arith.constant dense<[1.0, 2.0, 3.0, 4.0]> : vector<4xf32>
  %a = arith.divf %x, %y : vector<4xf32>
  %b = arith.divf %x, %c : vector<4xf32>
  %q = arith.divf %s, %t : f32
  return %a, %b, %q : vector<4xf32>, vector<4xf32>, f32
}
