"""ONNX models -> MLIR, through torch-mlir's ONNX importer.

Before import the model is checked, upgraded to the opset torch-mlir's ONNX
conversions cover best, and shape-inferred with data propagation, so that
old models (opset 9 and up) import too.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Union

from nnforge import _process
from nnforge.errors import CompileError, ModelLoadError, UnsupportedOp, UnsupportedOpError
from nnforge.importers import handover, onnx_refusals, onnx_rewrites, onnx_validation, weight_arguments
from nnforge.importers.levels import TORCH_MLIR_LEVEL, check_level

log = logging.getLogger("nnforge.importers")

# Older models are upgraded to this opset (newer ones are left as they are).
# Measured on the onnx wheel's 149 test models: 17 and 18 import the same
# number at every level, 21 one fewer at linalg.
TARGET_OPSET = 17
_PROTOBUF_LIMIT = 2**31 - 1

OnnxModel = Union[str, os.PathLike, "onnx.ModelProto"]  # noqa: F821


def _onnx():
    try:
        import onnx
    except ImportError as error:
        raise ModelLoadError(
            "importing ONNX models needs the onnx package: pip install 'nnforge[frontends]'"
        ) from error
    return onnx


def load_model(model: OnnxModel) -> tuple[Any, str]:
    """The model as a checked ModelProto, and a name for messages.

    For a path, external data is left unloaded (see `import_onnx`).
    """
    onnx = _onnx()
    if not isinstance(model, (str, os.PathLike)):
        if not isinstance(model, onnx.ModelProto):
            raise ModelLoadError(
                f"import_onnx takes a path or an onnx.ModelProto, not {type(model).__name__}"
            )
        if model.ByteSize() > _PROTOBUF_LIMIT:
            raise ModelLoadError(
                "the ONNX model is over protobuf's 2 GB limit: save it with external data "
                "(onnx.save(..., save_as_external_data=True)) and import the path"
            )
        try:
            onnx.checker.check_model(model)
        except (onnx.checker.ValidationError, ValueError) as error:
            raise ModelLoadError(f"the ONNX model is invalid: {error}") from None
        return model, f"ONNX model {model.graph.name or '(unnamed)'}"
    path = Path(model)
    what = f"ONNX model {path}"
    if not path.is_file():
        raise ModelLoadError(f"{what}: {'not a file' if path.exists() else 'no such file'}")
    try:
        # The weights stay outside (small proto) while checking, converting
        # and inferring shapes; the checker reads a path, so models over
        # protobuf's 2 GB limit are checked fully too.
        proto = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as error:
        raise ModelLoadError(f"{what} is invalid: {error}") from None
    except Exception as error:  # protobuf's DecodeError and friends: not an ONNX file
        raise ModelLoadError(f"{what} cannot be read as ONNX: {error}") from None
    return proto, what


def prepare(proto, what: str, level: str = "linalg"):
    """Opset upgrade, the checks and shape inference of `onnx_validation`,
    the rewrites of `onnx_rewrites`, and the expansions and refusals of
    `onnx_refusals` (for an import to `level`); names unnamed nodes (for
    locations and messages)."""
    onnx = _onnx()
    opset = _default_opset(proto)
    if 0 < opset < TARGET_OPSET:
        try:
            proto = onnx.version_converter.convert_version(proto, TARGET_OPSET)
        except Exception as error:  # the converter has no adapter for some old ops
            log.warning("%s: opset %d -> %d upgrade failed (%s); importing as is",
                        what, opset, TARGET_OPSET, str(error).splitlines()[0])
    else:
        proto = _copy(proto)
    _name_nodes(proto)
    proto = onnx_validation.validate(proto, what)
    rewritten = onnx_rewrites.rewrite(proto, level)
    if rewritten:
        log.info("%s: %d nodes rewritten into forms torch-mlir converts", what, rewritten)
    expanded = onnx_refusals.to_expand(proto)
    if expanded:
        proto = expand_function_ops(proto, expanded)
    refused = onnx_refusals.refusals(proto, lambda node: _describe_node(node.name, node.op_type), level)
    if refused:
        raise UnsupportedOpError(refused, context=f"{what} (forms torch-mlir would compute wrongly)")
    return proto


def _name_nodes(proto) -> None:
    """Names unnamed main-graph nodes, so locations and messages can point at them."""
    for index, node in enumerate(proto.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"


def _copy(proto):
    copy = type(proto)()
    copy.CopyFrom(proto)
    return copy


def node_types(proto) -> dict[str, str]:
    """Main-graph node name -> op type."""
    return {node.name: node.op_type for node in proto.graph.node}


def op_counts(proto) -> Counter:
    """How many nodes of each op type the main graph has (as "onnx.Type")."""
    return Counter(f"onnx.{node.op_type}" for node in proto.graph.node)


_QUOTED = re.compile(r'"([^"]*)"')


# How messages name an ONNX node, and how to find the names in them again.
_DESCRIBED_NODE = re.compile(r"node '([^']*)' \(")


def _describe_node(name: str, op_type: str) -> str:
    return f"node '{name}' ({op_type})"


def location_describer(types: dict[str, str]) -> handover.LocationDescriber:
    """Describes `loc("node name")` (or a fused list of them) as the ONNX nodes."""

    def describe(location: str) -> str:
        nodes = [name for name in _QUOTED.findall(location) if name in types]
        return ", ".join(_describe_node(name, types[name]) for name in dict.fromkeys(nodes))

    return describe


def import_to_torch_mlir(proto, what: str):
    """torch-mlir's ONNX importer: a torch_mlir module of `torch.operator "onnx.*"` ops."""
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_d
    from torch_mlir.extras import onnx_importer

    context = ir.Context()
    torch_d.register_dialect(context)
    try:
        model_info = onnx_importer.ModelInfo(proto)
        module = model_info.create_module(context=context).operation
        importer = onnx_importer.NodeImporter.define_function(model_info.main_graph, module)
        importer.import_all()
    except onnx_importer.OnnxImportError as error:
        # Raised for values torch-mlir cannot represent (some sequence and
        # optional types); its message names the type.
        raise UnsupportedOpError(
            [UnsupportedOp(f"ONNX importer: {str(error).splitlines()[0]}", 1)], context=what
        ) from None
    try:
        module.verify()
    except ir.MLIRError as error:
        raise ModelLoadError(f"{what}: torch-mlir's ONNX importer produced invalid IR: {error}") from None
    return module


def import_onnx(model: OnnxModel, *, level: str = "linalg"):
    """Imports an ONNX model (path or ModelProto, external data allowed) into MLIR.

    Returns an `mlir.ir.Module` in `nnforge.context()`, verified, at `level`
    ("tosa", "linalg" or "nnf"), or the module as text for level "torch" (the
    torch dialect is not in upstream MLIR). The batch dimension of inputs
    declared with a `dim_param` stays dynamic (`?`).

    Raises ModelLoadError for a missing, unreadable or invalid model,
    UnsupportedOpError naming each op kind torch-mlir cannot convert with its
    count and nodes, CompileError for other lowering failures.
    """
    check_level(level)
    start = time.perf_counter()
    proto, what = load_model(model)
    proto = prepare(proto, what, level)
    folder = Path(model).resolve().parent if isinstance(model, (str, os.PathLike)) else None
    # At the levels nnforge's MLIR receives (not tosa: TOSA's lowerings want
    # constant weights), weights travel beside the module, not in it.
    arrays = weights_aside(proto, folder, what) if level in ("linalg", "nnf") else []
    if folder is not None:
        try:
            _onnx().load_external_data_for_model(proto, str(folder))
        except (OSError, ValueError) as error:  # a missing file; an offset or length past its end
            raise ModelLoadError(f"{what}: cannot read its external data: {error}") from None
    log.info("load, check, opset upgrade, shape inference: %.2f s", time.perf_counter() - start)

    return handover.finish(_lower_simplifying(proto, level, what), level, what, arrays)


# ONNX element types whose initializers may travel as arrays (numpy holds
# them byte for byte as MLIR does; not bool, whose MLIR type is i1).
_ARRAY_TYPES = ("FLOAT", "DOUBLE", "FLOAT16", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")


def weights_aside(proto, folder: Path | None, what: str) -> list:
    """Moves the initializers of at least `weight_arguments.MIN_BYTES` out of
    `proto` (modified) into graph inputs appended after the others; returns
    their data, in that order, for `handover.finish` to bind.

    External data (a `.onnx` with `.bin` files, `folder` holding them) is
    mapped from its file, not read: no initializer becomes a Python object.
    Embedded data is viewed in place.
    """
    onnx = _onnx()
    import numpy as np
    from onnx import external_data_helper, helper

    declared = {value.name for value in proto.graph.input}
    types = {getattr(onnx.TensorProto, name) for name in _ARRAY_TYPES}
    kept, arrays, inputs = [], [], []
    for tensor in proto.graph.initializer:
        # An initializer that is also an input is a default the caller may override.
        if tensor.name in declared or tensor.data_type not in types:
            kept.append(tensor)
            continue
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))
        shape = tuple(tensor.dims)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        array = None
        if nbytes >= weight_arguments.MIN_BYTES:
            if tensor.data_location == onnx.TensorProto.EXTERNAL and folder is not None:
                info = external_data_helper.ExternalDataInfo(tensor)
                path = folder / info.location
                offset = info.offset or 0
                if info.length and info.length != nbytes:
                    raise ModelLoadError(f"{what}: initializer {tensor.name} has {info.length} bytes of external "
                                         f"data for {nbytes} bytes of {dtype} {list(shape)}")
                if not path.is_file() or path.stat().st_size < offset + nbytes:
                    raise ModelLoadError(f"{what}: cannot read its external data: {path} is missing or shorter "
                                         f"than initializer {tensor.name} needs")
                array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
            elif tensor.data_location != onnx.TensorProto.EXTERNAL and len(tensor.raw_data) == nbytes:
                array = np.frombuffer(tensor.raw_data, dtype=dtype).reshape(shape)
        if array is None:
            kept.append(tensor)
            continue
        arrays.append(array)
        inputs.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, shape))
    if arrays:
        del proto.graph.initializer[:]
        proto.graph.initializer.extend(kept)
        proto.graph.input.extend(inputs)
    return arrays


# Rounds of simplification tried after torch-mlir fails: function bodies can
# hold further function ops (SoftmaxCrossEntropyLoss -> NegativeLogLikelihoodLoss).
_SIMPLIFY_ROUNDS = 3


def _lower_simplifying(proto, level: str, what: str) -> str:
    """torch-mlir's lowering of `proto`; retried on simpler equivalents where it fails.

    torch-mlir lacks some ops ONNX defines as functions of simpler ones, and
    many conversions need attributes or shapes that the model computes from
    constants (RMSNormalization's axes, a Resize's sizes). Each retry
    replaces the function ops the failure names by their bodies, folds
    constant subgraphs, and rewrites the ops it names that have a fallback
    rewrite (`onnx_rewrites.decompose`: LRN, a Reshape that flattens a
    dynamic batch). The first failure is raised when none succeeds: it
    names the user's own nodes.
    """
    first_failure = None
    for _ in range(_SIMPLIFY_ROUNDS + 1):
        try:
            return _lower(proto, level, what)
        except (UnsupportedOpError, CompileError) as error:
            if isinstance(error, _process.ChildTimeout):
                raise  # a simpler model would take as long
            first_failure = first_failure or error
            implicated = _implicated_op_types(error, node_types(proto))
            functions = implicated & _function_ops(proto)
            # decomposed last: onnxscript's folding turns a Flatten back into a Reshape
            simplified = onnx_rewrites.decompose(fold_constants(expand_function_ops(proto, functions), what),
                                                 implicated)
            if simplified.graph == proto.graph:
                break
            log.info("%s: retrying with %s", what,
                     f"{', '.join(sorted(implicated))} expanded or decomposed" if implicated
                     else "constants folded")
            proto = simplified
    raise first_failure


def _implicated_op_types(error: Exception, types: dict[str, str]) -> set[str]:
    """ONNX op types an import failure names: unsupported `onnx.*` ops and the nodes torch ops came from."""
    if not isinstance(error, UnsupportedOpError):
        return set()
    found = {op.kind.removeprefix("onnx.") for op in error.ops if op.kind.startswith("onnx.")}
    for op in error.ops:
        for location in op.locations:  # as `location_describer` wrote them
            found.update(types[name] for name in _DESCRIBED_NODE.findall(location) if name in types)
    return found


def fold_constants(proto, what: str):
    """`proto` with constant subgraphs folded by onnxscript's optimizer (unchanged if it is not installed or fails)."""
    try:
        import onnxscript.optimizer
    except ImportError:
        return proto
    try:
        folded = onnxscript.optimizer.optimize(proto, inline=False)
        folded = _onnx().shape_inference.infer_shapes(folded, data_prop=True)
    except Exception as error:  # the optimizer has its own limits; the model stays as it was
        log.info("%s: constant folding failed (%s)", what, str(error).splitlines()[0])
        return proto
    _name_nodes(folded)
    return folded


def _lower(proto, level: str, what: str) -> str:
    """torch-mlir's import of `proto`, lowered to `level` (as text)."""
    start = time.perf_counter()
    torch_module = import_to_torch_mlir(proto, what)
    log.info("ONNX -> torch-mlir import: %.2f s", time.perf_counter() - start)
    describe = location_describer(node_types(proto))
    return handover.lower_with_torch_mlir(
        torch_module, "onnx", TORCH_MLIR_LEVEL[level], describe, what
    )


def _schema(proto, node):
    """The schema of `node` at the model's opset for its domain, or None."""
    onnx = _onnx()
    domain = node.domain or ""
    version = _opset_version(proto.opset_import, domain)
    try:
        return onnx.defs.get_schema(node.op_type, version, domain) if version else None
    except onnx.defs.SchemaError:
        return None


def _function_ops(proto) -> set[str]:
    """The op types of main-graph nodes that ONNX defines as functions."""
    found = set()
    for node in proto.graph.node:
        schema = _schema(proto, node)
        if schema is not None and (schema.has_function or schema.has_context_dependent_function):
            found.add(node.op_type)
    return found


def expand_function_ops(proto, op_types: set[str]):
    """A copy of `proto` with each main-graph node of `op_types` replaced by its function body.

    Uses onnx's own expansion (the one that generates its `_expanded` node
    tests), with the node's input types for context-dependent functions.
    """
    onnx = _onnx()
    from onnx.backend.test.case.node import function_testcase_helper

    if not op_types:
        return proto
    model_opset = _default_opset(proto)
    types = {value.name: value.type for value in
             list(proto.graph.input) + list(proto.graph.value_info) + list(proto.graph.output)}
    for tensor in proto.graph.initializer:
        types.setdefault(tensor.name, onnx.helper.make_tensor_type_proto(tensor.data_type, tensor.dims))
    expanded = _copy(proto)
    nodes = []
    for index, node in enumerate(proto.graph.node):
        if node.op_type not in op_types or any(name and name not in types for name in node.input):
            nodes.append(node)
            continue
        input_types = [types[name] if name else onnx.TypeProto() for name in node.input]
        bodies, _ = function_testcase_helper(_copy(node), input_types, f"{node.name or index}", proto.opset_import)
        body = _body_for_opset(bodies, model_opset)
        nodes.extend(body if body is not None else [node])
    del expanded.graph.node[:]
    expanded.graph.node.extend(nodes)
    _name_nodes(expanded)
    # The body's intermediate values need types, as the importer wants.
    return onnx.shape_inference.infer_shapes(expanded, data_prop=True)


def _body_for_opset(bodies: list, model_opset: int):
    """The newest of a function op's bodies (nodes, opset imports) written for at most `model_opset`."""
    fitting = [(_opset_version(imports), nodes) for nodes, imports in bodies
               if _opset_version(imports) <= model_opset]
    return max(fitting, key=lambda pair: pair[0])[1] if fitting else None


def _opset_version(opset_imports, domain: str = "") -> int:
    """The version `opset_imports` give `domain` ("" and "ai.onnx" are one), or 0."""
    aliases = {"", "ai.onnx"} if domain in ("", "ai.onnx") else {domain}
    return next((o.version for o in opset_imports if (o.domain or "") in aliases), 0)


def _default_opset(proto) -> int:
    """The model's version of the default ONNX domain."""
    return _opset_version(proto.opset_import)


def _graph_io(model: OnnxModel) -> tuple[list, list]:
    """An ONNX model's graph inputs (initializers aside) and outputs, as ValueInfoProtos."""
    onnx = _onnx()
    try:
        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and friends
        raise ModelLoadError(f"ONNX model {model} cannot be read as ONNX: {error}") from None
    initializers = {tensor.name for tensor in proto.graph.initializer}
    return [value for value in proto.graph.input if value.name not in initializers], list(proto.graph.output)


def onnx_io_names(model: OnnxModel) -> tuple[list[str], list[str]]:
    """The names of an ONNX model's graph inputs (initializers aside) and outputs."""
    inputs, outputs = _graph_io(model)
    return [value.name for value in inputs], [value.name for value in outputs]


def unsigned_io_types(model: OnnxModel) -> tuple[dict[int, str], dict[int, str]]:
    """The MLIR element types ("ui8", ...) of an ONNX model's unsigned graph inputs and outputs, by
    position: torch-mlir hands them over signless, and the caller's arrays are unsigned."""
    from onnx import TensorProto

    unsigned = {TensorProto.UINT8: "ui8", TensorProto.UINT16: "ui16", TensorProto.UINT32: "ui32",
                TensorProto.UINT64: "ui64"}

    def types(values: list) -> dict[int, str]:
        return {position: unsigned[value.type.tensor_type.elem_type] for position, value in enumerate(values)
                if value.type.tensor_type.elem_type in unsigned}

    inputs, outputs = _graph_io(model)
    return types(inputs), types(outputs)
