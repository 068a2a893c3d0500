// RUN: nnforge-opt %s --pass-pipeline='builtin.module(func.func(sharding-propagation{traversal=forward-backward},shard-partition),canonicalize,nnf-verify-shard-to-mpi,convert-shard-to-mpi,nnf-shard-world-communicator,canonicalize,cse)' | FileCheck %s

// nnforge's partition of a two-layer MLP over 2 ranks (the pipeline of
// nnforge.distributed.partition): the first layer's weight split by output
// features, the second's by input features. Each rank takes its halves,
// computes its partial product and one all-reduce on MPI_COMM_WORLD sums
// them before the replicated bias.
// CHECK: shard.grid @ranks
// CHECK-LABEL: func.func @mlp
// CHECK-SAME: tensor<4x8xf32>, %{{.*}}: tensor<8x8xf32>, %{{.*}}: tensor<8xf32>, %{{.*}}: tensor<8x8xf32>, %{{.*}}: tensor<8xf32>
// CHECK-NOT: shard.
// CHECK: %[[WORLD:.*]] = mpi.comm_world
// CHECK-NOT: mpi.comm_split
// CHECK: mpi.allreduce(%{{.*}}, %{{.*}}, MPI_SUM, %[[WORLD]]) : memref<32xf32>, memref<32xf32>
// CHECK-NOT: mpi.allreduce
// CHECK-NOT: shard.
module attributes {dlti.map = #dlti.map<"MPI:Implementation" = "MPICH">} {
  shard.grid @ranks(shape = 2)
  func.func @mlp(%x: tensor<4x8xf32>, %w1: tensor<16x8xf32>, %b1: tensor<16xf32>, %w2: tensor<8x16xf32>, %b2: tensor<8xf32>) -> tensor<4x8xf32> {
    %replicated = shard.sharding @ranks split_axes = [[]] : !shard.sharding
    %rows = shard.sharding @ranks split_axes = [[0]] : !shard.sharding
    %columns = shard.sharding @ranks split_axes = [[], [0]] : !shard.sharding
    %x_r = shard.shard %x to %replicated annotate_for_users : tensor<4x8xf32>
    %w1_s = shard.shard %w1 to %rows annotate_for_users : tensor<16x8xf32>
    %b1_s = shard.shard %b1 to %rows annotate_for_users : tensor<16xf32>
    %w2_s = shard.shard %w2 to %columns annotate_for_users : tensor<8x16xf32>
    %b2_r = shard.shard %b2 to %replicated annotate_for_users : tensor<8xf32>
    %zero = arith.constant 0.0 : f32
    %e0 = tensor.empty() : tensor<8x16xf32>
    %w1_t = linalg.transpose ins(%w1_s : tensor<16x8xf32>) outs(%e0 : tensor<8x16xf32>) permutation = [1, 0]
    %e1 = tensor.empty() : tensor<4x16xf32>
    %f1 = linalg.fill ins(%zero : f32) outs(%e1 : tensor<4x16xf32>) -> tensor<4x16xf32>
    %m1 = linalg.matmul ins(%x_r, %w1_t : tensor<4x8xf32>, tensor<8x16xf32>) outs(%f1 : tensor<4x16xf32>) -> tensor<4x16xf32>
    %h = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%m1, %b1_s : tensor<4x16xf32>, tensor<16xf32>) outs(%e1 : tensor<4x16xf32>) {
    ^bb0(%a: f32, %b: f32, %out: f32):
      %s = arith.addf %a, %b : f32
      %r = arith.maximumf %s, %zero : f32
      linalg.yield %r : f32
    } -> tensor<4x16xf32>
    %e2 = tensor.empty() : tensor<16x8xf32>
    %w2_t = linalg.transpose ins(%w2_s : tensor<8x16xf32>) outs(%e2 : tensor<16x8xf32>) permutation = [1, 0]
    %e3 = tensor.empty() : tensor<4x8xf32>
    %f3 = linalg.fill ins(%zero : f32) outs(%e3 : tensor<4x8xf32>) -> tensor<4x8xf32>
    %m2 = linalg.matmul ins(%h, %w2_t : tensor<4x16xf32>, tensor<16x8xf32>) outs(%f3 : tensor<4x8xf32>) -> tensor<4x8xf32>
    %y = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%m2, %b2_r : tensor<4x8xf32>, tensor<8xf32>) outs(%e3 : tensor<4x8xf32>) {
    ^bb0(%a: f32, %b: f32, %out: f32):
      %s = arith.addf %a, %b : f32
      linalg.yield %s : f32
    } -> tensor<4x8xf32>
    %y_r = shard.shard %y to %replicated : tensor<4x8xf32>
    return %y_r : tensor<4x8xf32>
  }
}
