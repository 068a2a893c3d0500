"""`nnforge.compile(..., ranks=N)`: a PyTorch module split over N ranks.

The module is imported with its parameters as inputs after the caller's
(`torch.func.functional_call`), so that each parameter is an argument of
the entry function that `partition` can shard: after partitioning, a split
parameter's argument takes one rank's slice. The program, the same on
every rank, is lowered by the CPU target and linked into one shared
library with every rank's slices (`slices`) and libmpi (`mpi`).
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from mlir import ir

from nnforge.distributed import mpi, partition, plan, slices
from nnforge.entry import embed_string, entry_function, mark_inputs_read_only, signature_of
from nnforge.errors import ArgumentError, CompileError, ModelLoadError, SaveError
from nnforge.runtime import SIGNATURE_SYMBOL, Executable, Signature, load
from nnforge.stages import StageRunner
from nnforge.targets.cpu.model import link_library
from nnforge.targets.cpu.objects import object_files

log = logging.getLogger("nnforge.compiler")


class DistributedModel:
    """A model compiled for `ranks` MPI ranks, in a shared library (`save` copies it).

    Calling it loads the library (`nnforge.load`): only inside an MPI job of
    `ranks` processes (`mpiexec -n N python app.py`), each calling it with
    the same inputs and getting the same outputs.
    """

    def __init__(self, library: Path, folder: tempfile.TemporaryDirectory, signature: Signature,
                 compile_times: dict[str, float], ranks: int, sharding: dict[str, int | plan.Packed],
                 collectives: list[tuple[str, int]]):
        self.signature = signature
        # (MPI collective, bytes of its buffer) per call, in program order.
        self.collectives = collectives
        self.compile_times = compile_times
        self.ranks = ranks
        self.sharding = sharding
        self._library, self._folder = library, folder
        self._loaded: Executable | None = None

    def __call__(self, *inputs: Any) -> Any:
        if self._loaded is None:
            self._loaded = load(self._library)
        return self._loaded(*inputs)

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the shared library; returns its path."""
        from nnforge import artifact

        path = artifact.check_destination(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self._library, path)
        except OSError as error:
            raise SaveError(f"cannot save the model as {path}: {error.strerror or error}") from None
        return path


def _as_tuple(example_inputs: Any) -> tuple:
    return tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)


def _parameters_as_inputs(model: Any, names: list[str], count: int, shapes: dict[str, tuple[int, ...]]) -> Any:
    """`model` as a module taking its `count` inputs, then its parameters named
    `names` (those in `shapes` in another shape, given back theirs)."""
    import torch

    class ParametersAsInputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *arguments: Any) -> Any:
            parameters = {name: argument.reshape(shapes[name]) if name in shapes else argument
                          for name, argument in zip(names, arguments[count:])}
            return torch.func.functional_call(self.model, parameters, arguments[:count])

    return ParametersAsInputs().eval()


def _numpy(tensor: Any) -> np.ndarray:
    import torch

    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


class ShardedCompile:
    """One compilation of `model` for `ranks` ranks (`nnforge.compile` with `ranks` > 1).

    `wrapper` and `arguments` are what to import (the model taking its
    parameters after its inputs); `finish` partitions, lowers and links the
    imported module.
    """

    def __init__(self, model: Any, example_inputs: Any, ranks: int, sharding: Any, target: str):
        if example_inputs is None:
            raise ModelLoadError("compiling a PyTorch module needs example_inputs")
        if str(target) != "cpu":
            raise ArgumentError(
                f"models split over ranks compile for target 'cpu' (this machine's CPU), not {target!r}")
        self.libmpi = mpi.library_path()  # first: say what to install before any work
        self.ranks = ranks
        self.inputs = _as_tuple(example_inputs)
        # Shardings to try, best first (see plan.plan); the one that partitions.
        self.choices = plan.plan(model, self.inputs, ranks, sharding)
        self.axes = self.choices[0]
        named = list(model.named_parameters())
        self.names = [name for name, _ in named]
        # Packed parameters ([3E, K] of a packed q/k/v projection) are taken as
        # [3, E, K], in every choice alike (the module is imported once).
        packed = {name: split for axes in self.choices for name, split in axes.items()
                  if isinstance(split, plan.Packed)}
        original = {name: tuple(parameter.shape) for name, parameter in named if name in packed}
        self.wrapper = _parameters_as_inputs(model, self.names, len(self.inputs), original)
        # (A copy: torch.export refuses an input that is a view of a parameter.)
        taken = [parameter.detach().reshape(plan.packed_shape(tuple(parameter.shape), packed[name])[0]).clone()
                 if name in packed else parameter.detach() for name, parameter in named]
        self.arguments = (*self.inputs, *taken)
        self._arrays = [_numpy(parameter) for parameter in taken]
        self._packed = packed

    def _partition(self, module: ir.Module, count: int, runner: StageRunner) -> ir.Module:
        """`module` partitioned with the first sharding to try that partitions (`self.axes`)."""
        source = io.BytesIO()
        if len(self.choices) > 1:
            module.operation.write_bytecode(source)
        for axes in self.choices[:-1]:
            try:
                return self._partition_as(ir.Module.parse(source.getvalue(), module.context), axes, count, runner)
            except CompileError as error:
                log.warning("auto sharding: %s; splitting the Megatron pairs alone", error)
        return self._partition_as(module, self.choices[-1], count, runner)

    def _split_axis(self, name: str, axes: dict[str, "int | plan.Packed"]) -> int | None:
        """The axis of parameter `name`, as the program takes it, split over the ranks (None: whole)."""
        split = axes.get(name)
        return split.axis + 1 if isinstance(split, plan.Packed) else split

    def _partition_as(self, module: ir.Module, axes: dict[str, "int | plan.Packed"], count: int,
                      runner: StageRunner) -> ir.Module:
        partition.annotate(module, [None] * count + [self._split_axis(name, axes) for name in self.names],
                           self.ranks)
        partitioned = partition.partition(module, runner)
        self.axes = axes
        return partitioned

    def finish(self, module: ir.Module, full: Signature, target: Any, runner: StageRunner) -> DistributedModel:
        """Partitions the imported `module` (signature `full`), lowers it with `target`, links it."""
        count = len(self.inputs)
        if len(full.inputs) != count + len(self.names):
            raise CompileError(f"the imported model takes {len(full.inputs)} arguments, expected "
                               f"{count} inputs and {len(self.names)} parameters")
        module = self._partition(module, count, runner)
        collectives = partition.collectives(module)
        with module.context:
            function = entry_function(module)
            function.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
            mark_inputs_read_only(function)
            permutations = partition.take_parameters_transposed(function, count)[count:]
            panels = partition.take_parameters_packed(module, count)[count:]
            function = entry_function(module)  # (running a pass drops the handles to the module's ops)
            input_names = [spec.name for spec in full.inputs[:count]] + self.names
            local = signature_of(function, (input_names, [spec.name for spec in full.outputs]))
        module = target.lower(module, "linalg", runner)
        if getattr(target, "_weights", None) is not None:
            # The CPU target moved large constants (not parameters) into a weights file.
            raise CompileError("models split over ranks cannot hold constants of 16 KiB or more besides their "
                               "parameters yet (make them parameters, or compile for one rank)")
        splits = [self._split_axis(name, self.axes) for name in self.names]
        parts = [np.split(array, self.ranks, axis=axis) if axis is not None else [array]
                 for axis, array in zip(splits, self._arrays)]
        parts = [[_laid_out(piece, permutation, panel) for piece in pieces]
                 for permutation, panel, pieces in zip(permutations, panels, parts)]
        manifest, pieces = slices.layout(self.names, [spec.dtype for spec in local.inputs[count:]], parts,
                                          count, self.ranks)
        for spec, weight in zip(local.inputs[count:], manifest.weights):
            if tuple(spec.shape) != weight.shape:
                raise CompileError(f"parameter {weight.name}: the partitioned program takes {list(spec.shape)}, "
                                   f"but its slices are {list(weight.shape)}")
        with runner.stage("link"):
            folder = tempfile.TemporaryDirectory(prefix="nnforge-ranks-")
            library = _link(module, local, manifest, pieces, Path(folder.name), self.libmpi)
        public = Signature(local.entry, local.inputs[:count], local.outputs)
        return DistributedModel(library, folder, public, runner.times, self.ranks, self.axes, collectives)


def _laid_out(piece: np.ndarray, permutation: tuple[int, ...] | None, panel: int | None) -> np.ndarray:
    """A slice as the rank's program takes it: transposed by `permutation`, then as
    `[N / panel, .., panel]` panels of its last dimension (None: neither)."""
    if permutation is not None:
        piece = piece.transpose(permutation)
    if panel is not None:
        piece = np.moveaxis(piece.reshape(*piece.shape[:-1], piece.shape[-1] // panel, panel), -2, 0)
    return np.ascontiguousarray(piece)


def _link(module: ir.Module, signature: Signature, manifest: slices.Manifest,
          pieces: list[tuple[int, np.ndarray]], folder: Path, libmpi: Path) -> Path:
    """The shared library of the lowered `module` with the weights blob, linked to libmpi."""
    embed_string(module, SIGNATURE_SYMBOL, signature.to_json())
    embed_string(module, slices.MANIFEST_SYMBOL, manifest.to_json())
    objects = object_files(module, folder)
    blob = folder / "weights.bin"
    slices.write_blob(pieces, blob)
    assembly = folder / "weights.S"
    assembly.write_text(
        f'\t.section .rodata.{slices.BLOB_SYMBOL},"a"\n\t.globl {slices.BLOB_SYMBOL}\n\t.balign 4096\n'
        f'{slices.BLOB_SYMBOL}:\n\t.incbin "{blob}"\n\t.section .note.GNU-stack,"",@progbits\n'
    )
    return link_library(objects, [assembly], folder / "model.so", [str(libmpi)])
