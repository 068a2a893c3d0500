"""Checks of an ONNX model before torch-mlir sees it, worded by cause.

onnx's checker verifies a model's structure, not that its shapes, types and
attribute values make sense together; torch-mlir's conversions assume they
do, and on a model where they do not, they fail far from the cause ("unsupported
ops: torch.aten.mm"), compute from memory they should not read, loop forever
or kill the process. `validate` runs after the opset upgrade and raises
ModelLoadError naming the node, its inputs' shapes and types, and what is
wrong with them:

- every declared dimension is non-negative;
- each node's inputs have types its schema allows, one type per type
  variable (MatMul's A and B are one T);
- attributes are in range: axes within the rank of the input they index,
  positive strides, dilations, kernel sizes and groups, non-negative pads,
  a convolution's channels divisible into its groups;
- onnx's shape inference in strict mode agrees with the model (MatMul's
  inner dimensions, broadcasting, declared output shapes);
- constant indices of gathers and scatters lie within the data they index
  (as onnxruntime checks when it loads a model).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from nnforge.errors import ModelLoadError

# onnx reports a failed inference as "(op_type:X, node name: Y): [Kind] message".
_INFERENCE_FAILURE = re.compile(
    r"\(op_type:(?P<op>[^,]*), node name: (?P<node>[^)]*)\): \[(?P<kind>\w+)\] (?P<message>.*)"
)
# Ops multiplying their first two inputs, whose shapes read best as "a × b".
_PRODUCTS = ("MatMul", "MatMulInteger", "Gemm", "QLinearMatMul", "Einsum")

# Ops whose "axis" attribute indexes input 0 (valid: [-r, r-1]), and the
# ops whose axis may also be r (Flatten: the split point after the last).
_AXIS_OF_INPUT = (
    "Softmax", "LogSoftmax", "Hardmax", "Concat", "Gather", "GatherElements", "ScatterElements",
    "Split", "ArgMax", "ArgMin", "LpNormalization", "Compress", "LayerNormalization", "TopK",
    "CumSum", "Unique", "QuantizeLinear", "DequantizeLinear", "SplitToSequence",
)
_AXIS_UP_TO_RANK = ("Flatten",)
# Attributes listing axes of input 0 (opsets before the axes became inputs).
_AXES_OF_INPUT = ("ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum", "ReduceProd", "ReduceL1",
                  "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "Squeeze")
# Ops with a sliding window: their window attributes must be positive, pads non-negative.
_WINDOWED = ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "AveragePool", "MaxPool",
             "LpPool", "MaxUnpool", "DeformConv", "MaxRoiPool", "Col2Im")
_POSITIVE_ATTRIBUTES = ("strides", "dilations", "kernel_shape", "group")
# Attributes whose schema allows only a few values: (op, attribute) -> values.
_ENUMERATED = {("LpNormalization", "p"): (1, 2)}
# (op type, indices input, data input, axis attribute or None for all leading axes)
_INDEXING = {
    "Gather": (1, 0, "axis"),
    "GatherElements": (1, 0, "axis"),
    "ScatterElements": (1, 0, "axis"),
    "GatherND": (1, 0, None),
    "ScatterND": (1, 0, None),
}


def validate(proto: Any, what: str) -> Any:
    """The model with its shapes inferred; ModelLoadError where it is inconsistent.

    `proto` is a checked, opset-upgraded ModelProto with named nodes (left
    unchanged).
    """
    import onnx

    newest = onnx.defs.onnx_opset_version()
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > newest:
            raise ModelLoadError(f"{what} imports opset {opset.version} of the ONNX operators; onnx "
                                 f"{onnx.__version__} defines them up to opset {newest}")
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as error:
        # Find the cause among the checks below first: their words are better.
        lenient = _lenient_inference(proto)
        _check_model(lenient, what)
        cause = _reworded(str(error), GraphValues(lenient))
        if cause is None:  # inside the body onnx gives a function op: onnx's own limit
            return lenient
        raise ModelLoadError(f"{what} is invalid: {cause}") from None
    except Exception:  # onnx's inference has limits of its own (odd ops): check what it gives
        inferred = _lenient_inference(proto)
    _check_model(inferred, what)
    return inferred


def _lenient_inference(proto: Any) -> Any:
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:
        return proto


def _check_model(proto: Any, what: str) -> None:
    values = GraphValues(proto)
    problems = [*_dimension_problems(proto), *_initializer_problems(proto)]
    for node in proto.graph.node:
        if problems:
            break
        problems = [*_type_problems(proto, node, values), *_attribute_problems(node, values),
                    *_index_problems(node, values)]
    if problems:
        raise ModelLoadError(f"{what} is invalid: {problems[0]}")


class GraphValues:
    """What is known of a graph's values: element types, shapes, constants."""

    def __init__(self, proto: Any):
        from onnx import TensorProto

        graph = proto.graph
        self.nodes = list(graph.node)
        self.element_types: dict[str, int] = {}
        self.shapes: dict[str, list[int | None]] = {}
        for value in [*graph.input, *graph.value_info, *graph.output]:
            if not value.type.HasField("tensor_type"):
                continue
            tensor = value.type.tensor_type
            if tensor.elem_type:
                self.element_types[value.name] = tensor.elem_type
            if tensor.HasField("shape"):
                self.shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        self.constants: dict[str, Any] = {}
        for tensor in graph.initializer:
            self.element_types[tensor.name] = tensor.data_type
            self.shapes[tensor.name] = list(tensor.dims)
            if tensor.data_location != TensorProto.EXTERNAL:
                self.constants[tensor.name] = tensor
        for node in graph.node:
            if node.op_type == "Constant" and node.output and node.attribute and node.attribute[0].name == "value":
                tensor = node.attribute[0].t
                self.constants[node.output[0]] = tensor
                self.element_types[node.output[0]] = tensor.data_type
                self.shapes[node.output[0]] = list(tensor.dims)

    def constant(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        tensor = self.constants.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def rank(self, name: str) -> int | None:
        shape = self.shapes.get(name)
        return None if shape is None else len(shape)

    def describe_shape(self, name: str) -> str:
        shape = self.shapes.get(name)
        return "[?]" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _node(node: Any) -> str:
    return f"node '{node.name}' ({node.op_type})"


def _type_name(element_type: int) -> str:
    from onnx import TensorProto

    try:
        return TensorProto.DataType.Name(element_type).lower()
    except ValueError:
        return f"type {element_type}"


def _dimension_problems(proto: Any) -> list[str]:
    found = []
    graph = proto.graph
    for kind, values in (("input", graph.input), ("output", graph.output), ("value", graph.value_info)):
        for value in values:
            if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
                continue
            for axis, dim in enumerate(value.type.tensor_type.shape.dim):
                if dim.HasField("dim_value") and dim.dim_value < 0:
                    found.append(f"{kind} '{value.name}' declares dimension {axis} as {dim.dim_value}: "
                                 "dimensions are sizes, 0 or more (a dim_param names a dynamic one)")
    return found


# Element types whose size in bytes is not one per element (packed sub-byte
# types, strings, undefined): their data is not checked against their dims.
_UNSIZED_TYPES = (0, 8, 21, 22, 23, 25, 26)


def _initializer_problems(proto: Any) -> list[str]:
    """Initializers whose data does not hold the elements their dims declare
    (onnx's checker rejects too little raw data, not too much; onnxruntime
    rejects both: nnforge read only part of the data)."""
    from onnx import TensorProto, helper

    found = []
    for tensor in proto.graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL or tensor.data_type in _UNSIZED_TYPES:
            continue
        count = int(np.prod(tensor.dims, dtype=np.int64))
        try:
            itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        except (KeyError, ValueError, TypeError):
            continue
        if tensor.HasField("raw_data"):
            size, expected = len(tensor.raw_data), count * itemsize
            unit = "bytes"
        else:
            size = max(len(tensor.float_data), len(tensor.int32_data), len(tensor.int64_data),
                       len(tensor.double_data), len(tensor.uint64_data))
            expected = count * (2 if tensor.data_type in (TensorProto.COMPLEX64, TensorProto.COMPLEX128) else 1)
            unit = "values"
            if size == 0 and count:
                continue  # the checker's case
        if size != expected:
            found.append(f"initializer '{tensor.name}' declares dims {list(tensor.dims)} "
                         f"({expected} {unit} of {TensorProto.DataType.Name(tensor.data_type)}) "
                         f"but holds {size} {unit}")
    return found


def _schema(proto: Any, node: Any):
    import onnx

    domain = node.domain if node.domain not in ("", "ai.onnx") else ""
    aliases = {"", "ai.onnx"} if domain == "" else {domain}
    version = next((o.version for o in proto.opset_import if (o.domain or "") in aliases), 0)
    try:
        return onnx.defs.get_schema(node.op_type, version, domain) if version else None
    except onnx.defs.SchemaError:
        return None


def _formal_inputs(schema: Any, count: int) -> list[Any]:
    """The schema's formal parameter of each of a node's `count` inputs."""
    import onnx

    formal = list(schema.inputs)
    if formal and formal[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic:
        return formal[:-1] + [formal[-1]] * max(0, count - len(formal) + 1)
    return formal[:count]


def _type_problems(proto: Any, node: Any, values: GraphValues) -> list[str]:
    """Inputs of types the node's schema does not allow, or one type variable bound to two types."""
    schema = _schema(proto, node)
    if schema is None:
        return []
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    bound: dict[str, tuple[str, int]] = {}
    for name, formal in zip(node.input, _formal_inputs(schema, len(node.input))):
        element_type = values.element_types.get(name)
        if not name or element_type is None or not formal.is_homogeneous:
            continue
        type_string = f"tensor({_type_name(element_type)})"
        variable = formal.type_str
        permitted = allowed.get(variable)
        if permitted is not None and any(t.startswith("tensor(") for t in permitted) and type_string not in permitted:
            kinds = ", ".join(sorted(t[7:-1] for t in permitted if t.startswith("tensor(")))
            return [f"type mismatch at {_node(node)}: input '{name}' is {_type_name(element_type)}, "
                    f"which {node.op_type} does not take for {formal.name} (it takes {kinds})"]
        if variable in allowed:
            first = bound.setdefault(variable, (name, element_type))
            if first[1] != element_type:
                return [f"type mismatch at {_node(node)}: input '{first[0]}' is {_type_name(first[1])} and "
                        f"input '{name}' is {_type_name(element_type)}; {node.op_type} takes one type for both"]
    return []


def _attribute(node: Any, name: str) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return None


def _out_of_range(axes: Iterable[int], rank: int, upper: int) -> list[int]:
    return [axis for axis in axes if not -rank <= axis <= upper]


def _attribute_problems(node: Any, values: GraphValues) -> list[str]:
    found = []
    rank = values.rank(node.input[0]) if node.input and node.input[0] else None
    if rank is not None:
        axis = _attribute(node, "axis")
        if axis is not None and node.op_type in (*_AXIS_OF_INPUT, *_AXIS_UP_TO_RANK):
            upper = rank if node.op_type in _AXIS_UP_TO_RANK else rank - 1
            if _out_of_range([axis], rank, upper):
                found.append(f"invalid attribute at {_node(node)}: axis {axis} is out of range for input "
                             f"'{node.input[0]}' of shape {values.describe_shape(node.input[0])} "
                             f"(rank {rank}: axis must be in [{-rank}, {upper}])")
        axes = _attribute(node, "axes")
        if axes is not None and node.op_type in _AXES_OF_INPUT:
            bad = _out_of_range(axes, rank, rank - 1)
            if bad:
                found.append(f"invalid attribute at {_node(node)}: axes {bad} out of range for input "
                             f"'{node.input[0]}' of shape {values.describe_shape(node.input[0])} "
                             f"(rank {rank}: axes must be in [{-rank}, {rank - 1}])")
    for (op_type, name), allowed in _ENUMERATED.items():
        value = _attribute(node, name) if node.op_type == op_type else None
        if value is not None and value not in allowed:
            found.append(f"invalid attribute at {_node(node)}: {name} = {value}: must be one of "
                         f"{', '.join(map(str, allowed))}")
    if node.op_type in _WINDOWED:
        for name in _POSITIVE_ATTRIBUTES:
            value = _attribute(node, name)
            listed = [value] if isinstance(value, int) else list(value or [])
            if any(v < 1 for v in listed):
                found.append(f"invalid attribute at {_node(node)}: {name} = {value}: must be positive")
        pads = _attribute(node, "pads")
        if pads is not None and any(p < 0 for p in pads):
            found.append(f"invalid attribute at {_node(node)}: pads = {list(pads)}: must be 0 or more")
        found += _group_problems(node, values)
    return found


def _group_problems(node: Any, values: GraphValues) -> list[str]:
    """A convolution's channels must split evenly into its groups."""
    group = _attribute(node, "group") or 1
    if node.op_type not in ("Conv", "ConvInteger") or len(node.input) < 2 or group < 1:
        return []
    data, weight = values.shapes.get(node.input[0]), values.shapes.get(node.input[1])
    if not data or not weight or len(data) < 2 or len(weight) < 2 or None in (data[1], weight[0], weight[1]):
        return []
    if data[1] != weight[1] * group or weight[0] % group:
        return [f"shape mismatch at {_node(node)}: input {values.describe_shape(node.input[0])} has {data[1]} "
                f"channels, weight {values.describe_shape(node.input[1])} with group = {group} takes "
                f"{weight[1] * group} and makes {weight[0]} (a multiple of the group count)"]
    return []


def _index_problems(node: Any, values: GraphValues) -> list[str]:
    """Constant indices outside the data they index."""
    if node.op_type not in _INDEXING:
        return []
    indices_position, data_position, axis_attribute = _INDEXING[node.op_type]
    if len(node.input) <= max(indices_position, data_position):
        return []
    indices = values.constant(node.input[indices_position])
    shape = values.shapes.get(node.input[data_position])
    if indices is None or shape is None or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
        return []
    if axis_attribute is None:  # GatherND/ScatterND: the last index axis indexes leading data axes
        if indices.ndim == 0 or indices.shape[-1] > len(shape):
            return []
        batch_dims = _attribute(node, "batch_dims") or 0
        checks = [(batch_dims + i, indices[..., i]) for i in range(indices.shape[-1])]
    else:
        axis = _attribute(node, axis_attribute) or 0
        if not -len(shape) <= axis < len(shape):
            return []  # reported as an attribute problem
        checks = [(axis % len(shape), indices)]
    for axis, column in checks:
        size = shape[axis] if axis < len(shape) else None
        if size is None:
            continue
        bad = column[(column < -size) | (column >= size)]
        if bad.size:
            return [f"index out of range at {_node(node)}: constant indices '{node.input[indices_position]}' "
                    f"hold {int(bad.flat[0])}, but axis {axis} of '{node.input[data_position]}' "
                    f"{values.describe_shape(node.input[data_position])} has {size} entries "
                    f"(indices must be in [{-size}, {size - 1}])"]
    return []


def _reworded(message: str, values: GraphValues) -> str | None:
    """onnx's inference failure as "shape mismatch at node 'mm' (MatMul): inputs [4, 5] × [6, 3]: why";
    None for a failure inside a function op's body (onnx's expansion, not the model)."""
    match = _INFERENCE_FAILURE.search(message)
    if match is None:
        return f"shape inference fails: {message.strip().splitlines()[0]}"
    op_type, name, kind = match.group("op").strip(), match.group("node").strip(), match.group("kind")
    reason = match.group("message").strip()
    if "Inference error(s)" in reason:
        return None
    cause = "type mismatch" if kind == "TypeInferenceError" else "shape mismatch"
    if "ttribute" in reason or "'axis'" in reason:
        cause = "invalid attribute"
    node = next((n for n in values.nodes if n.name == name), None)
    inputs = ""
    if node is not None:
        shapes = [values.describe_shape(i) for i in node.input if i]
        separator = " × " if op_type in _PRODUCTS else ", "
        inputs = f": input{'s' if len(shapes) > 1 else ''} {separator.join(shapes)}" if shapes else ""
    return f"{cause} at node '{name}' ({op_type}){inputs}: {reason}"

