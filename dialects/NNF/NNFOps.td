//===- NNFOps.td - nnf operations ---------------------------*- tablegen -*-===//
//
// Each op validates its operands while inferring its result type
// (`inferReturnTypes` in NNFOps.cpp), so a malformed op is reported with the
// operand and dimension at fault, both when parsed and when built.
//
//===----------------------------------------------------------------------===//

#ifndef NNFORGE_DIALECT_NNF_OPS
#define NNFORGE_DIALECT_NNF_OPS

include "NNF/NNFBase.td"
include "mlir/IR/CommonAttrConstraints.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

// Ops whose result type is a function of operands and attributes. Result
// types written in the IR may refine a dynamic dimension the inference leaves
// open, never contradict it.
class NNF_InferredOp<string mnemonic, list<Trait> traits = []>
    : NNF_Op<mnemonic, traits # [Pure, InferTypeOpAdaptor]> {
  let extraClassDeclaration = [{
    static bool isCompatibleReturnTypes(::mlir::TypeRange inferred,
                                        ::mlir::TypeRange actual) {
      return areRefinementsOf(inferred, actual);
    }
  }];
}

def NNF_LinearOp : NNF_InferredOp<"linear"> {
  let summary = "dense layer: input x weight^T + bias, then an activation";
  let description = [{
    Computes `activation(input @ transpose(weight) + bias)` like PyTorch's
    `torch.nn.functional.linear`. `input` is `[..., K]`, `weight` is `[N, K]`,
    the optional `bias` is `[N]`; the result is `[..., N]`.

    Example:

    ```mlir
    %y = nnf.linear %x, %w, %b activation relu
        : (tensor<?x784xf32>, tensor<128x784xf32>, tensor<128xf32>) -> tensor<?x128xf32>
    ```
  }];
  let arguments = (ins NNF_FloatTensor:$input, NNF_FloatTensor:$weight,
                   Optional<NNF_FloatTensor>:$bias,
                   DefaultValuedAttr<NNF_ActivationAttr,
                                     "ActivationKind::none">:$activation);
  let results = (outs NNF_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? (`activation` `` $activation^)? attr-dict
    `:` functional-type(operands, results)
  }];
}

def NNF_Conv2DOp : NNF_InferredOp<"conv2d"> {
  let summary = "2-D convolution (NCHW input, OIHW filter), bias, activation";
  let description = [{
    Computes `activation(conv2d(input, filter) + bias)` like PyTorch's
    `torch.nn.functional.conv2d`. `input` is `[N, C, H, W]`, `filter` is
    `[O, C / groups, KH, KW]`, the optional `bias` is `[O]`. `padding` is
    `[top, left, bottom, right]` of zeros; `strides` and `dilations` are
    `[height, width]`. The result is `[N, O, HO, WO]` with
    `HO = (H + top + bottom - dilation_h * (KH - 1) - 1) / stride_h + 1`.

    Example:

    ```mlir
    %y = nnf.conv2d %x, %f, %b strides [2, 2] padding [1, 1, 1, 1] activation relu
        : (tensor<1x3x224x224xf32>, tensor<64x3x3x3xf32>, tensor<64xf32>)
        -> tensor<1x64x112x112xf32>
    ```
  }];
  let arguments = (ins NNF_FloatTensor:$input, NNF_FloatTensor:$filter,
                   Optional<NNF_FloatTensor>:$bias,
                   DefaultValuedAttr<DenseI64ArrayAttr, "{1, 1}">:$strides,
                   DefaultValuedAttr<DenseI64ArrayAttr, "{0, 0, 0, 0}">:$padding,
                   DefaultValuedAttr<DenseI64ArrayAttr, "{1, 1}">:$dilations,
                   DefaultValuedAttr<I64Attr, "1">:$groups,
                   DefaultValuedAttr<NNF_ActivationAttr,
                                     "ActivationKind::none">:$activation);
  let results = (outs NNF_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $filter (`,` $bias^)? (`strides` $strides^)?
    (`padding` $padding^)? (`dilations` $dilations^)? (`groups` $groups^)?
    (`activation` `` $activation^)? attr-dict
    `:` functional-type(operands, results)
  }];
}

def NNF_SoftmaxOp : NNF_InferredOp<"softmax"> {
  let summary = "softmax along one axis";
  let description = [{
    Computes `exp(x - max(x)) / sum(exp(x - max(x)))` along `axis`, like
    `torch.softmax(input, dim=axis)`. A negative `axis` counts from the end.

    Example:

    ```mlir
    %p = nnf.softmax %logits axis -1 : tensor<8x1000xf32>
    ```
  }];
  let arguments = (ins NNF_FloatTensor:$input, I64Attr:$axis);
  let results = (outs NNF_FloatTensor:$result);
  let assemblyFormat = "$input `axis` $axis attr-dict `:` type($input)";
}

def NNF_LayerNormOp : NNF_InferredOp<"layer_norm", [AttrSizedOperandSegments]> {
  let summary = "layer normalization over the dimensions axis..rank-1";
  let description = [{
    Normalizes `input` over its trailing dimensions starting at `axis` (a
    negative `axis` counts from the end) to zero mean and unit (biased)
    variance, then applies the optional elementwise `scale` and `bias`, whose
    shape is `input`'s shape from `axis` on:
    `(x - mean) / sqrt(var + epsilon) * scale + bias`, like
    `torch.nn.functional.layer_norm`.

    Example:

    ```mlir
    %y = nnf.layer_norm %x, %gamma, %beta axis -1 epsilon 1.0e-05
        : (tensor<2x128x256xf32>, tensor<256xf32>, tensor<256xf32>) -> tensor<2x128x256xf32>
    ```
  }];
  let arguments = (ins NNF_FloatTensor:$input,
                   Optional<NNF_FloatTensor>:$scale,
                   Optional<NNF_FloatTensor>:$bias,
                   I64Attr:$axis,
                   DefaultValuedAttr<F64Attr, "1.0e-5">:$epsilon);
  let results = (outs NNF_FloatTensor:$result);
  let assemblyFormat = [{
    $input (`scale` $scale^)? (`bias` $bias^)? `axis` $axis
    (`epsilon` $epsilon^)? attr-dict `:` functional-type(operands, results)
  }];
}

def NNF_AttentionOp : NNF_InferredOp<"attention"> {
  let summary = "scaled dot-product attention over [..., L, D]";
  let description = [{
    Computes `softmax(query @ transpose(key) * scale + mask) @ value` like
    `torch.nn.functional.scaled_dot_product_attention`. `query` is
    `[..., L, D]`, `key` is `[..., S, D]`, `value` is `[..., S, DV]` with the
    same leading dimensions; the result is `[..., L, DV]`. `scale` defaults to
    `1 / sqrt(D)`. The optional `mask` broadcasts to `[..., L, S]`: an `i1`
    mask keeps the positions that are true, a floating-point mask is added to
    the scores. `causal` masks out the positions `s > l`.

    Example:

    ```mlir
    %o = nnf.attention %q, %k, %v causal
        : (tensor<2x4x128x64xf32>, tensor<2x4x128x64xf32>, tensor<2x4x128x64xf32>)
        -> tensor<2x4x128x64xf32>
    ```
  }];
  let arguments = (ins NNF_FloatTensor:$query, NNF_FloatTensor:$key,
                   NNF_FloatTensor:$value,
                   Optional<RankedTensorOf<[I1, F32, F16, BF16]>>:$mask,
                   OptionalAttr<F64Attr>:$scale,
                   UnitAttr:$causal);
  let results = (outs NNF_FloatTensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value (`mask` $mask^)? (`scale` $scale^)?
    (`causal` $causal^)? attr-dict `:` functional-type(operands, results)
  }];
}

def NNF_ActivationOp : NNF_InferredOp<"activation"> {
  let summary = "elementwise activation function";
  let description = [{
    Applies `kind` to every element. Kind `none` is the identity and folds
    away; an activation of a `nnf.linear` or `nnf.conv2d` that has none and no
    other user is folded into that op by canonicalization.

    Example:

    ```mlir
    %y = nnf.activation gelu %x : tensor<64x4096xf32>
    ```
  }];
  let arguments = (ins NNF_FloatTensor:$input, NNF_ActivationAttr:$kind);
  let results = (outs NNF_FloatTensor:$result);
  let assemblyFormat = "`` $kind $input attr-dict `:` type($input)";
  let hasFolder = 1;
  let hasCanonicalizer = 1;
}

def NNF_DispatchOp : NNF_Op<"dispatch", [IsolatedFromAbove, SingleBlock,
                                          RecursiveMemoryEffects]> {
  let summary = "a group of ops compiled as one tiled loop nest";
  let description = [{
    A dispatch region: a root op (a contraction, or reductions over rows)
    with the elementwise producers and consumers fused with it, compiled
    together so that their intermediates live in one tile (registers or L1)
    instead of going to memory. Code generation tiles the op that yields the
    result (the anchor) along its outer loops and fuses every other op of
    the region into that tile loop; each tile then holds one output tile of a
    matmul and its epilogue, or a few rows of a softmax. Formed by
    `nnf-form-dispatch-regions`, dissolved by `nnf-inline-dispatch-regions`
    once the region is scheduled.

    The region is isolated from above: the tensors it reads are operands,
    the entry block's arguments inside; constants are cloned in. It ends
    with `nnf.yield` of the results.

    Example:

    ```mlir
    %y = nnf.dispatch ins(%x, %w, %b : tensor<64x1024xf32>, tensor<1024x4096xf32>, tensor<4096xf32>)
        -> tensor<64x4096xf32> {
    ^bb0(%in: tensor<64x1024xf32>, %weight: tensor<1024x4096xf32>, %bias: tensor<4096xf32>):
      %zero = arith.constant 0.0 : f32
      %empty = tensor.empty() : tensor<64x4096xf32>
      %acc = linalg.fill ins(%zero : f32) outs(%empty : tensor<64x4096xf32>) -> tensor<64x4096xf32>
      %mm = linalg.matmul ins(%in, %weight : tensor<64x1024xf32>, tensor<1024x4096xf32>)
          outs(%acc : tensor<64x4096xf32>) -> tensor<64x4096xf32>
      %out = linalg.generic ... ins(%mm, %bias : ...) outs(%empty : ...) { ... }  // + bias, GELU
      nnf.yield %out : tensor<64x4096xf32>
    }
    ```
  }];
  let arguments = (ins Variadic<AnyType>:$inputs);
  let results = (outs Variadic<AnyType>:$results);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    (`ins` `(` $inputs^ `:` type($inputs) `)`)? `->` type($results)
    attr-dict-with-keyword $body
  }];
  let hasVerifier = 1;
}

def NNF_YieldOp : NNF_Op<"yield", [Pure, Terminator, ReturnLike,
                                    HasParent<"DispatchOp">]> {
  let summary = "the results of an nnf.dispatch region";
  let description = [{
    Ends the region of `nnf.dispatch`; its operands are the dispatch's
    results, in order and of the same types.

    Example:

    ```mlir
    nnf.yield %out : tensor<64x4096xf32>
    ```
  }];
  let arguments = (ins Variadic<AnyType>:$values);
  let assemblyFormat = "attr-dict ($values^ `:` type($values))?";
}

#endif // NNFORGE_DIALECT_NNF_OPS
