"""ONNX backend API (`onnx.backend.base.Backend`) over nnforge's compiler.

Usable like `onnxruntime.backend`::

    import nnforge.onnx_backend as backend
    outputs = backend.prepare(model).run([x, y])
    onnx.backend.test.BackendTest(nnforge.onnx_backend, __name__)

`prepare` compiles through `nnforge.compile(model)` (level linalg). Parts of
the lowering abort the process on some inputs (assertions are on), so by
default models are compiled in a persistent child process
(`nnforge.onnx_backend_worker`) that writes a shared library the parent
loads with `nnforge.load`; a crash of the child becomes a `CompileError`
naming the signal, and the next `prepare` starts a fresh child. Pass
`compile_in_process=True` to compile in this process instead.
"""

from __future__ import annotations

import atexit
import itertools
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep, namedtupledict

from nnforge import _process, errors
from nnforge.errors import CompileError, InputError
from nnforge.onnx_backend_worker import read_message, write_message
from nnforge.runtime import Executable, load, numpy_dtype


class CompileWorker:
    """A reusable child process compiling ONNX models to shared libraries."""

    def __init__(self, command: Sequence[str] = (sys.executable, "-m", "nnforge.onnx_backend_worker")):
        self.command = list(command)
        self._process: subprocess.Popen | None = None
        self._stderr: Any = None  # temporary file receiving the child's stderr
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            # Its own process group: a timeout also ends the importer's children.
            start_new_session=True,
        )
        return self._process

    def stop(self) -> None:
        """Ends the child (if any); the next compilation starts a new one."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.stdin.close()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _stderr_cause(self, start: int) -> str:
        """What the child wrote to stderr since offset `start` about why it failed."""
        self._stderr.seek(start)
        return _process.failure_cause(self._stderr.read().decode(errors="replace"))

    def compile(self, model: onnx.ModelProto, library: Path, level: str, timeout: float) -> None:
        """Compiles `model` into the shared library `library`, in the child.

        Raises the nnforge error the compiler raised, or CompileError if the
        child died (naming the signal) or ran past `timeout` seconds.
        """
        with self._lock:
            process = self._process if self._process and self._process.poll() is None else None
            if process is None:
                self.stop()
                process = self._start()
            stderr_start = self._stderr.seek(0, 2)
            try:
                request = {"model": model.SerializeToString(), "library": str(library), "level": level}
                write_message(process.stdin, request)
                ready, _, _ = select.select([process.stdout], [], [], timeout)
                reply = read_message(process.stdout) if ready else None
            except BrokenPipeError:  # the child died before reading the request
                ready, reply = [process.stdout], None
            if reply is None:
                if ready:  # the channel closed: the child is exiting
                    try:
                        cause = _process.describe_exit(process.wait(timeout=30))
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
                        cause = "closed its channel without exiting and was killed"
                else:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    cause = f"ran past {timeout:g} s and was killed"
                tail = self._stderr_cause(stderr_start)
                self.stop()
                raise CompileError(
                    f"compiling ONNX model {model.graph.name or '(unnamed)'} in a child process "
                    f"failed: the child {cause}" + (f":\n{tail}" if tail else "")
                )
        if "error" in reply:
            raise _rebuild_error(reply)


def _rebuild_error(reply: dict) -> errors.NNForgeError:
    """The nnforge exception a worker reply describes, with its message and attributes."""
    error_type = getattr(errors, reply["error"], None)
    if not (isinstance(error_type, type) and issubclass(error_type, errors.NNForgeError)):
        error_type = CompileError
    error = error_type.__new__(error_type)
    Exception.__init__(error, reply["message"])
    vars(error).update(reply["attributes"])
    return error


_worker = CompileWorker()
atexit.register(_worker.stop)
# Distinct library names: the dynamic loader reuses an already loaded library by path.
_library_numbers = itertools.count()


def _tensor_dtype(value: onnx.ValueInfoProto) -> np.dtype | None:
    """The numpy dtype of a graph input or output, None for non-tensors."""
    if not value.type.HasField("tensor_type"):
        return None
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))


def _same_bits(produced: np.dtype, expected: np.dtype) -> bool:
    """Whether `produced` holds `expected`'s values bit for bit in signless form.

    The compiled code's integers are signless: ONNX uintN travel as iN, and
    ONNX bool may come back as i8 holding 0 or 1.
    """
    if expected == np.bool_:
        return produced.kind in "iu" and produced.itemsize == 1
    return produced.kind in "iu" and expected.kind in "iu" and produced.itemsize == expected.itemsize


# Operands that decide the shape of an op's result (axes, target shapes,
# sizes, pads): nnforge compiles static shapes, so graph inputs feeding them
# are specialized on the values each run brings (one compilation per value).
_REDUCTIONS = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
               "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")
SHAPE_OPERANDS: dict[str, tuple[int, ...]] = {
    **{reduction: (1,) for reduction in _REDUCTIONS},
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4), "Pad": (1, 3),
    "Squeeze": (1,), "Unsqueeze": (1,), "Resize": (1, 2, 3), "Upsample": (1,),
    "ConstantOfShape": (0,), "Range": (0, 1, 2), "TopK": (1,), "Split": (1,), "OneHot": (1,),
    "CenterCropPad": (1,), "Trilu": (1,), "CumSum": (1,), "CumProd": (1,), "Compress": (1,), "Col2Im": (1, 2),
    "AffineGrid": (1,), "BlackmanWindow": (0,), "HannWindow": (0,), "HammingWindow": (0,),
}
# How many differently-valued specializations a prepared model keeps.
_MAX_SPECIALIZATIONS = 8


def shape_inputs(model: onnx.ModelProto) -> list[str]:
    """The graph inputs that feed a shape-deciding operand of a main-graph node."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    graph_inputs = {value.name for value in model.graph.input} - initializers
    found = []
    for node in model.graph.node:
        for position in SHAPE_OPERANDS.get(node.op_type, ()):
            if position < len(node.input) and node.input[position] in graph_inputs:
                if node.input[position] not in found:
                    found.append(node.input[position])
    return found


def specialize(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` whose graph inputs in `values` are initializers holding them."""
    specialized = onnx.ModelProto()
    specialized.CopyFrom(model)
    kept = [value for value in specialized.graph.input if value.name not in values]
    del specialized.graph.input[:]
    specialized.graph.input.extend(kept)
    specialized.graph.initializer.extend(
        onnx.numpy_helper.from_array(array, name) for name, array in values.items()
    )
    return specialized


class NNForgeBackendRep(BackendRep):
    """A compiled ONNX model: `run(inputs)` returns the outputs in graph order."""

    def __init__(self, model: onnx.ModelProto, compile_model: Callable[[onnx.ModelProto], Executable]):
        self._model = model
        self._compile = compile_model
        initializers = {tensor.name for tensor in model.graph.initializer}
        graph_inputs = [value for value in model.graph.input if value.name not in initializers]
        self.input_names = [value.name for value in graph_inputs]
        self._input_dtypes = dict(zip(self.input_names, map(_tensor_dtype, graph_inputs)))
        self.output_names = [value.name for value in model.graph.output]
        self._output_dtypes = [_tensor_dtype(value) for value in model.graph.output]
        self._outputs_type = namedtupledict("Outputs", self.output_names)
        self.specialized_inputs = shape_inputs(model)
        self._executables: dict[bytes, Executable] = {}
        if not self.specialized_inputs:  # compile now: errors show at prepare
            self._executables[b""] = self._checked(compile_model(model))

    def _checked(self, executable: Executable) -> Executable:
        if len(executable.signature.outputs) != len(self.output_names):
            raise CompileError(
                f"the compiled model has {len(executable.signature.outputs)} outputs, "
                f"the ONNX graph {len(self.output_names)} ({', '.join(self.output_names)})"
            )
        return executable

    def _executable_for(self, arrays: dict[str, np.ndarray]) -> Executable:
        """The compiled model for these values of the shape-deciding inputs."""
        values = {name: arrays[name] for name in self.specialized_inputs}
        key = b"".join(
            f"{name}:{array.dtype}:{array.shape}:".encode() + array.tobytes() for name, array in values.items()
        )
        if key not in self._executables:
            if len(self._executables) >= _MAX_SPECIALIZATIONS:
                self._executables.pop(next(iter(self._executables)))
            self._executables[key] = self._checked(self._compile(specialize(self._model, values)))
        return self._executables[key]

    def _arrange(self, inputs: Any) -> list[np.ndarray]:
        """The inputs as arrays in graph order, from a list, a dict by name or one array."""
        if isinstance(inputs, Mapping):
            missing = [name for name in self.input_names if name not in inputs]
            if missing:
                raise InputError(f"inputs lack {', '.join(missing)}")
            inputs = [inputs[name] for name in self.input_names]
        elif not isinstance(inputs, Sequence):
            inputs = [inputs]
        if len(inputs) != len(self.input_names):
            raise InputError(
                f"expected {len(self.input_names)} inputs ({', '.join(self.input_names)}), "
                f"got {len(inputs)}"
            )
        return [np.asarray(value) for value in inputs]

    @staticmethod
    def _to_signature(
        arrays: list[np.ndarray], onnx_dtypes: list[np.dtype | None], executable: Executable
    ) -> list[np.ndarray]:
        """Reinterprets ONNX unsigned integers as the compiled code's signless ones."""
        converted = []
        for array, onnx_dtype, spec in zip(arrays, onnx_dtypes, executable.signature.inputs):
            compiled_dtype = numpy_dtype(spec.dtype)
            if array.dtype == onnx_dtype != compiled_dtype and _same_bits(compiled_dtype, onnx_dtype):
                array = array.view(compiled_dtype)
            converted.append(array)
        return converted

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """Runs the model; returns its outputs (a namedtuple, also indexable by name)."""
        arrays = dict(zip(self.input_names, self._arrange(inputs)))
        executable = self._executable_for(arrays)
        runtime_inputs = [name for name in self.input_names if name not in self.specialized_inputs]
        results = executable(*self._to_signature(
            [arrays[name] for name in runtime_inputs],
            [self._input_dtypes[name] for name in runtime_inputs],
            executable,
        ))
        if len(self.output_names) == 1:
            results = [results]
        outputs = []
        for result, expected in zip(results, self._output_dtypes):
            if expected is not None and result.dtype != expected and _same_bits(result.dtype, expected):
                result = result.astype(np.bool_) if expected == np.bool_ else result.view(expected)
            outputs.append(result)
        return self._outputs_type(*outputs)


class NNForgeBackend(Backend):
    """The ONNX backend API over `nnforge.compile`; CPU only."""

    @classmethod
    def prepare(
        cls,
        model: onnx.ModelProto,
        device: str = "CPU",
        *,
        compile_in_process: bool = False,
        compile_timeout: float | None = None,
        level: str = "linalg",
        **kwargs: Any,
    ) -> NNForgeBackendRep:
        """Compiles `model` for `device`.

        `compile_in_process`: compile in this process (faster to start, but
        a lowering abort ends the process) instead of the shared child.
        `compile_timeout`: seconds the child may take (default: NNFORGE_CHILD_TIMEOUT
        or 600, see `nnforge._process`). Other keyword
        arguments (the test runner's rtol/atol) are ignored.
        """
        if not cls.supports_device(device):
            raise CompileError(f"nnforge's ONNX backend runs on CPU only, not {device!r}")
        def compile_model(model: onnx.ModelProto) -> Executable:
            if compile_in_process:
                from nnforge import compiler

                return compiler.compile(model, level=level)
            with tempfile.TemporaryDirectory(prefix="nnforge-onnx-backend-") as scratch:
                library = Path(scratch) / f"model-{next(_library_numbers)}.so"
                _worker.compile(model, library, level, compile_timeout or _process.time_limit())
                # Once loaded the library stays mapped: the file can go.
                return load(library)

        return NNForgeBackendRep(model, compile_model)

    @classmethod
    def run_node(
        cls,
        node: onnx.NodeProto,
        inputs: Any,
        device: str = "CPU",
        outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None,
        **kwargs: Any,
    ) -> tuple[np.ndarray, ...]:
        """Runs one node on `inputs` (arrays for its non-empty inputs, in order).

        The node becomes a one-node model (opset `opset_version` if given,
        else onnx's newest), its output types come from `outputs_info` or
        from shape inference.
        """
        super().run_node(node, inputs, device, outputs_info, **kwargs)
        input_names = [name for name in node.input if name]
        arrays = [np.asarray(value) for value in inputs]
        if len(arrays) != len(input_names):
            raise InputError(f"{node.op_type} node takes {len(input_names)} inputs, got {len(arrays)}")
        graph_inputs = [
            onnx.helper.make_tensor_value_info(
                name, onnx.helper.np_dtype_to_tensor_dtype(array.dtype), array.shape
            )
            for name, array in zip(input_names, arrays)
        ]
        output_names = [name for name in node.output if name]
        if outputs_info is not None:
            graph_outputs = [
                onnx.helper.make_tensor_value_info(
                    name, onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape
                )
                for name, (dtype, shape) in zip(output_names, outputs_info)
            ]
        else:
            graph_outputs = [onnx.helper.make_empty_tensor_value_info(name) for name in output_names]
        opset = kwargs.pop("opset_version", onnx.defs.onnx_opset_version())
        graph = onnx.helper.make_graph([node], f"{node.op_type}_node", graph_inputs, graph_outputs)
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        if outputs_info is None:
            model = _with_inferred_outputs(model)
        return cls.prepare(model, device, **kwargs).run(arrays)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        """True for "CPU" (and "CPU:n"): nnforge compiles for the host CPU."""
        return device.split(":")[0].upper() == "CPU"


def _with_inferred_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with its graph outputs typed by ONNX shape inference."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as error:
        raise errors.ModelLoadError(f"the node is invalid for these inputs: {str(error).strip()}") from None
    known = {value.name: value for value in inferred.graph.value_info}
    known.update({value.name: value for value in inferred.graph.output if value.type.HasField("tensor_type")})
    typed = []
    for output in model.graph.output:
        value = known.get(output.name)
        if value is None or not value.type.tensor_type.elem_type:
            raise CompileError(f"shape inference cannot type output {output.name!r} of the node")
        typed.append(value)
    del inferred.graph.output[:]
    inferred.graph.output.extend(typed)
    return inferred


is_compatible = NNForgeBackend.is_compatible
prepare = NNForgeBackend.prepare
run_model = NNForgeBackend.run_model
run_node = NNForgeBackend.run_node
supports_device = NNForgeBackend.supports_device
