"""The CPU target: code for the host (or a named x86 CPU), compiled by LLVM
in this process (`objects`) into a shared library, run at once or saved.

`target` drives the lowering (`codegen`: the optimized code generation;
`nnforge.pipelines`: the naive one) and builds the model; `model` is the
compiled model, callable and saveable.
"""
