"""Which parameters of a PyTorch module are split over the ranks, along which axis.

`sharding="auto"` follows the dataflow of the exported program: linear
layers whose outputs flow, through no other linear layer, into one linear
layer only form a group, split Megatron-style: the first layers by their
output features (weight axis 0, bias axis 0), the last by its input
features (weight axis 1; its bias stays whole), so that the group needs one
all-reduce. fc1 -> activation -> fc2 is such a group, and so is attention
with separate query, key and value projections and an output projection
(split by heads). A packed projection (GPT-2's c_attn: one layer computing
queries, keys and values side by side, then split in equal parts) is split
`Packed`: each part by its heads, each rank holding its heads' queries,
keys and values. A layer whose output is sliced otherwise (reshaped first,
as torch.nn.MultiheadAttention's in_proj) stays whole, as does everything
else. `sharding={name: axis}` splits the named parameters (as
`model.named_parameters()` names them) along the given axes (an integer,
or `Packed`).
"""

from __future__ import annotations

import logging
import operator
from typing import Any, NamedTuple

from nnforge.errors import ArgumentError

log = logging.getLogger("nnforge.compiler")


class ShardingError(ArgumentError):
    """A sharding that cannot split the model over the ranks (an unknown
    parameter, an axis out of range or not divisible by the ranks)."""


class Packed(NamedTuple):
    """A split of a parameter's `axis` holding `parts` equal parts side by side
    (a packed query/key/value projection's weight and bias: axis 0, 3 parts):
    each part is split in blocks over the ranks, and each rank holds its
    block of every part."""

    axis: int
    parts: int


def packed_shape(shape: tuple[int, ...], split: "int | Packed") -> tuple[tuple[int, ...], int]:
    """(the shape the program takes the parameter in, the axis of it split over
    the ranks): a Packed axis is taken as [parts, size / parts], split on the second."""
    if not isinstance(split, Packed):
        return shape, split
    axis = split.axis
    return (*shape[:axis], split.parts, shape[axis] // split.parts, *shape[axis + 1:]), axis + 1


def _check_axis(name: str, shape: tuple[int, ...], axis: Any, ranks: int) -> "int | Packed":
    """`axis` normalized; ShardingError unless it splits `shape` evenly over `ranks`, none empty."""
    parts = 1
    if isinstance(axis, Packed):
        axis, parts = axis
        if not isinstance(parts, int) or isinstance(parts, bool) or parts < 1:
            raise ShardingError(f"sharding[{name!r}]: Packed parts must be a positive integer, not {parts!r}")
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise ShardingError(f"sharding[{name!r}] must be an axis (an integer) or Packed, not {axis!r}")
    if not -len(shape) <= axis < len(shape):
        raise ShardingError(f"sharding[{name!r}] = {axis}: parameter {name} has shape {list(shape)}, "
                            f"no axis {axis}")
    axis %= len(shape)
    if shape[axis] % parts:
        raise ShardingError(f"sharding[{name!r}]: dimension {axis} of parameter {name} (shape {list(shape)}) "
                            f"has size {shape[axis]}, which is not {parts} equal parts")
    size = shape[axis] // parts
    if size % ranks or size < ranks:
        what = f"size {size}" if parts == 1 else f"parts of size {size}"
        raise ShardingError(
            f"sharding[{name!r}] = {axis}: dimension {axis} of parameter {name} (shape {list(shape)}) "
            f"has {what}, which does not split evenly over {ranks} ranks"
        )
    return Packed(axis, parts) if parts > 1 else axis


Names = tuple[str, str | None]  # a linear layer's weight and bias parameters


def _linear_target() -> Any:
    import torch

    return torch.ops.aten.linear.default


def _slicing_targets() -> set:
    """ATen ops that take part of a tensor: a split of features followed by one
    of these (q, k, v = packed projection's thirds) is no split of heads."""
    import torch

    aten = torch.ops.aten
    return {aten.select.int, aten.slice.Tensor, aten.split.Tensor, aten.split_with_sizes.default,
            aten.unbind.int, aten.chunk.default, aten.narrow.default}


def _linear_layers(program: Any) -> dict[Any, Names]:
    """{aten.linear node of the exported `program`: (its weight's parameter name, its bias's or None)}
    for the linear layers whose weight (and bias) are parameters used by that layer only."""
    parameters = program.graph_signature.inputs_to_parameters
    layers = {}
    for node in program.graph.nodes:
        if node.op != "call_function" or node.target is not _linear_target():
            continue
        weight = node.args[1]
        bias = node.args[2] if len(node.args) > 2 else None
        if weight.name not in parameters or (bias is not None and getattr(bias, "name", None) not in parameters):
            continue
        if len(weight.users) != 1 or (bias is not None and len(bias.users) != 1):
            continue  # a parameter shared with another op stays whole
        layers[node] = (parameters[weight.name], parameters[bias.name] if bias is not None else None)
    return layers


def _producers(layer: Any) -> set:
    """The linear layers whose outputs reach `layer`'s input through no other linear layer."""
    found, seen, stack = set(), set(), [layer.args[0]]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if getattr(node, "target", None) is _linear_target():
            found.add(node)
        elif node.op != "placeholder":
            stack.extend(node.all_input_nodes)
    return found


def _parts(layer: Any, features: int) -> int:
    """Into how many equal parts of its last dimension the output of `layer`
    (a linear node with `features` outputs) is split by its users (aten.split
    or aten.chunk, each part used through getitem): 1 where no user slices it,
    0 where one slices it otherwise."""
    import torch

    aten = torch.ops.aten
    slicing = _slicing_targets()
    users = list(layer.users)
    if not any(getattr(user, "target", None) in slicing for user in users):
        return 1
    if len(users) != 1:
        return 0
    (user,) = users
    rank = len(layer.meta["val"].shape) if "val" in layer.meta else None
    arguments = list(user.args[1:]) + [None] * 2
    dim = user.kwargs.get("dim", arguments[1] if arguments[1] is not None else 0)
    if rank is None or dim % rank != rank - 1:
        return 0
    if user.target is aten.split.Tensor and isinstance(arguments[0], int) and features % arguments[0] == 0:
        parts = features // arguments[0]
    elif user.target is aten.split_with_sizes.default and len(set(arguments[0])) == 1:
        parts = len(arguments[0])
    elif user.target is aten.chunk.default and features % arguments[0] == 0:
        parts = arguments[0]
    else:
        return 0
    if any(item.target is not operator.getitem for item in user.users):
        return 0
    return parts if parts > 1 else 0


def _consumers(layer: Any, layers: dict, packed: bool = False) -> set | None:
    """The linear layers that `layer`'s output reaches through no other linear
    layer, as their input; None where it also reaches the program's outputs or
    another operand of a linear layer, or is sliced on the way (`packed`: but
    for the split in parts right after `layer`)."""
    found, seen, stack = set(), set(), [layer]
    slicing = _slicing_targets()
    while stack:
        node = stack.pop()
        for user in node.users:
            if user.op == "output":
                return None
            if getattr(user, "target", None) in slicing and not (packed and node is layer):
                return None
            if getattr(user, "target", None) is _linear_target():
                if user.args[0] is not node or user not in layers:
                    return None
                found.add(user)
            elif user not in seen:
                seen.add(user)
                stack.append(user)
    return found


def _groups(program: Any, shapes: dict[str, tuple[int, ...]]) -> list[tuple[list[tuple[Names, int]], Names]]:
    """(column-split layers with the number of parts their outputs are split in,
    row-split layer) by dataflow: linear layers whose outputs flow only into one
    linear layer, through no other (a Megatron pair: fc1 -> activation -> fc2;
    attention: q, k, v (or one packed projection split in three) -> heads ->
    out-projection), in program order, each layer in one group at most."""
    layers = _linear_layers(program)
    parts = {node: _parts(node, shapes[names[0]][0]) for node, names in layers.items()}
    assigned, groups = set(), []
    for layer in layers:
        producers = _producers(layer)
        if not producers or layer in assigned or producers & assigned or not producers <= set(layers):
            continue
        if any(not parts[producer] or _consumers(producer, layers, parts[producer] > 1) != {layer}
               for producer in producers):
            continue
        ordered = [node for node in layers if node in producers]
        groups.append(([(layers[node], parts[node]) for node in ordered], layers[layer]))
        assigned |= producers | {layer}
    return groups


def _auto(model: Any, example_inputs: tuple, ranks: int) -> list[dict[str, "int | Packed"]]:
    """Shardings to try, best first: every group split; where a group has several
    column-split layers (attention, split by heads), then the pairs alone: heads
    that the ranks do not divide have no sharding through the reshapes around them."""
    from nnforge.importers import torch_frontend

    program, _ = torch_frontend.export(model, example_inputs)
    shapes = {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}
    every: dict[str, int | Packed] = {}
    pairs: dict[str, int | Packed] = {}
    for columns, (row_weight, _) in _groups(program, shapes):
        outputs = [shapes[weight][0] // parts for (weight, _), parts in columns]
        if any(size % ranks for size in outputs):
            log.info("auto sharding: %s and %s stay whole (%s features over %d ranks)",
                     ", ".join(weight for (weight, _), _ in columns), row_weight, outputs, ranks)
            continue
        group: dict[str, int | Packed] = {row_weight: 1}
        for (weight, bias), parts in columns:
            group[weight] = Packed(0, parts) if parts > 1 else 0
            if bias is not None:
                group[bias] = group[weight]
        every.update(group)
        if len(columns) == 1 and columns[0][1] == 1:
            pairs.update(group)
    return [every, pairs] if pairs != every else [every]


def plan(model: Any, example_inputs: tuple, ranks: int, sharding: Any) -> list[dict[str, "int | Packed"]]:
    """Shardings to try, best first, each {parameter name: split axis} for the
    parameters split over `ranks` (the rest are replicated): the one given, or
    those of "auto"."""
    shapes = {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}
    if isinstance(sharding, str) and sharding == "auto":
        choices = _auto(model, example_inputs, ranks)
    elif isinstance(sharding, dict):
        unknown = sorted(set(sharding) - set(shapes))
        if unknown:
            raise ShardingError(f"sharding names parameters the model does not have: {', '.join(map(repr, unknown))} "
                                f"(its parameters: {', '.join(shapes) or 'none'})")
        choices = [dict(sharding)]
    else:
        raise ArgumentError(f"sharding must be 'auto' or a dict {{parameter name: axis}}, not {sharding!r}")
    return [{name: _check_axis(name, shapes[name], axis, ranks) for name, axis in axes.items()} for axes in choices]
