"""Named pass pipelines, as strings for `PassManager.parse` and `nnforge-opt`.

Each pipeline takes a module at one level to the next; `to_llvm(level)` chains
them from an import level to the LLVM dialect.
"""

from __future__ import annotations

# nnf ops -> linalg on tensors (plus arith/math/tensor).
NNF_TO_LINALG = "convert-nnf-to-linalg,canonicalize,cse"

# TOSA -> linalg on tensors, the way upstream's tosa-to-linalg pipeline does.
TOSA_TO_LINALG = (
    "func.func(tosa-optional-decompositions),canonicalize,"
    "func.func(tosa-infer-shapes,tosa-make-broadcastable,tosa-to-linalg-named,"
    "tosa-to-linalg),tosa-to-arith,tosa-to-tensor,canonicalize,cse"
)

# linalg on tensors -> LLVM dialect, straightforwardly: no tiling or
# vectorization (the naive baseline). Function boundaries bufferize to
# identity-layout memrefs so that arguments carry no dynamic strides.
LINALG_TO_LLVM_NAIVE = (
    "one-shot-bufferize{bufferize-function-boundaries "
    "function-boundary-type-conversion=identity-layout-map},"
    "buffer-deallocation-pipeline,"
    "convert-linalg-to-loops,expand-strided-metadata,lower-affine,"
    "convert-scf-to-cf,convert-math-to-llvm,convert-math-to-libm,"
    "finalize-memref-to-llvm,convert-to-llvm,reconcile-unrealized-casts"
)


def wrap(pipeline: str) -> str:
    """A textual pipeline anchored on the module, for `PassManager.parse`."""
    return f"builtin.module({pipeline})"
