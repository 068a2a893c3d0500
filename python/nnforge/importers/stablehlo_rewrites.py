"""StableHLO ops that `stablehlo-legalize-to-linalg` leaves in place, rewritten
into upstream dialects before it runs (in torch-mlir's MLIR, in the importer's
child process: only its MLIR knows StableHLO).

- `stablehlo.while`, `stablehlo.case`, `stablehlo.if` become `scf.while`,
  a chain of `scf.if`, `scf.if`: their blocks move as they are (the ops in
  them are converted by the upstream pass afterwards, where they stand), and
  their 0-d `tensor<i1>` / `tensor<i32>` conditions are read with
  `tensor.extract`. No upstream pass converts StableHLO control flow.
- `stablehlo.sort` and `stablehlo.scatter` become calls of private functions
  of loops on tensors (`nnforge.importers.stablehlo_loops`); their comparator
  or update region becomes a private function of 0-d tensors that the
  upstream pass converts like any other, and that the importer makes scalar
  code again (`linalg-detensorize`) once the calls are inlined.
- `stablehlo.get_dimension_size` (how exported models with symbolic
  dimensions read them) becomes `tensor.dim`.
- `stablehlo.dynamic_gather` of one slice (jax's slices along a symbolic
  dimension) becomes `stablehlo.real_dynamic_slice`, its starts clamped.
- The `custom_call`s jax emits around single-device models: shape
  assertions of exported models with symbolic dimensions become `cf.assert`
  (a run-time check), sharding and placement annotations are dropped (one
  device), and `optimization_barrier` forwards its operands; `ApproxTopK`
  (`jax.lax.approx_max_k`) becomes a sort and a slice (the exact top k).

After the upstream conversion, what it leaves of the ops with shapes known
at run time only (exported with symbolic dimensions) is rewritten too:
`dynamic_reshape` as `tensor.reshape`, `dynamic_broadcast_in_dim` whose
dimensions of unknown size may or may not expand as a `linalg.generic`
that decides at run time, `dynamic_update_slice` into an operand of
symbolic size as `tensor.insert_slice`.

What is not rewritten here (other custom calls, collectives, FFT, ...) is
left for the caller's check of what remains after the conversion.
"""

from __future__ import annotations

from collections.abc import Callable

from nnforge.importers import stablehlo_loops

# Custom calls that only annotate a value for XLA's partitioner or memory
# placement: on one device their result is their operand.
ANNOTATION_TARGETS = frozenset({
    "Sharding",
    "SPMDFullToShardShape",
    "SPMDShardToFullShape",
    "annotate_device_placement",
    "MoveToDevice",
    "MoveToHost",
})
# The custom call jax.export emits for each check of symbolic dimensions.
SHAPE_ASSERTION_TARGET = "shape_assertion"
# jax.lax.approx_max_k / approx_min_k (on the CPU, XLA computes the exact top k).
APPROX_TOP_K_TARGET = "ApproxTopK"


def custom_call_target(op) -> str:
    """The call target of a `stablehlo.custom_call`."""
    from torch_mlir import ir

    return ir.StringAttr(op.attributes["call_target_name"]).value


def _ops_named(module, names: frozenset[str]) -> list:
    found = []

    def visit(op):
        from torch_mlir import ir

        if op.name in names:
            found.append(op.operation)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found


def _extract_scalar(value):
    """`tensor.extract` of a 0-d tensor, inserted at the current insertion point."""
    from torch_mlir import ir

    element = ir.RankedTensorType(value.type).element_type
    return ir.Operation.create("tensor.extract", results=[element], operands=[value]).result


def _replace_terminator(block, name: str, operands: Callable[[list], list]) -> None:
    """Replaces the `stablehlo.return` ending `block` by op `name`, whose
    operands `operands` computes from the return's (ops it builds go before)."""
    from torch_mlir import ir

    terminator = block.operations[len(block.operations) - 1].operation
    with ir.InsertionPoint(terminator), terminator.location:
        ir.Operation.create(name, operands=operands(list(terminator.operands)))
    terminator.erase()


def _replace_results(old, new) -> None:
    for old_result, new_result in zip(old.results, new.results):
        old_result.replace_all_uses_with(new_result)
    old.erase()


def _while_to_scf(op) -> None:
    """stablehlo.while(cond, body) -> scf.while: `cond` becomes the before
    region (ending in scf.condition on the extracted i1), `body` the after
    region."""
    from torch_mlir import ir

    with ir.InsertionPoint(op), op.location:
        loop = ir.Operation.create(
            "scf.while", results=[r.type for r in op.results], operands=list(op.operands), regions=2
        )
    cond, body = op.regions[0].blocks[0], op.regions[1].blocks[0]
    cond.append_to(loop.regions[0])
    body.append_to(loop.regions[1])
    _replace_terminator(
        cond, "scf.condition", lambda returned: [_extract_scalar(returned[0]), *cond.arguments]
    )
    _replace_terminator(body, "scf.yield", lambda returned: returned)
    _replace_results(op, loop)


def _move_branch(block, region) -> None:
    """Moves a branch block of a StableHLO op into an scf region."""
    block.append_to(region)
    _replace_terminator(block, "scf.yield", lambda returned: returned)


def _case_to_scf(op) -> None:
    """stablehlo.case(index) -> a chain of scf.if: `index == 0` runs branch
    0, else `index == 1` branch 1, ..., else the last branch (also for an
    index out of range: StableHLO's semantics).

    The chain nnforge's bufferization needs anyway: an scf.index_switch
    with tensor results becomes this chain before it (nnf-index-switch-to-if;
    upstream's analysis misses the aliasing of a switch's results with its
    cases' yields)."""
    from torch_mlir import ir

    result_types = [result.type for result in op.results]
    branches = [region.blocks[0] for region in op.regions]
    with op.location:
        if len(branches) == 1:
            with ir.InsertionPoint(op):
                single = ir.Operation.create("scf.execute_region", results=result_types, regions=1)
            _move_branch(branches[0], single.regions[0])
            _replace_results(op, single)
            return
        with ir.InsertionPoint(op):
            index = _extract_scalar(op.operands[0])
        insertion, outermost = ir.InsertionPoint(op), None
        for position, block in enumerate(branches[:-1]):
            with insertion:
                constant = ir.Operation.create(
                    "arith.constant", results=[index.type],
                    attributes={"value": ir.IntegerAttr.get(index.type, position)},
                ).result
                equal = ir.Operation.create(
                    "arith.cmpi", results=[ir.IntegerType.get_signless(1)], operands=[index, constant],
                    attributes={"predicate": ir.IntegerAttr.get(ir.IntegerType.get_signless(64), 0)},
                ).result
                branch = ir.Operation.create("scf.if", results=result_types, operands=[equal], regions=2)
                if outermost is not None:  # inside the previous else region
                    ir.Operation.create("scf.yield", operands=list(branch.results))
            outermost = outermost or branch
            _move_branch(block, branch.regions[0])
            if position == len(branches) - 2:
                _move_branch(branches[-1], branch.regions[1])
            else:
                insertion = ir.InsertionPoint(ir.Block.create_at_start(branch.regions[1]))
    _replace_results(op, outermost)


def _if_to_scf(op) -> None:
    """stablehlo.if(pred) -> scf.if."""
    from torch_mlir import ir

    with ir.InsertionPoint(op), op.location:
        predicate = _extract_scalar(op.operands[0])
        branch = ir.Operation.create(
            "scf.if", results=[r.type for r in op.results], operands=[predicate], regions=2
        )
    _move_branch(op.regions[0].blocks[0], branch.regions[0])
    _move_branch(op.regions[1].blocks[0], branch.regions[1])
    _replace_results(op, branch)


def _forward_operands(op) -> None:
    """Replaces each result of `op` by the operand at its position."""
    for operand, result in zip(op.operands, op.results):
        result.replace_all_uses_with(operand)
    op.erase()


def _shape_assertion_to_assert(op) -> None:
    """custom_call @shape_assertion(pred, values...) {error_message} -> cf.assert.

    The message's `{0}`, `{1}`... stand for the values, known at run time
    only; cf.assert's message is fixed, so they read "?" there.
    """
    from torch_mlir import ir

    message = ir.StringAttr(op.attributes["error_message"]).value
    for position in range(len(op.operands) - 1):
        message = message.replace(f"{{{position}}}", "?")
    with ir.InsertionPoint(op), op.location:
        ir.Operation.create(
            "cf.assert", operands=[_extract_scalar(op.operands[0])],
            attributes={"msg": ir.StringAttr.get(message)},
        )
    op.erase()


def _dimension_size(op) -> None:
    """stablehlo.get_dimension_size (exported models with symbolic
    dimensions read them so) -> tensor.dim as a 0-d tensor<i32>."""
    from torch_mlir import ir

    dimension = ir.IntegerAttr(op.attributes["dimension"]).value
    result_type = ir.RankedTensorType(op.results[0].type)
    with ir.InsertionPoint(op), op.location:
        position = ir.Operation.create(
            "arith.constant", results=[ir.IndexType.get()],
            attributes={"value": ir.IntegerAttr.get(ir.IndexType.get(), dimension)},
        ).result
        size = ir.Operation.create(
            "tensor.dim", results=[ir.IndexType.get()], operands=[op.operands[0], position]
        ).result
        size = ir.Operation.create(
            "arith.index_cast", results=[result_type.element_type], operands=[size]
        ).result
        value = ir.Operation.create("tensor.from_elements", results=[result_type], operands=[size])
    _replace_results(op, value)


def _dynamic_gather_as_slice(op) -> None:
    """stablehlo.dynamic_gather that takes one slice (jax's `x[1:]` along a
    symbolic dimension: one start index vector, every result dimension a
    slice dimension) -> stablehlo.real_dynamic_slice, which the upstream
    pass converts. Each start is clamped into [0, size - slice size], as
    gather's semantics say. Other gathers are left in place (and reported)."""
    from torch_mlir import ir
    from torch_mlir._mlir_libs import _stablehlo

    operand, starts, slice_sizes = op.operands
    numbers = _stablehlo.GatherDimensionNumbers(op.attributes["dimension_numbers"])
    operand_type, starts_type = ir.RankedTensorType(operand.type), ir.RankedTensorType(starts.type)
    sizes_type, result_type = ir.RankedTensorType(slice_sizes.type), ir.RankedTensorType(op.results[0].type)
    rank = operand_type.rank
    start_map = list(numbers.start_index_map)
    if (list(numbers.offset_dims) != list(range(rank)) or list(numbers.collapsed_slice_dims)
            or list(numbers.operand_batching_dims) or starts_type.rank != 1
            or numbers.index_vector_dim != 0 or starts_type.shape[0] != len(start_map)
            or not all(ir.IntegerType(t.element_type).is_signless for t in (starts_type, sizes_type))):
        return
    index, i64 = ir.IndexType.get(), ir.IntegerType.get_signless(64)

    def constant(value: int):
        return ir.Operation.create(
            "arith.constant", results=[index], attributes={"value": ir.IntegerAttr.get(index, value)}
        ).result

    def element(tensor, position: int):
        value = ir.Operation.create(
            "tensor.extract", results=[ir.RankedTensorType(tensor.type).element_type],
            operands=[tensor, constant(position)],
        ).result
        return ir.Operation.create("arith.index_cast", results=[index], operands=[value]).result

    def binary(name: str, lhs, rhs):
        return ir.Operation.create(name, results=[index], operands=[lhs, rhs]).result

    with ir.InsertionPoint(op), op.location:
        zero, lower, upper = constant(0), [], []
        for dimension in range(rank):
            size = element(slice_sizes, dimension)
            start = element(starts, start_map.index(dimension)) if dimension in start_map else zero
            extent = ir.Operation.create(
                "tensor.dim", results=[index], operands=[operand, constant(dimension)]
            ).result
            start = binary("arith.maxsi", zero, binary("arith.minsi", start, binary("arith.subi", extent, size)))
            lower.append(start)
            upper.append(binary("arith.addi", start, size))
        vector = ir.RankedTensorType.get([rank], i64)

        def as_tensor(values):
            values = [ir.Operation.create("arith.index_cast", results=[i64], operands=[v]).result for v in values]
            return ir.Operation.create("tensor.from_elements", results=[vector], operands=values).result

        strides = ir.Operation.create(
            "arith.constant", results=[vector],
            attributes={"value": ir.DenseElementsAttr.get_splat(vector, ir.IntegerAttr.get(i64, 1))},
        ).result
        sliced = ir.Operation.create(
            "stablehlo.real_dynamic_slice", results=[result_type],
            operands=[operand, as_tensor(lower), as_tensor(upper), strides],
        )
    _replace_results(op, sliced)


def _backend_config(op) -> dict:
    """The dictionary backend config of a custom call (API version 4:
    `mhlo.backend_config`), as {name: attribute}; empty where there is none."""
    from torch_mlir import ir

    for name in ("mhlo.backend_config", "backend_config"):
        if name in op.attributes and isinstance(op.attributes[name], ir.DictAttr):
            config = op.attributes[name]
            return {config[index].name: config[index].attr for index in range(len(config))}
    return {}


def _approx_top_k(op, module) -> None:
    """custom_call @ApproxTopK(operand, iota, init value, init index)
    {called_computations = [@comparator]} -> a stable `stablehlo.sort` of
    (operand, iota) along the reduction dimension by the comparator, and a
    slice of the first k: the exact top k, which XLA's CPU computes too (an
    exact answer meets any recall target). Left in place (and so reported)
    unless the results are aggregated to k elements."""
    from torch_mlir import ir

    config = _backend_config(op)
    if "reduction_dim" not in config or "top_k" not in config or len(op.operands) < 2 or len(op.results) != 2:
        return
    operand_type = ir.RankedTensorType(op.operands[0].type)
    dimension = ir.IntegerAttr(config["reduction_dim"]).value % operand_type.rank
    k = ir.IntegerAttr(config["top_k"]).value
    result_type = ir.RankedTensorType(op.results[0].type)
    if result_type.shape[dimension] != k or "called_computations" not in op.attributes:
        return
    name = ir.FlatSymbolRefAttr(ir.ArrayAttr(op.attributes["called_computations"])[0]).value
    comparator = next(
        (f for f in module.body.operations
         if "sym_name" in f.attributes and ir.StringAttr(f.attributes["sym_name"]).value == name),
        None,
    )
    if comparator is None:
        return
    operands = list(op.operands)[:2]
    with ir.InsertionPoint(op), op.location:
        sort = ir.Operation.create(
            "stablehlo.sort", results=[value.type for value in operands], operands=operands,
            attributes={"dimension": ir.IntegerAttr.get(ir.IntegerType.get_signless(64), dimension),
                        "is_stable": ir.BoolAttr.get(True)},
            regions=1,
        )
    source = comparator.regions[0].blocks[0]
    block = sort.regions[0].blocks.append(*[argument.type for argument in source.arguments])
    replaced = list(zip(source.arguments, block.arguments))
    with ir.InsertionPoint(block), op.location:
        for inner in source.operations:
            inner = inner.operation
            if inner.name in ("func.return", "stablehlo.return"):
                returned = [next((new for old, new in replaced if old == value), value) for value in inner.operands]
                ir.Operation.create("stablehlo.return", operands=returned)
                break
            clone = inner.clone().operation
            for old, new in replaced:
                clone.replace_uses_of_with(old, new)
            replaced += list(zip(inner.results, clone.results))
    # Removed by symbol-dce once no other call uses it.
    comparator.attributes["sym_visibility"] = ir.StringAttr.get("private")
    with ir.InsertionPoint(op), op.location:
        limits = list(operand_type.shape)
        limits[dimension] = k
        slices = [
            ir.Operation.create(
                "stablehlo.slice", results=[result.type], operands=[value],
                attributes={"start_indices": ir.DenseI64ArrayAttr.get([0] * operand_type.rank),
                            "limit_indices": ir.DenseI64ArrayAttr.get(limits),
                            "strides": ir.DenseI64ArrayAttr.get([1] * operand_type.rank)},
            ).result
            for value, result in zip(sort.results, op.results)
        ]
    for result, value in zip(op.results, slices):
        result.replace_all_uses_with(value)
    op.erase()


def _custom_call(op, loops: stablehlo_loops.LoopFunctions) -> None:
    target = custom_call_target(op)
    if target in ANNOTATION_TARGETS and len(op.operands) == len(op.results):
        _forward_operands(op)
    elif target == SHAPE_ASSERTION_TARGET and not op.results:
        _shape_assertion_to_assert(op)


_REWRITES = {
    "stablehlo.while": lambda op, loops: _while_to_scf(op),
    "stablehlo.case": lambda op, loops: _case_to_scf(op),
    "stablehlo.if": lambda op, loops: _if_to_scf(op),
    "stablehlo.optimization_barrier": lambda op, loops: _forward_operands(op),
    "stablehlo.get_dimension_size": lambda op, loops: _dimension_size(op),
    "stablehlo.dynamic_gather": lambda op, loops: _dynamic_gather_as_slice(op),
    "stablehlo.custom_call": _custom_call,
    "stablehlo.sort": lambda op, loops: loops.sort(op),
    "stablehlo.scatter": lambda op, loops: loops.scatter(op),
}


def _dynamic_reshape(op) -> None:
    """stablehlo.dynamic_reshape -> tensor.reshape, the sizes as an index
    tensor (what the lowering of memref.reshape to LLVM takes)."""
    from torch_mlir import ir

    value, shape = op.operands
    shape_type = ir.RankedTensorType(shape.type)
    index = ir.IndexType.get()
    with ir.InsertionPoint(op), op.location:
        sizes = []
        for position in range(shape_type.shape[0]):
            at = ir.Operation.create(
                "arith.constant", results=[index], attributes={"value": ir.IntegerAttr.get(index, position)}
            ).result
            size = ir.Operation.create(
                "tensor.extract", results=[shape_type.element_type], operands=[shape, at]
            ).result
            sizes.append(ir.Operation.create("arith.index_cast", results=[index], operands=[size]).result)
        indices = ir.Operation.create(
            "tensor.from_elements", results=[ir.RankedTensorType.get([len(sizes)], index)], operands=sizes
        ).result
        reshaped = ir.Operation.create("tensor.reshape", results=[op.results[0].type], operands=[value, indices])
    _replace_results(op, reshaped)


def _dynamic_update_slice(op) -> None:
    """stablehlo.dynamic_update_slice into an operand of symbolic size (the
    upstream pass converts static ones only; a `scan` over a symbolic number
    of steps writes its outputs so) -> tensor.insert_slice, each start
    clamped into [0, operand size - update size] as StableHLO's semantics
    say. Left in place (and reported) for unsigned start indices."""
    from torch_mlir import ir

    operand, update, *starts = op.operands
    if not all(ir.IntegerType(ir.RankedTensorType(start.type).element_type).is_signless for start in starts):
        return
    update_type = ir.RankedTensorType(update.type)
    index = ir.IndexType.get()
    with ir.InsertionPoint(op), op.location:
        def constant(value: int):
            return ir.Operation.create(
                "arith.constant", results=[index], attributes={"value": ir.IntegerAttr.get(index, value)}
            ).result

        def binary(name: str, lhs, rhs):
            return ir.Operation.create(name, results=[index], operands=[lhs, rhs]).result

        def dim(tensor, dimension: int):
            return ir.Operation.create("tensor.dim", results=[index], operands=[tensor, constant(dimension)]).result

        zero, offsets, sizes = constant(0), [], []
        for dimension, start in enumerate(starts):
            start = ir.Operation.create("arith.index_cast", results=[index], operands=[_extract_scalar(start)]).result
            size = dim(update, dimension)
            limit = binary("arith.subi", dim(operand, dimension), size)
            offsets.append(binary("arith.maxsi", zero, binary("arith.minsi", start, limit)))
            if update_type.is_dynamic_dim(dimension):
                sizes.append(size)
        dynamic = ir.ShapedType.get_dynamic_size()
        rank = update_type.rank
        inserted = ir.Operation.create(
            "tensor.insert_slice", results=[op.results[0].type],
            operands=[update, operand, *offsets, *sizes],
            attributes={
                "static_offsets": ir.DenseI64ArrayAttr.get([dynamic] * rank),
                # The update's own sizes: static where its type says.
                "static_sizes": ir.DenseI64ArrayAttr.get(list(update_type.shape)),
                "static_strides": ir.DenseI64ArrayAttr.get([1] * rank),
                "operandSegmentSizes": ir.DenseI32ArrayAttr.get([1, 1, rank, len(sizes), 0]),
            },
        )
    _replace_results(op, inserted)


# What the upstream conversion leaves of the ops of shapes known at run time
# only (exported with symbolic dimensions); rewritten after it.
_LATE_REWRITES = {
    "stablehlo.dynamic_broadcast_in_dim": lambda op, loops: loops.dynamic_broadcast(op),
    "stablehlo.dynamic_reshape": lambda op, loops: _dynamic_reshape(op),
    "stablehlo.dynamic_update_slice": lambda op, loops: _dynamic_update_slice(op),
}


def rewrite(module) -> None:
    """Rewrites every op of `_REWRITES` in `module` (a StableHLO module in
    torch-mlir's context, the context entered)."""
    for op in _ops_named(module, frozenset({"stablehlo.custom_call"})):
        if custom_call_target(op) == APPROX_TOP_K_TARGET:
            _approx_top_k(op, module)
    loops = stablehlo_loops.LoopFunctions(module)
    for op in _ops_named(module, frozenset(_REWRITES)):
        _REWRITES[op.name](op, loops)


def rewrite_leftovers(module) -> None:
    """Rewrites the ops of `_LATE_REWRITES` that `stablehlo-legalize-to-linalg` left."""
    loops = stablehlo_loops.LoopFunctions(module)
    for op in _ops_named(module, frozenset(_LATE_REWRITES)):
        _LATE_REWRITES[op.name](op, loops)
