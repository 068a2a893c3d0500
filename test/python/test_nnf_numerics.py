"""Numerics of each nnf op: lowered by convert-nnf-to-linalg and upstream
passes to LLVM, run as compiled code, compared with PyTorch.

Tolerances: f32 results within rtol 1e-5, atol 1e-5 of PyTorch's f32
result; f16/bf16 (computed in f32, rounded once) within one to two units in
the last place of the 16-bit type (rtol 1e-2 / 2e-2) of PyTorch's f32 result.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlir import ir

import nnforge

TOLERANCE = {"f32": (1e-5, 1e-5), "f16": (1e-2, 1e-2), "bf16": (2e-2, 2e-2)}
TORCH_DTYPE = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
rng = np.random.default_rng(0)


def compile_function(signature: str, body: str) -> nnforge.CompiledModel:
    """Compiles `func.func @main<signature> { body }`."""
    text = f"func.func @main{signature} {{\n{body}\n}}"
    return nnforge.compile(ir.Module.parse(text, nnforge.context()))


def random(shape: tuple[int, ...], dtype: str = "f32") -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal(shape).astype(np.float32)).to(TORCH_DTYPE[dtype])


def check(actual: torch.Tensor, expected: torch.Tensor, dtype: str = "f32") -> None:
    rtol, atol = TOLERANCE[dtype]
    assert actual.dtype == TORCH_DTYPE[dtype]
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual.float().numpy(), expected.float().numpy(), rtol=rtol, atol=atol)


def tensor_type(shape: tuple, dtype: str) -> str:
    return "tensor<" + "".join(f"{'?' if d is None else d}x" for d in shape) + f"{dtype}>"


ACTIVATIONS = {
    "none": lambda x: x,
    "relu": F.relu,
    "relu6": F.relu6,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "silu": F.silu,
}


@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation(kind):
    t = tensor_type((None, 7), "f32")
    model = compile_function(f"(%x: {t}) -> {t}", f"%y = nnf.activation {kind} %x : {t}\nreturn %y : {t}")
    x = random((5, 7)) * 4
    check(model(x), ACTIVATIONS[kind](x))


@pytest.mark.parametrize(
    "input_shape, static_shape, dtype, bias, activation",
    [
        ((4, 8), (4, 8), "f32", True, "none"),
        ((6, 3, 8), (None, 3, 8), "f32", True, "gelu"),  # dynamic batch, rank 3
        ((8,), (8,), "f32", False, "relu"),  # rank 1
        ((4, 8), (4, 8), "f16", True, "silu"),
        ((5, 8), (None, 8), "bf16", False, "tanh"),
    ],
)
def test_linear(input_shape, static_shape, dtype, bias, activation):
    x_type = tensor_type(static_shape, dtype)
    w_type, b_type = tensor_type((16, 8), dtype), tensor_type((16,), dtype)
    out_type = tensor_type(static_shape[:-1] + (16,), dtype)
    operands = "%x, %w, %b" if bias else "%x, %w"
    types = f"{x_type}, {w_type}, {b_type}" if bias else f"{x_type}, {w_type}"
    arguments = f"%x: {x_type}, %w: {w_type}" + (f", %b: {b_type}" if bias else "")
    model = compile_function(
        f"({arguments}) -> {out_type}",
        f"%y = nnf.linear {operands} activation {activation} : ({types}) -> {out_type}\n"
        f"return %y : {out_type}",
    )
    x, w, b = random(input_shape, dtype), random((16, 8), dtype), random((16,), dtype)
    expected = ACTIVATIONS[activation](F.linear(x.float(), w.float(), b.float() if bias else None))
    check(model(x, w, b) if bias else model(x, w), expected, dtype)


@pytest.mark.parametrize(
    "batch, channels, out_channels, groups, strides, padding, dilations, activation, dtype",
    [
        (2, 3, 8, 1, [1, 1], [0, 0, 0, 0], [1, 1], "none", "f32"),
        (None, 4, 8, 1, [2, 2], [1, 1, 1, 1], [1, 1], "relu", "f32"),  # dynamic batch
        (1, 4, 6, 2, [1, 2], [2, 0, 1, 1], [2, 1], "relu6", "f32"),  # grouped, asymmetric pad
        (1, 8, 8, 8, [1, 1], [1, 1, 1, 1], [1, 1], "none", "f32"),  # depthwise
        (1, 4, 8, 1, [1, 1], [1, 1, 1, 1], [1, 1], "relu", "f32"),  # im2col over 90 = 64 + 26 rows
        (1, 4, 8, 1, [1, 1], [1, 1, 1, 1], [1, 1], "relu", "f16"),
    ],
)
def test_conv2d(batch, channels, out_channels, groups, strides, padding, dilations, activation, dtype):
    height, width, kernel = 9, 10, 3
    run_batch = batch or 3
    x = random((run_batch, channels, height, width), dtype)
    f = random((out_channels, channels // groups, kernel, kernel), dtype)
    b = random((out_channels,), dtype)
    torch_padded = F.pad(x.float(), (padding[1], padding[3], padding[0], padding[2]))
    expected = F.conv2d(torch_padded, f.float(), b.float(), stride=strides, dilation=dilations, groups=groups)
    expected = ACTIVATIONS[activation](expected)
    out_shape = (batch,) + tuple(expected.shape[1:])
    x_type = tensor_type((batch, channels, height, width), dtype)
    f_type, b_type = tensor_type(tuple(f.shape), dtype), tensor_type((out_channels,), dtype)
    out_type = tensor_type(out_shape, dtype)
    model = compile_function(
        f"(%x: {x_type}, %f: {f_type}, %b: {b_type}) -> {out_type}",
        f"%y = nnf.conv2d %x, %f, %b strides {strides} padding {padding} dilations {dilations} "
        f"groups {groups} activation {activation} : ({x_type}, {f_type}, {b_type}) -> {out_type}\n"
        f"return %y : {out_type}",
    )
    check(model(x, f, b), expected, dtype)


@pytest.mark.parametrize(
    "shape, static_shape, axis, dtype",
    [((4, 10), (None, 10), -1, "f32"), ((3, 5, 7), (3, 5, 7), 1, "f32"), ((6, 33), (6, 33), -1, "bf16")],
)
def test_softmax(shape, static_shape, axis, dtype):
    t = tensor_type(static_shape, dtype)
    model = compile_function(f"(%x: {t}) -> {t}", f"%y = nnf.softmax %x axis {axis} : {t}\nreturn %y : {t}")
    x = random(shape, dtype) * 5
    check(model(x), torch.softmax(x.float(), dim=axis), dtype)


@pytest.mark.parametrize(
    "shape, static_shape, axis, affine, dtype",
    [
        ((2, 5, 8), (2, None, 8), -1, True, "f32"),
        ((3, 4, 6), (3, 4, 6), 1, True, "f32"),  # normalizes the last two dims
        ((4, 16), (4, 16), -1, False, "f32"),
        ((4, 16), (4, 16), -1, True, "f16"),
    ],
)
def test_layer_norm(shape, static_shape, axis, affine, dtype):
    normalized = shape[axis:] if axis >= 0 else shape[axis:]
    x = random(shape, dtype) * 3 + 1
    scale, bias = random(normalized, dtype), random(normalized, dtype)
    t = tensor_type(static_shape, dtype)
    p = tensor_type(normalized, dtype)
    if affine:
        signature = f"(%x: {t}, %s: {p}, %b: {p}) -> {t}"
        op = f"%y = nnf.layer_norm %x scale %s bias %b axis {axis} epsilon 1.0e-05 : ({t}, {p}, {p}) -> {t}"
    else:
        signature = f"(%x: {t}) -> {t}"
        op = f"%y = nnf.layer_norm %x axis {axis} epsilon 1.0e-05 : ({t}) -> {t}"
    model = compile_function(signature, f"{op}\nreturn %y : {t}")
    expected = F.layer_norm(
        x.float(), normalized, scale.float() if affine else None, bias.float() if affine else None, 1e-5
    )
    check(model(x, scale, bias) if affine else model(x), expected, dtype)


@pytest.mark.parametrize(
    "mask, causal, scale, dtype",
    [(None, False, None, "f32"), (None, True, 0.3, "f32"), ("float", False, None, "f32"), ("bool", True, None, "f32"),
     (None, True, None, "f16")],
)
def test_attention(mask, causal, scale, dtype):
    q, k, v = random((2, 3, 6, 8), dtype), random((2, 3, 6, 8), dtype), random((2, 3, 6, 4), dtype)
    qt, kt, vt = (tensor_type(tuple(t.shape), dtype) for t in (q, k, v))
    out_type = tensor_type((2, 3, 6, 4), dtype)
    inputs, arguments, types = [q, k, v], f"%q: {qt}, %k: {kt}, %v: {vt}", f"{qt}, {kt}, {vt}"
    attributes = ""
    torch_mask = None
    if mask == "float":
        m = random((6, 6), dtype)
        inputs.append(m)
        torch_mask = m.float()
    elif mask == "bool":
        m = torch.from_numpy(rng.random((1, 6, 6)) > 0.3)
        m[..., 0] = True  # every row keeps a position
        inputs.append(m)
        torch_mask = m
    if mask:
        mt = tensor_type(tuple(m.shape), "i1" if mask == "bool" else dtype)
        arguments += f", %m: {mt}"
        types += f", {mt}"
        attributes += " mask %m"
    if scale is not None:
        attributes += f" scale {scale}"
    if causal:
        attributes += " causal"
        # torch refuses a mask together with is_causal: fold it into the mask.
        causal_mask = torch.ones(6, 6, dtype=torch.bool).tril()
        if torch_mask is None:
            torch_mask = causal_mask
        elif torch_mask.dtype == torch.bool:
            torch_mask = torch_mask & causal_mask
    model = compile_function(
        f"({arguments}) -> {out_type}",
        f"%o = nnf.attention %q, %k, %v{attributes} : ({types}) -> {out_type}\nreturn %o : {out_type}",
    )
    expected = F.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), attn_mask=torch_mask, scale=scale
    )
    check(model(*inputs), expected, dtype)


def test_saved_library_matches_jit(tmp_path):
    t = tensor_type((None, 8), "f32")
    w = tensor_type((4, 8), "f32")
    o = tensor_type((None, 4), "f32")
    model = compile_function(
        f"(%x: {t}, %w: {w}) -> {o}",
        f"%y = nnf.linear %x, %w activation sigmoid : ({t}, {w}) -> {o}\nreturn %y : {o}",
    )
    path = model.save(tmp_path / "linear.so")
    loaded = nnforge.load(path)
    x, weight = random((3, 8)).numpy(), random((4, 8)).numpy()
    np.testing.assert_array_equal(loaded(x, weight), model(x, weight))
    assert loaded.signature == model.signature
