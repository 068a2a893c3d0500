// RUN: nnforge-opt %s --split-input-file --verify-diagnostics

// Ops with an explicit result type report the operand at fault, then the
// generic "failed to infer returned types" of upstream's InferTypeOpInterface.

func.func @linear_k_mismatch(%x: tensor<4x8xf32>, %w: tensor<16x9xf32>) -> tensor<4x16xf32> {
  // expected-error @+2 {{'nnf.linear' op weight dim 1 is 9 but must equal input dim 1 (K), which is 8}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.linear %x, %w : (tensor<4x8xf32>, tensor<16x9xf32>) -> tensor<4x16xf32>
  return %0 : tensor<4x16xf32>
}

// -----

func.func @linear_weight_rank(%x: tensor<4x8xf32>, %w: tensor<2x16x8xf32>) -> tensor<4x16xf32> {
  // expected-error @+2 {{'nnf.linear' op weight must have rank 2, got tensor<2x16x8xf32>}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.linear %x, %w : (tensor<4x8xf32>, tensor<2x16x8xf32>) -> tensor<4x16xf32>
  return %0 : tensor<4x16xf32>
}

// -----

func.func @linear_bias(%x: tensor<4x8xf32>, %w: tensor<16x8xf32>, %b: tensor<15xf32>) -> tensor<4x16xf32> {
  // expected-error @+2 {{'nnf.linear' op bias dim 0 is 15 but must equal weight dim 0 (N), which is 16}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.linear %x, %w, %b : (tensor<4x8xf32>, tensor<16x8xf32>, tensor<15xf32>) -> tensor<4x16xf32>
  return %0 : tensor<4x16xf32>
}

// -----

func.func @linear_element_type(%x: tensor<4x8xf32>, %w: tensor<16x8xf16>) -> tensor<4x16xf32> {
  // expected-error @+2 {{'nnf.linear' op weight element type f16 differs from input element type f32}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.linear %x, %w : (tensor<4x8xf32>, tensor<16x8xf16>) -> tensor<4x16xf32>
  return %0 : tensor<4x16xf32>
}

// -----

func.func @linear_result(%x: tensor<4x8xf32>, %w: tensor<16x8xf32>) -> tensor<4x17xf32> {
  // expected-error @+2 {{'nnf.linear' op inferred type(s) 'tensor<4x16xf32>' are incompatible with return type(s) of operation 'tensor<4x17xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.linear %x, %w : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x17xf32>
  return %0 : tensor<4x17xf32>
}

// -----

func.func @conv2d_groups(%x: tensor<1x6x8x8xf32>, %f: tensor<8x2x3x3xf32>) -> tensor<1x8x6x6xf32> {
  // expected-error @+2 {{'nnf.conv2d' op input channels (6) must be divisible by groups (4)}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.conv2d %x, %f groups 4 : (tensor<1x6x8x8xf32>, tensor<8x2x3x3xf32>) -> tensor<1x8x6x6xf32>
  return %0 : tensor<1x8x6x6xf32>
}

// -----

func.func @conv2d_filter_channels(%x: tensor<1x6x8x8xf32>, %f: tensor<8x4x3x3xf32>) -> tensor<1x8x6x6xf32> {
  // expected-error @+2 {{'nnf.conv2d' op filter dim 1 is 4 but must equal input channels / groups, which is 3}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.conv2d %x, %f groups 2 : (tensor<1x6x8x8xf32>, tensor<8x4x3x3xf32>) -> tensor<1x8x6x6xf32>
  return %0 : tensor<1x8x6x6xf32>
}

// -----

func.func @conv2d_strides(%x: tensor<1x3x8x8xf32>, %f: tensor<8x3x3x3xf32>) -> tensor<1x8x6x6xf32> {
  // expected-error @+2 {{'nnf.conv2d' op strides must be 2 positive integers [h, w]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.conv2d %x, %f strides [0, 1] : (tensor<1x3x8x8xf32>, tensor<8x3x3x3xf32>) -> tensor<1x8x6x6xf32>
  return %0 : tensor<1x8x6x6xf32>
}

// -----

func.func @conv2d_padding(%x: tensor<1x3x8x8xf32>, %f: tensor<8x3x3x3xf32>) -> tensor<1x8x8x8xf32> {
  // expected-error @+2 {{'nnf.conv2d' op padding must be 4 non-negative integers [top, left, bottom, right]}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.conv2d %x, %f padding [1, 1] : (tensor<1x3x8x8xf32>, tensor<8x3x3x3xf32>) -> tensor<1x8x8x8xf32>
  return %0 : tensor<1x8x8x8xf32>
}

// -----

func.func @conv2d_too_small(%x: tensor<1x3x2x8xf32>, %f: tensor<8x3x3x3xf32>) -> tensor<1x8x1x6xf32> {
  // expected-error @+2 {{'nnf.conv2d' op height of the padded input (2) is smaller than the dilated filter (3)}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.conv2d %x, %f : (tensor<1x3x2x8xf32>, tensor<8x3x3x3xf32>) -> tensor<1x8x1x6xf32>
  return %0 : tensor<1x8x1x6xf32>
}

// -----

func.func @conv2d_input_rank(%x: tensor<3x8x8xf32>, %f: tensor<8x3x3x3xf32>) -> tensor<8x6x6xf32> {
  // expected-error @+2 {{'nnf.conv2d' op input must have rank 4, got tensor<3x8x8xf32>}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.conv2d %x, %f : (tensor<3x8x8xf32>, tensor<8x3x3x3xf32>) -> tensor<8x6x6xf32>
  return %0 : tensor<8x6x6xf32>
}

// -----

func.func @softmax_axis(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  // expected-error @+1 {{'nnf.softmax' op axis 2 is out of range for rank 2 (expected -2 <= axis < 2)}}
  %0 = nnf.softmax %x axis 2 : tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

func.func @layer_norm_scale(%x: tensor<2x16x32xf32>, %s: tensor<16x33xf32>) -> tensor<2x16x32xf32> {
  // expected-error @+2 {{'nnf.layer_norm' op scale dim 1 is 33 but must equal input dim 2, which is 32}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.layer_norm %x scale %s axis 1 : (tensor<2x16x32xf32>, tensor<16x33xf32>) -> tensor<2x16x32xf32>
  return %0 : tensor<2x16x32xf32>
}

// -----

func.func @layer_norm_bias_rank(%x: tensor<2x16x32xf32>, %b: tensor<16x32xf32>) -> tensor<2x16x32xf32> {
  // expected-error @+2 {{'nnf.layer_norm' op bias must have rank 1, got tensor<16x32xf32>}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.layer_norm %x bias %b axis -1 : (tensor<2x16x32xf32>, tensor<16x32xf32>) -> tensor<2x16x32xf32>
  return %0 : tensor<2x16x32xf32>
}

// -----

func.func @layer_norm_epsilon(%x: tensor<2x16x32xf32>) -> tensor<2x16x32xf32> {
  // expected-error @+2 {{'nnf.layer_norm' op epsilon must be non-negative}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.layer_norm %x axis -1 epsilon -1.0 : (tensor<2x16x32xf32>) -> tensor<2x16x32xf32>
  return %0 : tensor<2x16x32xf32>
}

// -----

func.func @attention_head_dim(%q: tensor<2x8x64xf32>, %k: tensor<2x8x32xf32>, %v: tensor<2x8x64xf32>) -> tensor<2x8x64xf32> {
  // expected-error @+2 {{'nnf.attention' op key dim 2 (D) is 32 but must equal query dim 2 (D), which is 64}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.attention %q, %k, %v : (tensor<2x8x64xf32>, tensor<2x8x32xf32>, tensor<2x8x64xf32>) -> tensor<2x8x64xf32>
  return %0 : tensor<2x8x64xf32>
}

// -----

func.func @attention_sequence(%q: tensor<2x8x64xf32>, %k: tensor<2x8x64xf32>, %v: tensor<2x9x64xf32>) -> tensor<2x8x64xf32> {
  // expected-error @+2 {{'nnf.attention' op value dim 1 (S) is 9 but must equal key dim 1 (S), which is 8}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.attention %q, %k, %v : (tensor<2x8x64xf32>, tensor<2x8x64xf32>, tensor<2x9x64xf32>) -> tensor<2x8x64xf32>
  return %0 : tensor<2x8x64xf32>
}

// -----

func.func @attention_batch(%q: tensor<2x8x64xf32>, %k: tensor<3x8x64xf32>, %v: tensor<2x8x64xf32>) -> tensor<2x8x64xf32> {
  // expected-error @+2 {{'nnf.attention' op key dim 0 is 3 but must equal query dim 0, which is 2}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.attention %q, %k, %v : (tensor<2x8x64xf32>, tensor<3x8x64xf32>, tensor<2x8x64xf32>) -> tensor<2x8x64xf32>
  return %0 : tensor<2x8x64xf32>
}

// -----

func.func @attention_mask_type(%q: tensor<8x64xf32>, %m: tensor<8x8xf16>) -> tensor<8x64xf32> {
  // expected-error @+2 {{'nnf.attention' op mask element type must be i1 or the query element type f32, got f16}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.attention %q, %q, %q mask %m : (tensor<8x64xf32>, tensor<8x64xf32>, tensor<8x64xf32>, tensor<8x8xf16>) -> tensor<8x64xf32>
  return %0 : tensor<8x64xf32>
}

// -----

func.func @attention_mask_shape(%q: tensor<8x64xf32>, %m: tensor<8x7xi1>) -> tensor<8x64xf32> {
  // expected-error @+2 {{'nnf.attention' op mask dim 1 is 7 but must equal scores dim 1, which is 8}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.attention %q, %q, %q mask %m : (tensor<8x64xf32>, tensor<8x64xf32>, tensor<8x64xf32>, tensor<8x7xi1>) -> tensor<8x64xf32>
  return %0 : tensor<8x64xf32>
}

// -----

func.func @attention_scale(%q: tensor<8x64xf32>) -> tensor<8x64xf32> {
  // expected-error @+2 {{'nnf.attention' op scale must be positive}}
  // expected-error @+1 {{failed to infer returned types}}
  %0 = nnf.attention %q, %q, %q scale 0.0 : (tensor<8x64xf32>, tensor<8x64xf32>, tensor<8x64xf32>) -> tensor<8x64xf32>
  return %0 : tensor<8x64xf32>
}

// -----

func.func @activation_integer(%x: tensor<4x8xi32>) -> tensor<4x8xi32> {
  // expected-error @+1 {{'nnf.activation' op input must be a ranked tensor of f32, f16 or bf16, got tensor<4x8xi32>}}
  %0 = nnf.activation relu %x : tensor<4x8xi32>
  return %0 : tensor<4x8xi32>
}

// -----

func.func @activation_kind(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  // expected-error @+2 {{expected ::nnforge::nnf::ActivationKind to be one of: none, relu, relu6, gelu, gelu_tanh, sigmoid, tanh, silu}}
  // expected-error @+1 {{failed to parse NNF_ActivationAttr parameter 'value'}}
  %0 = nnf.activation swish %x : tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

func.func @dispatch_arguments(%x: tensor<8xf32>) -> tensor<8xf32> {
  // expected-error @+1 {{'nnf.dispatch' op input #0 is 'tensor<8xf32>' but region argument #0 is 'tensor<4xf32>'}}
  %0 = nnf.dispatch ins(%x : tensor<8xf32>) -> tensor<8xf32> {
  ^bb0(%in: tensor<4xf32>):
    %e = tensor.empty() : tensor<8xf32>
    nnf.yield %e : tensor<8xf32>
  }
  return %0 : tensor<8xf32>
}

// -----

func.func @dispatch_results(%x: tensor<8xf32>) -> tensor<8xf32> {
  // expected-error @+1 {{'nnf.dispatch' op yields 'tensor<8xf32>' but its results are 'tensor<8xf16>'}}
  %0 = nnf.dispatch ins(%x : tensor<8xf32>) -> tensor<8xf16> {
  ^bb0(%in: tensor<8xf32>):
    nnf.yield %in : tensor<8xf32>
  }
  return %x : tensor<8xf32>
}

// -----

func.func @dispatch_isolated(%x: tensor<8xf32>) -> tensor<8xf32> {
  // expected-note @+1 {{required by region isolation constraints}}
  %0 = nnf.dispatch -> tensor<8xf32> {
    // expected-error @+1 {{'math.exp' op using value defined outside the region}}
    %e = math.exp %x : tensor<8xf32>
    nnf.yield %e : tensor<8xf32>
  }
  return %0 : tensor<8xf32>
}

// -----

func.func @yield_outside(%x: tensor<8xf32>) {
  // expected-error @+1 {{'nnf.yield' op expects parent op 'nnf.dispatch'}}
  nnf.yield %x : tensor<8xf32>
}
