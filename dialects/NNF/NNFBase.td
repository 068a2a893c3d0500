//===- NNFBase.td - nnf dialect and attributes -------------*- tablegen -*-===//
//
// The `nnf` dialect: graph-level neural-network operations on ranked tensors.
//
//===----------------------------------------------------------------------===//

#ifndef NNFORGE_DIALECT_NNF_BASE
#define NNFORGE_DIALECT_NNF_BASE

include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"
include "mlir/IR/OpBase.td"

def NNF_Dialect : Dialect {
  let name = "nnf";
  let cppNamespace = "::nnforge::nnf";
  let summary = "Graph-level neural-network operations on ranked tensors";
  let description = [{
    `nnf` holds the operations a neural-network compiler reasons about as a
    whole: dense layers, convolutions, normalizations and attention, each with
    an optional fused elementwise activation. Every such op works on ranked
    tensors of f32, f16 or bf16 with static or dynamic dimensions, infers its
    result type, and lowers to linalg on tensors with `convert-nnf-to-linalg`.
    `nnf.dispatch` groups linalg ops that code generation compiles as one
    tiled loop nest (formed by `nnf-form-dispatch-regions`).
  }];
  let useDefaultAttributePrinterParser = 1;
  let hasCanonicalizer = 0;
}

def NNF_ActivationKind : I32EnumAttr<"ActivationKind",
    "elementwise activation function", [
      I32EnumAttrCase<"none", 0>,
      I32EnumAttrCase<"relu", 1>,
      I32EnumAttrCase<"relu6", 2>,
      I32EnumAttrCase<"gelu", 3>,
      I32EnumAttrCase<"gelu_tanh", 4>,
      I32EnumAttrCase<"sigmoid", 5>,
      I32EnumAttrCase<"tanh", 6>,
      I32EnumAttrCase<"silu", 7>,
    ]> {
  let cppNamespace = "::nnforge::nnf";
  let genSpecializedAttr = 0;
}

def NNF_ActivationAttr : EnumAttr<NNF_Dialect, NNF_ActivationKind, "activation"> {
  let summary = "elementwise activation: none, relu, relu6, gelu (erf), "
                "gelu_tanh, sigmoid, tanh or silu";
  let assemblyFormat = "$value";
}

// Floating-point tensors the dialect accepts.
def NNF_FloatTensor : RankedTensorOf<[F32, F16, BF16]>;

class NNF_Op<string mnemonic, list<Trait> traits = []>
    : Op<NNF_Dialect, mnemonic, traits>;

#endif // NNFORGE_DIALECT_NNF_BASE
