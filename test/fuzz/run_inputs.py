"""Wrong and odd run-time inputs to compiled models: dtypes, shapes, ranks,
counts, layouts (non-contiguous, Fortran order, negative strides,
misaligned, read-only), NaN and infinities, empty and large batches,
Python objects, torch tensors (meta device, bfloat16, requiring grad).

Inputs a model can take are compared with numpy; the rest must be refused
with an InputError.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from test.fuzz import mlir_seeds
from test.fuzz.checks import Verdict, judge_error, judge_results
from test.fuzz.outcomes import UNCLEAN

# Models compiled once per worker: name -> (compiled, seed, element type).
_MODELS: dict[str, tuple[Any, mlir_seeds.Seed, str]] = {}
_CHOICES = (("mlp", "f32"), ("row_sums", "f32"), ("row_sums", "i64"), ("nnf_softmax", "f32"), ("conv", "f32"))


def model(name: str, element: str, folder: Path) -> tuple[Any, mlir_seeds.Seed, str]:
    import nnforge

    key = f"{name}:{element}"
    if key not in _MODELS:
        seed = mlir_seeds.BY_NAME[name]
        path = folder / f"{name}_{element}.mlir"
        path.write_text(seed.text(element))
        _MODELS[key] = (nnforge.compile(path, threads=2), seed, element)
    return _MODELS[key]


def _layout(rng: random.Random, array: np.ndarray) -> tuple[np.ndarray, str]:
    """`array`'s values in another memory layout."""
    choice = rng.randrange(6)
    if choice == 0:
        return np.asfortranarray(array), "Fortran order"
    if choice == 1:
        wide = np.repeat(array, 2, axis=-1)
        view = wide[..., ::2]
        view[...] = array
        return view, "every other element of a wider array"
    if choice == 2:
        flipped = np.ascontiguousarray(array[..., ::-1])[..., ::-1]
        return flipped, "negative strides"
    if choice == 3:
        raw = np.zeros(array.nbytes + 1, np.uint8)
        misaligned = raw[1:].view(array.dtype).reshape(array.shape)
        misaligned[...] = array
        return misaligned, "misaligned by one byte"
    if choice == 4:
        copy = array.copy()
        copy.flags.writeable = False
        return copy, "read-only"
    return np.broadcast_to(array[..., :1], array.shape) if array.ndim and array.shape[-1] else array, \
        "broadcast (zero strides)"


# Seeds summing products of mixed signs: where such a sum overflows depends
# on the order of the additions, so huge finite values have no one answer.
_MIXED_SUMS = ("mlp", "conv")


def _values(rng: random.Random, array: np.ndarray, seed: str) -> tuple[np.ndarray, str]:
    if array.dtype.kind != "f" or not array.size:
        return array, "plain values"
    array = array.copy()
    flat = array.reshape(-1)
    specials = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45] + ([] if seed in _MIXED_SUMS else [3e38, -3e38])
    special = rng.choice(specials)
    for _ in range(rng.randrange(1, 4)):
        flat[rng.randrange(flat.size)] = special
    return array, f"some {special}"


def _wrong(rng: random.Random, arrays: list[np.ndarray], signature: Any) -> tuple[list[Any], str]:
    """Inputs the model must refuse."""
    index = rng.randrange(len(arrays))
    array = arrays[index]
    choice = rng.randrange(8)
    changed: Any
    if choice == 0:
        dtype = rng.choice([np.float64, np.float16, np.int32, np.int64, np.int8, np.uint8, np.bool_,
                            np.complex64, np.float32])
        if np.dtype(dtype) == array.dtype:
            dtype = np.int16
        changed, what = array.astype(dtype), f"dtype {np.dtype(dtype)}"
    elif choice == 1:
        changed, what = array.reshape(1, *array.shape), "rank + 1"
    elif choice == 2:
        changed, what = (array.reshape(-1)[:1].reshape(()) if array.size else np.zeros((), array.dtype)), "rank 0"
    elif choice == 3 and any(size is not None for size in signature.inputs[index].shape):
        shape = list(array.shape)
        # A static dimension (a dynamic one takes any size).
        axis = rng.choice([axis for axis, size in enumerate(signature.inputs[index].shape) if size is not None])
        shape[axis] += rng.choice([1, 2, 5])
        changed, what = np.zeros(shape, array.dtype), f"dimension {axis} larger"
    elif choice == 4:
        count = rng.choice([0, len(arrays) + 1])
        return (arrays + [array])[:count] if count else [], f"{count} inputs"
    elif choice == 5:
        changed = rng.choice([None, "text", {"a": 1}, object(), [[1, 2], [3]], 3.5, b"bytes"])
        what = f"a {type(changed).__name__}"
    elif choice == 6:
        changed, what = np.array(array.tolist(), dtype=object), "an object array"
    else:
        import torch

        changed = rng.choice([torch.empty(array.shape, device="meta"),
                              torch.zeros(array.shape, dtype=torch.bfloat16),
                              torch.zeros(array.shape, dtype=torch.complex64)])
        what = f"a torch tensor ({changed.dtype}, {changed.device})"
    result = list(arrays)
    result[index] = changed
    return result, f"input {index}: {what}"


def case(rng: random.Random, folder: Path) -> Verdict:
    name, element = rng.choice(_CHOICES)
    compiled, seed, element = model(name, element, folder)
    generator = np.random.default_rng(rng.randrange(2**32))
    shapes = None
    if any(None in shape for shape in seed.shapes) and rng.random() < 0.3:
        batch = rng.choice([0, 1, 2, 100, 4096])
        shapes = tuple(tuple(batch if size is None else size for size in shape) for shape in seed.shapes)
    arrays = mlir_seeds.inputs(seed, element, generator, shapes)
    kind = rng.choice(["layout", "values", "torch", "wrong", "wrong"])
    if kind == "wrong":
        wrong, what = _wrong(rng, arrays, compiled.signature)
        try:
            compiled(*wrong)
        except Exception as error:
            return judge_error(error, f"{name} {element}: {what}")
        return Verdict(UNCLEAN, f"{name} {element}: {what}", "accepted inputs that do not match the signature")
    if kind == "layout":
        given, changes = [], []
        for array in arrays:
            changed, what = _layout(rng, array)
            given.append(changed)
            changes.append(what)
        arrays = [np.array(a) for a in given]  # the values actually given, for the reference
        what = ", ".join(changes)
    elif kind == "values":
        given, changes = [], []
        for array in arrays:
            changed, what = _values(rng, array, name)
            given.append(changed)
            changes.append(what)
        arrays, what = given, ", ".join(changes)
    else:
        import torch

        tensors = [torch.from_numpy(a) for a in arrays]
        if rng.random() < 0.5 and tensors[0].dtype.is_floating_point:
            tensors[0].requires_grad_(True)
        if rng.random() < 0.5 and tensors[0].ndim == 2:
            tensors[0] = tensors[0].t().contiguous().t()
        given, what = tensors, "torch tensors"
    what = f"{name} {element} {[list(a.shape) for a in arrays]}: {what}"
    try:
        actual = compiled(*given)
        if kind == "torch":
            actual = [t.numpy() for t in actual] if isinstance(actual, (list, tuple)) else actual.numpy()
    except Exception as error:
        return judge_error(error, what)
    with np.errstate(all="ignore"):
        expected = seed.reference(*arrays)
    return judge_results(actual, expected, what, rtol=1e-4, atol=1e-5)
