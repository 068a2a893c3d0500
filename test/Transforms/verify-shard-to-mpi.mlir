// RUN: nnforge-opt %s --nnf-verify-shard-to-mpi --split-input-file --verify-diagnostics | FileCheck %s

// What convert-shard-to-mpi lowers passes unchanged: grids, all_reduce on
// element types MPI has, the process index queries.
// CHECK: shard.grid @grid
// CHECK-LABEL: func.func @lowered
// CHECK: shard.process_multi_index
// CHECK: shard.all_reduce
shard.grid @grid(shape = 2)
func.func @lowered(%x: tensor<4x8xf32>) -> (tensor<4x8xf32>, index) {
  %i = shard.process_multi_index on @grid axes = [0] : index
  %r = shard.all_reduce %x on @grid grid_axes = [0] : tensor<4x8xf32> -> tensor<4x8xf32>
  return %r, %i : tensor<4x8xf32>, index
}

// -----

// An all_gather has no MPI lowering in MLIR 22.1.8: an error, not an abort.
shard.grid @grid(shape = 2)
func.func @gather(%x: tensor<2x8xf32>) -> tensor<4x8xf32> {
  // expected-error @+1 {{'shard.all_gather' has no lowering to MPI in this MLIR}}
  %g = shard.all_gather %x on @grid grid_axes = [0] gather_axis = 0 : tensor<2x8xf32> -> tensor<4x8xf32>
  return %g : tensor<4x8xf32>
}

// -----

// Neither has all_slice, which shard-partition emits where a replicated
// value becomes a sharded one.
shard.grid @grid(shape = 2)
func.func @slice(%x: tensor<4x8xf32>) -> tensor<2x8xf32> {
  // expected-error @+1 {{'shard.all_slice' has no lowering to MPI in this MLIR}}
  %s = shard.all_slice %x on @grid grid_axes = [0] slice_axis = 0 : tensor<4x8xf32> -> tensor<2x8xf32>
  return %s : tensor<2x8xf32>
}

// -----

// MPI has no datatype for bf16 in the lowering of mpi.allreduce.
shard.grid @grid(shape = 2)
func.func @bf16(%x: tensor<8xbf16>) -> tensor<8xbf16> {
  // expected-error @+1 {{'shard.all_reduce' has no MPI datatype for element type bf16}}
  %r = shard.all_reduce %x on @grid grid_axes = [0] : tensor<8xbf16> -> tensor<8xbf16>
  return %r : tensor<8xbf16>
}
