"""Malformed ONNX models: valid seeds mutated in their bytes, attributes,
shapes, types and structure, compiled by `nnforge.compile`.

A mutant that compiles is run on random inputs and compared with
onnxruntime on the same model and inputs (the oracle); where onnxruntime
refuses the model and nnforge computes a result, the case is "no_oracle"
and listed for review.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from test.fuzz.checks import Verdict, judge_error, judge_results
from test.fuzz.outcomes import NO_ORACLE

OPSET = 17


def _seeds() -> dict[str, Callable[[], Any]]:
    from onnx import TensorProto, helper, numpy_helper

    f32 = TensorProto.FLOAT

    def model(name: str, nodes, inputs, outputs, initializers=()):
        graph = helper.make_graph(nodes, name, inputs, outputs, list(initializers))
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)

    def value(name, shape, elem=f32):
        return helper.make_tensor_value_info(name, elem, shape)

    def constant(name, array):
        return numpy_helper.from_array(np.asarray(array), name)

    rng = np.random.default_rng(0)

    def weights(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    return {
        "mlp": lambda: model("mlp", [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
            helper.make_node("Add", ["h", "b"], ["s"], name="add"),
            helper.make_node("Relu", ["s"], ["y"], name="relu"),
        ], [value("x", [2, 4])], [value("y", [2, 3])], [constant("w", weights(4, 3)), constant("b", weights(3))]),
        "conv": lambda: model("conv", [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[1, 1],
                             kernel_shape=[3, 3], group=1, dilations=[1, 1]),
            helper.make_node("Relu", ["c"], ["y"], name="relu"),
        ], [value("x", [1, 2, 5, 5])], [value("y", [1, 4, 5, 5])],
            [constant("w", weights(4, 2, 3, 3)), constant("b", weights(4))]),
        "softmax": lambda: model("softmax", [
            helper.make_node("Softmax", ["x"], ["y"], name="softmax", axis=-1),
        ], [value("x", [3, 5])], [value("y", [3, 5])]),
        "gather": lambda: model("gather", [
            helper.make_node("Gather", ["x", "i"], ["g"], name="gather", axis=0),
            helper.make_node("Mul", ["g", "g"], ["y"], name="square"),
        ], [value("x", [6, 4])], [value("y", [3, 4])], [constant("i", np.array([0, 5, 2], np.int64))]),
        "gather_indices": lambda: model("gather_indices", [
            helper.make_node("Gather", ["t", "i"], ["y"], name="gather", axis=0),
        ], [value("i", [3], TensorProto.INT64)], [value("y", [3, 4])], [constant("t", weights(6, 4))]),
        "reshape": lambda: model("reshape", [
            helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape"),
            helper.make_node("Transpose", ["r"], ["y"], name="transpose", perm=[1, 0]),
        ], [value("x", [2, 3, 4])], [value("y", [4, 6])], [constant("s", np.array([6, 4], np.int64))]),
        "pool": lambda: model("pool", [
            helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("ReduceMean", ["p"], ["y"], name="mean", axes=[2, 3], keepdims=1),
        ], [value("x", [1, 3, 6, 6])], [value("y", [1, 3, 1, 1])]),
        "concat": lambda: model("concat", [
            helper.make_node("Concat", ["x", "z"], ["c"], name="concat", axis=1),
            helper.make_node("Slice", ["c", "st", "en", "ax"], ["y"], name="slice"),
        ], [value("x", [2, 3]), value("z", [2, 2])], [value("y", [2, 3])],
            [constant("st", np.array([1], np.int64)), constant("en", np.array([4], np.int64)),
             constant("ax", np.array([1], np.int64))]),
        "gemm": lambda: model("gemm", [
            helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="gemm", transB=1, alpha=0.5, beta=2.0),
        ], [value("x", [3, 4])], [value("y", [3, 5])], [constant("w", weights(5, 4)), constant("b", weights(5))]),
        "layernorm": lambda: model("layernorm", [
            helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], name="ln", axis=-1, epsilon=1e-5),
        ], [value("x", [2, 6])], [value("y", [2, 6])], [constant("g", weights(6)), constant("b", weights(6))]),
        "cast_where": lambda: model("cast_where", [
            helper.make_node("Greater", ["x", "z"], ["m"], name="greater"),
            helper.make_node("Where", ["m", "x", "z"], ["w"], name="where"),
            helper.make_node("Cast", ["w"], ["y"], name="cast", to=TensorProto.INT32),
        ], [value("x", [4, 3]), value("z", [4, 3])], [value("y", [4, 3], TensorProto.INT32)]),
    }


SEEDS = None


def seeds() -> dict[str, Callable[[], Any]]:
    global SEEDS
    if SEEDS is None:
        SEEDS = _seeds()
    return SEEDS


# Values that make attributes wrong: out of range, zero, negative, huge.
_BAD_INTS = (-(2**63), -(2**31), -7, -2, -1, 0, 1, 2, 3, 5, 9, 2**31, 2**62)
_BAD_FLOATS = (float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e38, -1e-45)


def _mutate_attribute(rng: random.Random, proto) -> str:
    from onnx import AttributeProto, helper

    node = rng.choice(list(proto.graph.node))
    choice = rng.randrange(6)
    if not node.attribute or choice == 0:
        name = rng.choice(["axis", "perm", "kernel_shape", "strides", "pads", "group", "to", "epsilon",
                           "keepdims", "transA", "bogus"])
        value = rng.choice([rng.choice(_BAD_INTS), [rng.choice(_BAD_INTS) for _ in range(rng.randrange(5))],
                            rng.choice(_BAD_FLOATS), "x"])
        del_existing = [a for a in node.attribute if a.name == name]
        for attribute in del_existing:
            node.attribute.remove(attribute)
        # An empty list has no type to infer: say it is a list of ints.
        node.attribute.append(helper.make_attribute(name, value, attr_type=AttributeProto.INTS if value == [] else None))
        return f"{node.name}: attribute {name}={value!r}"
    attribute = rng.choice(list(node.attribute))
    if choice == 1:
        node.attribute.remove(attribute)
        return f"{node.name}: attribute {attribute.name} removed"
    if attribute.type == AttributeProto.INT:
        attribute.i = rng.choice(_BAD_INTS)
        return f"{node.name}: {attribute.name}={attribute.i}"
    if attribute.type == AttributeProto.INTS and choice < 4:
        values = [rng.choice(_BAD_INTS) for _ in range(rng.choice([0, 1, len(attribute.ints), len(attribute.ints) + 1]))]
        del attribute.ints[:]
        attribute.ints.extend(values)
        return f"{node.name}: {attribute.name}={values}"
    if attribute.type == AttributeProto.INTS:
        index = rng.randrange(max(1, len(attribute.ints)))
        if attribute.ints:
            attribute.ints[index] = rng.choice(_BAD_INTS)
        return f"{node.name}: {attribute.name}={list(attribute.ints)}"
    if attribute.type == AttributeProto.FLOAT:
        attribute.f = rng.choice(_BAD_FLOATS)
        return f"{node.name}: {attribute.name}={attribute.f}"
    # another type under the same name
    name = attribute.name
    node.attribute.remove(attribute)
    value = rng.choice([1.5, "s", [1.0, 2.0], 3])
    node.attribute.append(helper.make_attribute(name, value))
    return f"{node.name}: {name} retyped as {value!r}"


_ELEMENT_TYPES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 22, 0, 99)


def _mutate_shape_or_type(rng: random.Random, proto) -> str:
    from onnx import TensorProto

    graph = proto.graph
    values = list(graph.input) + list(graph.output)
    choice = rng.randrange(6)
    if choice <= 2 or not graph.initializer:
        info = rng.choice(values)
        tensor = info.type.tensor_type
        if choice == 0:
            tensor.elem_type = rng.choice(_ELEMENT_TYPES)
            return f"{info.name}: element type {tensor.elem_type}"
        dims = tensor.shape.dim
        if choice == 1 and dims:
            dim = rng.randrange(len(dims))
            dims[dim].dim_value = rng.choice([0, 1, 2, 3, 7, 64, -1, -5])
            return f"{info.name}: dimension {dim} = {dims[dim].dim_value}"
        if choice == 1:
            return f"{info.name}: unchanged (scalar)"
        if rng.random() < 0.5 and dims:
            dims.pop(rng.randrange(len(dims)))
            return f"{info.name}: rank lowered to {len(dims)}"
        dims.add().dim_value = rng.choice([1, 2, 3])
        return f"{info.name}: rank raised to {len(dims)}"
    initializer = rng.choice(list(graph.initializer))
    if choice == 3:
        if initializer.dims:
            dim = rng.randrange(len(initializer.dims))
            initializer.dims[dim] = rng.choice([0, 1, 2, 5, 100, -3])
        else:
            initializer.dims.append(2)
        return f"initializer {initializer.name}: dims {list(initializer.dims)} (data unchanged)"
    if choice == 4:
        initializer.data_type = rng.choice([TensorProto.DOUBLE, TensorProto.INT32, TensorProto.FLOAT16,
                                            TensorProto.INT8, TensorProto.BOOL, 0, 77])
        return f"initializer {initializer.name}: data type {initializer.data_type} (bytes unchanged)"
    raw = bytearray(initializer.raw_data)
    cut = rng.randrange(len(raw) + 1) if raw else 0
    initializer.raw_data = bytes(raw[:cut])
    return f"initializer {initializer.name}: raw data cut to {cut} bytes"


def _mutate_structure(rng: random.Random, proto) -> str:
    graph = proto.graph
    nodes = list(graph.node)
    choice = rng.randrange(8)
    node = rng.choice(nodes)
    if choice == 0 and node.input:
        index = rng.randrange(len(node.input))
        node.input[index] = rng.choice(["undefined", "", node.output[0], graph.output[0].name])
        return f"{node.name}: input {index} renamed {node.input[index]!r}"
    if choice == 1 and len(nodes) > 1:
        graph.node.remove(node)
        return f"node {node.name} removed"
    if choice == 2:
        copy = graph.node.add()
        copy.CopyFrom(node)
        return f"node {node.name} duplicated"
    if choice == 3:
        node.op_type = rng.choice(["Relu", "Add", "MatMul", "Softmax", "Conv", "Unknown", "Identity", "Gather",
                                   "Reshape", "Transpose", "Concat", "Split", "Pad", "Expand"])
        return f"{node.name}: op changed to {node.op_type}"
    if choice == 4:
        version = rng.choice([1, 6, 9, 11, 13, 21, 23, 30, 10000])
        proto.opset_import[0].version = version
        return f"opset {version}"
    if choice == 5:
        node.domain = rng.choice(["com.microsoft", "bogus.domain", "ai.onnx.ml"])
        return f"{node.name}: domain {node.domain}"
    if choice == 6 and len(nodes) > 1:
        a, b = rng.sample(range(len(nodes)), 2)
        first, second = type(nodes[a])(), type(nodes[b])()
        first.CopyFrom(nodes[a])
        second.CopyFrom(nodes[b])
        graph.node[a].CopyFrom(second)
        graph.node[b].CopyFrom(first)
        return f"nodes {nodes[a].name} and {nodes[b].name} swapped (order)"
    if rng.random() < 0.5:
        node.input.append(graph.input[0].name)
        return f"{node.name}: an extra input"
    if node.input:
        node.input.pop()
    return f"{node.name}: last input dropped"


def _mutate_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    data = bytearray(data)
    choice = rng.randrange(4)
    if choice == 0:
        count = rng.choice([1, 2, 4, 16])
        for _ in range(count):
            position = rng.randrange(len(data))
            data[position] ^= 1 << rng.randrange(8)
        return bytes(data), f"{count} bits flipped"
    if choice == 1:
        cut = rng.randrange(len(data))
        return bytes(data[:cut]), f"cut to {cut} of {len(data)} bytes"
    if choice == 2:
        position = rng.randrange(len(data))
        value = rng.choice([0x00, 0xFF, 0x7F, 0x80])
        length = rng.choice([1, 4, 8])
        data[position:position + length] = bytes([value]) * length
        return bytes(data), f"{length} bytes at {position} set to {value:#x}"
    position = rng.randrange(len(data))
    chunk = data[position:position + rng.randrange(1, 32)]
    data[position:position] = chunk
    return bytes(data), f"{len(chunk)} bytes at {position} repeated"


def random_inputs(rng: random.Random, signature) -> list[np.ndarray]:
    """Inputs of the compiled model's signature: normal floats, small integers."""
    from nnforge.runtime import numpy_dtype

    generator = np.random.default_rng(rng.randrange(2**32))
    arrays = []
    for spec in signature.inputs:
        shape = tuple(2 if size is None else size for size in spec.shape)
        dtype = numpy_dtype(spec.dtype)
        if dtype.kind == "f":
            arrays.append(generator.standard_normal(shape).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(generator.random(shape) < 0.5)
        else:
            arrays.append(generator.integers(0, 4, shape).astype(dtype))
    return arrays


def compile_and_compare(model: Any, data: bytes, rng: random.Random, what: str) -> Verdict:
    """Compiles `model` (path or proto), runs it, and compares with onnxruntime on `data`."""
    import nnforge

    try:
        compiled = nnforge.compile(model, threads=1)
        inputs = random_inputs(rng, compiled.signature)
        actual = compiled(*inputs)
    except Exception as error:
        return judge_error(error, what)
    try:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4
        session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        expected = session.run(None, dict(zip(names, inputs)))
    except Exception as error:
        return Verdict(NO_ORACLE, what, f"onnxruntime: {str(error).strip().splitlines()[0][:300]}")
    return judge_results(actual, expected, what, rtol=1e-3, atol=1e-4, nan_either=_non_finite_weights(data))


def _non_finite_weights(data: bytes) -> bool:
    """Whether the model's floating-point initializers hold a NaN or an Inf."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    for initializer in model.graph.initializer:
        values = numpy_helper.to_array(initializer)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            return True
    return False


def case(rng: random.Random, folder: Path) -> Verdict:
    import onnx

    name = rng.choice(sorted(seeds()))
    proto = seeds()[name]()
    kind = rng.choice(["bytes", "attribute", "shape", "structure"])
    if kind == "bytes":
        data, change = _mutate_bytes(rng, proto.SerializeToString())
    else:
        mutate = {"attribute": _mutate_attribute, "shape": _mutate_shape_or_type, "structure": _mutate_structure}
        change = mutate[kind](rng, proto)
        data = proto.SerializeToString()
    what = f"{name}: {change}"
    path = folder / f"{name}.onnx"
    path.write_bytes(data)
    if kind != "bytes" and rng.random() < 0.5:
        return compile_and_compare(proto, data, rng, what + " (as a ModelProto)")
    return compile_and_compare(path, data, rng, what)
