"""Optimized CPU code generation with upstream MLIR's transform dialect.

`lowering.vectorize_linalg(module)` rewrites the linalg-on-tensors ops of a
module into tiled, vectorized loop nests, still on tensors;
`lowering.BUFFERIZE_OPTIMIZED` then bufferizes the result and
`lowering.buffers_to_llvm_optimized` lowers it to the LLVM dialect. The schedule is built per module in Python (op shapes and
roles decide the tile sizes), as the text of a
`transform.named_sequence @__transform_main` that the `transform-interpreter`
pass applies; each op gets its own sequence, tagged by an attribute, so
that an op the vectorizer rejects stays a (correct) scalar loop nest
instead of failing the compilation.

One module per kind of root op, each with its schedule and the sizes it
uses: `contractions` (matmuls, batch matmuls, contraction generics and
im2col'd convolutions), `convolutions` (depthwise convolutions, poolings,
im2col window copies), `reductions` (rows reduced into a vector),
`elementwise` (elementwise ops, transposes, copies), `dispatch` (an
`nnf.dispatch` region tiled as one loop nest); `common` holds what they
share (loop sizes, transform-IR text, applying a script); `lowering` picks
each op's schedule and runs the stages to LLVM.
"""
