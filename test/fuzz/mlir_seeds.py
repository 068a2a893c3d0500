"""Small valid MLIR modules (linalg, tosa and nnf ops) with numpy references.

Each seed is a template over its element type `{T}` (with `{ZERO}`, `{ADD}`
and `{MAX}` spelled for that type), its inputs' shapes and what it computes
in numpy, so that a module compiled for another element type has an oracle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

FLOATS = ("f32", "f64", "f16")
INTEGERS = ("i32", "i64", "i8", "i16")
NUMPY = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "i32": np.int32, "i64": np.int64,
         "i8": np.int8, "i16": np.int16}


@dataclass(frozen=True)
class Seed:
    name: str
    template: str
    shapes: tuple[tuple[int | None, ...], ...]
    reference: Callable[..., np.ndarray]
    types: tuple[str, ...]  # element types the template is valid for

    def text(self, element: str) -> str:
        floating = element.startswith(("f", "bf"))
        return self.template.format(
            T=element, ZERO="0.0" if floating else "0",
            ADD="arith.addf" if floating else "arith.addi",
            MAX="arith.maximumf" if floating else "arith.maxsi",
        ).replace("[[", "{").replace("]]", "}")


def _mlp(x, w, b):
    product = np.matmul(x, w)
    return np.maximum(product + b, np.zeros((), x.dtype)).astype(x.dtype)


def _row_sums(x):
    return x.sum(axis=1, dtype=x.dtype)


def _conv(x, w):
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    out = np.zeros((n, f, h - kh + 1, wd - kw + 1), x.dtype)
    for i in range(h - kh + 1):
        for j in range(wd - kw + 1):
            patch = x[:, :, i:i + kh, j:j + kw]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])).astype(x.dtype)
    return out


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)


def _linear_relu(x, w, b):
    return np.maximum(x @ w.T + b, 0).astype(x.dtype)


def _tosa_add_mul(x, y):
    return ((x + y) * y).astype(x.dtype)


SEEDS = (
    Seed("mlp", """
func.func @main(%x: tensor<2x4x{T}>, %w: tensor<4x3x{T}>, %b: tensor<3x{T}>) -> tensor<2x3x{T}> [[
  %zero = arith.constant {ZERO} : {T}
  %e = tensor.empty() : tensor<2x3x{T}>
  %f = linalg.fill ins(%zero : {T}) outs(%e : tensor<2x3x{T}>) -> tensor<2x3x{T}>
  %m = linalg.matmul ins(%x, %w : tensor<2x4x{T}>, tensor<4x3x{T}>) outs(%f : tensor<2x3x{T}>) -> tensor<2x3x{T}>
  %bb = linalg.broadcast ins(%b : tensor<3x{T}>) outs(%e : tensor<2x3x{T}>) dimensions = [0]
  %s = linalg.add ins(%m, %bb : tensor<2x3x{T}>, tensor<2x3x{T}>) outs(%e : tensor<2x3x{T}>) -> tensor<2x3x{T}>
  %r = linalg.max ins(%s, %f : tensor<2x3x{T}>, tensor<2x3x{T}>) outs(%e : tensor<2x3x{T}>) -> tensor<2x3x{T}>
  return %r : tensor<2x3x{T}>
]]
""", ((2, 4), (4, 3), (3,)), _mlp, FLOATS + INTEGERS),
    Seed("row_sums", """
func.func @main(%x: tensor<?x5x{T}>) -> tensor<?x{T}> [[
  %zero = arith.constant {ZERO} : {T}
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : tensor<?x5x{T}>
  %e = tensor.empty(%n) : tensor<?x{T}>
  %f = linalg.fill ins(%zero : {T}) outs(%e : tensor<?x{T}>) -> tensor<?x{T}>
  %r = linalg.generic [[indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>],
                       iterator_types = ["parallel", "reduction"] ]]
      ins(%x : tensor<?x5x{T}>) outs(%f : tensor<?x{T}>) [[
  ^bb0(%a: {T}, %acc: {T}):
    %s = {ADD} %a, %acc : {T}
    linalg.yield %s : {T}
  ]] -> tensor<?x{T}>
  return %r : tensor<?x{T}>
]]
""", ((3, 5),), _row_sums, FLOATS + INTEGERS),
    Seed("conv", """
func.func @main(%x: tensor<1x2x6x6x{T}>, %w: tensor<3x2x3x3x{T}>) -> tensor<1x3x4x4x{T}> [[
  %zero = arith.constant {ZERO} : {T}
  %e = tensor.empty() : tensor<1x3x4x4x{T}>
  %f = linalg.fill ins(%zero : {T}) outs(%e : tensor<1x3x4x4x{T}>) -> tensor<1x3x4x4x{T}>
  %c = linalg.conv_2d_nchw_fchw [[dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>]]
      ins(%x, %w : tensor<1x2x6x6x{T}>, tensor<3x2x3x3x{T}>) outs(%f : tensor<1x3x4x4x{T}>) -> tensor<1x3x4x4x{T}>
  return %c : tensor<1x3x4x4x{T}>
]]
""", ((1, 2, 6, 6), (3, 2, 3, 3)), _conv, FLOATS + INTEGERS),
    Seed("nnf_softmax", """
func.func @main(%x: tensor<?x7x{T}>) -> tensor<?x7x{T}> [[
  %0 = nnf.softmax %x axis -1 : tensor<?x7x{T}>
  return %0 : tensor<?x7x{T}>
]]
""", ((3, 7),), _softmax, ("f32", "f16")),
    Seed("nnf_linear", """
func.func @main(%x: tensor<?x8x{T}>, %w: tensor<5x8x{T}>, %b: tensor<5x{T}>) -> tensor<?x5x{T}> [[
  %0 = nnf.linear %x, %w, %b activation relu : (tensor<?x8x{T}>, tensor<5x8x{T}>, tensor<5x{T}>) -> tensor<?x5x{T}>
  return %0 : tensor<?x5x{T}>
]]
""", ((3, 8), (5, 8), (5,)), _linear_relu, ("f32", "f16")),
    Seed("tosa", """
func.func @main(%x: tensor<2x3x{T}>, %y: tensor<2x3x{T}>) -> tensor<2x3x{T}> [[
  %shift = "tosa.const"() <[[values = dense<0> : tensor<1xi8>]]> : () -> tensor<1xi8>
  %0 = tosa.add %x, %y : (tensor<2x3x{T}>, tensor<2x3x{T}>) -> tensor<2x3x{T}>
  %1 = tosa.mul %0, %y, %shift : (tensor<2x3x{T}>, tensor<2x3x{T}>, tensor<1xi8>) -> tensor<2x3x{T}>
  return %1 : tensor<2x3x{T}>
]]
""", ((2, 3), (2, 3)), _tosa_add_mul, ("f32", "i32")),
)
BY_NAME = {seed.name: seed for seed in SEEDS}


def inputs(seed: Seed, element: str, generator: np.random.Generator,
           shapes: tuple[tuple[int, ...], ...] | None = None) -> list[np.ndarray]:
    """Random inputs of `seed` in `element`: normal floats, small integers (so sums do not wrap)."""
    dtype = NUMPY[element]
    arrays = []
    for shape in shapes or seed.shapes:
        shape = tuple(3 if size is None else size for size in shape)
        if np.dtype(dtype).kind == "f":
            arrays.append(generator.standard_normal(shape).astype(dtype))
        else:
            arrays.append(generator.integers(-3, 4, shape).astype(dtype))
    return arrays
