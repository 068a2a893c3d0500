// scf.index_switch whose cases write into the tensor.empty that a later op
// writes too (test_compile.py, test_gpu_compile.py). Upstream's one-shot
// bufferization does not see the switch's result alias that buffer: the
// later op overwrote it (every index gave x * 10) until
// nnf-index-switch-to-if ran before bufferization.
#map = affine_map<(d0) -> (d0)>
func.func @main(%which: tensor<i64>, %x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %c = tensor.extract %which[] : tensor<i64>
  %i = arith.index_cast %c : i64 to index
  %e = tensor.empty() : tensor<4xf32>
  %r = scf.index_switch %i -> tensor<4xf32>
  case 0 {
    %two = arith.constant 2.0 : f32
    %y = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel"]}
        ins(%x : tensor<4xf32>) outs(%e : tensor<4xf32>) {
    ^bb0(%a: f32, %o: f32):
      %m = arith.mulf %a, %two : f32
      linalg.yield %m : f32
    } -> tensor<4xf32>
    scf.yield %y : tensor<4xf32>
  }
  case 3 {
    %one = arith.constant 1.0 : f32
    %y = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel"]}
        ins(%x : tensor<4xf32>) outs(%e : tensor<4xf32>) {
    ^bb0(%a: f32, %o: f32):
      %m = arith.addf %a, %one : f32
      linalg.yield %m : f32
    } -> tensor<4xf32>
    scf.yield %y : tensor<4xf32>
  }
  default {
    %one = arith.constant 1.0 : f32
    %y = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel"]}
        ins(%x : tensor<4xf32>) outs(%e : tensor<4xf32>) {
    ^bb0(%a: f32, %o: f32):
      %m = arith.subf %a, %one : f32
      linalg.yield %m : f32
    } -> tensor<4xf32>
    scf.yield %y : tensor<4xf32>
  }
  %ten = arith.constant 10.0 : f32
  %later = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel"]}
      ins(%x : tensor<4xf32>) outs(%e : tensor<4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %m = arith.mulf %a, %ten : f32
    linalg.yield %m : f32
  } -> tensor<4xf32>
  return %r, %later : tensor<4xf32>, tensor<4xf32>
}
