"""Which parameters of a PyTorch module are split over the ranks, along which axis.

`sharding="auto"` follows the dataflow of the exported program: linear
layers whose outputs flow, through no other linear layer, into one linear
layer only form a group, split Megatron-style: the first layers by their
output features (weight axis 0, bias axis 0), the last by its input
features (weight axis 1; its bias stays whole), so that the group needs one
all-reduce. fc1 -> activation -> fc2 is such a group, and so is attention
with separate query, key and value projections and an output projection
(split by heads). A packed projection (one layer computing queries, keys
and values side by side, then cut in equal parts: GPT-2's c_attn split in
three, or torch.nn.MultiheadAttention's in_proj unflattened as [.., 3, E]
and selected) is split `Packed`: each part by its heads, each rank holding
its heads' queries, keys and values. A group whose features or heads the
ranks do not divide stays whole (with a warning), as does a layer whose
output is sliced otherwise, and everything else.
`sharding={name: axis}` splits the named parameters (as
`model.named_parameters()` names them) along the given axes (an integer,
or `Packed`).
"""

from __future__ import annotations

import logging
import math
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


def _shaping_targets() -> set:
    """ATen ops that only reshape, transpose or copy a tensor."""
    import torch

    aten = torch.ops.aten
    return {aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.unflatten.int,
            aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.transpose.int, aten.permute.default,
            aten.contiguous.default, aten.clone.default, aten.alias.default}


def _shape(node: Any) -> tuple[int, ...] | None:
    value = node.meta.get("val") if hasattr(node, "meta") else None
    return tuple(value.shape) if hasattr(value, "shape") else None


def _argument(node: Any, index: int, name: str, default: Any = None) -> Any:
    return node.args[index] if len(node.args) > index else node.kwargs.get(name, default)


def _parts_axis(node: Any, axis: int | None) -> int | None:
    """Where the axis of the parts (`axis`; None: not split off yet, the
    features are the last dimension) is in the output of the shaping op `node`
    (-1: the op mixes it with other dimensions)."""
    import torch

    aten = torch.ops.aten
    before, after = _shape(node.args[0]), _shape(node)
    if before is None or after is None:
        return -1
    if node.target in (aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.unflatten.int):
        if axis is None:
            # [..., F] -> [..., P, F / P, ...]: P parts side by side.
            lead = len(before) - 1
            whole = after[:lead] == before[:lead] and len(after) > len(before)
            if whole and math.prod(after[lead:]) == before[-1]:
                return lead
            return None if after[-1] == before[-1] else -1
        return axis if after[:axis + 1] == before[:axis + 1] else -1
    if node.target is aten.unsqueeze.default:
        dim = node.args[1] % len(after)
        if axis is None:
            return None if dim != len(after) - 1 else -1
        return axis + 1 if dim <= axis else axis
    if node.target in (aten.squeeze.dim, aten.squeeze.dims):
        dims = node.args[1] if isinstance(node.args[1], (list, tuple)) else [node.args[1]]
        removed = {dim % len(before) for dim in dims if before[dim % len(before)] == 1}
        if axis is None:
            return None if len(before) - 1 not in removed else -1
        return -1 if axis in removed else axis - sum(dim < axis for dim in removed)
    if node.target in (aten.transpose.int, aten.permute.default):
        order = list(range(len(before)))
        if node.target is aten.transpose.int:
            first, second = (dim % len(before) for dim in node.args[1:3])
            order[first], order[second] = order[second], order[first]
        else:
            order = [dim % len(before) for dim in node.args[1]]
        if axis is None:
            return None if order[-1] == len(before) - 1 else -1
        return order.index(axis)
    return axis  # contiguous, clone, alias


def _cut_in_parts(node: Any, axis: int | None, features: int) -> int:
    """Into how many equal parts the users of `node` cut it (all of them
    slicing ops): along its last dimension (`axis` None: the F features) by
    aten.split or aten.chunk, each part used through getitem; or along `axis`,
    whose size is the number of parts, by aten.unbind or one aten.select per
    part. 0 where they cut it otherwise."""
    import torch

    aten = torch.ops.aten
    users, shape = list(node.users), _shape(node)
    if shape is None:
        return 0
    if axis is not None:
        parts = shape[axis]
        if len(users) == 1 and users[0].target is aten.unbind.int:
            dim = _argument(users[0], 1, "dim", 0)
            if dim % len(shape) == axis and all(item.target is operator.getitem for item in users[0].users):
                return parts
            return 0
        indices = sorted(_argument(user, 2, "index") % parts for user in users
                         if user.target is aten.select.int and _argument(user, 1, "dim") % len(shape) == axis)
        return parts if indices == list(range(parts)) and len(users) == parts else 0
    if len(users) != 1:
        return 0
    (user,) = users
    arguments = list(user.args[1:]) + [None] * 2
    dim = user.kwargs.get("dim", arguments[1] if arguments[1] is not None else 0)
    if dim % len(shape) != len(shape) - 1:
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


def _parts(layer: Any, features: int) -> tuple[int, set]:
    """Into how many equal parts of its features the output of `layer` (a
    linear node with `features` outputs) is cut, and the nodes whose users cut
    it: `layer` and the reshapes and transposes from it to the cut. The cut
    may come right after `layer` (aten.split or aten.chunk on the last
    dimension: GPT-2's c_attn) or after reshapes that make the parts a
    dimension of their own (view as [..., 3, H, D], permute, unbind: the
    packed projection of torch.nn.MultiheadAttention or timm's attention).
    (1, {layer}) where nothing cuts it, (0, ...) where it is cut otherwise."""
    slicing, shaping = _slicing_targets(), _shaping_targets()
    node, axis, chain = layer, None, {layer}
    while True:
        users = list(node.users)
        if users and all(getattr(user, "target", None) in slicing for user in users):
            return _cut_in_parts(node, axis, features), chain
        if any(getattr(user, "target", None) in slicing for user in users):
            return 0, chain
        if len(users) != 1 or users[0].target not in shaping:
            return 1, {layer}
        axis = _parts_axis(users[0], axis)
        if axis == -1:
            return 1, {layer}
        node = users[0]
        chain.add(node)


def _head_size(layer: Any, features: int) -> int | None:
    """The size of the heads that `layer`'s output (or each of its parts, of
    `features` features) is viewed as: the last dimension of the first reshape
    that makes it smaller than `features`, before anything but reshapes,
    transposes and slices reads it (None: not viewed as heads)."""
    movers = _slicing_targets() | _shaping_targets() | {operator.getitem}
    node = layer
    while node.users:
        nexts = [user for user in node.users if getattr(user, "target", None) in movers]
        if len(nexts) != len(node.users):
            return None
        node = nexts[0]
        shape = _shape(node)
        if shape and shape[-1] < features:
            return shape[-1] if features % shape[-1] == 0 else None
    return None


def _consumers(layer: Any, layers: dict, cut: set) -> set | None:
    """The linear layers that `layer`'s output reaches through no other linear
    layer, as their input; None where it also reaches the program's outputs or
    another operand of a linear layer, or is sliced on the way (but for the
    cut in parts of the nodes `cut`)."""
    found, seen, stack = set(), set(), [layer]
    slicing = _slicing_targets()
    while stack:
        node = stack.pop()
        for user in node.users:
            if user.op == "output":
                return None
            if getattr(user, "target", None) in slicing and node not in cut:
                return None
            if getattr(user, "target", None) is _linear_target():
                if user.args[0] is not node or user not in layers:
                    return None
                found.add(user)
            elif user not in seen:
                seen.add(user)
                stack.append(user)
    return found


class Column(NamedTuple):
    """A column-split layer of a group: its parameters, the number of equal
    parts its output is cut in, and the size of the heads each part is viewed
    as (None: not heads)."""

    names: Names
    parts: int
    head_size: int | None


def _groups(program: Any, shapes: dict[str, tuple[int, ...]]) -> list[tuple[list[Column], Names]]:
    """(column-split layers, row-split layer) by dataflow: linear layers whose
    outputs flow only into one linear layer, through no other (a Megatron pair:
    fc1 -> activation -> fc2; attention: q, k, v (or one packed projection cut
    in three) -> heads -> out-projection), in program order, each layer in one
    group at most."""
    layers = _linear_layers(program)
    cuts = {node: _parts(node, shapes[names[0]][0]) for node, names in layers.items()}
    assigned, groups = set(), []
    for layer in layers:
        producers = _producers(layer)
        if not producers or layer in assigned or producers & assigned or not producers <= set(layers):
            continue
        if any(not cuts[producer][0] or _consumers(producer, layers, cuts[producer][1]) != {layer}
               for producer in producers):
            continue
        columns = []
        for node in layers:
            if node in producers:
                parts = cuts[node][0]
                columns.append(Column(layers[node], parts, _head_size(node, shapes[layers[node][0]][0] // parts)))
        groups.append((columns, layers[layer]))
        assigned |= producers | {layer}
    return groups


def _auto(model: Any, example_inputs: tuple, ranks: int) -> list[dict[str, "int | Packed"]]:
    """Shardings to try, best first: every group split; where a group has several
    column-split layers (attention, split by heads), then the pairs alone (an
    op on the way that does not partition makes the first a CompileError). A
    group whose features or heads the ranks do not divide stays whole, with a
    warning saying why."""
    from nnforge.importers import torch_frontend

    program, _ = torch_frontend.export(model, example_inputs)
    shapes = {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}
    every: dict[str, int | Packed] = {}
    pairs: dict[str, int | Packed] = {}
    for columns, (row_weight, _) in _groups(program, shapes):
        names = ", ".join(column.names[0] for column in columns)
        outputs = [shapes[column.names[0]][0] // column.parts for column in columns]
        heads = sorted({size // column.head_size for column, size in zip(columns, outputs) if column.head_size})
        if any(size % ranks for size in outputs):
            log.warning("auto sharding: %s -> %s stay whole (%s features do not split evenly over %d ranks)",
                        names, row_weight, outputs, ranks)
            continue
        if any(count % ranks for count in heads):
            log.warning("auto sharding: attention %s -> %s stays whole (%s heads do not split evenly over %d ranks)",
                        names, row_weight, " / ".join(map(str, heads)), ranks)
            continue
        group: dict[str, int | Packed] = {}
        for column in columns:
            weight, bias = column.names
            group[weight] = Packed(0, column.parts) if column.parts > 1 else 0
            if bias is not None:
                group[bias] = group[weight]
        group[row_weight] = 1
        every.update(group)
        if len(columns) == 1 and columns[0].parts == 1:
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
