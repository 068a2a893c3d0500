"""One small jax function per StableHLO op: nnforge's op test set.

Each case names the StableHLO op it exercises (what jax emits for the
function on the CPU), the function, and its arguments. jax's own results
are the reference. `test_stablehlo_ops.py` runs them;
`benchmarks/stablehlo_op_coverage.py` counts them into docs/stablehlo.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_rng = np.random.default_rng(0)


def _f32(*shape: int, low: float = -2.0, high: float = 2.0) -> np.ndarray:
    return _rng.uniform(low, high, shape).astype(np.float32)


def _i32(*shape: int, low: int = -20, high: int = 20) -> np.ndarray:
    return _rng.integers(low, high, shape).astype(np.int32)


def _u32(*shape: int) -> np.ndarray:
    return _rng.integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32)


@dataclass(frozen=True)
class Case:
    """`function(*args)`, which jax lowers with StableHLO op `op`. With
    `symbolic` (one jax.export shape specification per argument, "" for a
    fixed shape), the function is exported for those symbolic shapes and run
    on `args`. Outputs must be within `tolerance` of jax's (relative to
    their largest magnitude; integers exactly)."""

    op: str
    function: Callable
    args: tuple[Any, ...]
    name: str = ""
    symbolic: tuple[str, ...] = ()
    # The largest difference allowed, relative to the largest magnitude of
    # jax's output.
    tolerance: float = 1e-5

    def example_args(self, scope: jax.export.SymbolicScope | None = None) -> tuple[Any, ...]:
        """What the function is exported for: `args`, or shapes with symbols
        (of `scope`, for cases exported together)."""
        if not self.symbolic:
            return self.args
        scope = scope or jax.export.SymbolicScope()
        return tuple(
            jax.ShapeDtypeStruct(jax.export.symbolic_shape(spec, scope=scope), np.asarray(arg).dtype)
            if spec else arg
            for spec, arg in zip(self.symbolic, self.args)
        )

    @property
    def label(self) -> str:
        return self.name or self.op


X, Y = _f32(3, 4), _f32(3, 4)
POSITIVE = _f32(3, 4, low=0.1, high=3.0)
UNIT = _f32(3, 4, low=-0.9, high=0.9)
A, B = _i32(3, 4), _i32(3, 4, low=1, high=20)
SHIFTS = _i32(3, 4, low=0, high=31)
U = _u32(3, 4)
IMAGE = _f32(1, 6, 6, 2)
KERNEL = _f32(3, 3, 2, 4)


def _max_pool(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def _with_while(x):
    return lax.while_loop(lambda c: c[0] < 5, lambda c: (c[0] + 1, c[1] * 1.5), (0, x))[1]


def _rng_bits(key):
    return lax.rng_bit_generator(key, (3, 4), dtype=jnp.uint32)[1]


CASES: list[Case] = [
    # elementwise, one operand
    Case("abs", jnp.abs, (X,)),
    Case("cbrt", jnp.cbrt, (X,)),
    Case("ceil", jnp.ceil, (X,)),
    Case("convert", lambda a: a.astype(jnp.float32), (A,)),
    Case("count_leading_zeros", lax.clz, (A,)),
    Case("cosine", jnp.cos, (X,)),
    Case("exponential", jnp.exp, (X,)),
    Case("exponential_minus_one", jnp.expm1, (X,)),
    Case("floor", jnp.floor, (X,)),
    Case("is_finite", jnp.isfinite, (X * np.array([1, np.inf, np.nan, 1], np.float32),)),
    Case("log", jnp.log, (POSITIVE,)),
    Case("log_plus_one", jnp.log1p, (POSITIVE,)),
    Case("logistic", jax.nn.sigmoid, (X,)),
    Case("negate", jnp.negative, (X,)),
    Case("not", jnp.invert, (A,)),
    Case("popcnt", lax.population_count, (A,)),
    Case("round_nearest_afz", lax.round, (X * 3,)),
    Case("round_nearest_even", jnp.round, (X * 3,)),
    Case("rsqrt", lax.rsqrt, (POSITIVE,)),
    Case("sign", jnp.sign, (X,)),
    Case("sine", jnp.sin, (X,)),
    Case("sqrt", jnp.sqrt, (POSITIVE,)),
    Case("tan", jnp.tan, (UNIT,)),
    Case("tanh", jnp.tanh, (X,)),
    Case("erf", lax.erf, (X,), name="erf (chlo)"),
    Case("erf_inv", lax.erf_inv, (UNIT,), name="erf_inv (chlo)"),
    Case("lgamma", lax.lgamma, (POSITIVE,), name="lgamma (chlo)"),
    Case("bitcast_convert", lambda x: lax.bitcast_convert_type(x, jnp.int32), (X,)),
    Case("reduce_precision", lambda x: lax.reduce_precision(x, 5, 10), (X,)),
    # elementwise, two or three operands
    Case("add", jnp.add, (X, Y)),
    Case("atan2", jnp.arctan2, (X, Y)),
    Case("and", jnp.bitwise_and, (A, B)),
    Case("compare", jnp.less, (X, Y)),
    Case("divide", jnp.divide, (X, Y + 3)),
    Case("divide", lambda a, b: lax.div(a, b), (A, B), name="divide (integer)"),
    Case("maximum", jnp.maximum, (X, Y)),
    Case("minimum", jnp.minimum, (X, Y)),
    Case("multiply", jnp.multiply, (X, Y)),
    Case("or", jnp.bitwise_or, (A, B)),
    Case("power", jnp.power, (POSITIVE, Y)),
    Case("remainder", lax.rem, (A, B), name="remainder (integer)"),
    Case("remainder", lax.rem, (X, Y + 3), name="remainder (float)"),
    Case("shift_left", lax.shift_left, (A, SHIFTS)),
    Case("shift_right_arithmetic", lax.shift_right_arithmetic, (A, SHIFTS)),
    Case("shift_right_logical", lax.shift_right_logical, (U, SHIFTS.astype(np.uint32))),
    Case("subtract", jnp.subtract, (X, Y)),
    Case("xor", jnp.bitwise_xor, (A, B)),
    Case("clamp", lambda x: lax.clamp(-0.5, x, 0.5), (X,)),
    Case("select", jnp.where, (X > 0, X, Y)),
    # shapes and data movement
    Case("broadcast_in_dim", lambda x: jnp.broadcast_to(x[:, None, :], (3, 2, 4)), (X,)),
    Case("concatenate", lambda x, y: jnp.concatenate([x, y], axis=1), (X, Y)),
    Case("dynamic_slice", lambda x, i: lax.dynamic_slice(x, (i, 1), (2, 2)), (X, np.int32(1))),
    Case("dynamic_update_slice", lambda x, i: lax.dynamic_update_slice(x, jnp.ones((2, 2)), (i, i)),
         (X, np.int32(1))),
    Case("gather", lambda x, i: x[i], (X, np.array([2, 0, 2], np.int32))),
    Case("iota", lambda x: x + jnp.arange(4, dtype=jnp.float32), (X,)),
    Case("pad", lambda x: lax.pad(x, 0.0, ((1, 2, 1), (0, -1, 0))), (X,)),
    Case("reshape", lambda x: x.reshape(2, 6), (X,)),
    Case("reverse", lambda x: x[::-1, ::-1], (X,)),
    Case("slice", lambda x: x[1:3, ::2], (X,)),
    Case("transpose", lambda x: x.T, (X,)),
    Case("scatter", lambda x, i: x.at[i].add(1.0), (X, np.array([0, 2, 0], np.int32))),
    Case("scatter", lambda x, i: x.at[i, 1].set(-1.0), (X, np.array([1, 2], np.int32)),
         name="scatter (set)"),
    Case("sort", lambda x: jnp.sort(x, axis=0), (X,)),
    Case("sort", lambda x: jnp.argsort(x, axis=1), (X,), name="sort (argsort)"),
    Case("sort", lambda x: lax.top_k(x, 2), (X,), name="sort (top_k, chlo)"),
    # reductions and windows
    Case("reduce", lambda x: x.sum(axis=1), (X,)),
    Case("reduce", lambda x: jnp.argmax(x, axis=1), (X,), name="reduce (argmax)"),
    Case("reduce_window", _max_pool, (IMAGE,)),
    Case("reduce_window", lambda x: jnp.cumsum(x, axis=1), (X,), name="reduce_window (cumsum)"),
    Case("select_and_scatter", lambda x: jax.grad(lambda x: _max_pool(x).sum())(x), (IMAGE,),
         name="select_and_scatter (max pool gradient)"),
    # contractions
    Case("dot_general", jnp.matmul, (X, Y.T)),
    Case("dot_general", lambda a, b: jnp.einsum("bij,bjk->bik", a, b), (_f32(2, 3, 4), _f32(2, 4, 5)),
         name="dot_general (batched)"),
    Case("convolution", lambda x, k: lax.conv_general_dilated(
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")), (IMAGE, KERNEL)),
    Case("convolution", lambda x, k: lax.conv_general_dilated(
        x, k, (2, 2), "VALID", rhs_dilation=(2, 2), dimension_numbers=("NHWC", "HWIO", "NHWC")),
        (_f32(1, 9, 9, 2), KERNEL), name="convolution (strided, dilated)"),
    Case("convolution", lambda x, k: lax.conv_general_dilated(
        x, k, (1, 1), "SAME", feature_group_count=2, dimension_numbers=("NHWC", "HWIO", "NHWC")),
        (IMAGE, _f32(3, 3, 1, 4)), name="convolution (grouped)"),
    # shapes known at run time only (exported with a symbolic batch "b")
    Case("dynamic_broadcast_in_dim", lambda x: x + 1.0, (X,), symbolic=("b, 4",)),
    Case("dynamic_iota", lambda x: x * jnp.arange(x.shape[0], dtype=jnp.float32)[:, None], (X,),
         symbolic=("b, 4",)),
    Case("dynamic_reshape", lambda x: x.reshape(-1), (X,), symbolic=("b, 4",)),
    # jax slices along a symbolic dimension with a dynamic_gather of one slice.
    Case("dynamic_gather", lambda x: x[1:], (X,), name="dynamic_gather (x[1:])", symbolic=("b, 4",)),
    # A scan over a symbolic number of steps writes its outputs with dynamic_update_slice.
    Case("dynamic_update_slice", lambda x: lax.scan(lambda c, r: (jnp.tanh(c + r),) * 2, jnp.zeros(4), x),
         (X,), name="dynamic_update_slice (scan over symbolic steps)", symbolic=("b, 4",)),
    Case("dynamic_pad", lambda x: jnp.pad(x, ((1, 2), (0, 0))), (X,), symbolic=("b, 4",)),
    Case("get_dimension_size", lambda x: x.sum(axis=0) / x.shape[0], (X,), symbolic=("b, 4",)),
    # other element types
    Case("convert", lambda x: x.astype(jnp.bfloat16).astype(jnp.float32), (X,), name="convert (bf16)"),
    # XLA accumulates f16 products in f32, nnforge in f16: one f16 rounding step apart.
    Case("dot_general", lambda a, b: (a.astype(jnp.float16) @ b.astype(jnp.float16)).astype(jnp.float32),
         (X, Y.T), name="dot_general (f16)", tolerance=2.0**-10),
    # control flow
    Case("while", _with_while, (X,)),
    Case("case", lambda x, i: lax.switch(i, [jnp.sin, jnp.cos, jnp.tanh], x), (X, np.int32(1))),
    Case("optimization_barrier", lambda x: lax.optimization_barrier(x) * 2, (X,)),
    Case("custom_call", lambda x: lax.approx_max_k(x, 2), (X,), name="custom_call (ApproxTopK)"),
    # random numbers
    Case("rng_bit_generator", _rng_bits, (np.array([1, 2, 3, 4], np.uint32),)),
    Case("rng", lambda x: x + lax.rng_uniform(0.0, 1.0, (3, 4)) * 0, (X,), name="rng (uniform)"),
    # not converted
    Case("fft", lambda x: jnp.fft.fft(x).real, (X,)),
    Case("custom_call", lambda x: jnp.linalg.cholesky(x @ x.T + 4 * jnp.eye(3)), (X,),
         name="custom_call (LAPACK)"),
    Case("custom_call", lambda a, b: lax.linalg.triangular_solve(a + 4 * jnp.eye(3), b, left_side=True),
         (_f32(3, 3), X), name="custom_call (LAPACK triangular solve)"),
]
