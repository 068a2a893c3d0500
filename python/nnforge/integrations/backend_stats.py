"""What the `torch.compile` backend did: graphs compiled, fallbacks and why.

One process-wide record, read with `stats()` (as re-exported by
`nnforge.integrations.torch_backend`) and cleared with `reset_stats()`.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# The kinds of graph the backend compiles: a graph run without autograd, and
# AOTAutograd's forward and backward graphs of a training step.
KINDS = ("inference", "forward", "backward")

# An op name as nnforge's errors print them (aten.median.dim, torch.aten.mm, ...).
_OP_NAME = re.compile(r"\b((?:torch\.)?(?:aten|prims|onnx)\.[\w.]+)")


@dataclass
class _Record:
    compiled: Counter = field(default_factory=Counter)
    compile_seconds: float = 0.0
    specializations: Counter = field(default_factory=Counter)
    fallbacks: list[dict[str, Any]] = field(default_factory=list)


_lock = threading.Lock()
_record = _Record()


def ops_named_in(reason: str) -> list[str]:
    """The ATen/torch-mlir op names a fallback's reason mentions, in order, once each."""
    return list(dict.fromkeys(_OP_NAME.findall(reason)))


def compiled(kind: str, seconds: float, new_shape: bool) -> None:
    """Counts one graph of `kind` compiled in `seconds`; `new_shape`: a
    recompilation of a graph compiled before for other input shapes."""
    with _lock:
        _record.compiled[kind] += 1
        _record.compile_seconds += seconds
        if new_shape:
            _record.specializations[kind] += 1


def fell_back(kind: str, reason: str) -> None:
    """Records that a graph of `kind` runs eagerly, and why."""
    with _lock:
        _record.fallbacks.append({"graph": kind, "reason": reason, "ops": ops_named_in(reason)})


def stats() -> dict[str, Any]:
    """What the backend did in this process since the last `reset_stats()`.

    `graphs_compiled`: graphs compiled by nnforge per kind (inference,
    forward, backward); `recompiles`: per kind, how many of them were a graph
    compiled again for new input shapes (a last batch of another size);
    `compile_seconds`: time spent compiling them; `fallbacks`: one entry per
    graph running eagerly instead, with its kind, its reason and the ops the
    reason names.
    """
    with _lock:
        return {
            "graphs_compiled": {kind: _record.compiled[kind] for kind in KINDS},
            "recompiles": {kind: _record.specializations[kind] for kind in KINDS},
            "compile_seconds": _record.compile_seconds,
            "fallbacks": [dict(entry) for entry in _record.fallbacks],
        }


def reset_stats() -> None:
    """Clears what `stats()` reports."""
    global _record
    with _lock:
        _record = _Record()
