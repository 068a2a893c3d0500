"""Exporters: any model nnforge imports, written as ONNX or NNEF through TOSA.

The exchange level is TOSA, upstream MLIR's stable operator set: the model
is imported at level "tosa" (`nnforge.importers`), read into a plain graph
(`tosa_graph`) and written by a format's writer (`onnx_writer`,
`nnef_writer`).
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

from nnforge.errors import ArgumentError, ModelLoadError

# format -> the suffix that selects it
FORMATS = {"onnx": ".onnx", "nnef": ".nnef"}


def _format_of(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in FORMATS:
            raise ArgumentError(f"unknown export format {format!r}: expected one of {', '.join(FORMATS)}")
        return format
    for name, suffix in FORMATS.items():
        if path.suffix == suffix:
            return name
    raise ArgumentError(f"cannot tell the export format of {path}: name it "
                        f"{' or '.join('*' + s for s in FORMATS.values())}, or pass format=")


def _torch_names(module, inputs: tuple) -> list[str] | None:
    """The names of forward's positional parameters, when one per input."""
    try:
        parameters = [p for p in inspect.signature(module.forward).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return None
    return [p.name for p in parameters][:len(inputs)] if len(parameters) >= len(inputs) else None


class Imported(NamedTuple):
    """A model at the tosa level, with what its source says of its inputs and outputs (None where nothing)."""

    module: Any  # mlir.ir.Module
    input_names: list[str] | None = None
    output_names: list[str] | None = None
    input_dims: list[list[str | int | None]] | None = None  # an ONNX source's dims, dim_param names kept
    input_types: list[int] | None = None  # an ONNX source's element types (onnx.TensorProto values)
    output_types: list[int] | None = None


def import_tosa(model: Any, example_inputs: Any = None, *, dynamic_shapes: Any = None) -> Imported:
    """`model` imported at the tosa level, with its source's input and output names, dims and types."""
    from mlir import ir

    from nnforge import compiler, importers
    from nnforge.importers import jax_frontend, nnef_frontend, stablehlo_frontend

    if compiler._is_torch_module(model):
        if example_inputs is None:
            raise ModelLoadError("exporting a PyTorch module needs example_inputs")
        torch = sys.modules["torch"]
        inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
        module = importers.import_torch(model, inputs, dynamic_shapes=dynamic_shapes, level="tosa")
        return Imported(module, _torch_names(model, inputs))
    if compiler._is_onnx_model(model):
        module = importers.import_onnx(model, level="tosa")
        return Imported(module, *importers.onnx_io_names(model), *_onnx_signature(model))
    if nnef_frontend.is_nnef(model):
        module = importers.import_nnef(model, level="tosa")
        return Imported(module, *nnef_frontend.io_names(model))
    if (jax_frontend.is_jax_function(model) or stablehlo_frontend.is_exported(model)
            or compiler._is_stablehlo_file(model)):
        if jax_frontend.is_jax_function(model):
            model = jax_frontend.export(model, example_inputs)
        module, _, (input_names, output_names) = compiler.import_model(model, level="tosa")
        return Imported(module, input_names or None, output_names or None)
    if isinstance(model, ir.Module) or (isinstance(model, (str, os.PathLike))
                                        and Path(model).suffix in (".mlir", ".mlirbc")):
        module, level, _ = compiler.import_model(model)
        if level != "tosa":
            raise ModelLoadError("an MLIR module is exported from the tosa level only "
                                 "(linalg modules have no way back to TOSA)")
        return Imported(module)
    raise ModelLoadError(
        "nnforge.export takes a torch.nn.Module (with example_inputs), an ONNX model "
        "(.onnx path or onnx.ModelProto), an NNEF model (.nnef), a jax.jit-wrapped function (with example_inputs) "
        "or jax.export.Exported, a StableHLO file, or a TOSA-level MLIR module, "
        f"not {type(model).__name__}"
    )


def _onnx_signature(model: Any) -> tuple[list, list[int], list[int]]:
    """The dimensions of each graph input as the source declares them (dim_param names kept), and
    the element types of its graph inputs and outputs (initializers are not inputs)."""
    import onnx

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    initializers = {tensor.name for tensor in proto.graph.initializer}
    inputs = [value for value in proto.graph.input if value.name not in initializers]
    dims = [[d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None)
             for d in value.type.tensor_type.shape.dim] for value in inputs]
    return (dims, [value.type.tensor_type.elem_type for value in inputs],
            [value.type.tensor_type.elem_type for value in proto.graph.output])


def to_onnx(imported: Imported, name: str = "nnforge"):
    """The imported model as an `onnx.ModelProto` (see `onnx_writer.to_model`)."""
    from nnforge.exporters import onnx_writer, tosa_graph

    return onnx_writer.to_model(tosa_graph.read(imported.module), imported.input_names, imported.output_names,
                                input_dims=imported.input_dims, input_types=imported.input_types,
                                output_types=imported.output_types, name=name)


def export(model: Any, path: str | os.PathLike, example_inputs: Any = None, *,
           format: str | None = None, dynamic_shapes: Any = None) -> Path:
    """Writes `model` to `path` as ONNX (opset 21) or NNEF, through nnforge's TOSA level.

    `model`: a `torch.nn.Module` (with `example_inputs`, and `dynamic_shapes`
    as for `torch.export`), an ONNX model (path or ModelProto), an NNEF
    model, a `jax.jit`-wrapped function (with `example_inputs`, static
    shapes) or `jax.export.Exported`, a StableHLO .mlir/.mlirbc file, or an
    `mlir.ir.Module` / .mlir file at the tosa level.
    `format` ("onnx" or "nnef") defaults to the one `path`'s suffix names
    (.onnx, .nnef). NNEF is written as a folder: graph.nnef and a .dat
    file per weight. Input and output names are
    the source's (a PyTorch module's forward parameters; an ONNX model's
    graph inputs and outputs; the argument paths and `jax.result_info` jax
    gives its export). Initializers of 1 MiB or more go to
    `<path>.data`. The written model passes `onnx.checker` with full checks.

    Raises UnsupportedOpError naming each TOSA op without a mapping to the format and
    its count, besides the importers' errors. Returns `path`.
    """
    from nnforge.exporters import nnef_writer, onnx_writer, tosa_graph

    path = Path(path)
    chosen = _format_of(path, format)
    imported = import_tosa(model, example_inputs, dynamic_shapes=dynamic_shapes)
    if chosen == "nnef":
        graph = tosa_graph.read(imported.module)
        nnef_writer.save(nnef_writer.to_graph(graph, imported.input_names, imported.output_names, name=path.stem),
                         path)
    else:
        onnx_writer.save(to_onnx(imported, name=path.stem), path)
    return path
