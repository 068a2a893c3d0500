"""The CPU target: code for the host (or a named x86 CPU), JIT-compiled by
MLIR's ExecutionEngine or saved as a shared library.

`target` drives the lowering (`codegen`: the optimized code generation;
`nnforge.pipelines`: the naive one) and builds the model; `model` is the
compiled model, callable and saveable.
"""
