// The affine generator's own stage (nnforge.pipelines.affine_loops, with
// 8 f32 lanes, tiles of 32 iterations per loop and parallel loops): what it
// tiles, runs in parallel, vectorizes and (with affine-loop-fusion) fuses.
// RUN: nnforge-opt %s --split-input-file --pass-pipeline='%affine_loops' | FileCheck %s
// RUN: nnforge-opt %s --split-input-file --pass-pipeline='%affine_loops_fused' | FileCheck %s --check-prefix=FUSED

// A matmul: tiled 32 x 32 x 32, the loop over row tiles parallel, the
// columns (the output's contiguous dimension) in vectors of 8 with A's
// element broadcast, the reduction over k unrolled by 8.
// CHECK-LABEL: func.func @matmul
// CHECK:       affine.parallel (%[[I:.*]]) = (0) to (8)
// CHECK:         vector.transfer_write %{{.*}} : vector<8xf32>, memref<256x192xf32>
// CHECK:       affine.parallel (%{{.*}}) = (0) to (8)
// CHECK-NEXT:    affine.for %{{.*}} = 0 to 6
// CHECK-NEXT:      affine.for %{{.*}} = 0 to 4
// CHECK-NEXT:        affine.for %{{.*}} = 0 to 32
// CHECK:               affine.for %{{.*}} = 0 to 32 step 8
// CHECK:                 affine.for %{{.*}} = 0 to 32 step 8
// CHECK-COUNT-8:           vector.transfer_read %arg0{{.*}}permutation_map = #{{.*}}} : memref<256x128xf32>, vector<8xf32>
// CHECK-NOT:           affine.load
// CHECK:       return
func.func @matmul(%a: memref<256x128xf32>, %b: memref<128x192xf32>, %c: memref<256x192xf32>) {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%c : memref<256x192xf32>)
  linalg.matmul ins(%a, %b : memref<256x128xf32>, memref<128x192xf32>) outs(%c : memref<256x192xf32>)
  return
}

// -----

// A convolution: the tile loops have one iteration each (every dimension
// fits a tile) and are gone, the loop over output channels is parallel (the
// batch of one is no loop), output columns are vectors of 8, read from
// contiguous input columns, the filter's element broadcast.
// CHECK-LABEL: func.func @conv
// CHECK:       affine.parallel (%[[F:.*]]) = (0) to (16)
// CHECK-NEXT:    affine.for %[[OH:.*]] = 0 to 16
// CHECK-NEXT:      affine.for %[[OW:.*]] = 0 to 16 step 8
// CHECK-NEXT:        affine.for %[[C:.*]] = 0 to 8
// CHECK-NEXT:          affine.for %[[KH:.*]] = 0 to 3
// CHECK:                 affine.for %[[KW:.*]] = 0 to 3
// CHECK:                   vector.transfer_read %arg0{{.*}} : memref<1x8x18x18xf32>, vector<8xf32>
// CHECK-NEXT:              vector.transfer_read %arg1[%[[F]], %[[C]], %[[KH]], %[[KW]]]{{.*}}permutation_map = #{{.*}}} : memref<16x8x3x3xf32>, vector<8xf32>
// CHECK-NEXT:              vector.transfer_read %arg2[%{{.*}}, %[[F]], %[[OH]], %[[OW]]]{{.*}} : memref<1x16x16x16xf32>, vector<8xf32>
// CHECK-NEXT:              arith.mulf {{.*}} : vector<8xf32>
// CHECK-NEXT:              arith.addf {{.*}} : vector<8xf32>
// CHECK-NEXT:              vector.transfer_write %{{.*}}, %arg2[%{{.*}}, %[[F]], %[[OH]], %[[OW]]]
func.func @conv(%x: memref<1x8x18x18xf32>, %w: memref<16x8x3x3xf32>, %y: memref<1x16x16x16xf32>) {
  linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
    ins(%x, %w : memref<1x8x18x18xf32>, memref<16x8x3x3xf32>) outs(%y : memref<1x16x16x16xf32>)
  return
}

// -----

// An elementwise chain (a + b, then squared through a temporary): without
// fusion two parallel, vectorized nests and the temporary; with fusion one
// nest, the temporary gone (its value stays in a register).
// CHECK-LABEL: func.func @chain
// CHECK:       %[[T:.*]] = memref.alloc() : memref<64x64xf32>
// CHECK:       affine.parallel
// CHECK:         arith.addf %{{.*}} : vector<8xf32>
// CHECK-NEXT:    vector.transfer_write %{{.*}}, %[[T]]
// CHECK:       affine.parallel
// CHECK:         vector.transfer_read %[[T]]
// CHECK-NEXT:    arith.mulf %{{.*}} : vector<8xf32>
// FUSED-LABEL: func.func @chain
// FUSED-NOT:   memref.alloc
// FUSED:       affine.parallel (%{{.*}}) = (0) to (2)
// FUSED:         %[[SUM:.*]] = arith.addf %{{.*}} : vector<8xf32>
// FUSED-NEXT:    %[[SQUARE:.*]] = arith.mulf %[[SUM]], %[[SUM]] : vector<8xf32>
// FUSED-NEXT:    vector.transfer_write %[[SQUARE]], %arg2
// FUSED-NOT:   affine.parallel
// FUSED:       return
#id = affine_map<(d0, d1) -> (d0, d1)>
func.func @chain(%a: memref<64x64xf32>, %b: memref<64x64xf32>, %out: memref<64x64xf32>) {
  %t = memref.alloc() : memref<64x64xf32>
  linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%a, %b : memref<64x64xf32>, memref<64x64xf32>) outs(%t : memref<64x64xf32>) {
  ^bb0(%x: f32, %y: f32, %o: f32):
    %s = arith.addf %x, %y : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%t : memref<64x64xf32>) outs(%out : memref<64x64xf32>) {
  ^bb0(%x: f32, %o: f32):
    %m = arith.mulf %x, %x : f32
    linalg.yield %m : f32
  }
  memref.dealloc %t : memref<64x64xf32>
  return
}
