"""Small jax models for the StableHLO frontend's tests: each factory returns
(a `jax.jit`-wrapped function, its example arguments as numpy pytrees).

Weights are arguments (pytrees of arrays), as in jax programs; sizes are
small so that CI stays quick.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _normal(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _dense(rng: np.random.Generator, inputs: int, outputs: int) -> dict:
    return {"w": _normal(rng, inputs, outputs, scale=inputs ** -0.5), "b": _normal(rng, outputs, scale=0.1)}


def mlp_params(rng: np.random.Generator) -> list[dict]:
    return [_dense(rng, 64, 128), _dense(rng, 128, 128), _dense(rng, 128, 10)]


def mlp_apply(params: list[dict], x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def mlp():
    rng = np.random.default_rng(0)
    return jax.jit(mlp_apply), (mlp_params(rng), _normal(rng, 8, 64))


def _conv(x, w, stride: int = 1):
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _batch_norm(x, p, epsilon: float = 1e-5):
    """Batch norm in inference form: the running statistics are parameters."""
    return (x - p["mean"]) * jax.lax.rsqrt(p["var"] + epsilon) * p["scale"] + p["bias"]


def _norm_params(rng: np.random.Generator, channels: int) -> dict:
    return {
        "mean": _normal(rng, channels, scale=0.1),
        "var": (rng.uniform(0.5, 1.5, channels)).astype(np.float32),
        "scale": (1 + _normal(rng, channels, scale=0.1)),
        "bias": _normal(rng, channels, scale=0.1),
    }


def cnn():
    """conv -> batch norm -> relu -> max pool -> conv (stride 2) -> batch norm
    -> relu -> average pool -> dense."""
    rng = np.random.default_rng(1)
    params = {
        "conv1": _normal(rng, 3, 3, 3, 16, scale=(27) ** -0.5),
        "bn1": _norm_params(rng, 16),
        "conv2": _normal(rng, 3, 3, 16, 32, scale=(144) ** -0.5),
        "bn2": _norm_params(rng, 32),
        "head": _dense(rng, 32, 10),
    }

    def apply(params, images):
        x = jax.nn.relu(_batch_norm(_conv(images, params["conv1"]), params["bn1"]))
        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        x = jax.nn.relu(_batch_norm(_conv(x, params["conv2"], stride=2), params["bn2"]))
        x = jnp.mean(x, axis=(1, 2))
        return x @ params["head"]["w"] + params["head"]["b"]

    return jax.jit(apply), (params, _normal(rng, 2, 16, 16, 3))


def _layer_norm(x, p, epsilon: float = 1e-5):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(variance + epsilon) * p["scale"] + p["bias"]


def transformer_params(rng: np.random.Generator, width: int = 64, hidden: int = 128) -> dict:
    return {
        "ln1": {"scale": 1 + _normal(rng, width, scale=0.1), "bias": _normal(rng, width, scale=0.1)},
        "qkv": _dense(rng, width, 3 * width),
        "out": _dense(rng, width, width),
        "ln2": {"scale": 1 + _normal(rng, width, scale=0.1), "bias": _normal(rng, width, scale=0.1)},
        "up": _dense(rng, width, hidden),
        "down": _dense(rng, hidden, width),
    }


def transformer_apply(params, x, mask, heads: int = 4):
    """A pre-norm transformer block; `mask` (batch, sequence) marks real tokens;
    attention is causal and ignores masked keys."""
    batch, sequence, width = x.shape
    h = _layer_norm(x, params["ln1"])
    qkv = h @ params["qkv"]["w"] + params["qkv"]["b"]
    q, k, v = jnp.split(qkv.reshape(batch, sequence, 3, heads, width // heads), 3, axis=2)
    q, k, v = (t.squeeze(2).transpose(0, 2, 1, 3) for t in (q, k, v))
    scores = q @ k.transpose(0, 1, 3, 2) / jnp.sqrt(width // heads).astype(jnp.float32)
    causal = jnp.tril(jnp.ones((sequence, sequence), bool))
    allowed = causal[None, None] & mask[:, None, None, :]
    scores = jnp.where(allowed, scores, -1e9)
    attention = jax.nn.softmax(scores, axis=-1) @ v
    attention = attention.transpose(0, 2, 1, 3).reshape(batch, sequence, width)
    x = x + attention @ params["out"]["w"] + params["out"]["b"]
    h = _layer_norm(x, params["ln2"])
    h = jax.nn.gelu(h @ params["up"]["w"] + params["up"]["b"])
    return x + h @ params["down"]["w"] + params["down"]["b"]


def transformer():
    rng = np.random.default_rng(2)
    mask = np.ones((2, 16), bool)
    mask[1, 11:] = False
    return jax.jit(transformer_apply), (transformer_params(rng), _normal(rng, 2, 16, 64), mask)


def scan_rnn():
    """An Elman RNN over the sequence with `lax.scan`: final state and all outputs."""
    rng = np.random.default_rng(3)
    params = {"input": _normal(rng, 16, 32, scale=0.25), "state": _normal(rng, 32, 32, scale=0.18),
              "bias": _normal(rng, 32, scale=0.1)}

    def apply(params, sequence, state):
        def step(h, x):
            h = jnp.tanh(x @ params["input"] + h @ params["state"] + params["bias"])
            return h, h.sum(-1)

        final, outputs = jax.lax.scan(step, state, sequence.transpose(1, 0, 2))
        return final, outputs.T

    return jax.jit(apply), (params, _normal(rng, 4, 12, 16), np.zeros((4, 32), np.float32))


def cond_fori():
    """`fori_loop` with a trip count from the input and `cond` on a reduction."""
    rng = np.random.default_rng(4)

    def apply(x, steps):
        def body(i, carry):
            y, total = carry
            y = jnp.sin(y) * 0.9 + i.astype(jnp.float32) * 0.01
            return y, total + y.sum()

        y, total = jax.lax.fori_loop(0, steps, body, (x, jnp.float32(0)))
        branch = jnp.clip((total > 0).astype(jnp.int32) + (total > 10).astype(jnp.int32), 0, 2)
        z = jax.lax.switch(branch, [lambda y: -y, lambda y: y * 2, lambda y: jnp.exp(-y * y)], y)
        return jax.lax.cond(z.mean() > 0, lambda z: z + 1, lambda z: z - 1, z), total

    return jax.jit(apply), (_normal(rng, 4, 8), np.int32(5))


def random_model():
    """Noise and dropout from a key argument, and a key made inside the model."""

    def apply(key, x):
        noise_key, dropout_key = jax.random.split(key)
        x = x + 0.1 * jax.random.normal(noise_key, x.shape)
        keep = jax.random.bernoulli(dropout_key, 0.8, x.shape)
        x = jnp.where(keep, x / 0.8, 0.0)
        inner = jax.random.uniform(jax.random.key(42), x.shape[-1:])
        return x * inner

    rng = np.random.default_rng(5)
    return jax.jit(apply), (jax.random.key(7), _normal(rng, 4, 16))


def training_step():
    """One SGD step of an MLP classifier on integer labels: loss and new parameters."""

    def loss(params, x, labels):
        logits = mlp_apply(params, x)
        log_probs = jax.nn.log_softmax(logits)
        return -jnp.take_along_axis(log_probs, labels[:, None], axis=1).mean()

    def step(params, x, labels):
        value, grads = jax.value_and_grad(loss)(params, x, labels)
        return value, jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)

    rng = np.random.default_rng(6)
    labels = rng.integers(0, 10, 8).astype(np.int32)
    return jax.jit(step), (mlp_params(rng), _normal(rng, 8, 64), labels)
