// RUN: nnforge-opt %s --nnf-shard-world-communicator --split-input-file | FileCheck %s

// The split convert-shard-to-mpi makes before each collective (one color
// for all ranks) is replaced by MPI_COMM_WORLD.
// CHECK-LABEL: func.func @split
// CHECK: %[[WORLD:.*]] = mpi.comm_world : !mpi.comm
// CHECK-NOT: mpi.comm_split
// CHECK: mpi.allreduce(%{{.*}}, %{{.*}}, MPI_SUM, %[[WORLD]])
func.func @split(%buffer: memref<8xf32>, %key: i32) {
  %c0_i32 = arith.constant 0 : i32
  %world = mpi.comm_world : !mpi.comm
  %comm = mpi.comm_split(%world, %c0_i32, %key) : !mpi.comm
  mpi.allreduce(%buffer, %buffer, MPI_SUM, %comm) : memref<8xf32>, memref<8xf32>
  return
}

// -----

// A color computed at run time may differ between ranks: the split stays.
// CHECK-LABEL: func.func @colored
// CHECK: %[[COMM:.*]] = mpi.comm_split
// CHECK: mpi.allreduce(%{{.*}}, %{{.*}}, MPI_SUM, %[[COMM]])
func.func @colored(%buffer: memref<8xf32>, %color: i32, %key: i32) {
  %world = mpi.comm_world : !mpi.comm
  %comm = mpi.comm_split(%world, %color, %key) : !mpi.comm
  mpi.allreduce(%buffer, %buffer, MPI_SUM, %comm) : memref<8xf32>, memref<8xf32>
  return
}
