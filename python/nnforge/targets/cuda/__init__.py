"""The CUDA target: kernels in a cubin, host code calling them through MLIR's
CUDA runtime wrappers, saved as a shared library.

`target` drives the lowering (`lowering`: from fused linalg to kernels and
host code) and builds the model; `library` links it into a shared library;
`model` is the compiled model, which runs from such a library.
"""
