// RUN: nnforge-opt %s --nnf-saturate-shifts --split-input-file | FileCheck %s

// A left shift by a runtime amount is guarded: 0 once the amount reaches
// the bit width (negative amounts compare as large unsigned ones).
// CHECK-LABEL: func.func @left
// CHECK-SAME: (%[[X:.*]]: i32, %[[N:.*]]: i32)
// CHECK: %[[SHIFTED:.*]] = arith.shli %[[X]], %[[N]] : i32
// CHECK: %[[WIDTH:.*]] = arith.constant 32 : i32
// CHECK: %[[IN_RANGE:.*]] = arith.cmpi ult, %[[N]], %[[WIDTH]] : i32
// CHECK: %[[ZERO:.*]] = arith.constant 0 : i32
// CHECK: %[[Y:.*]] = arith.select %[[IN_RANGE]], %[[SHIFTED]], %[[ZERO]] : i32
// CHECK: return %[[Y]]
func.func @left(%x: i32, %n: i32) -> i32 {
  %y = arith.shli %x, %n : i32
  return %y : i32
}

// -----

// An arithmetic right shift saturates to the sign: x >> (width - 1).
// CHECK-LABEL: func.func @arithmetic_right
// CHECK-SAME: (%[[X:.*]]: vector<8xi16>, %[[N:.*]]: vector<8xi16>)
// CHECK: %[[SHIFTED:.*]] = arith.shrsi %[[X]], %[[N]] : vector<8xi16>
// CHECK: %[[WIDTH:.*]] = arith.constant dense<16> : vector<8xi16>
// CHECK: %[[IN_RANGE:.*]] = arith.cmpi ult, %[[N]], %[[WIDTH]] : vector<8xi16>
// CHECK: %[[FIFTEEN:.*]] = arith.constant dense<15> : vector<8xi16>
// CHECK: %[[SIGN:.*]] = arith.shrsi %[[X]], %[[FIFTEEN]] : vector<8xi16>
// CHECK: arith.select %[[IN_RANGE]], %[[SHIFTED]], %[[SIGN]] : vector<8xi1>, vector<8xi16>
func.func @arithmetic_right(%x: vector<8xi16>, %n: vector<8xi16>) -> vector<8xi16> {
  %y = arith.shrsi %x, %n : vector<8xi16>
  return %y : vector<8xi16>
}

// -----

// Constant amounts below the width are defined already: left alone.
// CHECK-LABEL: func.func @constant_in_range
// CHECK-NEXT: arith.constant 3
// CHECK-NEXT: arith.shrui
// CHECK-NEXT: return
func.func @constant_in_range(%x: i64) -> i64 {
  %c3 = arith.constant 3 : i64
  %y = arith.shrui %x, %c3 : i64
  return %y : i64
}
