"""ONNX ops that nnforge's TOSA level spells out as chains, fused back into single nodes.

TOSA has no softmax, local response normalization, grouped convolution or fully connected op, and
its convolutions and pools read exactly the rows their windows cover. So the ONNX written from it
holds, where the source had one node:
- Softmax: ReduceMax, Sub, Exp, ReduceSum, Reciprocal and Mul (or Div);
- LRN: x / (bias + Conv(x * x, a band of alpha / size))^beta (nnforge's ONNX import of LRN);
- a grouped Conv: one Slice of the channels and one Conv per group, then a Concat;
- Gemm: a Reshape to rank 3, a batched MatMul by a constant, a Reshape back, an Add;
- a Conv or pool whose input was cut (Slice) to the rows its strided windows reach, or padded
  by an explicit Pad;
- a Reshape of a Transpose that moves unit axes only, a Reshape of a Reshape;
- LayerNormalization: the mean, the centered square's mean, eps, Sqrt and Reciprocal (or Div);
- a Softmax of an opset before 13 on [N, C, 1, 1]: Reshape, Softmax, Reshape back;
- a MatMul of rank 4 or more, or of two matrices computed at run time (a jax model's weights are
  inputs): Reshapes to rank 3 around TOSA's matmul;
- Gelu with the tanh approximation: Mul, Add, Tanh and the cube as Muls;
- a Gather of rows: a GatherND into the flattened table at ids * W + column, the indices built by Tile,
  Concat, Mul and ReduceSum, negative ids wrapped by a Where.
Other rewrites leave fewer nodes than the source had: a global pool and its flatten as one
reduction, a channel shuffle as a Gather, parallel Convs of one input as one Conv and a Split, Slices that
cover a value once along one axis as a Split, a Concat of activations (not all of them of a Conv) as one
activation after the Concat.
`fuse` rewrites each chain whose intermediate values nothing else uses into the single node, the
weights and attributes recovered from the chain's constants and checked to reproduce it exactly
(a band that is no LRN window stays a convolution). `simplify` calls it once the transposes
between these ops have cancelled.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nnforge.exporters.onnx_edit import Edit, attribute, set_attribute

# Ops whose first input is read through windows (kernel, strides, pads, dilations).
_WINDOWED = ("Conv", "MaxPool", "AveragePool")


def _make(op_type: str, inputs: list[str], output: str, **attributes):
    from onnx import helper

    return helper.make_node(op_type, inputs, [output], **attributes)


def _axes(edit: Edit, node) -> list[int] | None:
    """A reduction's axes (input or attribute), None when they are not constant."""
    if len(node.input) > 1 and node.input[1]:
        axes = edit.constant(node.input[1])
        return None if axes is None else [int(a) for a in axes.reshape(-1)]
    return attribute(node, "axes")


def _softmax(edit: Edit, node) -> bool:
    """Mul(e, Reciprocal(ReduceSum(e))) or Div(e, ReduceSum(e)), e = Exp(x - ReduceMax(x)) -> Softmax."""
    if node.op_type == "Div":
        exp_name, total = node.input[0], edit.single(node.input[1], "ReduceSum")
        inverse = None
    elif node.op_type == "Mul" and len(node.input) == 2:
        for exp_name, other in (node.input, node.input[::-1]):
            inverse = edit.single(other, "Reciprocal")
            total = inverse and edit.single(inverse.input[0], "ReduceSum")
            if total is not None and total.input[0] == exp_name:
                break
    else:
        return False
    exp = edit.producer(exp_name, "Exp")
    if total is None or exp is None or total.input[0] != exp_name or edit.users[exp_name] != 2 \
            or exp_name in edit.outputs:
        return False
    shifted = edit.single(exp.input[0], "Sub")
    maximum = shifted and edit.single(shifted.input[1], "ReduceMax")
    if maximum is None or maximum.input[0] != shifted.input[0]:
        return False
    axes = _axes(edit, total)
    if axes is None or len(axes) != 1 or _axes(edit, maximum) != axes \
            or attribute(total, "keepdims", 1) != 1 or attribute(maximum, "keepdims", 1) != 1:
        return False
    chain = [node, exp, total, shifted, maximum] + ([inverse] if inverse is not None else [])
    edit.replace(chain, [_make("Softmax", [shifted.input[0]], node.output[0], axis=axes[0])])
    return True


def _local_response_normalization(edit: Edit, node) -> bool:
    """x * Reciprocal(Pow(Conv(x * x, band, bias), beta)) (or x / Pow(...)) -> LRN."""
    if node.op_type not in ("Mul", "Div") or len(node.input) != 2:
        return False
    candidates = [(node.input[0], node.input[1], None)]
    if node.op_type == "Mul":
        candidates = [(x, other, edit.single(other, "Reciprocal")) for x, other in (node.input, node.input[::-1])]
    for x, other, inverse in candidates:
        if node.op_type == "Mul" and inverse is None:
            continue
        power = edit.single(inverse.input[0] if inverse is not None else other, "Pow")
        conv = power and edit.single(power.input[0], "Conv")
        squares = conv and edit.single(conv.input[0], "Mul")
        if squares is None or list(squares.input) != [x, x]:
            continue
        beta = edit.constant(power.input[1])
        weights = edit.constant(conv.input[1])
        bias = edit.constant(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(1, np.float32)
        if beta is None or beta.size != 1 or weights is None or bias is None or weights.ndim < 3 \
                or any(size != 1 for size in weights.shape[2:]) or weights.shape[0] != weights.shape[1] \
                or attribute(conv, "group", 1) != 1 or any(s != 1 for s in attribute(conv, "strides") or [1]) \
                or any(attribute(conv, "pads") or [0]) or any(d != 1 for d in attribute(conv, "dilations") or [1]) \
                or attribute(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") \
                or not np.all(bias == bias.reshape(-1)[0]):
            continue
        window = _band(weights.reshape(weights.shape[:2]))
        if window is None:
            continue
        size, scale = window
        edit.replace([node, power, conv, squares] + ([inverse] if inverse is not None else []),
                     [_make("LRN", [x], node.output[0], size=size, alpha=float(scale * size),
                            beta=float(beta.reshape(-1)[0]), bias=float(bias.reshape(-1)[0]))])
        return True
    return False


def _band(matrix: np.ndarray) -> tuple[int, float] | None:
    """(size, value) when `matrix` is `value` on LRN's channel window of `size` (channels
    c - (size - 1) // 2 to c + size // 2 for output channel c) and zero elsewhere, else None."""
    channels = matrix.shape[0]
    middle = matrix[channels // 2]
    nonzero = np.flatnonzero(middle)
    if nonzero.size == 0:
        return None
    scale = float(middle[nonzero[0]])
    below, above = channels // 2 - int(nonzero[0]), int(nonzero[-1]) - channels // 2
    size = below + above + 1
    if below != (size - 1) // 2 or above != size // 2:
        return None
    out, into = np.arange(channels)[:, None], np.arange(channels)[None, :]
    band = (into >= out - (size - 1) // 2) & (into <= out + size // 2)
    if not np.array_equal(matrix, np.where(band, matrix.dtype.type(scale), matrix.dtype.type(0))):
        return None
    return size, scale


def _slice_bounds(edit: Edit, node, rank: int) -> dict[int, tuple[int, int]] | None:
    """A Slice's constant {axis: (start, end)}, None where not constant or stepping."""
    inputs = [edit.constant(name) if name else None for name in node.input[1:]]
    if len(inputs) < 2 or inputs[0] is None or inputs[1] is None:
        return None
    starts, ends = inputs[0].reshape(-1), inputs[1].reshape(-1)
    axes = inputs[2].reshape(-1) if len(inputs) > 2 and inputs[2] is not None else np.arange(starts.size)
    if len(inputs) > 2 and node.input[3] and inputs[2] is None:
        return None
    if len(inputs) > 3 and node.input[4] and (inputs[3] is None or np.any(inputs[3] != 1)):
        return None
    return {int(axis) % rank: (int(start), int(end)) for axis, start, end in zip(axes, starts, ends)}


def _slices_as_split(edit: Edit, node) -> bool:
    """Slices of one value along one axis (steps 1) that together cover it once -> one Split."""
    source = edit.shapes.get(node.input[0]) if node.op_type == "Slice" else None
    if source is None:
        return False
    pieces: dict[int, list[tuple[int, int, object]]] = {}
    for piece in edit.consumers.get(node.input[0], []):
        bounds = _slice_bounds(edit, piece, len(source)) if piece.op_type == "Slice" \
            and piece.input[0] == node.input[0] and id(piece) not in edit.removed else None
        cut = {axis: tuple(min(max(b + source[axis] if b < 0 else b, 0), source[axis]) for b in span)
               for axis, span in (bounds or {}).items()}
        partial = [axis for axis, span in cut.items() if span != (0, source[axis])]
        if len(partial) == 1:
            pieces.setdefault(partial[0], []).append((*cut[partial[0]], piece))
    for axis, parts in pieces.items():
        parts.sort(key=lambda part: part[:2])
        if len(parts) < 2 or parts[0][0] != 0 or parts[-1][1] != source[axis] \
                or any(left[1] != right[0] for left, right in zip(parts, parts[1:])):
            continue
        from onnx import helper

        sizes = edit.array(np.array([end - start for start, end, _ in parts], np.int64), "split")
        edit.replace([piece for _, _, piece in parts],
                     [helper.make_node("Split", [node.input[0], sizes], [piece.output[0] for _, _, piece in parts],
                                       axis=axis)])
        return True
    return False


def _grouped_convolution(edit: Edit, node) -> bool:
    """Concat over channels of Conv(Slice(x, group i's channels)) for each group -> Conv(x, group=g)."""
    if node.op_type != "Concat" or len(node.input) < 2:
        return False
    convs = [edit.single(name, "Conv") for name in node.input]
    slices = [conv and edit.single(conv.input[0], "Slice") for conv in convs]
    if any(s is None for s in slices) or len({s.input[0] for s in slices}) != 1:
        return False
    source = slices[0].input[0]
    shape = edit.shapes.get(source)
    if shape is None or len(shape) < 3 or attribute(node, "axis") % len(shape) != 1:
        return False
    first = convs[0]
    weights = [edit.constant(conv.input[1]) for conv in convs]
    has_bias = [len(conv.input) > 2 and bool(conv.input[2]) for conv in convs]
    biases = [edit.constant(conv.input[2]) if bias else None for conv, bias in zip(convs, has_bias)]
    if any(w is None for w in weights) or len({w.shape for w in weights}) != 1 or len(set(has_bias)) != 1 \
            or (has_bias[0] and any(b is None for b in biases)):
        return False
    attributes = {a.name: attribute(first, a.name) for a in first.attribute}
    if attributes.get("group", 1) != 1 or any({a.name: attribute(conv, a.name) for a in conv.attribute} != attributes
                                              for conv in convs):
        return False
    width = weights[0].shape[1]
    if width * len(convs) != shape[1]:
        return False
    for index, piece in enumerate(slices):
        bounds = _slice_bounds(edit, piece, len(shape))
        if bounds is None:
            return False
        for axis, size in enumerate(shape):
            start, end = bounds.get(axis, (0, size))
            wanted = (index * width, (index + 1) * width) if axis == 1 else (0, size)
            if start != wanted[0] or min(end, size) != wanted[1]:
                return False
    inputs = [source, edit.array(np.concatenate(weights), "weights")]
    if has_bias[0]:
        inputs.append(edit.array(np.concatenate([b.reshape(-1) for b in biases]), "bias"))
    attributes["group"] = len(convs)
    edit.replace([node, *convs, *slices], [_make("Conv", inputs, node.output[0], **attributes)])
    return True


def _window(edit: Edit, node, rank: int) -> tuple[list[int], list[int], list[int], list[int]] | None:
    """(kernel, strides, dilations, pads) of a Conv or pool with explicit padding and floor rounding."""
    if attribute(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or attribute(node, "ceil_mode", 0):
        return None
    if node.op_type == "Conv":
        weights = edit.shapes.get(node.input[1])
        if weights is None:
            return None
        kernel = list(weights[2:])
    else:
        kernel = list(attribute(node, "kernel_shape"))
    spatial = rank - 2
    strides = list(attribute(node, "strides") or [1] * spatial)
    dilations = list(attribute(node, "dilations") or [1] * spatial)
    pads = list(attribute(node, "pads") or [0] * 2 * spatial)
    return kernel, strides, dilations, pads


def _unread_rows(edit: Edit, node) -> bool:
    """A Slice cutting off rows that a Conv or pool's strided windows never reach: the op reads its
    input whole."""
    if node.op_type not in _WINDOWED:
        return False
    piece = edit.single(node.input[0], "Slice")
    whole, cut = piece and edit.shapes.get(piece.input[0]), edit.shapes.get(node.input[0])
    if piece is None or whole is None or cut is None or len(whole) < 3:
        return False
    window = _window(edit, node, len(whole))
    bounds = _slice_bounds(edit, piece, len(whole))
    if window is None or bounds is None or any(start != 0 for start, _ in bounds.values()) \
            or whole[:2] != cut[:2]:
        return False
    kernel, strides, dilations, pads = window
    spatial = len(whole) - 2
    for axis in range(spatial):
        extent = dilations[axis] * (kernel[axis] - 1) + 1
        begin, end = pads[axis], pads[axis + spatial]
        count = (cut[axis + 2] + begin + end - extent) // strides[axis] + 1
        if (whole[axis + 2] + begin + end - extent) // strides[axis] + 1 != count:
            return False
        if (count - 1) * strides[axis] - begin + extent > cut[axis + 2]:  # the last window reads cut padding
            return False
    node.input[0] = piece.input[0]
    edit.replace([piece], [])
    return True


def _explicit_padding(edit: Edit, node) -> bool:
    """Pad (zeros before a Conv or an AveragePool counting pads, -inf before a MaxPool) -> the op's pads."""
    if node.op_type not in _WINDOWED:
        return False
    pad = edit.single(node.input[0], "Pad")
    if pad is None or attribute(pad, "mode", b"constant") not in (b"constant", "constant") or len(pad.input) > 3:
        return False
    amounts = edit.constant(pad.input[1])
    fill = edit.constant(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(1, np.float32)
    if amounts is None or fill is None or fill.size != 1 or amounts.size % 2 or amounts.size < 6:
        return False
    rank = amounts.size // 2
    begins, ends = [int(a) for a in amounts[:rank]], [int(a) for a in amounts[rank:]]
    window = _window(edit, node, rank)
    if window is None or any(begins[:2]) or any(ends[:2]) or min(begins + ends) < 0:
        return False
    pads = window[3]
    value = float(fill.reshape(-1)[0])
    if node.op_type == "MaxPool" and value != -np.inf or node.op_type != "MaxPool" and value != 0.0:
        return False
    if node.op_type == "AveragePool":  # it divides by the padded window only when it counts pads
        if not attribute(node, "count_include_pad", 0) and any(pads):
            return False
        set_attribute(node, "count_include_pad", 1)
    spatial = rank - 2
    set_attribute(node, "pads", [pads[axis] + begins[2 + axis] for axis in range(spatial)]
                  + [pads[spatial + axis] + ends[2 + axis] for axis in range(spatial)])
    node.input[0] = pad.input[0]
    edit.replace([pad], [])
    return True


def _gemm(edit: Edit, node) -> bool:
    """Reshape(MatMul(Reshape(x, [1, M, K]), w[1, K, N]), [M, N]) (+ c) -> Gemm(x as [M, K], w, c)."""
    if node.op_type != "MatMul":
        return False
    weights = edit.constant(node.input[1])
    before = edit.single(node.input[0], "Reshape")
    after = edit.consumers.get(node.output[0], [])
    if weights is None or weights.ndim != 3 or weights.shape[0] != 1 or before is None or len(after) != 1 \
            or after[0].op_type != "Reshape" or edit.users[node.output[0]] != 1 or node.output[0] in edit.outputs:
        return False
    after = after[0]
    source, result = edit.shapes.get(before.input[0]), edit.shapes.get(after.output[0])
    rows, depth = edit.shapes.get(node.input[0], (0, 0, 0))[1:], weights.shape[1]
    if source is None or result is None or len(result) != 2 or rows != (result[0], depth) \
            or result[1] != weights.shape[2] or edit.shapes.get(node.input[0], ())[:1] != (1,):
        return False
    chain, output = [before, node, after], after.output[0]
    operands = [before.input[0], edit.array(weights[0], "weights")]
    added = []
    if source != (result[0], depth):
        operands[0] = edit.fresh("rows")
        added.append(_make("Reshape", [before.input[0], edit.array(np.array([result[0], depth], np.int64), "shape")],
                           operands[0]))
    users = edit.consumers.get(output, [])
    if len(users) == 1 and users[0].op_type == "Add" and edit.users[output] == 1 and output not in edit.outputs:
        add = users[0]
        other = add.input[1] if add.input[0] == output else add.input[0]
        offset = edit.constant(other)
        if offset is not None and offset.ndim <= 2 and np.broadcast_shapes(offset.shape, result) == result:
            operands.append(other)
            chain.append(add)
            output = add.output[0]
    edit.replace(chain, added + [_make("Gemm", operands, output)])
    return True


def _reshape_of_reshape(edit: Edit, node) -> bool:
    """Reshape(Reshape(x)) or Reshape(Transpose(x)) moving unit axes only -> Reshape(x)."""
    if node.op_type != "Reshape" or attribute(node, "allowzero", 0):
        return False
    shape = edit.constant(node.input[1])
    if shape is None or np.any(shape == 0):
        return False
    inner = edit.single(node.input[0], "Reshape", "Transpose")
    if inner is None:
        return False
    if inner.op_type == "Transpose":
        source = edit.shapes.get(inner.input[0])
        perm = attribute(inner, "perm")
        if source is None or perm is None:
            return False
        moved = [axis for axis in perm if source[axis] != 1]
        if moved != sorted(moved):
            return False
    node.input[0] = inner.input[0]
    edit.replace([inner], [])
    return True


def _softmax_through_unit_reshapes(edit: Edit, node) -> bool:
    """Reshape(Softmax(Reshape(x)), shape of x), the reshapes adding or dropping unit axes only
    (a Softmax of an opset before 13 on [N, C, 1, 1], as torch-mlir imports it) -> Softmax(x)."""
    if node.op_type != "Reshape":
        return False
    softmax = edit.single(node.input[0], "Softmax", "LogSoftmax")
    inner = softmax and edit.single(softmax.input[0], "Reshape")
    if inner is None:
        return False
    source, middle = edit.shapes.get(inner.input[0]), edit.shapes.get(inner.output[0])
    if source is None or middle is None or edit.shapes.get(node.output[0]) != source:
        return False
    kept = [axis for axis, size in enumerate(source) if size != 1]
    kept_middle = [axis for axis, size in enumerate(middle) if size != 1]
    axis = attribute(softmax, "axis", -1) % len(middle)
    if [source[a] for a in kept] != [middle[a] for a in kept_middle] or axis not in kept_middle:
        return False
    edit.replace([node, softmax, inner], [_make(softmax.op_type, [inner.input[0]], node.output[0],
                                                 axis=kept[kept_middle.index(axis)])])
    return True


def _global_pool_flattened(edit: Edit, node) -> bool:
    """Reshape([N, C, 1, 1] -> [N, C]) of a pool whose one window covers the whole input ->
    ReduceMean/ReduceMax over the spatial axes, which drops them."""
    if node.op_type != "Reshape":
        return False
    pool = edit.single(node.input[0], "AveragePool", "MaxPool", "GlobalAveragePool", "GlobalMaxPool")
    source = pool and edit.shapes.get(pool.input[0])
    pooled, result = edit.shapes.get(node.input[0]), edit.shapes.get(node.output[0])
    if pool is None or source is None or pooled is None or len(source) < 3 or result != tuple(source[:2]) \
            or pooled != (*source[:2], *[1] * (len(source) - 2)) or len(pool.output) != 1:
        return False
    if pool.op_type in ("AveragePool", "MaxPool") and not _one_window(edit, pool, source):
        return False
    reduce = "ReduceMean" if "Average" in pool.op_type else "ReduceMax"
    axes = edit.array(np.arange(2, len(source), dtype=np.int64), "axes")
    edit.replace([node, pool], [_make(reduce, [pool.input[0], axes], node.output[0], keepdims=0)])
    return True


def _one_window(edit: Edit, pool, source: tuple[int, ...]) -> bool:
    """Whether the AveragePool or MaxPool `pool` of `source` has one window, over all of its input."""
    window = _window(edit, pool, len(source))
    if window is None or attribute(pool, "storage_order", 0) or len(pool.output) != 1:
        return False
    kernel, strides, dilations, pads = window
    spatial = len(source) - 2
    if any(d != 1 for d in dilations) or any(pads[a] < 0 or kernel[a] - pads[a] < source[a + 2]
                                             or (source[a + 2] + pads[a] + pads[a + spatial] - kernel[a])
                                             // strides[a] + 1 != 1 for a in range(spatial)):
        return False
    return not (pool.op_type == "AveragePool" and any(pads) and attribute(pool, "count_include_pad", 0))


def _global_pool(edit: Edit, node) -> bool:
    """An AveragePool or MaxPool with one window over all of its input -> GlobalAveragePool/GlobalMaxPool
    (onnxruntime's windowed kernel is slower on it)."""
    source = edit.shapes.get(node.input[0]) if node.op_type in ("AveragePool", "MaxPool") else None
    if source is None or len(source) < 3 or not _one_window(edit, node, source):
        return False
    edit.replace([node], [_make(f"Global{node.op_type}", [node.input[0]], node.output[0])])
    return True


# The most elements an index array is built for, to recognize a permutation of one axis.
_MAX_PERMUTED_ELEMENTS = 1 << 24


def _axis_permutation(edit: Edit, node) -> bool:
    """Reshape(Transpose(Reshape(x))) back to x's shape that only reorders one axis (a channel
    shuffle) -> Gather(x, order, axis)."""
    if node.op_type != "Reshape":
        return False
    transpose = edit.single(node.input[0], "Transpose")
    inner = transpose and edit.single(transpose.input[0], "Reshape")
    source = inner and edit.shapes.get(inner.input[0])
    middle = inner and edit.shapes.get(inner.output[0])
    if inner is None or source is None or middle is None or edit.shapes.get(node.output[0]) != source \
            or not source or int(np.prod(source)) > _MAX_PERMUTED_ELEMENTS:
        return False
    index = np.arange(int(np.prod(source)), dtype=np.int64)
    moved = index.reshape(middle).transpose(attribute(transpose, "perm")).reshape(source)
    for axis, size in enumerate(source):
        stride = int(np.prod(source[axis + 1:], dtype=np.int64))
        order = moved[(0,) * axis + (slice(None),) + (0,) * (len(source) - axis - 1)] // stride % size
        if size > 1 and np.array_equal(np.take(index.reshape(source), order, axis=axis), moved):
            edit.replace([node, transpose, inner], [_make("Gather", [inner.input[0], edit.array(order, "order")],
                                                          node.output[0], axis=axis)])
            return True
    return False


def _parallel_convolutions(edit: Edit, node) -> bool:
    """Convs with one window reading the same input (each followed by the same activation, or none)
    -> one Conv over the stacked filters (and one activation), then a Split of its channels."""
    if node.op_type != "Conv" or edit.constant(node.input[1]) is None:
        return False
    groups: dict[tuple, list] = {}
    for conv in edit.consumers.get(node.input[0], []):
        if conv.op_type != "Conv" or conv.input[0] != node.input[0] or id(conv) in edit.removed \
                or conv.output[0] in edit.outputs or any(edit.constant(name) is None for name in conv.input[1:] if name):
            continue
        weights = edit.constant(conv.input[1])
        users = edit.consumers.get(conv.output[0], [])
        if any(user.op_type in ("Mul", "Add", "Sub") and any(edit.constant(name) is not None for name in user.input)
               for user in users):  # a scale or offset that folds into this Conv's own filter first
            continue
        activation = users[0] if len(users) == 1 and edit.users[conv.output[0]] == 1 and users[0].op_type in \
            _ACTIVATIONS and users[0].output[0] not in edit.outputs else None
        key = (weights.shape[1:], weights.dtype.str,
               tuple(sorted((a.name, repr(attribute(conv, a.name))) for a in conv.attribute)),
               None if activation is None else (activation.op_type, tuple(a.SerializeToString() for a in
                                                                         activation.attribute)))
        groups.setdefault(key, []).append((conv, activation))
    for members in groups.values():
        activated = members[0][1] is not None
        if len(members) < (2 if activated else 3) or attribute(members[0][0], "group", 1) != 1:
            continue
        convs = [conv for conv, _ in members]
        weights = [edit.constant(conv.input[1]) for conv in convs]
        biases = [edit.constant(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else
                  np.zeros(w.shape[0], w.dtype) for conv, w in zip(convs, weights)]
        first = convs[0]
        merged = edit.fresh(first.output[0])
        added = [_make("Conv", [first.input[0], edit.array(np.concatenate(weights), "weights"),
                                edit.array(np.concatenate([b.reshape(-1) for b in biases]), "bias")], merged,
                       **{a.name: attribute(first, a.name) for a in first.attribute})]
        removed = list(convs)
        if activated:
            activation = members[0][1]
            added.append(_make(activation.op_type, [merged], edit.fresh(activation.output[0]),
                               **{a.name: attribute(activation, a.name) for a in activation.attribute}))
            merged = added[-1].output[0]
            removed += [activation for _, activation in members]
        results = [activation.output[0] if activated else conv.output[0] for conv, activation in members]
        sizes = edit.array(np.array([w.shape[0] for w in weights], np.int64), "split")
        from onnx import helper

        added.append(helper.make_node("Split", [merged, sizes], results, axis=1))
        edit.replace(removed, added)
        return True
    return False



def _activation_after_concat(edit: Edit, node) -> bool:
    """Concat(f(a), f(b), ...) of one elementwise activation f -> f(Concat(a, b, ...)), unless each of a, b, ...
    is a Conv's result only f reads: onnxruntime fuses each Conv with its activation, and an activation after
    the Concat is one more pass over its result."""
    if node.op_type != "Concat" or len(node.input) < 2:
        return False
    activations = [edit.single(name, *_ACTIVATIONS) for name in node.input]
    if any(a is None or len(a.input) != 1 for a in activations) or len(set(map(id, activations))) != len(activations):
        return False
    if all(edit.single(a.input[0], "Conv") is not None for a in activations):
        return False
    kinds = {(a.op_type, tuple(item.SerializeToString() for item in a.attribute)) for a in activations}
    if len(kinds) != 1:
        return False
    joined = edit.fresh(node.output[0])
    first = activations[0]
    edit.replace([node, *activations], [
        _make("Concat", [a.input[0] for a in activations], joined, axis=attribute(node, "axis")),
        _make(first.op_type, [joined], node.output[0], **{a.name: attribute(first, a.name) for a in first.attribute})])
    return True



def _matrix_weights(edit: Edit, node) -> bool:
    """MatMul(a, w) by a constant w of shape [1, ..., 1, K, N], a of rank no less -> MatMul(a, w as [K, N])
    (the same result; TOSA's batched matmul writes its weights so, and onnxruntime runs a 2-D
    constant operand faster)."""
    if node.op_type != "MatMul":
        return False
    weights = edit.constant(node.input[1])
    source = edit.shapes.get(node.input[0])
    if weights is None or weights.ndim < 3 or any(size != 1 for size in weights.shape[:-2]) or source is None \
            or len(source) < weights.ndim:
        return False
    edit.replace([node], [_make("MatMul", [node.input[0], edit.array(weights.reshape(weights.shape[-2:]), "weights")],
                                node.output[0])])
    return True


# Ops that move or regroup elements without arithmetic: a scalar factor passes through them.
_LAYOUT = ("Reshape", "Transpose")


def _scalar_factor(edit: Edit, name: str) -> tuple[object, str, list, np.ndarray] | None:
    """(Mul, its tensor operand, the Reshapes and Transposes from the Mul to `name` (last: the one reading
    the Mul), the factor) when `name` is a Mul of a tensor by a one-element constant through such ops, each
    value used once; None otherwise."""
    chain = []
    node = edit.single(name, "Mul", *_LAYOUT)
    while node is not None and node.op_type in _LAYOUT:
        chain.append(node)
        node = edit.single(node.input[0], "Mul", *_LAYOUT)
    if node is None or len(node.input) != 2:
        return None
    for position in (0, 1):
        factor, tensor = edit.constant(node.input[position]), node.input[1 - position]
        shape = edit.shapes.get(tensor)
        if factor is not None and factor.size == 1 and edit.constant(tensor) is None and shape is not None \
                and edit.shapes.get(node.output[0]) == shape:  # the factor broadcasts into no new axis
            return node, tensor, chain, factor
    return None


def _matmul_operand_scales(edit: Edit, node) -> bool:
    """MatMul(s * a, t * b), s and t one-element constants reaching it through Reshapes and Transposes (an
    attention's 1/sqrt(d) split between queries and keys) -> MatMul(a, b) * (s * t): one Mul, on the MatMul's
    result, where onnxruntime folds it into the product (FusedMatMul's alpha) instead of a pass of its own."""
    if node.op_type != "MatMul":
        return False
    found = [_scalar_factor(edit, name) for name in node.input]
    factors = [hit for hit in found if hit is not None]
    if not factors or (len(factors) == 1 and not factors[0][2]):  # one Mul already beside the MatMul
        return False
    from onnx import NodeProto

    inputs, removed, added = list(node.input), [node], []
    scale = np.ones((), factors[0][3].dtype)
    for position, hit in enumerate(found):
        if hit is None:
            continue
        mul, tensor, chain, factor = hit
        scale = scale * factor.reshape(())
        removed.append(mul)
        if chain:  # the op reading the Mul reads its tensor instead
            reader = NodeProto()
            reader.CopyFrom(chain[-1])
            reader.input[0] = tensor
            removed.append(chain[-1])
            added.append(reader)
        else:
            inputs[position] = tensor
    product = edit.fresh(node.output[0])
    added += [_make("MatMul", inputs, product),
              _make("Mul", [product, edit.array(scale.astype(factors[0][3].dtype), "scale")], node.output[0])]
    edit.replace(removed, added)
    return True

def _mean(edit: Edit, name: str) -> tuple[str, list[int]] | None:
    """(x, axes) when `name` is a mean of x over its last axes kept as units: ReduceMean, or ReduceSum
    times 1/count (as TOSA writes it); None otherwise."""
    node = edit.producer(name, "ReduceMean", "Mul")
    if node is not None and node.op_type == "Mul":
        total = next((edit.producer(n, "ReduceSum") for n in node.input if edit.producer(n, "ReduceSum")), None)
        scale = total and edit.constant(node.input[1] if node.input[0] == total.output[0] else node.input[0])
        if total is None or scale is None or scale.size != 1:
            return None
        node, factor = total, float(scale.reshape(-1)[0])
    else:
        factor = None
    shape = node and edit.shapes.get(node.input[0])
    axes = node and _axes(edit, node)
    if node is None or shape is None or not axes or attribute(node, "keepdims", 1) != 1:
        return None
    axes = sorted(axis % len(shape) for axis in axes)
    if axes != list(range(len(shape) - len(axes), len(shape))):
        return None
    if factor is not None and not np.isclose(factor * np.prod([shape[a] for a in axes]), 1.0, rtol=1e-6):
        return None
    return node.input[0], axes


def _layer_normalization(edit: Edit, node) -> bool:
    """d * Reciprocal(Sqrt(mean(d * d) + eps)) (or d / Sqrt(...)), d = x - mean(x), the means over the
    last axes -> LayerNormalization(x, ones) over them."""
    if node.op_type not in ("Mul", "Div") or len(node.input) != 2:
        return False
    pairs = [(node.input[0], node.input[1])] + ([(node.input[1], node.input[0])] if node.op_type == "Mul" else [])
    for centered, other in pairs:
        inverse = edit.single(other, "Reciprocal") if node.op_type == "Mul" else None
        root = edit.single(inverse.input[0] if inverse is not None else other, "Sqrt") \
            if node.op_type == "Div" or inverse is not None else None
        shifted = root and edit.single(root.input[0], "Add")
        if shifted is None:
            continue
        epsilon = [edit.constant(n) for n in shifted.input]
        variance = shifted.input[0] if epsilon[1] is not None else shifted.input[1]
        epsilon = epsilon[1] if epsilon[1] is not None else epsilon[0]
        square_mean = _mean(edit, variance)
        square = square_mean and edit.producer(square_mean[0], "Mul")
        difference = edit.producer(centered, "Sub")
        center = difference and _mean(edit, difference.input[1])
        if epsilon is None or epsilon.size != 1 or square is None or list(square.input) != [centered, centered] \
                or center is None or center[0] != difference.input[0] or center[1] != square_mean[1] \
                or edit.users[centered] != 3 or centered in edit.outputs:
            continue
        shape = edit.shapes.get(difference.input[0])
        axis = square_mean[1][0]
        chain = [node, root, shifted, square, difference, *([inverse] if inverse is not None else [])]
        chain += _mean_nodes(edit, variance) + _mean_nodes(edit, difference.input[1])
        if any(n is not node and (n.output[0] in edit.outputs or edit.users[n.output[0]] != (3 if n is difference else 1))
               for n in chain):
            continue
        if shape is None or epsilon.dtype != np.float32:
            continue
        ones = edit.array(np.ones(shape[axis:], np.float32), "scale")
        edit.replace(chain, [_make("LayerNormalization", [difference.input[0], ones], node.output[0], axis=axis,
                                   epsilon=float(epsilon.reshape(-1)[0]))])
        return True
    return False


def _layer_normalization_affine(edit: Edit, node) -> bool:
    """Mul or Add of a LayerNormalization's result by a constant over its normalized axes -> its scale or bias."""
    if node.op_type not in ("Mul", "Add") or len(node.input) != 2:
        return False
    for source, other in (node.input, node.input[::-1]):
        norm = edit.single(source, "LayerNormalization")
        constant = edit.constant(other)
        if norm is None or constant is None or len(norm.output) != 1 or any(edit.constant(n) is None
                                                                              for n in norm.input[1:] if n):
            continue
        scale = edit.constant(norm.input[1])
        if constant.dtype != scale.dtype or constant.ndim > scale.ndim and any(
                size != 1 for size in constant.shape[:constant.ndim - scale.ndim]):
            continue
        try:
            vector = np.broadcast_to(constant.reshape(constant.shape[max(0, constant.ndim - scale.ndim):]), scale.shape)
        except ValueError:
            continue
        bias = edit.constant(norm.input[2]) if len(norm.input) > 2 and norm.input[2] else np.zeros_like(scale)
        scale, bias = (scale * vector, bias * vector) if node.op_type == "Mul" else (scale, bias + vector)
        edit.replace([node, norm], [_make("LayerNormalization", [norm.input[0], edit.array(scale, "scale"),
                                                                 edit.array(bias, "bias")], node.output[0],
                                          **{a.name: attribute(norm, a.name) for a in norm.attribute})])
        return True
    return False


def _mean_nodes(edit: Edit, name: str) -> list:
    """The nodes `_mean` matched for `name`."""
    node = edit.producer(name, "ReduceMean", "Mul")
    if node.op_type == "ReduceMean":
        return [node]
    return [node, next(edit.producer(n, "ReduceSum") for n in node.input if edit.producer(n, "ReduceSum"))]



def _constant_gather_nd(edit: Edit, node) -> bool:
    """GatherND by constant indices into one axis, alike for every batch -> a Slice of that axis where the
    indices step evenly, else a Gather."""
    if node.op_type != "GatherND":
        return False
    indices = edit.constant(node.input[1])
    batch = attribute(node, "batch_dims", 0)
    if indices is None or indices.ndim != batch + 2 or indices.shape[-1] != 1:
        return False
    rows = indices.reshape(-1, indices.shape[-2])
    if not np.all(rows == rows[:1]) or rows.shape[1] == 0:
        return False
    picked = rows[0].astype(np.int64)
    steps = np.diff(picked)
    axis = np.array([batch], np.int64)
    if picked.min() >= 0 and (picked.size == 1 or steps[0] > 0 and np.all(steps == steps[0])):
        step = int(steps[0]) if picked.size > 1 else 1
        bounds = [np.array([picked[0]], np.int64), np.array([picked[-1] + 1], np.int64), axis,
                  np.array([step], np.int64)]
        inputs = [node.input[0], *(edit.array(value, hint) for value, hint in zip(bounds, ("starts", "ends", "axes",
                                                                                            "steps")))]
        edit.replace([node], [_make("Slice", inputs, node.output[0])])
    else:
        edit.replace([node], [_make("Gather", [node.input[0], edit.array(picked, "indices")], node.output[0],
                                    axis=batch)])
    return True


# Ops that leave the values of an integer index tensor as they are, in row-major order.
_INDEX_PRESERVING = ("Reshape", "Unsqueeze", "Squeeze", "Cast")


def _through(edit: Edit, name: str, chain: list) -> str:
    """The value `name` is read from through single-use reshapes and casts (appended to `chain`)."""
    while (node := edit.single(name, *_INDEX_PRESERVING)) is not None:
        chain.append(node)
        name = node.input[0]
    return name


def _rows_of_flat_table(edit: Edit, node) -> bool:
    """GatherND(table as [1, R * W, 1], ids[n] * W + w for each (n, w), batch_dims 1), read as [..., N, W]
    (TOSA's gather, as torch-mlir lowers a Gather of rows) -> Gather(table as [R, W], ids, axis 0)."""
    table = edit.constant(node.input[0]) if node.op_type == "GatherND" else None
    if table is None or attribute(node, "batch_dims", 0) != 1 or table.shape[0] != 1 or table.ndim != 3 \
            or table.shape[2] != 1:
        return False
    chain = [node]
    total = edit.single(_through(edit, node.input[1], chain), "ReduceSum")
    scaled = total and edit.single(total.input[0], "Mul")
    strides = scaled and edit.constant(scaled.input[1])
    pairs = scaled and edit.single(_through(edit, scaled.input[0], chain), "Concat")
    columns = pairs and len(pairs.input) == 2 and edit.constant(pairs.input[1])
    if pairs is None or strides is None or columns is None or _axes(edit, total) not in ([1], [-1]) \
            or strides.reshape(-1).size != 2 or strides.reshape(-1)[1] != 1 or columns.ndim < 2:
        return False
    width = int(strides.reshape(-1)[0])
    tile = edit.single(_through(edit, pairs.input[0], chain), "Tile")
    repeats = tile and edit.constant(tile.input[1])
    ids = tile and _through(edit, tile.input[0], chain)
    shape = ids and edit.shapes.get(ids)
    if tile is None or repeats is None or shape is None or list(repeats.reshape(-1)) != [1, width] \
            or table.size % width or columns.shape[-2:] != (width, 1) \
            or not np.array_equal(columns[..., 0], np.broadcast_to(np.arange(width), columns.shape[:-1])):
        return False
    count = int(np.prod(shape))
    if columns.size != count * width or edit.shapes.get(node.output[0]) != (1, count * width, 1) \
            or node.output[0] in edit.outputs \
            or any(user.op_type != "Reshape" for user in edit.consumers.get(node.output[0], [])):
        return False  # the rows come out as [..., N, W], which only a Reshape reads alike
    chain += [total, scaled, pairs, tile]
    rows = edit.array(table.reshape(-1, width), "rows")
    edit.replace(chain, [_make("Gather", [rows, ids], node.output[0], axis=0)])
    return True


def _negative_indices_wrapped(edit: Edit, node) -> bool:
    """Gather(t, Where(ids < 0, ids + n, ids), axis) with n the size of t's axis -> Gather(t, ids, axis), which
    reads a negative index from the end itself (torch-mlir wraps them for TOSA's gather)."""
    wrap = edit.single(node.input[1], "Where") if node.op_type == "Gather" else None
    size = wrap and edit.shapes.get(node.input[0])
    if wrap is None or size is None:
        return False
    condition, wrapped, ids = wrap.input
    chain = [wrap]
    test = edit.single(condition, "Greater", "Less")
    zero = test and edit.constant(test.input[0] if test.op_type == "Greater" else test.input[1])
    shift = edit.single(_through(edit, wrapped, chain), "Add")
    if test is None or zero is None or shift is None or np.any(zero != 0) \
            or list(test.input).index(ids) != (1 if test.op_type == "Greater" else 0):
        return False
    for shifted, amount in (shift.input, shift.input[::-1]):
        constant, casts = edit.constant(amount), []
        if constant is not None and constant.size == 1 and int(constant.reshape(-1)[0]) \
                == size[attribute(node, "axis", 0)] and _through(edit, shifted, casts) == ids:
            node.input[1] = ids
            edit.replace(chain + [test, shift] + casts, [])
            return True
    return False


def _same_shape_reshape(edit: Edit, node) -> bool:
    """A Reshape of a value to its own shape -> the value."""
    shape = edit.shapes.get(node.input[0]) if node.op_type == "Reshape" else None
    if shape is None or shape != edit.shapes.get(node.output[0]) or node.output[0] in edit.outputs:
        return False
    for user in edit.consumers.get(node.output[0], []):
        user.input[:] = [node.input[0] if name == node.output[0] else name for name in user.input]
    edit.replace([node], [])
    return True


def _unit_axes_before(outer: tuple[int, ...], inner: tuple[int, ...]) -> bool:
    """Whether `outer` is `inner` after unit axes."""
    extra = len(outer) - len(inner)
    return extra >= 0 and tuple(outer[extra:]) == tuple(inner) and all(size == 1 for size in outer[:extra])


def _batched_matmul_in_unit_reshapes(edit: Edit, node) -> bool:
    """Reshape(MatMul(Reshape(a), Reshape(b) or a constant)), the reshapes only dropping leading unit axes and
    putting them back on the product, or adding one and taking it off again (TOSA's matmul is rank 3)
    -> MatMul(a, b), which broadcasts them."""
    if node.op_type != "Reshape":
        return False
    matmul = edit.single(node.input[0], "MatMul")
    product, result = edit.shapes.get(node.input[0]), edit.shapes.get(node.output[0])
    if matmul is None or product is None or result is None \
            or not (_unit_axes_before(result, product) or _unit_axes_before(product, result)):
        return False
    operands: list[tuple[tuple[int, ...], str]] = []  # (shape, name) of the new MatMul's inputs
    reshapes = []
    for name in matmul.input:
        reshape = edit.producer(name, "Reshape") if edit.users[name] == list(matmul.input).count(name) \
            and name not in edit.outputs else None
        source = reshape and edit.shapes.get(reshape.input[0])
        reshaped = edit.shapes.get(name)
        if reshaped is None:
            return False
        if source is not None and len(source) == len(result) and (_unit_axes_before(source, reshaped)
                                                                   or _unit_axes_before(reshaped, source)):
            operands.append((source, reshape.input[0]))
            reshapes += [reshape] if reshape not in reshapes else []
        elif edit.constant(name) is not None:
            operands.append((reshaped, name))
        else:
            return False
    try:
        batch = np.broadcast_shapes(*(tuple(shape[:-2]) for shape, _ in operands))
    except ValueError:
        return False
    if not reshapes or (*batch, operands[0][0][-2], operands[1][0][-1]) != tuple(result):
        return False
    edit.replace([node, matmul, *reshapes], [_make("MatMul", [name for _, name in operands], node.output[0])])
    return True


def _matmul_bias_as_vector(edit: Edit, node) -> bool:
    """Add(MatMul(a, w), c), c a constant [1, ..., 1, N] -> c as [N] (the same sum: the product has c's rank or
    more); onnxruntime fuses a MatMul and the Add of a vector into a Gemm."""
    if node.op_type != "Add" or len(node.input) != 2:
        return False
    for product, addend in (node.input, node.input[::-1]):
        bias, shape = edit.constant(addend), edit.shapes.get(product)
        if edit.producer(product, "MatMul") is not None and bias is not None and shape is not None \
                and 1 < bias.ndim <= len(shape) and set(bias.shape[:-1]) == {1}:
            edit.replace([node], [_make("Add", [product, edit.array(bias.reshape(-1), "bias")], node.output[0])])
            return True
    return False


def _scaled(edit: Edit, name: str, value: float):
    """The node computing `name` as Mul(x, value) with a one-element constant: returns (node, x), or None."""
    node = edit.single(name, "Mul")
    for x, factor in (node.input, node.input[::-1]) if node is not None else ():
        constant = edit.constant(factor)
        if constant is not None and constant.size == 1 and np.isclose(float(constant.reshape(-1)[0]), value,
                                                                      rtol=1e-6, atol=0):
            return node, x
    return None


def _cube(edit: Edit, name: str):
    """The nodes computing `name` as x * x * x (two Muls, any order): returns (nodes, x), or None."""
    outer = edit.single(name, "Mul")
    for square_name, x in (outer.input, outer.input[::-1]) if outer is not None else ():
        square = edit.single(square_name, "Mul")
        if square is not None and list(square.input) == [x, x]:
            return [outer, square], x
    return None


def _gelu_tanh(edit: Edit, node) -> bool:
    """Mul(Mul(x, 0.5), Add(Tanh(Mul(Add(x, Mul(x * x * x, 0.044715)), sqrt(2 / pi))), 1)) -> Gelu(x, "tanh")."""
    if node.op_type != "Mul" or len(node.input) != 2:
        return False
    for half_name, one_plus_name in (node.input, node.input[::-1]):
        half = _scaled(edit, half_name, 0.5)
        shifted = edit.single(one_plus_name, "Add")
        if half is None or shifted is None:
            continue
        for tanh_name, one in (shifted.input, shifted.input[::-1]):
            tanh, constant = edit.single(tanh_name, "Tanh"), edit.constant(one)
            if tanh is None or constant is None or constant.size != 1 or float(constant.reshape(-1)[0]) != 1.0:
                continue
            scaled = _scaled(edit, tanh.input[0], float(np.sqrt(2 / np.pi)))
            inner = scaled and edit.single(scaled[1], "Add")
            x = half[1]
            if inner is None or x not in inner.input:
                continue
            cubic = _scaled(edit, inner.input[1] if inner.input[0] == x else inner.input[0], 0.044715)
            cube = cubic and _cube(edit, cubic[1])
            if cube is None or cube[1] != x:
                continue
            chain = [node, half[0], shifted, tanh, scaled[0], inner, cubic[0], *cube[0]]
            edit.replace(chain, [_make("Gelu", [x], node.output[0], approximate="tanh")])
            return True
    return False


# Elementwise activations that a stacked Conv applies to each part alike.
_ACTIVATIONS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "Elu", "Selu", "Softplus")


# Each rewrite is tried on every node, then committed, in this order (slices and pads go before the
# grouped convolutions read their inputs).
FUSIONS: tuple[Callable[[Edit, object], bool], ...] = (
    _unread_rows, _explicit_padding, _reshape_of_reshape, _softmax, _local_response_normalization,
    _grouped_convolution, _gemm, _softmax_through_unit_reshapes, _global_pool_flattened, _axis_permutation,
    _parallel_convolutions, _activation_after_concat, _layer_normalization,
    _layer_normalization_affine, _constant_gather_nd, _global_pool, _matrix_weights,
    _batched_matmul_in_unit_reshapes, _matmul_operand_scales, _gelu_tanh, _slices_as_split, _rows_of_flat_table,
    _negative_indices_wrapped, _same_shape_reshape, _matmul_bias_as_vector,
)


def fuse(model) -> int:
    """Rewrites the chains above into single nodes until none is left; returns how many nodes went."""
    saved = 0
    while True:
        round_saved = 0
        for rewrite in FUSIONS:
            edit = Edit(model)
            for node in list(edit.graph.node):
                if id(node) not in edit.removed:
                    rewrite(edit, node)
            round_saved += edit.commit()
        saved += round_saved
        if not round_saved:
            return saved
