"""`nnforge example`: build a small model in the nnf dialect, compile it, run it, check it."""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from nnforge.cli.models import positive_int

HIDDEN, CLASSES, FEATURES = 128, 10, 64


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "example", help="compile and run a built-in nnf model, checked against numpy", description=__doc__
    )
    parser.add_argument("--batch", type=positive_int, default=4, help="rows of the random input (default 4)")
    parser.add_argument("--print-ir", action="store_true", help="print the nnf module")
    parser.set_defaults(handler=run)


def example_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """The classifier's parameters: fixed random numbers."""
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.standard_normal((HIDDEN, FEATURES), dtype=np.float32) / 8,
        "b1": rng.standard_normal(HIDDEN, dtype=np.float32) / 8,
        "gamma": 1 + rng.standard_normal(HIDDEN, dtype=np.float32) / 10,
        "beta": rng.standard_normal(HIDDEN, dtype=np.float32) / 10,
        "w2": rng.standard_normal((CLASSES, HIDDEN), dtype=np.float32) / 8,
        "b2": rng.standard_normal(CLASSES, dtype=np.float32) / 8,
    }


def build_classifier(weights: dict[str, np.ndarray]):
    """softmax(linear(layer_norm(gelu(linear(x)))) over a dynamic batch, in nnf."""
    from mlir import ir
    from mlir.dialects import arith, func

    import nnforge
    from nnforge.dialects import nnf

    with nnforge.context(), ir.Location.unknown():
        module = ir.Module.create()
        f32 = ir.F32Type.get()
        batch = ir.ShapedType.get_dynamic_size()
        with ir.InsertionPoint(module.body):

            @func.FuncOp.from_py_func(ir.RankedTensorType.get([batch, FEATURES], f32))
            def classifier(x):
                params = {
                    name: arith.constant(
                        ir.RankedTensorType.get(list(value.shape), f32),
                        ir.DenseElementsAttr.get(value),
                    )
                    for name, value in weights.items()
                }
                hidden = nnf.linear(
                    x, params["w1"], bias=params["b1"], activation=nnf.ActivationKind.gelu
                )
                hidden = nnf.layer_norm(
                    hidden, -1, scale=params["gamma"], bias=params["beta"]
                )
                logits = nnf.linear(hidden, params["w2"], bias=params["b2"])
                return nnf.softmax(logits, -1)

        assert module.operation.verify()
        return module


def reference(x: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    """The same classifier in numpy (float64), as PyTorch defines each op."""
    w = {name: value.astype(np.float64) for name, value in weights.items()}
    erf = np.vectorize(math.erf)
    hidden = x.astype(np.float64) @ w["w1"].T + w["b1"]
    hidden = 0.5 * hidden * (1 + erf(hidden / math.sqrt(2)))
    mean = hidden.mean(-1, keepdims=True)
    var = hidden.var(-1, keepdims=True)
    hidden = (hidden - mean) / np.sqrt(var + 1e-5) * w["gamma"] + w["beta"]
    logits = hidden @ w["w2"].T + w["b2"]
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def run(args: argparse.Namespace) -> int:
    import nnforge

    weights = example_weights()
    module = build_classifier(weights)
    if args.print_ir:
        print(module)
    start = time.perf_counter()
    compiled = nnforge.compile(module)
    compile_seconds = time.perf_counter() - start

    x = np.random.default_rng(1).standard_normal((args.batch, FEATURES), dtype=np.float32)
    probabilities = compiled(x)
    expected = reference(x, weights)
    error = float(np.abs(probabilities - expected).max())
    tolerance = 1e-5

    print(f"nnf classifier: x[{args.batch}x{FEATURES}] -> linear+gelu -> layer_norm -> linear -> softmax")
    print(f"compiled in {compile_seconds:.2f} s")
    np.set_printoptions(precision=4, suppress=True)
    print("class probabilities (first row):", probabilities[0])
    print("predicted classes:", probabilities.argmax(-1))
    print(f"max |nnforge - numpy reference| = {error:.2e} (tolerance {tolerance:g})")
    ok = error <= tolerance
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1
