"""Running compiled models: numpy and ctypes only.

A compiled model is native code with one entry point in MLIR's C interface
(`_mlir_ciface_<entry>`: a pointer to the result descriptor(s), then one
pointer to a memref descriptor per input) plus its `Signature`. This module
calls such code, for a model just compiled and for a shared library
written by `CompiledModel.save`, and never imports the compiler, MLIR or
torch-mlir: `nnforge.load("model.so")` works on a machine with numpy alone.

Calls go through the entry point's packed form (`_mlir__mlir_ciface_<entry>`,
taking an array of pointers to the arguments) and `nnforge_guarded_call`
of nnforge's runtime library, so that a failed run-time check in the code
becomes an `ExecutionError` rather than the end of the process. Code with
parallel loops runs them on the OpenMP runtime `nnforge.openmp` binds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnforge import artifact, elf, openmp, weights
from nnforge.distributed import mpi, slices
from nnforge.errors import ExecutionError, InputError, ModelLoadError, ProfileError

# The symbol a saved model's signature (JSON, NUL-terminated) is stored in.
SIGNATURE_SYMBOL = "nnforge_signature"
# What a model compiled for CUDA links to (MLIR's CUDA runtime wrappers).
CUDA_RUNTIME = "libmlir_cuda_runtime.so"

# MLIR element type -> numpy dtype name ("bfloat16" comes from ml_dtypes).
_NUMPY_DTYPES = {
    "f64": "float64",
    "f32": "float32",
    "f16": "float16",
    "bf16": "bfloat16",
    "i64": "int64",
    "i32": "int32",
    "i16": "int16",
    "i8": "int8",
    "ui64": "uint64",
    "ui32": "uint32",
    "ui16": "uint16",
    "ui8": "uint8",
    "i1": "bool",
}


def numpy_dtype(element: str) -> np.dtype:
    """The numpy dtype of an MLIR element type name ("f32", "bf16", ...)."""
    if element not in _NUMPY_DTYPES:
        raise InputError(f"element type {element} has no numpy equivalent")
    if element == "bf16":
        import ml_dtypes  # torch and onnx depend on it; numpy has no bfloat16

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(_NUMPY_DTYPES[element])


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, MLIR element type, shape (None = dynamic)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = "x".join("?" if size is None else str(size) for size in self.shape)
        return f"{self.name}: {dims + 'x' if dims else ''}{self.dtype}"


@dataclass(frozen=True)
class Signature:
    """What a compiled entry point takes and returns."""

    entry: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Signature:
        """The signature `to_json` wrote; ValueError if `text` is not one."""
        try:
            data = json.loads(text)

            def specs(items: list[dict]) -> tuple[TensorSpec, ...]:
                return tuple(
                    TensorSpec(str(i["name"]), str(i["dtype"]), tuple(None if d is None else int(d) for d in i["shape"]))
                    for i in items
                )

            return cls(str(data["entry"]), specs(data["inputs"]), specs(data["outputs"]))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"not a signature: {type(error).__name__}: {error}") from None


@functools.cache
def _descriptor_type(rank: int) -> type[ctypes.Structure]:
    """ctypes layout of a ranked memref descriptor (MLIR's C interface)."""
    fields = [
        ("allocated", ctypes.c_void_p),
        ("aligned", ctypes.c_void_p),
        ("offset", ctypes.c_int64),
    ]
    if rank:
        fields += [("sizes", ctypes.c_int64 * rank), ("strides", ctypes.c_int64 * rank)]
    return type(f"MemRef{rank}D", (ctypes.Structure,), {"_fields_": fields})


def _descriptor_of(array: np.ndarray) -> ctypes.Structure:
    descriptor = _descriptor_type(array.ndim)()
    _describe(descriptor, array)
    return descriptor


def _describe(descriptor: ctypes.Structure, array: np.ndarray) -> int:
    """Makes `descriptor` describe `array`; returns the array's address."""
    address = descriptor.allocated = descriptor.aligned = array.ctypes.data
    if array.ndim:
        descriptor.sizes[:] = array.shape
        descriptor.strides[:] = [stride // array.itemsize for stride in array.strides]
    return address


def _contiguous_strides(shape: Sequence[int]) -> list[int]:
    """The strides (in elements) of a C-contiguous array of `shape`."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return strides[::-1]


_libc = ctypes.CDLL(ctypes.util.find_library("c"))
_libc.free.argtypes = [ctypes.c_void_p]
# memref.get_global lowers to a descriptor whose `allocated` is this marker.
_GLOBAL_MARKER = 0xDEADBEEF


class _MallocedBuffer:
    """A result buffer the compiled code allocated for the caller; freed with the last array using it."""

    def __init__(self, pointer: int):
        self.pointer = pointer

    def __del__(self) -> None:
        _libc.free(self.pointer)


class _ResultView:
    """numpy's view of (part of) a result buffer; keeps the buffer alive as the array's base."""

    def __init__(self, owner: Any, interface: dict):
        self.owner = owner
        self.__array_interface__ = interface


def _array_over(owner: Any, address: int, shape: tuple[int, ...], strides: tuple[int, ...] | None,
                dtype: np.dtype) -> np.ndarray:
    """numpy's view of `shape` elements of `dtype` at `address` (`strides`
    in bytes; None: C order), kept alive by `owner` (None: copied)."""
    interface = {
        "data": (address, False),
        "shape": shape,
        "strides": strides,
        "typestr": dtype.str,
        "descr": dtype.descr,
        "version": 3,
    }
    if owner is None:
        return np.array(_ResultView(None, interface), copy=True) if address else np.empty(shape, dtype)
    return np.asarray(_ResultView(owner, interface)).view(dtype)


def _results_to_numpy(
    descriptors: Sequence[ctypes.Structure], outputs: Sequence[tuple[np.dtype, int]], not_owned: set[int | None]
) -> list[np.ndarray]:
    """numpy arrays over the result descriptors' data.

    Buffers the code allocated become the arrays' own memory, without a
    copy, freed once no array uses them. Results whose buffer is in
    `not_owned` (an input's, a weight's) or a constant global are copied:
    those buffers are not the caller's.
    """
    owners: dict[int, _MallocedBuffer] = {}
    arrays = []
    for descriptor, (dtype, rank) in zip(descriptors, outputs):
        shape = tuple(descriptor.sizes) if rank else ()
        strides = tuple(stride * dtype.itemsize for stride in descriptor.strides) if rank else None
        address = (descriptor.aligned or 0) + descriptor.offset * dtype.itemsize
        pointer = descriptor.allocated
        owner = None if pointer in not_owned or pointer in _NOT_ALLOCATED else _owner(owners, pointer)
        arrays.append(_array_over(owner, address, shape, strides, dtype))
    return arrays


# Result descriptors whose buffer nobody allocated: a constant global, nothing.
_NOT_ALLOCATED = {_GLOBAL_MARKER, 0, None}


def _owner(owners: dict[int, _MallocedBuffer], pointer: int) -> _MallocedBuffer:
    """What frees the result buffer `pointer` once no array uses it. Results
    may share a buffer (a model returning one tensor twice): one owner frees
    it, once."""
    if pointer not in owners:
        owners[pointer] = _MallocedBuffer(pointer)
    return owners[pointer]


class _CallFrame:
    """One thread's arguments of an `Executable`'s entry point: a memref
    descriptor per input, the result descriptor(s), and the packed array of
    pointers to them and to the weights' descriptors. Built once per thread
    and filled in again for each call: describing the arguments anew for
    every call cost more than a small model's run."""

    def __init__(self, executable: Executable):
        signature = executable.signature
        self.inputs = [_descriptor_type(len(spec.shape))() for spec in signature.inputs]
        # Inputs of static shapes: their sizes and (C-contiguous) strides, described once.
        self._static = [None not in spec.shape for spec in signature.inputs]
        for descriptor, spec, static in zip(self.inputs, signature.inputs, self._static):
            if static and spec.shape:
                descriptor.sizes[:] = spec.shape
                descriptor.strides[:] = _contiguous_strides(spec.shape)
        self.results = executable._results_type() if signature.outputs else None
        descriptors = [*([self.results] if self.results is not None else []), *self.inputs,
                       *executable._weight_descriptors]
        self._values = (ctypes.c_void_p * len(descriptors))(*map(ctypes.addressof, descriptors))
        base, step = ctypes.addressof(self._values), ctypes.sizeof(ctypes.c_void_p)
        self._packed = (ctypes.c_void_p * len(descriptors))(*(base + i * step for i in range(len(descriptors))))
        self.address = ctypes.addressof(self._packed)
        if self.results is None:
            self.result_descriptors: list[ctypes.Structure] = []
        elif len(signature.outputs) == 1:
            self.result_descriptors = [self.results]
        else:
            self.result_descriptors = [getattr(self.results, f"r{i}") for i in range(len(signature.outputs))]

    def describe_inputs(self, arrays: Sequence[np.ndarray]) -> set[int]:
        """Points the input descriptors at `arrays` (C-contiguous, of the
        signature's shapes); returns their addresses."""
        addresses = set()
        for descriptor, array, static in zip(self.inputs, arrays, self._static):
            if static:
                address = descriptor.allocated = descriptor.aligned = array.ctypes.data
            else:
                address = _describe(descriptor, array)
            addresses.add(address)
        return addresses


class Executable:
    """A callable over a native entry point in MLIR's C interface.

    Takes numpy arrays (or torch tensors, returning torch tensors then),
    checks them against the signature, returns a list of outputs (or one
    output when the model has one).
    """

    def __init__(
        self,
        packed_entry: int,
        runtime: ctypes.CDLL,
        signature: Signature,
        keep_alive: Any = None,
        parallel: bool = False,
        weights: Sequence[np.ndarray] = (),
        rank: tuple[int, int] = (0, 1),
    ):
        """`packed_entry`: the address of the packed C-interface entry point;
        `runtime`: a library holding nnforge's runtime (its guarded call);
        `parallel`: whether the code has parallel loops (OpenMP regions);
        `weights`: the arrays the entry point takes after the inputs (its
        large constants, mapped from a weights file: `nnforge.weights`; a
        distributed model's weight slices); `rank`: (this process's rank,
        the number of ranks) the model runs on."""
        self.signature = signature
        self.rank, self.ranks = rank
        self._openmp = openmp.Binding(runtime) if parallel else None
        self._keep_alive = keep_alive  # what owns the code (its library)
        self._entry = packed_entry
        self._runtime = runtime
        self._guarded_call = runtime.nnforge_guarded_call
        self._guarded_call.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._guarded_call.restype = ctypes.c_char_p
        self._weights = list(weights)
        self._weight_descriptors = [_descriptor_of(array) for array in self._weights]
        self._weight_addresses = {array.ctypes.data for array in self._weights}
        result_types = [_descriptor_type(len(spec.shape)) for spec in signature.outputs]
        if len(result_types) > 1:
            fields = [(f"r{i}", t) for i, t in enumerate(result_types)]
            self._results_type = type("Results", (ctypes.Structure,), {"_fields_": fields})
        elif result_types:
            self._results_type = result_types[0]
        self._outputs = [(numpy_dtype(spec.dtype), len(spec.shape)) for spec in signature.outputs]
        # Per input: its dtype and, where static, its shape (an array of
        # both, C-contiguous, is taken as it is).
        self._input_types = [
            (numpy_dtype(spec.dtype), None if None in spec.shape else spec.shape) for spec in signature.inputs
        ]
        self._frames = threading.local()

    def __call__(self, *inputs: Any) -> Any:
        arrays, as_torch = self._check_inputs(inputs)
        frame = self._frame()
        # A result may alias an input or a weight (a model returning a constant): copied, not freed.
        not_owned = frame.describe_inputs(arrays)
        self._call_packed(frame.address)
        if not self.signature.outputs:
            return None
        outputs = _results_to_numpy(frame.result_descriptors, self._outputs, not_owned | self._weight_addresses)
        if as_torch:
            outputs = [to_torch(output) for output in outputs]
        return outputs[0] if len(outputs) == 1 else outputs

    def _frame(self) -> _CallFrame:
        """This thread's argument structures (a call in another thread fills its own)."""
        frame = getattr(self._frames, "frame", None)
        if frame is None:
            frame = self._frames.frame = _CallFrame(self)
        return frame

    def profile(self, *inputs: Any, **_: Any) -> Any:
        """Not available for a loaded library: raises ProfileError (profiling
        builds the model again, with timers, which needs the compiler)."""
        raise ProfileError("a model loaded from a library cannot be profiled: profile the model itself "
                           "(nnforge profile MODEL, or the profile method of what nnforge.compile returns)")

    def _call_packed(self, packed: int) -> None:
        """Calls the entry point on the packed arguments at address `packed`."""
        if self._openmp is not None:
            self._openmp.update()
        failed_check = self._guarded_call(self._entry, packed)
        if failed_check is not None:
            # Most such checks guard indices taken from the inputs; a few
            # mark cases torch-mlir's lowering does not handle ("unimplemented").
            raise ExecutionError(
                f"a run-time check of the compiled model failed on these inputs: "
                f"{failed_check.decode(errors='replace')}"
            )

    def _check_inputs(self, inputs: Sequence[Any]) -> tuple[list[np.ndarray], bool]:
        """The inputs as C-contiguous numpy arrays, checked against the
        signature (InputError naming the first that does not fit), and
        whether any was a torch tensor (the results are then tensors too)."""
        specs = self.signature.inputs
        if len(inputs) != len(specs):
            expected = ", ".join(spec.describe() for spec in specs)
            raise InputError(f"expected {len(specs)} inputs ({expected}), got {len(inputs)}")
        arrays = []
        as_torch = False
        for index, (value, spec, (dtype, shape)) in enumerate(zip(inputs, specs, self._input_types)):
            if type(value) is np.ndarray and value.dtype == dtype and value.shape == shape and value.flags.c_contiguous:
                arrays.append(value)
                continue
            as_torch = as_torch or type(value).__module__.startswith("torch")
            where = f"input {index} ({spec.name})"
            try:
                array = _to_numpy(value)
            except (NotImplementedError, RuntimeError, TypeError, ValueError) as error:
                # A tensor without data (the meta device), a ragged list, ...
                raise InputError(f"{where}: cannot be read as an array: {error}") from None
            if array.dtype != dtype:
                raise InputError(f"{where}: expected dtype {dtype} ({spec.dtype}), got {array.dtype}")
            if array.ndim != len(spec.shape):
                raise InputError(
                    f"{where}: expected rank {len(spec.shape)} ({spec.describe()}), "
                    f"got shape {list(array.shape)}"
                )
            for axis, (size, expected) in enumerate(zip(array.shape, spec.shape)):
                if expected is not None and size != expected:
                    raise InputError(
                        f"{where}: dimension {axis} must be {expected} ({spec.describe()}), "
                        f"got shape {list(array.shape)}"
                    )
            arrays.append(np.ascontiguousarray(array))
        return arrays, as_torch


# DLPack element types (code, bits) of MLIR element types: kDLInt 0,
# kDLUInt 1, kDLFloat 2, kDLBfloat 4, kDLBool 6 (a byte per element).
_DLPACK_TYPES = {
    "f64": (2, 64), "f32": (2, 32), "f16": (2, 16), "bf16": (4, 16),
    "i64": (0, 64), "i32": (0, 32), "i16": (0, 16), "i8": (0, 8),
    "ui64": (1, 64), "ui32": (1, 32), "ui16": (1, 16), "ui8": (1, 8), "i1": (6, 8),
}


class _ResultLayout(ctypes.Structure):
    _fields_ = [("start", ctypes.c_int64), ("rank", ctypes.c_int64), ("code", ctypes.c_int64),
                ("bits", ctypes.c_int64)]


class _StaticCallPlan(ctypes.Structure):
    """cpp/runtime/static_call.c's StaticCallPlan."""

    _fields_ = [
        ("entry", ctypes.c_void_p),
        ("word_count", ctypes.c_int64),
        ("words", ctypes.c_void_p),
        ("argument_count", ctypes.c_int64),
        ("argument_starts", ctypes.c_void_p),
        ("input_count", ctypes.c_int64),
        ("input_starts", ctypes.c_void_p),
        ("result_count", ctypes.c_int64),
        ("results", ctypes.c_void_p),
        ("foreign_count", ctypes.c_int64),
        ("foreign", ctypes.c_void_p),
    ]


_capsule = ctypes.pythonapi.PyCapsule_New
_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_capsule.restype = ctypes.py_object


class StaticCall:
    """Calls of an `Executable` whose inputs and outputs all have static
    shapes, on data the caller vouches for: C-contiguous, of the signature's
    shapes and element types (checked once, on `examples`).

    The memref descriptors are laid out once; a call (`nnforge_static_call`
    of nnforge's runtime, cpp/runtime/static_call.c) writes the inputs'
    addresses into a copy of them, runs the code and returns its results as
    DLPack capsules (`torch.from_dlpack` takes them, once each): over the
    buffers the code allocated, without a copy, given back to the runtime's
    buffer cache when the last tensor over one is deleted (a result aliasing
    an input or a constant is copied). For callers that check shapes
    themselves, per call, cheaply: the `torch.compile` backend, whose graphs
    are specialised per input shapes.
    """

    def __init__(self, executable: Executable, examples: Sequence[Any]):
        signature = executable.signature
        dynamic = [spec.describe() for spec in (*signature.inputs, *signature.outputs) if None in spec.shape]
        if dynamic:
            raise InputError(f"a static call needs static shapes: {', '.join(dynamic)} are dynamic")
        arrays, _ = executable._check_inputs(examples)
        try:
            self._static_call = executable._runtime.nnforge_static_call
        except AttributeError:
            raise ModelLoadError("this model's runtime has no static calls (saved by an older nnforge?): "
                                 "compile and save it again") from None
        self._static_call.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self._static_call.restype = ctypes.c_char_p
        self._openmp = executable._openmp
        self._keep_alive = executable  # the code the plan points into
        words: list[int] = []

        def descriptor(shape: Sequence[int], strides: Sequence[int], address: int = 0) -> int:
            start = len(words)
            words.extend([address, address, 0, *shape, *strides])
            return start

        results = [
            _ResultLayout(descriptor(spec.shape, _contiguous_strides(spec.shape)), len(spec.shape), *_DLPACK_TYPES[spec.dtype])
            for spec in signature.outputs
        ]
        starts = [0] if signature.outputs else []
        inputs = [descriptor(array.shape, _contiguous_strides(array.shape)) for array in arrays]
        starts += inputs
        for weight in executable._weights:
            starts.append(descriptor(weight.shape, [stride // weight.itemsize for stride in weight.strides],
                                     weight.ctypes.data))
        # What the plan points to, kept alive with it.
        self._arrays = [
            np.array(words, dtype=np.int64),
            np.array(starts, dtype=np.int64),
            np.array(inputs, dtype=np.int64),
            np.array([weight.ctypes.data for weight in executable._weights], dtype=np.int64),
            (_ResultLayout * max(len(results), 1))(*results),
        ]
        template, argument_starts, input_starts, foreign, layouts = self._arrays
        self._plan = _StaticCallPlan(
            executable._entry, len(words), template.ctypes.data, len(starts), argument_starts.ctypes.data,
            len(inputs), input_starts.ctypes.data, len(results), ctypes.addressof(layouts), len(foreign),
            foreign.ctypes.data,
        )
        self._plan_address = ctypes.addressof(self._plan)
        self._addresses_type = ctypes.c_int64 * max(len(inputs), 1)
        self._results_type = ctypes.c_void_p * max(len(results), 1)
        self._result_count = len(results)

    def __call__(self, addresses: Sequence[int]) -> list[Any]:
        """Runs the code on the inputs at `addresses` (in the signature's
        order); its results as DLPack capsules."""
        if self._openmp is not None:
            self._openmp.update()
        results = self._results_type()
        failed_check = self._static_call(self._plan_address, self._addresses_type(*addresses), results)
        if failed_check is not None:
            raise ExecutionError(
                f"a run-time check of the compiled model failed on these inputs: "
                f"{failed_check.decode(errors='replace')}"
            )
        return [_capsule(results[i], b"dltensor", None) for i in range(self._result_count)]


def packed_entry_source(signature: Signature, weight_count: int = 0) -> str:
    """C source of the packed entry point `Executable` calls, for code
    compiled by LLVM's tools (nnforge's CPU object compiler adds it itself);
    `weight_count`: how many weights the entry point takes after the inputs."""
    count = len(signature.inputs) + weight_count + (1 if signature.outputs else 0)
    entry = f"_mlir_ciface_{signature.entry}"
    parameters = ", ".join(["void *"] * count) or "void"
    arguments = ", ".join(f"*(void **)arguments[{i}]" for i in range(count))
    return (
        f"void {entry}({parameters});\n"
        f"void _mlir_{entry}(void **arguments) {{ {entry}({arguments}); }}\n"
    )


def _to_numpy(value: Any) -> np.ndarray:
    if type(value).__module__.startswith("torch"):
        import torch

        tensor = value.detach().cpu().contiguous()
        if tensor.dtype == torch.bfloat16:
            return tensor.view(torch.int16).numpy().view(numpy_dtype("bf16"))
        return tensor.numpy()
    return np.asarray(value)


def to_torch(array: np.ndarray) -> Any:
    """The torch tensor over a numpy array's memory (bfloat16 included)."""
    import torch

    if array.dtype == numpy_dtype("bf16"):
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def _check_cuda_device(path: Path) -> None:
    """Raises ModelLoadError unless the CUDA driver is there and sees a GPU.

    MLIR's CUDA wrappers only print driver errors and carry on, so a model
    loaded without a device would compute nothing: check first.
    """
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        raise ModelLoadError(
            f"{path} is compiled for CUDA: it needs an NVIDIA GPU and its driver (libcuda.so.1)"
        ) from None
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        raise ModelLoadError(f"{path} is compiled for CUDA, but the driver finds no GPU")


def load(path: str | os.PathLike) -> Executable:
    """Loads a model saved by `CompiledModel.save`, without the compiler.

    The file's digest (see `nnforge.artifact`) is checked before the dynamic
    loader sees it: a damaged, truncated or foreign file raises
    ModelLoadError instead of being mapped into the process. A model whose
    weights were saved beside it (`model.weights`) maps that file, checked
    against the manifest in the library (`nnforge.weights`).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ModelLoadError(f"nnforge.load takes the path of a saved model (.so), not {type(path).__name__}")
    try:
        path = Path(path).resolve()
        if not path.is_file():
            raise ModelLoadError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
        contents = artifact.check(path)
    except (OSError, ValueError) as error:  # unreadable; a NUL in the path
        raise ModelLoadError(f"{str(path)!r} cannot be read: {error}") from None
    try:
        needed = elf.needed(path, contents)
    except elf.ElfError as error:
        raise ModelLoadError(str(error)) from None
    if CUDA_RUNTIME in needed:
        _check_cuda_device(path)
    if openmp.OPENMP_RUNTIME in needed:
        raise ModelLoadError(
            f"{path} was saved by an older nnforge (it calls {openmp.OPENMP_RUNTIME} directly): "
            "compile and save it again"
        )
    if mpi.SONAME in needed:
        mpi.library()  # the model binds to it: loaded first, or MPIMissingError saying what to install
    try:
        library = ctypes.CDLL(str(path))
    except OSError as error:
        raise ModelLoadError(f"{path} cannot be loaded: {error}") from None
    try:
        text = ctypes.string_at(ctypes.addressof(ctypes.c_char.in_dll(library, SIGNATURE_SYMBOL)))
    except ValueError:
        raise ModelLoadError(f"{path} is not an nnforge model (no {SIGNATURE_SYMBOL})") from None
    try:
        signature = Signature.from_json(text.decode(errors="replace"))
    except ValueError as error:
        raise ModelLoadError(f"{path}: its embedded signature ({SIGNATURE_SYMBOL}) is damaged: {error}") from None
    try:
        entry = getattr(library, f"_mlir__mlir_ciface_{signature.entry}")
        library.nnforge_guarded_call
    except AttributeError:
        raise ModelLoadError(
            f"{path} lacks the packed entry point or nnforge's runtime (saved by an older nnforge?): "
            "compile and save it again"
        ) from None
    parallel = hasattr(library, openmp.BIND_SYMBOL)
    bound, rank = _rank_weights(path, library, signature)
    if bound:
        signature = Signature(signature.entry, signature.inputs[:len(signature.inputs) - len(bound)],
                              signature.outputs)
    return Executable(
        ctypes.cast(entry, ctypes.c_void_p).value, library, signature, keep_alive=library, parallel=parallel,
        weights=bound or _mapped_weights(library, path), rank=rank,
    )


def _mapped_weights(library: ctypes.CDLL, path: Path) -> list[np.ndarray]:
    """The weights the saved model at `path` takes (none if it embeds no
    manifest), mapped from the file beside it and checked against the
    manifest: names, types, shapes, size and digest."""
    try:
        text = ctypes.string_at(ctypes.addressof(ctypes.c_char.in_dll(library, weights.MANIFEST_SYMBOL)))
    except ValueError:
        return []
    try:
        manifest = weights.Manifest.from_json(text.decode(errors="replace"))
    except ValueError as error:
        raise ModelLoadError(f"{path}: its embedded weights manifest ({weights.MANIFEST_SYMBOL}) is damaged: {error}") from None
    return weights.MappedWeights(weights.path_for(path), manifest, numpy_dtype).arrays


def _rank_weights(path: Path, library: ctypes.CDLL, signature: Signature) -> tuple[list[np.ndarray], tuple[int, int]]:
    """For a model split over ranks (see `nnforge.distributed`): this rank's
    weight slices and (rank, ranks), after joining the MPI job; ([], (0, 1)) otherwise."""
    try:
        manifest = slices.manifest_of(library)
    except ModelLoadError as error:
        raise ModelLoadError(f"{path}: {error}") from None
    if manifest is None:
        return [], (0, 1)
    rank, size = mpi.initialize()
    if size != manifest.ranks:
        raise mpi.JobSizeError(
            f"{path} is compiled for {manifest.ranks} ranks, but this process runs in an MPI job of {size} "
            f"(start it with `mpiexec -n {manifest.ranks} ...` or `nnforge run --ranks {manifest.ranks} ...`)"
        )
    if len(manifest.weights) + manifest.inputs != len(signature.inputs):
        raise ModelLoadError(f"{path}: its manifest of weights does not match its signature")
    return slices.rank_arrays(library, manifest, rank, numpy_dtype), (rank, size)
