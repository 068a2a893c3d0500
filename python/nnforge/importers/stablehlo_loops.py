"""`stablehlo.sort` and `stablehlo.scatter` as loops on tensors (scf, tensor),
and `dynamic_broadcast_in_dim` as a `linalg.generic` deciding at run time.

Runs in torch-mlir's MLIR, in the importer's child process, before
`stablehlo-legalize-to-linalg` (which leaves both ops in place). Each op
becomes a call of a private function of loops generated for its shapes and
attributes; the op's region (sort's comparator, scatter's update
computation) becomes a private function of 0-d tensors, called per element.
The loops only move elements (`tensor.extract`/`insert`) and compute
indices: everything computed on element values stays in StableHLO ops, in
the region's function, for the upstream pass to convert with its own
semantics (unsigned types, total-order comparisons, ...). The importer
inlines these functions and makes the 0-d code scalar again in nnforge's
MLIR (`linalg-detensorize`).

Both stay at the tensor level (bufferized in place like any loop), so the
rest of the model keeps nnforge's optimized code generation.
- sort: a stable bottom-up merge sort of each row along the sort dimension
  (n log n comparisons; the comparator decides, as StableHLO says).
- scatter: one update element at a time in row-major order of the updates,
  with StableHLO's index mapping (window, inserted, batching dimensions);
  an update whose window does not fit in the operand at its start index is
  skipped whole, as XLA does.
- dynamic_broadcast_in_dim (after the upstream pass, which leaves those
  whose dimensions of unknown size may or may not expand): each element
  read at index 0 along the input dimensions whose size is 1 at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class UnsupportedForm(Exception):
    """An op in a form the rewrites do not handle: `kind` names op and form."""

    def __init__(self, kind: str, location: str):
        super().__init__(f"{kind} at {location}")
        self.kind = kind
        self.location = location


# Ops whose result can be cloned into an outlined region instead of being
# passed to it: constants.
_CONSTANT_OPS = ("stablehlo.constant", "arith.constant")


@dataclass
class _Text:
    """MLIR text of one function body, with fresh SSA names."""

    lines: list[str] = field(default_factory=list)
    count: int = 0
    depth: int = 1

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"%{hint}{self.count}"

    def emit(self, line: str) -> None:
        self.lines.append("  " * self.depth + line)

    def op(self, hint: str, text: str) -> str:
        """Emits `%name = text`; returns the name."""
        name = self.fresh(hint)
        self.emit(f"{name} = {text}")
        return name

    def results(self, hint: str, count: int, text: str) -> list[str]:
        """Emits `%name:count = text`; returns the names of the results."""
        name = self.fresh(hint)
        self.emit(f"{name}:{count} = {text}" if count > 1 else f"{name} = {text}")
        return [f"{name}#{i}" for i in range(count)] if count > 1 else [name]


def _types(values) -> list[str]:
    return [str(value.type) for value in values]


def _joined(items) -> str:
    return ", ".join(items)


class _Shaped:
    """Shape facts of a ranked tensor type, as text."""

    def __init__(self, type_):
        from torch_mlir import ir

        tensor = ir.RankedTensorType(type_)
        self.type = type_
        self.text = str(type_)
        self.element = str(tensor.element_type)
        self.rank = tensor.rank
        self.static = [None if tensor.is_dynamic_dim(i) else tensor.shape[i] for i in range(tensor.rank)]
        self.is_unsigned = self.element.startswith("ui")

    def signless(self) -> _Shaped:
        """The same shape with a signless element type."""
        from torch_mlir import ir

        tensor = ir.RankedTensorType(self.type)
        width = ir.IntegerType(tensor.element_type).width
        return _Shaped(ir.RankedTensorType.get(tensor.shape, ir.IntegerType.get_signless(width)))

    def sizes(self, text: _Text, value: str, constants: dict[int, str]) -> list[str]:
        """An index value per dimension of `value`: constants, or tensor.dim."""
        sizes = []
        for dim, size in enumerate(self.static):
            if size is None:
                at = _index_constant(text, constants, dim)
                sizes.append(text.op("dim", f"tensor.dim {value}, {at} : {self.text}"))
            else:
                sizes.append(_index_constant(text, constants, size))
        return sizes


def _index_constant(text: _Text, constants: dict[int, str], value: int) -> str:
    if value not in constants:
        constants[value] = text.op("c", f"arith.constant {value} : index")
    return constants[value]


def _scalar_tensor_type(element: str) -> str:
    return f"tensor<{element}>"


class LoopFunctions:
    """Rewrites ops of one module into calls of functions generated for them."""

    def __init__(self, module):
        from torch_mlir import ir

        self.module = module
        self.taken = {
            ir.StringAttr(op.attributes["sym_name"]).value
            for op in module.body.operations
            if "sym_name" in op.attributes
        }

    def _symbol(self, stem: str) -> str:
        index = 0
        while f"{stem}_{index}" in self.taken:
            index += 1
        self.taken.add(f"{stem}_{index}")
        return f"{stem}_{index}"

    def outline_region(self, region, stem: str, location):
        """Moves the single block of `region` into a new private function.

        Values the block uses from outside become extra trailing arguments,
        except constants, which are cloned in. Returns (name, argument types,
        result types, the outside values to pass).
        """
        from torch_mlir import ir

        block = region.blocks[0]
        nested = _nested_ops(block)
        defined = {hash(arg) for arg in block.arguments}
        for op in nested:
            defined.update(hash(result) for result in op.results)
            for inner_region in op.regions:
                for inner_block in inner_region.blocks:
                    defined.update(hash(arg) for arg in inner_block.arguments)
        captured: dict[int, ir.Value] = {}
        for op in nested:
            for operand in op.operands:
                if hash(operand) not in defined:
                    captured.setdefault(hash(operand), operand)
        passed = []
        for value in captured.values():
            owner = value.owner
            if isinstance(owner, ir.OpView) and owner.operation.name in _CONSTANT_OPS:
                clone = owner.operation.clone(ip=ir.InsertionPoint.at_block_begin(block))
                replacement = clone.result
            else:
                replacement = block.add_argument(value.type, location)
                passed.append(value)
            for op in nested:
                op.replace_uses_of_with(value, replacement)
        terminator = block.operations[len(block.operations) - 1].operation
        argument_types = [arg.type for arg in block.arguments]
        result_types = [operand.type for operand in terminator.operands]
        name = self._symbol(stem)
        with ir.InsertionPoint(self.module.body), location:
            function = ir.Operation.create(
                "func.func",
                attributes={
                    "sym_name": ir.StringAttr.get(name),
                    "sym_visibility": ir.StringAttr.get("private"),
                    "function_type": ir.TypeAttr.get(ir.FunctionType.get(argument_types, result_types)),
                },
                regions=1,
            )
        block.append_to(function.regions[0])
        with ir.InsertionPoint(terminator), terminator.location:
            ir.Operation.create("func.return", operands=list(terminator.operands))
        terminator.erase()
        return name, argument_types, result_types, passed

    def _add_function(self, text: str, location, callee: str = "", callee_inputs=(), callee_results=()) -> None:
        """Parses a generated function (which may call `callee`) into the module."""
        from torch_mlir import ir

        declaration = (
            f"func.func private @{callee}({_joined(map(str, callee_inputs))}) "
            f"-> ({_joined(map(str, callee_results))})\n" if callee else ""
        )
        with location:
            parsed = ir.Module.parse(f"{declaration}{text}")
        generated = parsed.body.operations[len(parsed.body.operations) - 1].operation
        generated.move_after(self.module.body.operations[len(self.module.body.operations) - 1].operation)

    def _call(self, op, name: str, operands) -> None:
        """Replaces `op` by a call of `name` on `operands`."""
        from torch_mlir import ir

        with ir.InsertionPoint(op), op.location:
            call = ir.Operation.create(
                "func.call",
                results=[result.type for result in op.results],
                operands=list(operands),
                attributes={"callee": ir.FlatSymbolRefAttr.get(name)},
            )
        for old, new in zip(op.results, call.results):
            old.replace_all_uses_with(new)
        op.erase()

    def sort(self, op) -> None:
        """stablehlo.sort -> a call of a merge sort function."""
        from torch_mlir import ir

        _require_ranked(op)
        dimension = ir.IntegerAttr(op.attributes["dimension"]).value
        inputs = list(op.operands)
        comparator, comparator_inputs, comparator_results, captured = self.outline_region(
            op.regions[0], "nnforge_sort_comparator", op.location
        )
        name = self._symbol("nnforge_sort")
        text = _sort_function(name, inputs, dimension, comparator, comparator_inputs, captured)
        self._add_function(text, op.location, comparator, comparator_inputs, comparator_results)
        self._call(op, name, [*inputs, *captured])

    def scatter(self, op) -> None:
        """stablehlo.scatter -> a call of a function updating element by element."""
        from torch_mlir._mlir_libs import _stablehlo

        _require_ranked(op)
        numbers = _stablehlo.ScatterDimensionNumbers(op.attributes["scatter_dimension_numbers"])
        count = len(op.results)
        inputs, indices, updates = (
            list(op.operands)[:count], op.operands[count], list(op.operands)[count + 1:]
        )
        combiner, combiner_inputs, combiner_results, captured = self.outline_region(
            op.regions[0], "nnforge_scatter_update", op.location
        )
        name = self._symbol("nnforge_scatter")
        text = _scatter_function(
            name, inputs, indices, updates, numbers, combiner, combiner_inputs, captured
        )
        self._add_function(text, op.location, combiner, combiner_inputs, combiner_results)
        self._call(op, name, [*inputs, indices, *updates, *captured])

    def dynamic_broadcast(self, op) -> None:
        """stablehlo.dynamic_broadcast_in_dim that the upstream conversion
        leaves (it cannot tell whether a dimension of unknown size expands)
        -> a call of a function deciding per dimension at run time."""
        from torch_mlir import ir

        _require_ranked(op)
        dimensions = list(ir.DenseI64ArrayAttr(op.attributes["broadcast_dimensions"]))
        name = self._symbol("nnforge_broadcast")
        text = _broadcast_function(name, op.operands[0], op.operands[1], op.results[0].type, dimensions)
        self._add_function(text, op.location)
        self._call(op, name, [op.operands[0], op.operands[1]])


def _require_ranked(op) -> None:
    from torch_mlir import ir

    if not all(isinstance(value.type, ir.RankedTensorType) for value in op.operands):
        raise UnsupportedForm(f"{op.name} of unranked tensors", str(op.location))


def _nested_ops(block) -> list:
    """Every op in `block`, at any depth."""
    found = []
    for op in block.operations:
        found.append(op.operation)
        for region in op.operation.regions:
            for inner in region.blocks:
                found += _nested_ops(inner)
    return found


def _signature(name: str, arguments: list[tuple[str, str]], results: list[str]) -> str:
    formatted = _joined(f"{value}: {type_}" for value, type_ in arguments)
    return f"func.func private @{name}({formatted}) -> ({_joined(results)}) {{"


def _call_comparator(text: _Text, callee: str, pairs: list[tuple[str, str]], types: list[str],
                     captured: list[str], callee_inputs) -> str:
    """`callee` on 0-d tensors of the (element, element) `pairs`; the i1 result."""
    arguments = []
    for (left, right), element in zip(pairs, types):
        for scalar in (left, right):
            arguments.append(
                text.op("t", f"tensor.from_elements {scalar} : {_scalar_tensor_type(element)}")
            )
    signature = f"({_joined(map(str, callee_inputs))}) -> tensor<i1>"
    result = text.op("lt", f"func.call @{callee}({_joined(arguments + captured)}) : {signature}")
    return text.op("ltv", f"tensor.extract {result}[] : tensor<i1>")


def _nested_loops(text: _Text, bounds: list[str], zero: str, one: str, carried: list[str],
                  types: list[str], body) -> list[str]:
    """scf.for loops over [0, bound) for each of `bounds`, carrying `carried`;
    `body(indices, carried)` emits the innermost body and returns the values
    to yield. Returns the loop nest's results (`carried` when no loop)."""
    if not bounds:
        return body([], carried)
    index = text.fresh("i")
    names = [text.fresh("acc") for _ in carried]
    iter_args = _joined(f"{name} = {value}" for name, value in zip(names, carried))
    results = text.results(
        "loop", len(carried),
        f"scf.for {index} = {zero} to {bounds[0]} step {one} iter_args({iter_args}) -> ({_joined(types)}) {{",
    )
    text.depth += 1
    inner = _nested_loops(
        text, bounds[1:], zero, one, names, types, lambda indices, values: body([index, *indices], values)
    )
    text.emit(f"scf.yield {_joined(inner)} : {_joined(types)}")
    text.depth -= 1
    text.emit("}")
    return results


def _sort_function(name, inputs, dimension, comparator, comparator_inputs, captured) -> str:
    """A function sorting each row of `inputs` along `dimension` by merge sort."""
    text = _Text()
    shapes = [_Shaped(value.type) for value in inputs]
    types = [shape.text for shape in shapes]
    arguments = [(f"%in{i}", t) for i, t in enumerate(types)]
    captured_names = [f"%cap{i}" for i in range(len(captured))]
    arguments += list(zip(captured_names, _types(captured)))
    constants: dict[int, str] = {}
    zero, one, two = (_index_constant(text, constants, value) for value in (0, 1, 2))
    true = text.op("true", "arith.constant true")
    false = text.op("false", "arith.constant false")
    sizes = shapes[0].sizes(text, "%in0", constants)
    length = sizes[dimension]
    outer = [size for dim, size in enumerate(sizes) if dim != dimension]
    row_types = [f"tensor<{'?' if s.static[dimension] is None else s.static[dimension]}x{s.element}>"
                 for s in shapes]

    def sort_row(indices: list[str], carried: list[str]) -> list[str]:
        offsets = list(indices)
        offsets.insert(dimension, zero)
        slice_sizes = ["1"] * len(sizes)
        slice_sizes[dimension] = length if shapes[0].static[dimension] is None else str(shapes[0].static[dimension])
        units = _joined(["1"] * len(sizes))
        where = f"[{_joined(offsets)}] [{_joined(slice_sizes)}] [{units}]"
        rows, scratch = [], []
        for value, shape, row_type in zip(carried, shapes, row_types):
            rows.append(text.op("row", f"tensor.extract_slice {value}{where} : {shape.text} to {row_type}"))
            dynamic = length if shape.static[dimension] is None else ""
            scratch.append(text.op("scratch", f"tensor.empty({dynamic}) : {row_type}"))
        count = len(inputs)
        loop_types = ["index", *row_types, *row_types]
        width = text.fresh("w")
        sources = [text.fresh("src") for _ in rows]
        targets = [text.fresh("dst") for _ in rows]
        merged = text.results(
            "passes", 1 + 2 * count,
            f"scf.while ({_joined(f'{a} = {b}' for a, b in zip([width, *sources, *targets], [one, *rows, *scratch]))})"
            f" : ({_joined(loop_types)}) -> ({_joined(loop_types)}) {{",
        )
        text.depth += 1
        more = text.op("more", f"arith.cmpi ult, {width}, {length} : index")
        text.emit(f"scf.condition({more}) {_joined([width, *sources, *targets])} : {_joined(loop_types)}")
        text.depth -= 1
        text.emit("} do {")
        text.emit(f"^bb0({_joined(f'{a}: {t}' for a, t in zip([width, *sources, *targets], loop_types))}):")
        text.depth += 1
        doubled = text.op("w2", f"arith.muli {width}, {two} : index")
        low = text.fresh("lo")
        passing = [text.fresh("t") for _ in rows]
        passed = text.results(
            "pass", count,
            f"scf.for {low} = {zero} to {length} step {doubled} iter_args("
            f"{_joined(f'{a} = {b}' for a, b in zip(passing, targets))}) -> ({_joined(row_types)}) {{",
        )
        text.depth += 1
        middle = text.op("mid", f"arith.minui {text.op('m', f'arith.addi {low}, {width} : index')}, {length} : index")
        high = text.op("hi", f"arith.minui {text.op('h', f'arith.addi {low}, {doubled} : index')}, {length} : index")
        position, left, right = text.fresh("k"), text.fresh("l"), text.fresh("r")
        outputs = [text.fresh("u") for _ in rows]
        step_types = ["index", "index", *row_types]
        stepped = text.results(
            "merge", 2 + count,
            f"scf.for {position} = {low} to {high} step {one} iter_args("
            f"{_joined(f'{a} = {b}' for a, b in zip([left, right, *outputs], [low, middle, *passing]))})"
            f" -> ({_joined(step_types)}) {{",
        )
        text.depth += 1
        right_left = text.op("rin", f"arith.cmpi ult, {right}, {high} : index")
        left_left = text.op("lin", f"arith.cmpi ult, {left}, {middle} : index")
        take_right = text.op("takeright", f"scf.if {right_left} -> (i1) {{")
        text.depth += 1
        both = text.op("both", f"scf.if {left_left} -> (i1) {{")
        text.depth += 1
        pairs = []
        for source, shape, row_type in zip(sources, shapes, row_types):
            pairs.append((
                text.op("x", f"tensor.extract {source}[{right}] : {row_type}"),
                text.op("y", f"tensor.extract {source}[{left}] : {row_type}"),
            ))
        less = _call_comparator(text, comparator, pairs, [s.element for s in shapes], captured_names,
                                comparator_inputs)
        text.emit(f"scf.yield {less} : i1")
        text.depth -= 1
        text.emit(f"}} else {{\n{'  ' * (text.depth + 1)}scf.yield {true} : i1\n{'  ' * text.depth}}}")
        text.emit(f"scf.yield {both} : i1")
        text.depth -= 1
        text.emit(f"}} else {{\n{'  ' * (text.depth + 1)}scf.yield {false} : i1\n{'  ' * text.depth}}}")
        taken = text.op("from", f"arith.select {take_right}, {right}, {left} : index")
        written = []
        for source, output, row_type in zip(sources, outputs, row_types):
            element = text.op("v", f"tensor.extract {source}[{taken}] : {row_type}")
            written.append(text.op("ins", f"tensor.insert {element} into {output}[{position}] : {row_type}"))
        next_left = text.op("l", f"arith.addi {left}, {one} : index")
        next_right = text.op("r", f"arith.addi {right}, {one} : index")
        new_left = text.op("nl", f"arith.select {take_right}, {left}, {next_left} : index")
        new_right = text.op("nr", f"arith.select {take_right}, {next_right}, {right} : index")
        text.emit(f"scf.yield {_joined([new_left, new_right, *written])} : {_joined(step_types)}")
        text.depth -= 1
        text.emit("}")
        text.emit(f"scf.yield {_joined(stepped[2:])} : {_joined(row_types)}")
        text.depth -= 1
        text.emit("}")
        # The merged runs become the source of the next pass; the old source its target.
        text.emit(f"scf.yield {_joined([doubled, *passed, *sources])} : {_joined(loop_types)}")
        text.depth -= 1
        text.emit("}")
        sorted_rows = merged[1:1 + count]
        return [
            text.op("put", f"tensor.insert_slice {row} into {value}{where} : {row_type} into {shape.text}")
            for row, value, shape, row_type in zip(sorted_rows, carried, shapes, row_types)
        ]

    results = _nested_loops(text, outer, zero, one, [f"%in{i}" for i in range(len(inputs))], types, sort_row)
    text.emit(f"return {_joined(results)} : {_joined(types)}")
    return "\n".join([_signature(name, arguments, types), *text.lines, "}"])


def _broadcast_function(name, value, shape, result_type, dimensions: list[int]) -> str:
    """A function broadcasting `value` to the sizes in `shape` (StableHLO's
    dynamic_broadcast_in_dim): an input dimension of size 1 expands."""
    text = _Text()
    source, target, sizes_type = _Shaped(value.type), _Shaped(result_type), _Shaped(shape.type)
    constants: dict[int, str] = {}
    zero, one = _index_constant(text, constants, 0), _index_constant(text, constants, 1)
    dynamic_sizes = []
    for dim, size in enumerate(target.static):
        if size is None:
            at = _index_constant(text, constants, dim)
            dynamic_sizes.append(_index_of(text, "%shape", sizes_type, [at], sizes_type.is_unsigned))
    empty = text.op("empty", f"tensor.empty({_joined(dynamic_sizes)}) : {target.text}")
    expands = {}
    for dim, size in enumerate(source.static):
        if size is None:
            extent = text.op("dim", f"tensor.dim %in, {_index_constant(text, constants, dim)} : {source.text}")
            expands[dim] = text.op("isone", f"arith.cmpi eq, {extent}, {one} : index")
    loops = [f"d{dim}" for dim in range(target.rank)]
    identity = f"affine_map<({_joined(loops)}) -> ({_joined(loops)})>"
    iterators = _joined(['"parallel"'] * target.rank)
    result = text.op("bcast", f"linalg.generic {{indexing_maps = [{identity}], iterator_types = [{iterators}]}} "
                               f"outs({empty} : {target.text}) {{")
    text.emit(f"^bb0(%out: {target.element}):")
    text.depth += 1
    indices = []
    for dim, output_dim in enumerate(dimensions):
        if source.static[dim] == 1:
            indices.append(zero)
            continue
        index = text.op("idx", f"linalg.index {output_dim} : index")
        if dim in expands:
            index = text.op("idx", f"arith.select {expands[dim]}, {zero}, {index} : index")
        indices.append(index)
    element = text.op("v", f"tensor.extract %in[{_joined(indices)}] : {source.text}")
    text.emit(f"linalg.yield {element} : {target.element}")
    text.depth -= 1
    text.emit(f"}} -> {target.text}")
    text.emit(f"return {result} : {target.text}")
    signature = _signature(name, [("%in", source.text), ("%shape", sizes_type.text)], [target.text])
    return "\n".join([signature, *text.lines, "}"])


def _index_of(text: _Text, value: str, shape: _Shaped, indices: list[str], unsigned: bool) -> str:
    """The element of a signless integer tensor at `indices` as an index,
    read as unsigned or signed."""
    element = text.op("e", f"tensor.extract {value}[{_joined(indices)}] : {shape.text}")
    cast = "arith.index_castui" if unsigned else "arith.index_cast"
    return text.op("ix", f"{cast} {element} : {shape.element} to index")


def _scatter_function(name, inputs, indices, updates, numbers, combiner, combiner_inputs, captured) -> str:
    """A function applying scatter's update computation element by element."""
    text = _Text()
    input_shapes = [_Shaped(value.type) for value in inputs]
    update_shapes = [_Shaped(value.type) for value in updates]
    index_shape = _Shaped(indices.type)
    types = [shape.text for shape in input_shapes]
    count = len(inputs)
    arguments = [(f"%in{i}", t) for i, t in enumerate(types)]
    arguments.append(("%indices", index_shape.text))
    arguments += [(f"%upd{i}", shape.text) for i, shape in enumerate(update_shapes)]
    captured_names = [f"%cap{i}" for i in range(len(captured))]
    arguments += list(zip(captured_names, _types(captured)))
    constants: dict[int, str] = {}
    zero, one = _index_constant(text, constants, 0), _index_constant(text, constants, 1)
    # Indices of unsigned type are read through a signless view (arith
    # takes signless integers only).
    index_tensor = "%indices"
    unsigned = index_shape.is_unsigned
    if unsigned:
        signless = index_shape.signless()
        index_tensor = text.op("signless", f"tensor.bitcast %indices : {index_shape.text} to {signless.text}")
        index_shape = signless
    operand_sizes = input_shapes[0].sizes(text, "%in0", constants)
    update_sizes = update_shapes[0].sizes(text, "%upd0", constants)
    window_dims = list(numbers.update_window_dims)
    inserted = set(numbers.inserted_window_dims) | set(numbers.input_batching_dims)
    operand_window_dims = [d for d in range(input_shapes[0].rank) if d not in inserted]
    scatter_dims = [d for d in range(update_shapes[0].rank) if d not in window_dims]
    vector_dim = numbers.index_vector_dim

    def update_element(update_index: list[str], carried: list[str]) -> list[str]:
        scatter_index = [update_index[d] for d in scatter_dims]
        start = [zero] * input_shapes[0].rank
        for position, operand_dim in enumerate(numbers.scattered_dims_to_operand_dims):
            at = list(scatter_index)
            if vector_dim < index_shape.rank:
                at.insert(vector_dim, _index_constant(text, constants, position))
            start[operand_dim] = _index_of(text, index_tensor, index_shape, at, unsigned)
        full = list(start)
        for operand_dim, index_dim in zip(numbers.input_batching_dims, numbers.scatter_indices_batching_dims):
            full[operand_dim] = scatter_index[index_dim if index_dim < vector_dim else index_dim - 1]
        window_sizes = {d: one for d in range(input_shapes[0].rank)}
        for operand_dim, update_dim in zip(operand_window_dims, window_dims):
            full[operand_dim] = text.op("at", f"arith.addi {full[operand_dim]}, {update_index[update_dim]} : index")
            window_sizes[operand_dim] = update_sizes[update_dim]
        valid = None
        for operand_dim in numbers.scattered_dims_to_operand_dims:
            last = text.op("last", f"arith.subi {operand_sizes[operand_dim]}, {window_sizes[operand_dim]} : index")
            low = text.op("ge", f"arith.cmpi sge, {start[operand_dim]}, {zero} : index")
            high = text.op("le", f"arith.cmpi sle, {start[operand_dim]}, {last} : index")
            both = text.op("in", f"arith.andi {low}, {high} : i1")
            valid = both if valid is None else text.op("ok", f"arith.andi {valid}, {both} : i1")
        if valid is None:
            valid = text.op("true", "arith.constant true")
        results = text.results("upd", count, f"scf.if {valid} -> ({_joined(types)}) {{")
        text.depth += 1
        arguments_ = []
        for value, shape in zip(carried, input_shapes):
            current = text.op("cur", f"tensor.extract {value}[{_joined(full)}] : {shape.text}")
            arguments_.append(text.op("t", f"tensor.from_elements {current} : tensor<{shape.element}>"))
        for position, shape in enumerate(update_shapes):
            new = text.op("new", f"tensor.extract %upd{position}[{_joined(update_index)}] : {shape.text}")
            arguments_.append(text.op("t", f"tensor.from_elements {new} : tensor<{shape.element}>"))
        signature = (f"({_joined(map(str, combiner_inputs))}) -> "
                     f"({_joined(f'tensor<{s.element}>' for s in input_shapes)})")
        combined = text.results(
            "comb", count, f"func.call @{combiner}({_joined(arguments_ + captured_names)}) : {signature}"
        )
        stored = []
        for value, result, shape in zip(carried, combined, input_shapes):
            scalar = text.op("s", f"tensor.extract {result}[] : tensor<{shape.element}>")
            stored.append(text.op("put", f"tensor.insert {scalar} into {value}[{_joined(full)}] : {shape.text}"))
        text.emit(f"scf.yield {_joined(stored)} : {_joined(types)}")
        text.depth -= 1
        text.emit(f"}} else {{\n{'  ' * (text.depth + 1)}scf.yield {_joined(carried)} : {_joined(types)}\n"
                  f"{'  ' * text.depth}}}")
        return results

    results = _nested_loops(text, update_sizes, zero, one, [f"%in{i}" for i in range(count)], types,
                            update_element)
    text.emit(f"return {_joined(results)} : {_joined(types)}")
    return "\n".join([_signature(name, arguments, types), *text.lines, "}"])
