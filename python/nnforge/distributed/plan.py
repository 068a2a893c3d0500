"""Which parameters of a PyTorch module are split over the ranks, along which axis.

`sharding="auto"` splits consecutive linear layers Megatron-style: the
first by its output features (weight axis 0, bias axis 0), the second by
its input features (weight axis 1; its bias stays whole), so that the pair
needs one all-reduce. Attention blocks whose query, key and value
projections are separate linear layers (and an output projection after
them) are split by heads the same way. Everything else is replicated.
`sharding={name: axis}` splits the named parameters (as
`model.named_parameters()` names them) along the given axes.
"""

from __future__ import annotations

import logging
from typing import Any

from nnforge.errors import ArgumentError

log = logging.getLogger("nnforge.compiler")


class ShardingError(ArgumentError):
    """A sharding that cannot split the model over the ranks (an unknown
    parameter, an axis out of range or not divisible by the ranks)."""


def _check_axis(name: str, shape: tuple[int, ...], axis: Any, ranks: int) -> int:
    """`axis` normalized; ShardingError unless it splits `shape` evenly over `ranks`, none empty."""
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise ShardingError(f"sharding[{name!r}] must be an axis (an integer), not {axis!r}")
    if not -len(shape) <= axis < len(shape):
        raise ShardingError(f"sharding[{name!r}] = {axis}: parameter {name} has shape {list(shape)}, "
                            f"no axis {axis}")
    axis %= len(shape)
    if shape[axis] % ranks or shape[axis] < ranks:
        raise ShardingError(
            f"sharding[{name!r}] = {axis}: dimension {axis} of parameter {name} (shape {list(shape)}) "
            f"has size {shape[axis]}, which does not split evenly over {ranks} ranks"
        )
    return axis


def _megatron_pairs(model: Any) -> list[tuple[str, str]]:
    """(column-split layer, row-split layer) names: each linear layer and the
    next one that takes its output features, in module order."""
    import torch

    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    pairs, used = [], set()
    for index, (name, module) in enumerate(linears):
        if name in used:
            continue
        following = linears[index + 1:index + 2]
        if following and following[0][1].in_features == module.out_features:
            pairs.append((name, following[0][0]))
            used.update((name, following[0][0]))
    return pairs


def _auto(model: Any, ranks: int) -> dict[str, int]:
    modules = dict(model.named_modules())
    axes: dict[str, int] = {}
    for first, second in _megatron_pairs(model):
        a, b = modules[first], modules[second]
        if a.out_features % ranks:
            log.info("auto sharding: %s and %s stay whole (%d features over %d ranks)",
                     first, second, a.out_features, ranks)
            continue
        prefix_a, prefix_b = f"{first}." if first else "", f"{second}." if second else ""
        axes[f"{prefix_a}weight"] = 0
        if a.bias is not None:
            axes[f"{prefix_a}bias"] = 0
        axes[f"{prefix_b}weight"] = 1
    return axes


def plan(model: Any, ranks: int, sharding: Any) -> dict[str, int]:
    """{parameter name: split axis} for the parameters split over `ranks`; the rest are replicated."""
    shapes = {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}
    if isinstance(sharding, str) and sharding == "auto":
        axes = _auto(model, ranks)
    elif isinstance(sharding, dict):
        unknown = sorted(set(sharding) - set(shapes))
        if unknown:
            raise ShardingError(f"sharding names parameters the model does not have: {', '.join(map(repr, unknown))} "
                                f"(its parameters: {', '.join(shapes) or 'none'})")
        axes = dict(sharding)
    else:
        raise ArgumentError(f"sharding must be 'auto' or a dict {{parameter name: axis}}, not {sharding!r}")
    return {name: _check_axis(name, shapes[name], axis, ranks) for name, axis in axes.items()}
