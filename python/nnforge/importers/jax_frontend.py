"""jax functions in and out: export with `jax.export`, call with pytrees.

`nnforge.compile(jax.jit(f), example_args)` exports `f` for the example
arguments (arrays, or `jax.ShapeDtypeStruct`s with symbolic dimensions from
`jax.export.symbolic_shape`), compiles the StableHLO, and returns a
`JaxModel`: called like `f`, it flattens its arguments in jax's order,
runs the compiled code, and rebuilds the result's pytree.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from nnforge.errors import InputError, ModelLoadError
from nnforge.importers.stablehlo_frontend import is_exported


def _jax():
    try:
        import jax
    except ImportError as error:
        raise ModelLoadError("compiling jax functions needs jax: pip install 'nnforge[jax]'") from error
    return jax


def is_jax_function(model: Any) -> bool:
    """Whether `model` is a `jax.jit`-wrapped function (without importing jax)."""
    if "jax" not in sys.modules:
        return False
    return isinstance(model, sys.modules["jax"].stages.Wrapped)


def export(model: Any, example_args: Any) -> Any:
    """The `jax.export.Exported` of a jit-wrapped function for `example_args`
    (a tuple of positional arguments, or one argument), or `model` itself if
    it is an `Exported` already."""
    if is_exported(model):
        return model
    jax = _jax()
    if example_args is None:
        raise ModelLoadError("compiling a jax function needs example_args (arrays or jax.ShapeDtypeStruct)")
    if not isinstance(example_args, (tuple, list)):
        example_args = (example_args,)
    name = getattr(model, "__name__", type(model).__name__)
    # torch-mlir's StableHLO cannot read the Shardy dialect (sdy) jax writes
    # shardings in by default; without Shardy they are custom calls, which
    # the frontend drops (one device).
    shardy = jax.config.jax_use_shardy_partitioner
    jax.config.update("jax_use_shardy_partitioner", False)
    try:
        return jax.export.export(model)(*example_args)
    except Exception as error:  # jax raises many kinds; all mean "cannot trace"
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"jax.export cannot export {name}: {message}") from None
    finally:
        jax.config.update("jax_use_shardy_partitioner", shardy)


def _as_dtype(array: np.ndarray, dtype: Any) -> np.ndarray:
    """`array` viewed as `dtype` (a numpy dtype or an MLIR element type name)
    when both are integers of one width but differ in sign, else `array`."""
    from nnforge.runtime import numpy_dtype

    target = numpy_dtype(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    same_bits = target.kind in "iu" and array.dtype.kind in "iu" and target.itemsize == array.dtype.itemsize
    return array.view(target) if same_bits and target != array.dtype else array


class JaxModel:
    """A compiled jax function: call it with the function's arguments.

    Arguments are pytrees of numpy or jax arrays (or Python scalars),
    flattened in jax's order and converted to the exported dtypes (as jax
    does); results come back in the function's pytree, as numpy arrays, or
    jax arrays when any argument was one. `compiled` is the flat model
    (`signature`, `save`); a saved library takes and returns flat arrays.
    """

    def __init__(self, compiled: Any, exported: Any):
        self.compiled = compiled
        self.exported = exported
        self.signature = compiled.signature
        self.compile_times = compiled.compile_times

    def save(self, path):
        """Writes the flat model as a shared library (see `CompiledModel.save`)."""
        return self.compiled.save(path)

    def _flat_inputs(self, args: tuple, kwargs: dict) -> tuple[list[np.ndarray], bool]:
        jax = _jax()
        leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
        if tree != self.exported.in_tree:
            raise InputError(
                f"the arguments' structure {tree} differs from the exported one {self.exported.in_tree}"
            )
        as_jax = any(isinstance(leaf, jax.Array) for leaf in leaves)
        arrays = []
        for index in sorted(self.exported.module_kept_var_idx):
            leaf, aval = leaves[index], self.exported.in_avals[index]
            if jax.dtypes.issubdtype(aval.dtype, jax.dtypes.prng_key):
                # A typed key crosses as its raw data (uint32 words).
                arrays.append(np.asarray(jax.random.key_data(leaf)))
            else:
                arrays.append(np.asarray(leaf, dtype=aval.dtype))
        arrays = [_as_dtype(array, spec.dtype) for array, spec in zip(arrays, self.signature.inputs)]
        return arrays, as_jax

    def profile(self, *args: Any, runs: int = 10, html: Any = None, **kwargs: Any) -> Any:
        """`CompiledModel.profile` of a call on the function's arguments."""
        arrays, _ = self._flat_inputs(args, kwargs)
        return self.compiled.profile(*arrays, runs=runs, html=html)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        jax = _jax()
        arrays, as_jax = self._flat_inputs(args, kwargs)
        outputs = self.compiled(*arrays)
        if not isinstance(outputs, list):
            outputs = [] if outputs is None else [outputs]
        # Unsigned integers are signless in the compiled code: the same bits.
        outputs = [_as_dtype(output, aval.dtype) for output, aval in zip(outputs, self.exported.out_avals)]
        if as_jax:
            outputs = [jax.numpy.asarray(output) for output in outputs]
        return jax.tree_util.tree_unflatten(self.exported.out_tree, outputs)
