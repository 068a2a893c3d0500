// RUN: nnforge-opt %s --pass-pipeline="builtin.module(func.func(nnf-unbroadcast-batch-matmul,linalg-fold-unit-extent-dims,nnf-propagate-reshapes,canonicalize,nnf-bubble-up-extract-slices,canonicalize,nnf-erase-unused-linalg-results,nnf-duplicate-shared-inits,nnf-uncollapse-batch-matmul,sharding-propagation{traversal=forward-backward}),nnf-verify-sharding,func.func(shard-partition),canonicalize,nnf-verify-shard-to-mpi,convert-shard-to-mpi,nnf-shard-world-communicator,canonicalize,cse)" | FileCheck %s

// torch.nn.MultiheadAttention(8, 2, batch_first=True) as torch-mlir lowers it
// (need_weights=False), its packed in_proj taken as [3, E, K] and split by
// heads over 2 ranks (nnforge.distributed.partition's pipeline). The module
// computes its heads collapsed with the batch ([S, B, E] -> [S, B * H, D] ->
// [B * H, S, D] -> [B, H, S, D]); no block of heads is a block of B * H, so
// without the reshapes folded into the ops around them attention would not
// split. Each rank takes one head's query, key and value rows and its half of
// the out-projection's input features, computes its head's attention locally
// ([2, 1, 3, 3] scores) and one all-reduce sums the out-projection.
// CHECK-LABEL: func.func @main
// CHECK-SAME: tensor<2x3x8xf32>{{.*}}, %{{.*}}: tensor<3x4x8xf32>{{.*}}, %{{.*}}: tensor<3x4xf32>{{.*}}, %{{.*}}: tensor<8x4xf32>
// CHECK-NOT: tensor<2x2x3x3xf32>
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<2x1x3x3xf32>)
// CHECK-NOT: tensor<2x2x3x3xf32>
// CHECK: mpi.allreduce(%{{.*}}, %{{.*}}, MPI_SUM, %{{.*}}) : memref<48xf32>, memref<48xf32>
// CHECK-NOT: mpi.allreduce
#map = affine_map<(d0, d1, d2) -> (d1, d2)>
#map1 = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
#map2 = affine_map<(d0, d1, d2) -> (d2)>
#map3 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#map4 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>
#map5 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, 0)>
#map6 = affine_map<(d0, d1) -> (d0, d1)>
#map7 = affine_map<(d0, d1) -> (d1)>
module attributes {dlti.map = #dlti.map<"MPI:Implementation" = "MPICH">} {
  shard.grid @nnforge_ranks(shape = 2)
  func.func @main(%arg0: tensor<2x3x8xf32> {bufferization.writable = false}, %arg1: tensor<3x8x8xf32> {bufferization.writable = false}, %arg2: tensor<3x8xf32> {bufferization.writable = false}, %arg3: tensor<8x8xf32> {bufferization.writable = false}, %arg4: tensor<8xf32> {bufferization.writable = false}) -> tensor<2x3x8xf32> attributes {llvm.emit_c_interface} {
    %sharding = shard.sharding @nnforge_ranks split_axes = [[]] : !shard.sharding
    %sharding_annotated = shard.shard %arg0 to %sharding annotate_for_users : tensor<2x3x8xf32>
    %sharding_0 = shard.sharding @nnforge_ranks split_axes = [[], [0]] : !shard.sharding
    %sharding_annotated_1 = shard.shard %arg1 to %sharding_0 annotate_for_users : tensor<3x8x8xf32>
    %sharding_2 = shard.sharding @nnforge_ranks split_axes = [[], [0]] : !shard.sharding
    %sharding_annotated_3 = shard.shard %arg2 to %sharding_2 annotate_for_users : tensor<3x8xf32>
    %sharding_4 = shard.sharding @nnforge_ranks split_axes = [[], [0]] : !shard.sharding
    %sharding_annotated_5 = shard.shard %arg3 to %sharding_4 annotate_for_users : tensor<8x8xf32>
    %sharding_6 = shard.sharding @nnforge_ranks split_axes = [[]] : !shard.sharding
    %sharding_annotated_7 = shard.shard %arg4 to %sharding_6 annotate_for_users : tensor<8xf32>
    %c0_i64 = arith.constant 0 : i64
    %cst = arith.constant 0.000000e+00 : f32
    %cst_8 = arith.constant 0xFF800000 : f32
    %true = arith.constant true
    %cst_9 = arith.constant dense<0.000000e+00> : tensor<2x2x3x3xf32>
    %cst_10 = arith.constant 0xFFF0000000000000 : f64
    %cst_11 = arith.constant 0.70710678118654757 : f64
    %collapsed = tensor.collapse_shape %sharding_annotated_1 [[0, 1], [2]] : tensor<3x8x8xf32> into tensor<24x8xf32>
    %collapsed_12 = tensor.collapse_shape %sharding_annotated_3 [[0, 1]] : tensor<3x8xf32> into tensor<24xf32>
    %0 = tensor.empty() : tensor<3x2x8xf32>
    %transposed = linalg.transpose ins(%sharding_annotated : tensor<2x3x8xf32>) outs(%0 : tensor<3x2x8xf32>) permutation = [1, 0, 2] 
    %1 = tensor.empty() : tensor<8x24xf32>
    %transposed_13 = linalg.transpose ins(%collapsed : tensor<24x8xf32>) outs(%1 : tensor<8x24xf32>) permutation = [1, 0] 
    %2 = tensor.empty() : tensor<3x8x24xf32>
    %3 = linalg.generic {indexing_maps = [#map, #map1], iterator_types = ["parallel", "parallel", "parallel"]} ins(%transposed_13 : tensor<8x24xf32>) outs(%2 : tensor<3x8x24xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    } -> tensor<3x8x24xf32>
    %4 = tensor.empty() : tensor<3x2x24xf32>
    %5 = linalg.fill ins(%cst : f32) outs(%4 : tensor<3x2x24xf32>) -> tensor<3x2x24xf32>
    %6 = linalg.batch_matmul ins(%transposed, %3 : tensor<3x2x8xf32>, tensor<3x8x24xf32>) outs(%5 : tensor<3x2x24xf32>) -> tensor<3x2x24xf32>
    %7 = linalg.generic {indexing_maps = [#map1, #map2, #map1], iterator_types = ["parallel", "parallel", "parallel"]} ins(%6, %collapsed_12 : tensor<3x2x24xf32>, tensor<24xf32>) outs(%4 : tensor<3x2x24xf32>) {
    ^bb0(%in: f32, %in_43: f32, %out: f32):
      %44 = arith.addf %in, %in_43 : f32
      linalg.yield %44 : f32
    } -> tensor<3x2x24xf32>
    %expanded = tensor.expand_shape %7 [[0, 1], [2], [3, 4]] output_shape [1, 3, 2, 3, 8] : tensor<3x2x24xf32> into tensor<1x3x2x3x8xf32>
    %8 = tensor.empty() : tensor<3x3x2x1x8xf32>
    %transposed_14 = linalg.transpose ins(%expanded : tensor<1x3x2x3x8xf32>) outs(%8 : tensor<3x3x2x1x8xf32>) permutation = [3, 1, 2, 0, 4] 
    %collapsed_15 = tensor.collapse_shape %transposed_14 [[0], [1], [2, 3], [4]] : tensor<3x3x2x1x8xf32> into tensor<3x3x2x8xf32>
    %extracted_slice = tensor.extract_slice %collapsed_15[0, 0, 0, 0] [1, 3, 2, 8] [1, 1, 1, 1] : tensor<3x3x2x8xf32> to tensor<1x3x2x8xf32>
    %extracted_slice_16 = tensor.extract_slice %collapsed_15[1, 0, 0, 0] [1, 3, 2, 8] [1, 1, 1, 1] : tensor<3x3x2x8xf32> to tensor<1x3x2x8xf32>
    %extracted_slice_17 = tensor.extract_slice %collapsed_15[2, 0, 0, 0] [1, 3, 2, 8] [1, 1, 1, 1] : tensor<3x3x2x8xf32> to tensor<1x3x2x8xf32>
    %collapsed_18 = tensor.collapse_shape %extracted_slice [[0, 1], [2, 3]] : tensor<1x3x2x8xf32> into tensor<3x16xf32>
    %expanded_19 = tensor.expand_shape %collapsed_18 [[0], [1, 2]] output_shape [3, 4, 4] : tensor<3x16xf32> into tensor<3x4x4xf32>
    %9 = tensor.empty() : tensor<4x3x4xf32>
    %transposed_20 = linalg.transpose ins(%expanded_19 : tensor<3x4x4xf32>) outs(%9 : tensor<4x3x4xf32>) permutation = [1, 0, 2] 
    %collapsed_21 = tensor.collapse_shape %extracted_slice_16 [[0, 1], [2, 3]] : tensor<1x3x2x8xf32> into tensor<3x16xf32>
    %expanded_22 = tensor.expand_shape %collapsed_21 [[0], [1, 2]] output_shape [3, 4, 4] : tensor<3x16xf32> into tensor<3x4x4xf32>
    %transposed_23 = linalg.transpose ins(%expanded_22 : tensor<3x4x4xf32>) outs(%9 : tensor<4x3x4xf32>) permutation = [1, 0, 2] 
    %collapsed_24 = tensor.collapse_shape %extracted_slice_17 [[0, 1], [2, 3]] : tensor<1x3x2x8xf32> into tensor<3x16xf32>
    %expanded_25 = tensor.expand_shape %collapsed_24 [[0], [1, 2]] output_shape [3, 4, 4] : tensor<3x16xf32> into tensor<3x4x4xf32>
    %transposed_26 = linalg.transpose ins(%expanded_25 : tensor<3x4x4xf32>) outs(%9 : tensor<4x3x4xf32>) permutation = [1, 0, 2] 
    %expanded_27 = tensor.expand_shape %transposed_20 [[0, 1], [2], [3]] output_shape [2, 2, 3, 4] : tensor<4x3x4xf32> into tensor<2x2x3x4xf32>
    %expanded_28 = tensor.expand_shape %transposed_23 [[0, 1], [2], [3]] output_shape [2, 2, 3, 4] : tensor<4x3x4xf32> into tensor<2x2x3x4xf32>
    %10 = tensor.empty() : tensor<2x2x3x4xf32>
    %11 = linalg.generic {indexing_maps = [#map3, #map3], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%expanded_27 : tensor<2x2x3x4xf32>) outs(%10 : tensor<2x2x3x4xf32>) {
    ^bb0(%in: f32, %out: f32):
      %44 = arith.truncf %cst_11 : f64 to f32
      %45 = arith.mulf %in, %44 : f32
      linalg.yield %45 : f32
    } -> tensor<2x2x3x4xf32>
    %12 = tensor.empty() : tensor<2x2x4x3xf32>
    %transposed_29 = linalg.transpose ins(%expanded_28 : tensor<2x2x3x4xf32>) outs(%12 : tensor<2x2x4x3xf32>) permutation = [0, 1, 3, 2] 
    %13 = linalg.generic {indexing_maps = [#map3, #map3], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%transposed_29 : tensor<2x2x4x3xf32>) outs(%12 : tensor<2x2x4x3xf32>) {
    ^bb0(%in: f32, %out: f32):
      %44 = arith.truncf %cst_11 : f64 to f32
      %45 = arith.mulf %in, %44 : f32
      linalg.yield %45 : f32
    } -> tensor<2x2x4x3xf32>
    %collapsed_30 = tensor.collapse_shape %11 [[0, 1], [2], [3]] : tensor<2x2x3x4xf32> into tensor<4x3x4xf32>
    %collapsed_31 = tensor.collapse_shape %13 [[0, 1], [2], [3]] : tensor<2x2x4x3xf32> into tensor<4x4x3xf32>
    %14 = tensor.empty() : tensor<4x3x3xf32>
    %15 = linalg.fill ins(%cst : f32) outs(%14 : tensor<4x3x3xf32>) -> tensor<4x3x3xf32>
    %16 = linalg.batch_matmul ins(%collapsed_30, %collapsed_31 : tensor<4x3x4xf32>, tensor<4x4x3xf32>) outs(%15 : tensor<4x3x3xf32>) -> tensor<4x3x3xf32>
    %expanded_32 = tensor.expand_shape %16 [[0, 1], [2], [3]] output_shape [2, 2, 3, 3] : tensor<4x3x3xf32> into tensor<2x2x3x3xf32>
    %17 = tensor.empty() : tensor<2x2x3xi64>
    %18 = linalg.fill ins(%c0_i64 : i64) outs(%17 : tensor<2x2x3xi64>) -> tensor<2x2x3xi64>
    %19 = tensor.empty() : tensor<2x2x3xf32>
    %20 = linalg.fill ins(%cst_8 : f32) outs(%19 : tensor<2x2x3xf32>) -> tensor<2x2x3xf32>
    %21:2 = linalg.generic {indexing_maps = [#map3, #map4, #map4], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%expanded_32 : tensor<2x2x3x3xf32>) outs(%20, %18 : tensor<2x2x3xf32>, tensor<2x2x3xi64>) {
    ^bb0(%in: f32, %out: f32, %out_43: i64):
      %44 = linalg.index 3 : index
      %45 = arith.index_cast %44 : index to i64
      %46 = arith.maximumf %in, %out : f32
      %47 = arith.cmpf ogt, %in, %out : f32
      %48 = arith.select %47, %45, %out_43 : i64
      linalg.yield %46, %48 : f32, i64
    } -> (tensor<2x2x3xf32>, tensor<2x2x3xi64>)
    %expanded_33 = tensor.expand_shape %21#0 [[0], [1], [2, 3]] output_shape [2, 2, 3, 1] : tensor<2x2x3xf32> into tensor<2x2x3x1xf32>
    %22 = tensor.empty() : tensor<2x2x3x3xf32>
    %23 = linalg.generic {indexing_maps = [#map3, #map5, #map3], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%expanded_32, %expanded_33 : tensor<2x2x3x3xf32>, tensor<2x2x3x1xf32>) outs(%22 : tensor<2x2x3x3xf32>) {
    ^bb0(%in: f32, %in_43: f32, %out: f32):
      %44 = arith.subf %in, %in_43 : f32
      linalg.yield %44 : f32
    } -> tensor<2x2x3x3xf32>
    %24 = linalg.generic {indexing_maps = [#map3, #map3], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%23 : tensor<2x2x3x3xf32>) outs(%22 : tensor<2x2x3x3xf32>) {
    ^bb0(%in: f32, %out: f32):
      %44 = math.exp %in : f32
      linalg.yield %44 : f32
    } -> tensor<2x2x3x3xf32>
    %25 = tensor.empty() : tensor<2x2x3x1xf32>
    %26 = linalg.fill ins(%cst : f32) outs(%25 : tensor<2x2x3x1xf32>) -> tensor<2x2x3x1xf32>
    %27 = linalg.generic {indexing_maps = [#map3, #map5], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%24 : tensor<2x2x3x3xf32>) outs(%26 : tensor<2x2x3x1xf32>) {
    ^bb0(%in: f32, %out: f32):
      %44 = arith.addf %in, %out : f32
      linalg.yield %44 : f32
    } -> tensor<2x2x3x1xf32>
    %28 = linalg.generic {indexing_maps = [#map3, #map5, #map3], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%24, %27 : tensor<2x2x3x3xf32>, tensor<2x2x3x1xf32>) outs(%22 : tensor<2x2x3x3xf32>) {
    ^bb0(%in: f32, %in_43: f32, %out: f32):
      %44 = arith.divf %in, %in_43 : f32
      linalg.yield %44 : f32
    } -> tensor<2x2x3x3xf32>
    %29 = tensor.empty() : tensor<2x2x3x3xi1>
    %30 = linalg.generic {indexing_maps = [#map3, #map3], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%expanded_32 : tensor<2x2x3x3xf32>) outs(%29 : tensor<2x2x3x3xi1>) {
    ^bb0(%in: f32, %out: i1):
      %44 = arith.extf %in : f32 to f64
      %45 = arith.cmpf oeq, %44, %cst_10 : f64
      linalg.yield %45 : i1
    } -> tensor<2x2x3x3xi1>
    %31 = tensor.empty() : tensor<2x2x3x1xi1>
    %32 = linalg.fill ins(%true : i1) outs(%31 : tensor<2x2x3x1xi1>) -> tensor<2x2x3x1xi1>
    %33 = linalg.generic {indexing_maps = [#map3, #map5], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%30 : tensor<2x2x3x3xi1>) outs(%32 : tensor<2x2x3x1xi1>) {
    ^bb0(%in: i1, %out: i1):
      %44 = arith.andi %in, %out : i1
      linalg.yield %44 : i1
    } -> tensor<2x2x3x1xi1>
    %34 = linalg.generic {indexing_maps = [#map5, #map3, #map3, #map3], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%33, %cst_9, %28 : tensor<2x2x3x1xi1>, tensor<2x2x3x3xf32>, tensor<2x2x3x3xf32>) outs(%22 : tensor<2x2x3x3xf32>) {
    ^bb0(%in: i1, %in_43: f32, %in_44: f32, %out: f32):
      %44 = arith.select %in, %in_43, %in_44 : f32
      linalg.yield %44 : f32
    } -> tensor<2x2x3x3xf32>
    %collapsed_34 = tensor.collapse_shape %34 [[0, 1], [2], [3]] : tensor<2x2x3x3xf32> into tensor<4x3x3xf32>
    %35 = linalg.fill ins(%cst : f32) outs(%9 : tensor<4x3x4xf32>) -> tensor<4x3x4xf32>
    %36 = linalg.batch_matmul ins(%collapsed_34, %transposed_26 : tensor<4x3x3xf32>, tensor<4x3x4xf32>) outs(%35 : tensor<4x3x4xf32>) -> tensor<4x3x4xf32>
    %expanded_35 = tensor.expand_shape %36 [[0, 1], [2], [3]] output_shape [2, 2, 3, 4] : tensor<4x3x4xf32> into tensor<2x2x3x4xf32>
    %37 = tensor.empty() : tensor<3x2x2x4xf32>
    %transposed_36 = linalg.transpose ins(%expanded_35 : tensor<2x2x3x4xf32>) outs(%37 : tensor<3x2x2x4xf32>) permutation = [2, 0, 1, 3] 
    %collapsed_37 = tensor.collapse_shape %transposed_36 [[0, 1], [2, 3]] : tensor<3x2x2x4xf32> into tensor<6x8xf32>
    %38 = tensor.empty() : tensor<8x8xf32>
    %transposed_38 = linalg.transpose ins(%sharding_annotated_5 : tensor<8x8xf32>) outs(%38 : tensor<8x8xf32>) permutation = [1, 0] 
    %39 = tensor.empty() : tensor<6x8xf32>
    %40 = linalg.fill ins(%cst : f32) outs(%39 : tensor<6x8xf32>) -> tensor<6x8xf32>
    %41 = linalg.matmul ins(%collapsed_37, %transposed_38 : tensor<6x8xf32>, tensor<8x8xf32>) outs(%40 : tensor<6x8xf32>) -> tensor<6x8xf32>
    %42 = linalg.generic {indexing_maps = [#map6, #map7, #map6], iterator_types = ["parallel", "parallel"]} ins(%41, %sharding_annotated_7 : tensor<6x8xf32>, tensor<8xf32>) outs(%39 : tensor<6x8xf32>) {
    ^bb0(%in: f32, %in_43: f32, %out: f32):
      %44 = arith.addf %in, %in_43 : f32
      linalg.yield %44 : f32
    } -> tensor<6x8xf32>
    %expanded_39 = tensor.expand_shape %42 [[0, 1], [2]] output_shape [3, 2, 8] : tensor<6x8xf32> into tensor<3x2x8xf32>
    %43 = tensor.empty() : tensor<2x3x8xf32>
    %transposed_40 = linalg.transpose ins(%expanded_39 : tensor<3x2x8xf32>) outs(%43 : tensor<2x3x8xf32>) permutation = [1, 0, 2] 
    %sharding_41 = shard.sharding @nnforge_ranks split_axes = [[]] : !shard.sharding
    %sharding_annotated_42 = shard.shard %transposed_40 to %sharding_41 : tensor<2x3x8xf32>
    return %sharding_annotated_42 : tensor<2x3x8xf32>
  }
}
