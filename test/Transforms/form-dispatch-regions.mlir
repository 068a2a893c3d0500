// RUN: nnforge-opt %s --nnf-form-dispatch-regions --split-input-file | FileCheck %s

#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0)>
#col = affine_map<(d0, d1) -> (d1)>

// A matmul, its zero fill and its epilogue (bias, ReLU) form one region;
// the weights and bias come in as inputs, constants are cloned inside.
// CHECK-LABEL: func.func @matmul_epilogue
// CHECK: %[[D:.*]] = nnf.dispatch ins(%{{.*}}, %{{.*}}, %{{.*}} : tensor<64x256xf32>, tensor<256x128xf32>, tensor<128xf32>) -> tensor<64x128xf32> {
// CHECK-NEXT: ^bb0(%[[X:.*]]: tensor<64x256xf32>, %[[W:.*]]: tensor<256x128xf32>, %[[B:.*]]: tensor<128xf32>):
// CHECK: %[[FILL:.*]] = linalg.fill
// CHECK: %[[MM:.*]] = linalg.matmul ins(%[[X]], %[[W]] : {{.*}}) outs(%[[FILL]] :
// The anchor writes a destination of its own, not the fill's empty tensor.
// CHECK: %[[OUT:.*]] = bufferization.alloc_tensor() : tensor<64x128xf32>
// CHECK: %[[EPI:.*]] = linalg.generic {{.*}} ins(%[[MM]], %[[B]] : {{.*}}) outs(%[[OUT]] :
// CHECK: arith.maximumf
// CHECK: nnf.yield %[[EPI]] : tensor<64x128xf32>
// CHECK: return %[[D]]
func.func @matmul_epilogue(%x: tensor<64x256xf32>, %w: tensor<256x128xf32>, %b: tensor<128xf32>) -> tensor<64x128xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<64x128xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<64x128xf32>) -> tensor<64x128xf32>
  %mm = linalg.matmul ins(%x, %w : tensor<64x256xf32>, tensor<256x128xf32>) outs(%acc : tensor<64x128xf32>) -> tensor<64x128xf32>
  %y = linalg.generic {indexing_maps = [#id, #col, #id], iterator_types = ["parallel", "parallel"]}
      ins(%mm, %b : tensor<64x128xf32>, tensor<128xf32>) outs(%e : tensor<64x128xf32>) {
  ^bb0(%in: f32, %bias: f32, %out: f32):
    %s = arith.addf %in, %bias : f32
    %r = arith.maximumf %s, %zero : f32
    linalg.yield %r : f32
  } -> tensor<64x128xf32>
  return %y : tensor<64x128xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#col = affine_map<(d0, d1) -> (d1)>

// The matmul's result is also returned: fusing it into the epilogue's tiles
// would leave it uncomputed for the other user. No region.
// CHECK-LABEL: func.func @result_used_outside
// CHECK-NOT: nnf.dispatch
func.func @result_used_outside(%x: tensor<64x256xf32>, %w: tensor<256x128xf32>, %b: tensor<128xf32>) -> (tensor<64x128xf32>, tensor<64x128xf32>) {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<64x128xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<64x128xf32>) -> tensor<64x128xf32>
  %mm = linalg.matmul ins(%x, %w : tensor<64x256xf32>, tensor<256x128xf32>) outs(%acc : tensor<64x128xf32>) -> tensor<64x128xf32>
  %y = linalg.generic {indexing_maps = [#id, #col, #id], iterator_types = ["parallel", "parallel"]}
      ins(%mm, %b : tensor<64x128xf32>, tensor<128xf32>) outs(%e : tensor<64x128xf32>) {
  ^bb0(%in: f32, %bias: f32, %out: f32):
    %s = arith.addf %in, %bias : f32
    linalg.yield %s : f32
  } -> tensor<64x128xf32>
  return %mm, %y : tensor<64x128xf32>, tensor<64x128xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#t = affine_map<(d0, d1) -> (d1, d0)>

// An epilogue that reads the matmul transposed would tile it out of loop
// order. No region.
// CHECK-LABEL: func.func @transposing_epilogue
// CHECK-NOT: nnf.dispatch
func.func @transposing_epilogue(%x: tensor<64x256xf32>, %w: tensor<256x64xf32>) -> tensor<64x64xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<64x64xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<64x64xf32>) -> tensor<64x64xf32>
  %mm = linalg.matmul ins(%x, %w : tensor<64x256xf32>, tensor<256x64xf32>) outs(%acc : tensor<64x64xf32>) -> tensor<64x64xf32>
  %y = linalg.generic {indexing_maps = [#t, #id], iterator_types = ["parallel", "parallel"]}
      ins(%mm : tensor<64x64xf32>) outs(%e : tensor<64x64xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<64x64xf32>
  return %y : tensor<64x64xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#mk = affine_map<(d0, d1, d2) -> (d0, d2)>
#kn = affine_map<(d0, d1, d2) -> (d2, d1)>
#mn = affine_map<(d0, d1, d2) -> (d0, d1)>

// An activation feeding a matmul's left operand would be recomputed for every
// tile of output columns: it stays outside; the matmul and its epilogue form
// the region.
// CHECK-LABEL: func.func @activation_before_matmul
// CHECK: %[[ACT:.*]] = linalg.generic
// CHECK: math.tanh
// CHECK: nnf.dispatch ins(%[[ACT]], %{{.*}} :
// CHECK-NOT: math.tanh
// CHECK: linalg.matmul
// CHECK: arith.negf
// CHECK: nnf.yield
func.func @activation_before_matmul(%x: tensor<64x256xf32>, %w: tensor<256x128xf32>) -> tensor<64x128xf32> {
  %zero = arith.constant 0.0 : f32
  %ea = tensor.empty() : tensor<64x256xf32>
  %a = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x : tensor<64x256xf32>) outs(%ea : tensor<64x256xf32>) {
  ^bb0(%in: f32, %out: f32):
    %t = math.tanh %in : f32
    linalg.yield %t : f32
  } -> tensor<64x256xf32>
  %e = tensor.empty() : tensor<64x128xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<64x128xf32>) -> tensor<64x128xf32>
  %mm = linalg.matmul ins(%a, %w : tensor<64x256xf32>, tensor<256x128xf32>) outs(%acc : tensor<64x128xf32>) -> tensor<64x128xf32>
  %y = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%mm : tensor<64x128xf32>) outs(%e : tensor<64x128xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<64x128xf32>
  return %y : tensor<64x128xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0)>

// Softmax: two row reductions and the elementwise ops between them form a
// row region; the exponentials (read by the sum and the division, through
// the same rows) are in it once.
// CHECK-LABEL: func.func @softmax
// CHECK: %[[D:.*]] = nnf.dispatch ins(%{{.*}} : tensor<32x128xf32>) -> tensor<32x128xf32> {
// CHECK: arith.maximumf
// CHECK: math.exp
// CHECK-NOT: math.exp
// CHECK: arith.addf
// CHECK: arith.divf
// CHECK: nnf.yield
// CHECK-NOT: linalg.generic
// CHECK: return %[[D]]
func.func @softmax(%x: tensor<32x128xf32>) -> tensor<32x128xf32> {
  %ninf = arith.constant 0xFF800000 : f32
  %zero = arith.constant 0.0 : f32
  %er = tensor.empty() : tensor<32xf32>
  %e = tensor.empty() : tensor<32x128xf32>
  %maxinit = linalg.fill ins(%ninf : f32) outs(%er : tensor<32xf32>) -> tensor<32xf32>
  %max = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]}
      ins(%x : tensor<32x128xf32>) outs(%maxinit : tensor<32xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = arith.maximumf %in, %out : f32
    linalg.yield %m : f32
  } -> tensor<32xf32>
  %exp = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %max : tensor<32x128xf32>, tensor<32xf32>) outs(%e : tensor<32x128xf32>) {
  ^bb0(%in: f32, %m: f32, %out: f32):
    %d = arith.subf %in, %m : f32
    %x2 = math.exp %d : f32
    linalg.yield %x2 : f32
  } -> tensor<32x128xf32>
  %suminit = linalg.fill ins(%zero : f32) outs(%er : tensor<32xf32>) -> tensor<32xf32>
  %sum = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]}
      ins(%exp : tensor<32x128xf32>) outs(%suminit : tensor<32xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.addf %in, %out : f32
    linalg.yield %s : f32
  } -> tensor<32xf32>
  %y = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]}
      ins(%exp, %sum : tensor<32x128xf32>, tensor<32xf32>) outs(%e : tensor<32x128xf32>) {
  ^bb0(%in: f32, %s: f32, %out: f32):
    %q = arith.divf %in, %s : f32
    linalg.yield %q : f32
  } -> tensor<32x128xf32>
  return %y : tensor<32x128xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#col = affine_map<(d0, d1) -> (d1)>

// A column reduction read by a row-wise op would be recomputed for every
// row tile: no region (there is no root left to fuse with).
// CHECK-LABEL: func.func @column_sum
// CHECK-NOT: nnf.dispatch
func.func @column_sum(%x: tensor<32x128xf32>) -> tensor<32x128xf32> {
  %zero = arith.constant 0.0 : f32
  %ec = tensor.empty() : tensor<128xf32>
  %e = tensor.empty() : tensor<32x128xf32>
  %init = linalg.fill ins(%zero : f32) outs(%ec : tensor<128xf32>) -> tensor<128xf32>
  %sum = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d1, d0)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]}
      ins(%x : tensor<32x128xf32>) outs(%init : tensor<128xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.addf %in, %out : f32
    linalg.yield %s : f32
  } -> tensor<128xf32>
  %y = linalg.generic {indexing_maps = [#id, #col, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %sum : tensor<32x128xf32>, tensor<128xf32>) outs(%e : tensor<32x128xf32>) {
  ^bb0(%in: f32, %s: f32, %out: f32):
    %q = arith.divf %in, %s : f32
    linalg.yield %q : f32
  } -> tensor<32x128xf32>
  return %y : tensor<32x128xf32>
}

// -----

#id3 = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
#id4 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#ch4 = affine_map<(d0, d1, d2, d3) -> (d1)>
#fk = affine_map<(n, f, p, k) -> (f, k)>
#nkp = affine_map<(n, f, p, k) -> (n, k, p)>
#nfp = affine_map<(n, f, p, k) -> (n, f, p)>

// An im2col contraction's result, expanded back to NCHW, read by a bias add
// in NCHW: the bias add is collapsed to the contraction's shape and joins it.
// CHECK-LABEL: func.func @convolution_epilogue
// CHECK: %[[D:.*]] = nnf.dispatch
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "reduction"]
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel"]
// CHECK: nnf.yield %{{.*}} : tensor<1x8x16xf32>
// CHECK: tensor.expand_shape %[[D]] {{\[}}[0], [1], [2, 3]] output_shape [1, 8, 4, 4]
func.func @convolution_epilogue(%f: tensor<8x27xf32>, %cols: tensor<1x27x16xf32>, %b: tensor<8xf32>) -> tensor<1x8x4x4xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x8x16xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<1x8x16xf32>) -> tensor<1x8x16xf32>
  %c = linalg.generic {indexing_maps = [#fk, #nkp, #nfp], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%f, %cols : tensor<8x27xf32>, tensor<1x27x16xf32>) outs(%acc : tensor<1x8x16xf32>) {
  ^bb0(%l: f32, %r: f32, %o: f32):
    %p = arith.mulf %l, %r : f32
    %s = arith.addf %o, %p : f32
    linalg.yield %s : f32
  } -> tensor<1x8x16xf32>
  %nchw = tensor.expand_shape %c [[0], [1], [2, 3]] output_shape [1, 8, 4, 4] : tensor<1x8x16xf32> into tensor<1x8x4x4xf32>
  %e4 = tensor.empty() : tensor<1x8x4x4xf32>
  %y = linalg.generic {indexing_maps = [#id4, #ch4, #id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%nchw, %b : tensor<1x8x4x4xf32>, tensor<8xf32>) outs(%e4 : tensor<1x8x4x4xf32>) {
  ^bb0(%in: f32, %bias: f32, %out: f32):
    %s = arith.addf %in, %bias : f32
    linalg.yield %s : f32
  } -> tensor<1x8x4x4xf32>
  return %y : tensor<1x8x4x4xf32>
}

// -----

#fk = affine_map<(n, f, p, k) -> (f, k)>
#nkp = affine_map<(n, f, p, k) -> (n, k, p)>
#nfp = affine_map<(n, f, p, k) -> (n, f, p)>

// A bias broadcast in NCHW and collapsed into an im2col contraction's
// accumulator is computed in the contraction's shape, in its region.
// CHECK-LABEL: func.func @convolution_bias
// CHECK: nnf.dispatch ins({{.*}} : {{.*}}tensor<8xf32>{{.*}}) -> tensor<1x8x16xf32>
// CHECK: ^bb0({{.*}}%[[B:arg[0-9]+]]: tensor<8xf32>
// CHECK: %[[ACC:.*]] = linalg.generic {{.*}} ins(%[[B]] : tensor<8xf32>) outs(%{{.*}} : tensor<1x8x16xf32>)
// CHECK: linalg.generic {{.*}}outs(%[[ACC]] : tensor<1x8x16xf32>)
// CHECK-NOT: tensor.collapse_shape
// CHECK: nnf.yield
func.func @convolution_bias(%f: tensor<8x27xf32>, %cols: tensor<1x27x16xf32>, %b: tensor<8xf32>) -> tensor<1x8x4x4xf32> {
  %e4 = tensor.empty() : tensor<1x8x4x4xf32>
  %bias = linalg.broadcast ins(%b : tensor<8xf32>) outs(%e4 : tensor<1x8x4x4xf32>) dimensions = [0, 2, 3]
  %acc = tensor.collapse_shape %bias [[0], [1], [2, 3]] : tensor<1x8x4x4xf32> into tensor<1x8x16xf32>
  %c = linalg.generic {indexing_maps = [#fk, #nkp, #nfp], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%f, %cols : tensor<8x27xf32>, tensor<1x27x16xf32>) outs(%acc : tensor<1x8x16xf32>) {
  ^bb0(%l: f32, %r: f32, %o: f32):
    %p = arith.mulf %l, %r : f32
    %s = arith.addf %o, %p : f32
    linalg.yield %s : f32
  } -> tensor<1x8x16xf32>
  %nchw = tensor.expand_shape %c [[0], [1], [2, 3]] output_shape [1, 8, 4, 4] : tensor<1x8x16xf32> into tensor<1x8x4x4xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>, affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%nchw : tensor<1x8x4x4xf32>) outs(%e4 : tensor<1x8x4x4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %r = arith.maximumf %in, %in : f32
    linalg.yield %r : f32
  } -> tensor<1x8x4x4xf32>
  return %y : tensor<1x8x4x4xf32>
}

// -----

#nchw = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#channel = affine_map<(d0, d1, d2, d3) -> (d1)>

// A depthwise convolution (its window reads are no projected permutation,
// its NCHW output is not in its loop order) joins its epilogue like a
// contraction, with its zero fill: a tile of its output slices its input.
// CHECK-LABEL: func.func @depthwise_epilogue
// CHECK: %[[D:.*]] = nnf.dispatch ins(%{{.*}}, %{{.*}}, %{{.*}} : tensor<1x8x10x10xf32>, tensor<8x3x3xf32>, tensor<8xf32>) -> tensor<1x8x8x8xf32> {
// CHECK: %[[FILL:.*]] = linalg.fill
// CHECK: %[[CONV:.*]] = linalg.depthwise_conv_2d_nchw_chw {{.*}} outs(%[[FILL]] :
// CHECK: %[[OUT:.*]] = bufferization.alloc_tensor() : tensor<1x8x8x8xf32>
// CHECK: %[[EPI:.*]] = linalg.generic {{.*}} ins(%[[CONV]], %{{.*}} : {{.*}}) outs(%[[OUT]] :
// CHECK: nnf.yield %[[EPI]]
// CHECK: return %[[D]]
func.func @depthwise_epilogue(%x: tensor<1x8x10x10xf32>, %w: tensor<8x3x3xf32>, %scale: tensor<8xf32>) -> tensor<1x8x8x8xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x8x8x8xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %conv = linalg.depthwise_conv_2d_nchw_chw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>}
      ins(%x, %w : tensor<1x8x10x10xf32>, tensor<8x3x3xf32>) outs(%acc : tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %y = linalg.generic {indexing_maps = [#nchw, #channel, #nchw], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%conv, %scale : tensor<1x8x8x8xf32>, tensor<8xf32>) outs(%e : tensor<1x8x8x8xf32>) {
  ^bb0(%in: f32, %s: f32, %out: f32):
    %m = arith.mulf %in, %s : f32
    %r = arith.maximumf %m, %zero : f32
    linalg.yield %r : f32
  } -> tensor<1x8x8x8xf32>
  return %y : tensor<1x8x8x8xf32>
}

// -----

#nchw = affine_map<(n, c, h, w) -> (n, c, h, w)>
#channel = affine_map<(n, c, h, w) -> (c)>

// The zero pad of a depthwise convolution's input joins its group: the
// region takes the unpadded input, so that code generation pads each tile
// where the convolution reads it.
// CHECK-LABEL: func.func @depthwise_padded_input
// CHECK-SAME: (%[[X:.*]]: tensor<1x8x8x8xf32>,
// CHECK: nnf.dispatch ins(%[[X]], %{{.*}}, %{{.*}} : tensor<1x8x8x8xf32>, tensor<8x3x3xf32>, tensor<8xf32>) -> tensor<1x8x8x8xf32> {
// CHECK: %[[PAD:.*]] = tensor.pad
// CHECK: linalg.depthwise_conv_2d_nchw_chw {{.*}} ins(%[[PAD]], %{{.*}} :
// CHECK: nnf.yield
func.func @depthwise_padded_input(%x: tensor<1x8x8x8xf32>, %w: tensor<8x3x3xf32>, %scale: tensor<8xf32>) -> tensor<1x8x8x8xf32> {
  %zero = arith.constant 0.0 : f32
  %padded = tensor.pad %x low[0, 0, 1, 1] high[0, 0, 1, 1] {
  ^bb0(%i: index, %j: index, %k: index, %l: index):
    tensor.yield %zero : f32
  } : tensor<1x8x8x8xf32> to tensor<1x8x10x10xf32>
  %e = tensor.empty() : tensor<1x8x8x8xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %conv = linalg.depthwise_conv_2d_nchw_chw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>}
      ins(%padded, %w : tensor<1x8x10x10xf32>, tensor<8x3x3xf32>) outs(%acc : tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %y = linalg.generic {indexing_maps = [#nchw, #channel, #nchw], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%conv, %scale : tensor<1x8x8x8xf32>, tensor<8xf32>) outs(%e : tensor<1x8x8x8xf32>) {
  ^bb0(%in: f32, %s: f32, %out: f32):
    %m = arith.mulf %in, %s : f32
    linalg.yield %m : f32
  } -> tensor<1x8x8x8xf32>
  return %y : tensor<1x8x8x8xf32>
}

// -----

#nchw = affine_map<(n, c, h, w) -> (n, c, h, w)>
#channel = affine_map<(n, c, h, w) -> (c)>

// A pad read by something else besides the convolution stays outside.
// CHECK-LABEL: func.func @pad_with_other_users
// CHECK: %[[PAD:.*]] = tensor.pad
// CHECK: nnf.dispatch ins(%[[PAD]],
func.func @pad_with_other_users(%x: tensor<1x8x8x8xf32>, %w: tensor<8x3x3xf32>, %scale: tensor<8xf32>) -> (tensor<1x8x8x8xf32>, tensor<1x8x10x10xf32>) {
  %zero = arith.constant 0.0 : f32
  %padded = tensor.pad %x low[0, 0, 1, 1] high[0, 0, 1, 1] {
  ^bb0(%i: index, %j: index, %k: index, %l: index):
    tensor.yield %zero : f32
  } : tensor<1x8x8x8xf32> to tensor<1x8x10x10xf32>
  %e = tensor.empty() : tensor<1x8x8x8xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %conv = linalg.depthwise_conv_2d_nchw_chw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>}
      ins(%padded, %w : tensor<1x8x10x10xf32>, tensor<8x3x3xf32>) outs(%acc : tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %y = linalg.generic {indexing_maps = [#nchw, #channel, #nchw], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%conv, %scale : tensor<1x8x8x8xf32>, tensor<8xf32>) outs(%e : tensor<1x8x8x8xf32>) {
  ^bb0(%in: f32, %s: f32, %out: f32):
    %m = arith.mulf %in, %s : f32
    linalg.yield %m : f32
  } -> tensor<1x8x8x8xf32>
  return %y, %padded : tensor<1x8x8x8xf32>, tensor<1x8x10x10xf32>
}

// -----

#nchw = affine_map<(n, c, h, w) -> (n, c, h, w)>
#channel = affine_map<(n, c, h, w) -> (c)>

// A 4-D producer of a depthwise convolution's padded input stays out of the
// convolution's group: the pad is no tile of it (this crashed the pass).
// CHECK-LABEL: func.func @producer_of_a_padded_input
// CHECK: %[[SCALED:.*]] = linalg.generic
// CHECK: nnf.dispatch ins(%[[SCALED]],
// CHECK: tensor.pad
// CHECK: linalg.depthwise_conv_2d_nchw_chw
func.func @producer_of_a_padded_input(%x: tensor<1x8x8x8xf32>, %w: tensor<8x3x3xf32>, %scale: tensor<8xf32>) -> tensor<1x8x8x8xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x8x8x8xf32>
  %scaled = linalg.generic {indexing_maps = [#nchw, #channel, #nchw], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%x, %scale : tensor<1x8x8x8xf32>, tensor<8xf32>) outs(%e : tensor<1x8x8x8xf32>) {
  ^bb0(%in: f32, %s: f32, %out: f32):
    %m = arith.mulf %in, %s : f32
    linalg.yield %m : f32
  } -> tensor<1x8x8x8xf32>
  %padded = tensor.pad %scaled low[0, 0, 1, 1] high[0, 0, 1, 1] {
  ^bb0(%i: index, %j: index, %k: index, %l: index):
    tensor.yield %zero : f32
  } : tensor<1x8x8x8xf32> to tensor<1x8x10x10xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %conv = linalg.depthwise_conv_2d_nchw_chw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>}
      ins(%padded, %w : tensor<1x8x10x10xf32>, tensor<8x3x3xf32>) outs(%acc : tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %y = linalg.generic {indexing_maps = [#nchw, #channel, #nchw], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%conv, %scale : tensor<1x8x8x8xf32>, tensor<8xf32>) outs(%e : tensor<1x8x8x8xf32>) {
  ^bb0(%in: f32, %s: f32, %out: f32):
    %m = arith.mulf %in, %s : f32
    linalg.yield %m : f32
  } -> tensor<1x8x8x8xf32>
  return %y : tensor<1x8x8x8xf32>
}

// -----

#nchw = affine_map<(n, c, h, w) -> (n, c, h, w)>
#channel = affine_map<(n, c, h, w) -> (c)>
#weight = affine_map<(n, f, p, c) -> (f, c)>
#pixels = affine_map<(n, f, p, c) -> (n, c, p)>
#out = affine_map<(n, f, p, c) -> (n, f, p)>

// A depthwise convolution's region and the 1x1 convolution reading its
// collapsed rows become one region: the depthwise ops, the collapse, then
// the contraction's. The depthwise result, no longer the anchor, goes to an
// empty tensor rather than a buffer of its own.
// CHECK-LABEL: func.func @depthwise_into_pointwise
// CHECK: nnf.dispatch ins(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : tensor<1x8x8x8xf32>, tensor<8x3x3xf32>, tensor<8xf32>, tensor<4x8xf32>) -> tensor<1x4x64xf32> {
// CHECK: tensor.pad
// CHECK: %[[CONV:.*]] = linalg.depthwise_conv_2d_nchw_chw
// CHECK: %[[EMPTY:.*]] = tensor.empty() : tensor<1x8x8x8xf32>
// CHECK: %[[SCALED:.*]] = linalg.generic {{.*}} ins(%[[CONV]], {{.*}} outs(%[[EMPTY]] :
// CHECK: %[[ROWS:.*]] = tensor.collapse_shape %[[SCALED]] {{\[\[}}0], [1], [2, 3]]
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[ROWS]] :
// CHECK: nnf.yield
// CHECK-NOT: nnf.dispatch
func.func @depthwise_into_pointwise(%x: tensor<1x8x8x8xf32>, %w: tensor<8x3x3xf32>, %scale: tensor<8xf32>, %project: tensor<4x8xf32>) -> tensor<1x4x64xf32> {
  %zero = arith.constant 0.0 : f32
  %padded = tensor.pad %x low[0, 0, 1, 1] high[0, 0, 1, 1] {
  ^bb0(%i: index, %j: index, %k: index, %l: index):
    tensor.yield %zero : f32
  } : tensor<1x8x8x8xf32> to tensor<1x8x10x10xf32>
  %e = tensor.empty() : tensor<1x8x8x8xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %conv = linalg.depthwise_conv_2d_nchw_chw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>}
      ins(%padded, %w : tensor<1x8x10x10xf32>, tensor<8x3x3xf32>) outs(%acc : tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %scaled = linalg.generic {indexing_maps = [#nchw, #channel, #nchw], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%conv, %scale : tensor<1x8x8x8xf32>, tensor<8xf32>) outs(%e : tensor<1x8x8x8xf32>) {
  ^bb0(%in: f32, %s: f32, %out: f32):
    %m = arith.mulf %in, %s : f32
    linalg.yield %m : f32
  } -> tensor<1x8x8x8xf32>
  %rows = tensor.collapse_shape %scaled [[0], [1], [2, 3]] : tensor<1x8x8x8xf32> into tensor<1x8x64xf32>
  %pe = tensor.empty() : tensor<1x4x64xf32>
  %pacc = linalg.fill ins(%zero : f32) outs(%pe : tensor<1x4x64xf32>) -> tensor<1x4x64xf32>
  %y = linalg.generic {indexing_maps = [#weight, #pixels, #out], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%project, %rows : tensor<4x8xf32>, tensor<1x8x64xf32>) outs(%pacc : tensor<1x4x64xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %o, %p : f32
    linalg.yield %s : f32
  } -> tensor<1x4x64xf32>
  %relu = linalg.generic {indexing_maps = [affine_map<(n, f, p) -> (n, f, p)>, affine_map<(n, f, p) -> (n, f, p)>], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%y : tensor<1x4x64xf32>) outs(%pe : tensor<1x4x64xf32>) {
  ^bb0(%in: f32, %out: f32):
    %r = arith.maximumf %in, %zero : f32
    linalg.yield %r : f32
  } -> tensor<1x4x64xf32>
  return %relu : tensor<1x4x64xf32>
}

// -----

#nchw = affine_map<(n, c, h, w) -> (n, c, h, w)>

// A splat constant accumulator (torch-mlir's ONNX importer folds a
// convolution's zero fill so) becomes a fill of an empty tensor: the
// convolution and its epilogue then form a group.
// CHECK-LABEL: func.func @splat_accumulator
// CHECK: nnf.dispatch
// CHECK: %[[EMPTY:.*]] = tensor.empty() : tensor<1x8x8x8xf32>
// CHECK: %[[ZERO:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%[[EMPTY]] :
// CHECK: linalg.depthwise_conv_2d_nchw_chw {{.*}} outs(%[[ZERO]] :
// CHECK: nnf.yield
func.func @splat_accumulator(%x: tensor<1x8x10x10xf32>, %w: tensor<8x3x3xf32>) -> tensor<1x8x8x8xf32> {
  %zeros = arith.constant dense<0.0> : tensor<1x8x8x8xf32>
  %e = tensor.empty() : tensor<1x8x8x8xf32>
  %conv = linalg.depthwise_conv_2d_nchw_chw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>}
      ins(%x, %w : tensor<1x8x10x10xf32>, tensor<8x3x3xf32>) outs(%zeros : tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %y = linalg.generic {indexing_maps = [#nchw, #nchw], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%conv : tensor<1x8x8x8xf32>) outs(%e : tensor<1x8x8x8xf32>) {
  ^bb0(%in: f32, %out: f32):
    %zero = arith.constant 0.0 : f32
    %r = arith.maximumf %in, %zero : f32
    linalg.yield %r : f32
  } -> tensor<1x8x8x8xf32>
  return %y : tensor<1x8x8x8xf32>
}

// -----

#window = affine_map<(n, c, kh, kw, oh, ow) -> (n, c, oh * 2 + kh, ow * 2 + kw)>
#windows = affine_map<(n, c, kh, kw, oh, ow) -> (n, c, kh, kw, oh, ow)>
#fk = affine_map<(n, f, p, k) -> (f, k)>
#nkp = affine_map<(n, f, p, k) -> (n, k, p)>
#nfp = affine_map<(n, f, p, k) -> (n, f, p)>
#id3 = affine_map<(n, f, p) -> (n, f, p)>

// An im2col window copy read only by a contraction region, through the
// collapse into columns, joins that region: the copy (into an empty tensor
// of the region's own), the collapse, then the contraction's ops.
// CHECK-LABEL: func.func @windows_into_contraction
// CHECK: nnf.dispatch ins(%{{.*}}, %{{.*}} : tensor<1x3x10x10xf32>, tensor<8x27xf32>) -> tensor<1x8x16xf32> {
// CHECK: ^bb0(%[[X:.*]]: tensor<1x3x10x10xf32>, %[[F:.*]]: tensor<8x27xf32>):
// CHECK: %[[EMPTY:.*]] = tensor.empty() : tensor<1x3x3x3x4x4xf32>
// CHECK: %[[WINDOWS:.*]] = linalg.generic {{.*}} ins(%[[X]] : tensor<1x3x10x10xf32>) outs(%[[EMPTY]] :
// CHECK: %[[COLUMNS:.*]] = tensor.collapse_shape %[[WINDOWS]] {{\[\[}}0], [1, 2, 3], [4, 5]]
// CHECK: linalg.generic {{.*}} ins(%[[F]], %[[COLUMNS]] :
// CHECK: nnf.yield
// CHECK-NOT: nnf.dispatch
func.func @windows_into_contraction(%x: tensor<1x3x10x10xf32>, %f: tensor<8x27xf32>) -> tensor<1x8x16xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x3x3x3x4x4xf32>
  %w = linalg.generic {indexing_maps = [#window, #windows], iterator_types = ["parallel", "parallel", "parallel", "parallel", "parallel", "parallel"]}
      ins(%x : tensor<1x3x10x10xf32>) outs(%e : tensor<1x3x3x3x4x4xf32>) {
  ^bb0(%in: f32, %out: f32):
    linalg.yield %in : f32
  } -> tensor<1x3x3x3x4x4xf32>
  %cols = tensor.collapse_shape %w [[0], [1, 2, 3], [4, 5]] : tensor<1x3x3x3x4x4xf32> into tensor<1x27x16xf32>
  %ae = tensor.empty() : tensor<1x8x16xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%ae : tensor<1x8x16xf32>) -> tensor<1x8x16xf32>
  %c = linalg.generic {indexing_maps = [#fk, #nkp, #nfp], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%f, %cols : tensor<8x27xf32>, tensor<1x27x16xf32>) outs(%acc : tensor<1x8x16xf32>) {
  ^bb0(%l: f32, %r: f32, %o: f32):
    %p = arith.mulf %l, %r : f32
    %s = arith.addf %o, %p : f32
    linalg.yield %s : f32
  } -> tensor<1x8x16xf32>
  %relu = linalg.generic {indexing_maps = [#id3, #id3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%c : tensor<1x8x16xf32>) outs(%ae : tensor<1x8x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %r = arith.maximumf %in, %zero : f32
    linalg.yield %r : f32
  } -> tensor<1x8x16xf32>
  return %relu : tensor<1x8x16xf32>
}

// -----

#window = affine_map<(n, c, kh, kw, oh, ow) -> (n, c, oh * 2 + kh, ow * 2 + kw)>
#windows = affine_map<(n, c, kh, kw, oh, ow) -> (n, c, kh, kw, oh, ow)>
#fk = affine_map<(n, f, p, k) -> (f, k)>
#nkp = affine_map<(n, f, p, k) -> (n, k, p)>
#nfp = affine_map<(n, f, p, k) -> (n, f, p)>
#id3 = affine_map<(n, f, p) -> (n, f, p)>

// Windows that something else reads too stay a copy of their own.
// CHECK-LABEL: func.func @windows_read_twice
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<1x3x3x3x4x4xf32>)
// CHECK: nnf.dispatch ins(%{{.*}}, %{{.*}} : tensor<8x27xf32>, tensor<1x27x16xf32>)
func.func @windows_read_twice(%x: tensor<1x3x10x10xf32>, %f: tensor<8x27xf32>) -> (tensor<1x8x16xf32>, tensor<1x3x3x3x4x4xf32>) {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x3x3x3x4x4xf32>
  %w = linalg.generic {indexing_maps = [#window, #windows], iterator_types = ["parallel", "parallel", "parallel", "parallel", "parallel", "parallel"]}
      ins(%x : tensor<1x3x10x10xf32>) outs(%e : tensor<1x3x3x3x4x4xf32>) {
  ^bb0(%in: f32, %out: f32):
    linalg.yield %in : f32
  } -> tensor<1x3x3x3x4x4xf32>
  %cols = tensor.collapse_shape %w [[0], [1, 2, 3], [4, 5]] : tensor<1x3x3x3x4x4xf32> into tensor<1x27x16xf32>
  %ae = tensor.empty() : tensor<1x8x16xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%ae : tensor<1x8x16xf32>) -> tensor<1x8x16xf32>
  %c = linalg.generic {indexing_maps = [#fk, #nkp, #nfp], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%f, %cols : tensor<8x27xf32>, tensor<1x27x16xf32>) outs(%acc : tensor<1x8x16xf32>) {
  ^bb0(%l: f32, %r: f32, %o: f32):
    %p = arith.mulf %l, %r : f32
    %s = arith.addf %o, %p : f32
    linalg.yield %s : f32
  } -> tensor<1x8x16xf32>
  %relu = linalg.generic {indexing_maps = [#id3, #id3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%c : tensor<1x8x16xf32>) outs(%ae : tensor<1x8x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %r = arith.maximumf %in, %zero : f32
    linalg.yield %r : f32
  } -> tensor<1x8x16xf32>
  return %relu, %w : tensor<1x8x16xf32>, tensor<1x3x3x3x4x4xf32>
}
