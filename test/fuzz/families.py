"""The case families, by name: each a function (rng, scratch folder) -> Verdict."""

from __future__ import annotations

from test.fuzz import api_misuse, artifacts, concurrency, ir_mutations, onnx_models, run_inputs
from test.fuzz.checks import Verdict, judge_error

FAMILIES = {
    "onnx": onnx_models.case,
    "ir": ir_mutations.case,
    "inputs": run_inputs.case,
    "artifacts": artifacts.case,
    "concurrency": concurrency.case,
    "api": api_misuse.case,
}


def warm_up() -> None:
    """Imports what most cases need once, before the first case's clock starts."""
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import torch  # noqa: F401

    import nnforge.compiler  # noqa: F401


# What the runner's own test makes a case do (`self_test`), by case index.
SELF_TEST = ("clean", "unclean", "crash", "hang")


def self_test(index: int) -> Verdict:
    """A case that ends as SELF_TEST[index] says: the runner must classify
    each (test/python/test_fuzz.py). Never part of a default run."""
    import os
    import signal
    import time

    from nnforge.errors import ModelLoadError

    kind = SELF_TEST[index % len(SELF_TEST)]
    try:
        if kind == "clean":
            raise ModelLoadError("self-test: a clean error")
        if kind == "unclean":
            raise KeyError("self-test")
    except Exception as error:
        return judge_error(error, f"self-test {kind}")
    if kind == "crash":
        import ctypes

        ctypes.string_at(0)  # a null pointer read: SIGSEGV
    time.sleep(3600)
    raise AssertionError("unreachable")
