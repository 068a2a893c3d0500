// RUN: nnforge-opt %s --buffer-deallocation-pipeline | FileCheck %s

// nnforge gives mpi.allreduce its memory effects (reads the send buffer,
// writes the receive buffer): buffer deallocation, which refuses ops with
// unknown effects on memrefs, frees the buffer after it.
// CHECK-LABEL: func.func @reduce
// CHECK: %[[BUFFER:.*]] = memref.alloc
// CHECK: mpi.allreduce(%[[BUFFER]], %[[BUFFER]], MPI_SUM
// CHECK: memref.copy %[[BUFFER]]
// CHECK: memref.dealloc %[[BUFFER]]
func.func @reduce(%out: memref<8xf32>) {
  %world = mpi.comm_world : !mpi.comm
  %buffer = memref.alloc() : memref<8xf32>
  mpi.allreduce(%buffer, %buffer, MPI_SUM, %world) : memref<8xf32>, memref<8xf32>
  memref.copy %buffer, %out : memref<8xf32> to memref<8xf32>
  return
}
