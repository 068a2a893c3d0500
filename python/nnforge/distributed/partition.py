"""Each rank's program: `shard` annotations on the linalg IR, partitioned by
upstream's passes into a local program with MPI collectives.

The entry function takes the model's inputs, then its parameters (see
`build`). `annotate` marks the inputs and the result replicated and each
parameter split along its axis (or replicated) on a one-dimensional grid of
the ranks; `partition` propagates the shardings through the linalg ops,
partitions the function (each split argument takes the rank's slice) and
lowers the collectives to the `mpi` dialect. Upstream's passes may abort on
IR they do not expect, so they run in a child process (`nnforge-opt`): a
failure is a CompileError, never the end of the caller.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlir import ir, passmanager

from nnforge import _process
from nnforge._native import tool_path
from nnforge.entry import entry_function
from nnforge.errors import CompileError
from nnforge.importers.handover import walk_ops
from nnforge.stages import StageRunner, verify

GRID = "nnforge_ranks"

# Argument attributes of nnf-pack-layout-free-arguments: the caller lays the
# argument out (set here on parameters), and the panels it was taken as.
LAYOUT_FREE = "nnf.layout_free"
PANELS = "nnf.panels"

# Unit dimensions folded away (LayerNorm's keepdim reductions index them by
# the constant 0, which upstream's linalg sharding cannot map); batch matmuls
# by a broadcast matrix made matmuls, as the CPU target does next; reshapes
# folded into the linalg ops around them (torch.nn.MultiheadAttention
# collapses its heads with the batch, [S, B * H, D] and [B * H, S, S], where
# no block of heads is a block of B * H; its ops then run on [.., B, H, ..]);
# slices moved
# above their producers (a packed q/k/v projection sliced in thirds becomes a
# projection per third, on its third of the weight taken as [3, E, K]); unused
# results of generics dropped (softmax's max also computes an argmax that
# nothing uses, and would get no sharding); each user of a shared
# tensor.empty/fill given its own (users shard them
# differently); batch matmuls on collapsed batch dimensions (attention) computed on the
# uncollapsed ones, so that heads can be split with any batch size;
# shardings propagated both ways (forward alone leaves the second linear
# layer of a Megatron pair replicated, with all-gathers before it); an op
# that propagation found no sharding for reported (shard-partition would
# abort on it); the function partitioned; nnforge's guard reports
# collectives that convert-shard-to-mpi cannot lower (else it aborts)
# before it runs; the communicator split off MPI_COMM_WORLD per call
# becomes the world itself.
PARTITION = (
    "func.func(nnf-unbroadcast-batch-matmul,linalg-fold-unit-extent-dims,nnf-propagate-reshapes,canonicalize,"
    "nnf-bubble-up-extract-slices,canonicalize,nnf-erase-unused-linalg-results,"
    "nnf-duplicate-shared-inits,nnf-uncollapse-batch-matmul,sharding-propagation{traversal=forward-backward}),"
    "nnf-verify-sharding,"
    "func.func(shard-partition),canonicalize,"
    "nnf-verify-shard-to-mpi,convert-shard-to-mpi,nnf-shard-world-communicator,canonicalize,cse"
)


def _sharding(split: int | None, ip: ir.InsertionPoint) -> ir.Operation:
    """A `shard.sharding` op at `ip`: dimension `split` along the grid's axis 0, or replicated (None)."""
    axes = "[[]]" if split is None else "[" + ", ".join(["[]"] * split + ["[0]"]) + "]"
    return ir.Operation.create(
        "shard.sharding", results=[ir.Type.parse("!shard.sharding")], ip=ip,
        attributes={
            "grid": ir.FlatSymbolRefAttr.get(GRID),
            "split_axes": ir.Attribute.parse(f"#shard<axisarray{axes}>"),
            "operandSegmentSizes": ir.Attribute.parse("array<i32: 0, 0>"),
            "static_halo_sizes": ir.Attribute.parse("array<i64>"),
            "static_sharded_dims_offsets": ir.Attribute.parse("array<i64>"),
        },
    )


def annotate(module: ir.Module, splits: list[int | None], ranks: int) -> None:
    """Adds the grid of `ranks` ranks and shard annotations: argument i split
    along dimension `splits[i]` (None: replicated), results replicated. The
    MPI implementation is MPICH (the ABI MLIR's `mpi` lowering targets)."""
    context = module.context
    with context, ir.Location.unknown():
        function = entry_function(module)
        module.operation.attributes["dlti.map"] = ir.Attribute.parse('#dlti.map<"MPI:Implementation" = "MPICH">')
        grid = ir.Operation.parse(f"shard.grid @{GRID}(shape = {ranks})", context=context)
        ir.InsertionPoint(module.body.operations[0]).insert(grid)
        block = function.regions[0].blocks[0]
        anchor = block.operations[0]
        for argument, split in zip(block.arguments, splits):
            sharding = _sharding(split, ir.InsertionPoint(anchor))
            annotated = ir.Operation.create(
                "shard.shard", results=[argument.type], operands=[argument, sharding.result],
                attributes={"annotate_for_users": ir.UnitAttr.get()}, ip=ir.InsertionPoint(anchor),
            )
            argument.replace_all_uses_except(annotated.result, annotated)
        terminator = block.operations[len(block.operations) - 1]
        for index, value in enumerate(terminator.operands):
            sharding = _sharding(None, ir.InsertionPoint(terminator))
            annotated = ir.Operation.create("shard.shard", results=[value.type], operands=[value, sharding.result],
                                            ip=ir.InsertionPoint(terminator))
            terminator.operands[index] = annotated.result


def partition(module: ir.Module, runner: StageRunner) -> ir.Module:
    """The annotated `module` partitioned into each rank's program (a new module)."""
    verify(module, "the annotated module")
    runner.dump(module, "sharded")
    with runner.stage("shard-partition"), tempfile.TemporaryDirectory(prefix="nnforge-shard-") as scratch:
        source, result = Path(scratch) / "sharded.mlirbc", Path(scratch) / "partitioned.mlirbc"
        with open(source, "wb") as stream:
            module.operation.write_bytecode(stream)
        command = [str(tool_path("nnforge-opt")), str(source), f"--pass-pipeline=builtin.module({PARTITION})",
                   "--emit-bytecode", "-o", str(result)]
        completed = _process.run(command, "partitioning the model over the ranks")
        if completed.returncode != 0:
            cause = _process.failure_cause(completed.stderr) if completed.returncode < 0 else completed.stderr.strip()
            raise CompileError(f"partitioning the model over the ranks failed: {cause[:3000]}")
        partitioned = ir.Module.parse(result.read_bytes(), module.context)
    with partitioned.context:
        for op in list(partitioned.body.operations):
            if op.operation.name == "shard.grid":  # no LLVM form, and nothing refers to it now
                op.operation.erase()
    runner.dump(partitioned, "partitioned")
    return partitioned


def collectives(module: ir.Module) -> list[tuple[str, int]]:
    """(MPI collective, bytes of its buffer) for each collective of the partitioned program."""
    found = []
    for op in walk_ops(module.operation):
        if op.name == "mpi.allreduce":
            buffer = ir.MemRefType(op.operands[0].type)
            elements = 1
            for size in buffer.shape:
                elements *= size
            element = buffer.element_type
            width = ir.FloatType(element).width if isinstance(element, ir.FloatType) else ir.IntegerType(element).width
            found.append(("allreduce", elements * width // 8))
    return found


def take_parameters_transposed(function: ir.Operation, first: int) -> list[tuple[int, ...] | None]:
    """Parameters (arguments from `first` on) that the program only transposes are taken transposed.

    The weight passes fold the transposes of constants at compile time, but a rank's
    parameters reach its program as arguments: transposing them would copy every weight on
    every call. Returns each argument's permutation (None where it is taken as it is); the
    caller stores those slices transposed.
    """
    block = function.regions[0].blocks[0]
    permutations: list[tuple[int, ...] | None] = []
    for index, argument in enumerate(block.arguments):
        uses = list(argument.uses)
        transpose = uses[0].owner if index >= first and len(uses) == 1 else None
        if transpose is None or transpose.name != "linalg.transpose" or uses[0].operand_number != 0:
            permutations.append(None)
            continue
        permutations.append(tuple(ir.DenseI64ArrayAttr(transpose.attributes["permutation"])))
        result, init = transpose.results[0], transpose.operands[1]
        argument.set_type(result.type)
        result.replace_all_uses_with(argument)
        transpose.erase()
        if isinstance(init, ir.OpResult) and not list(init.uses):
            init.owner.erase()
    function_type = ir.FunctionType(ir.TypeAttr(function.attributes["function_type"]).value)
    function.attributes["function_type"] = ir.TypeAttr.get(
        ir.FunctionType.get([argument.type for argument in block.arguments], function_type.results))
    return permutations



def _argument_attributes(function: ir.Operation) -> list[dict[str, ir.Attribute]]:
    """Each argument's attributes, by name."""
    count = len(function.regions[0].blocks[0].arguments)
    arrays = list(ir.ArrayAttr(function.attributes["arg_attrs"])) if "arg_attrs" in function.attributes else []
    return [{named.name: named.attr for named in ir.DictAttr(arrays[index])} if index < len(arrays) else {}
            for index in range(count)]


def _set_argument_attributes(function: ir.Operation, attributes: list[dict[str, ir.Attribute]]) -> None:
    function.attributes["arg_attrs"] = ir.ArrayAttr.get([ir.DictAttr.get(entries) for entries in attributes])


def take_parameters_packed(module: ir.Module, first: int) -> list[int | None]:
    """Parameters (arguments of the entry function from `first` on) that contractions read as
    their right operand are taken as column panels (`nnf-pack-layout-free-arguments`).

    A constant weight is packed into panels when compiling (`nnf-pack-weights`); an argument
    would be copied into them on every call, or read unpacked. A rank's parameters are laid
    out when its slices are written, so the program takes them packed. Returns each
    argument's panel width (None where it is taken as it is); the caller stores those
    slices as `[N / panel, .., panel]`.
    """
    function = entry_function(module)
    attributes = _argument_attributes(function)
    for entries in attributes[first:]:
        entries[LAYOUT_FREE] = ir.UnitAttr.get()
    _set_argument_attributes(function, attributes)
    passmanager.PassManager.parse("builtin.module(nnf-pack-layout-free-arguments)").run(module.operation)
    function = entry_function(module)  # (running a pass drops the handles to the module's ops)
    attributes = _argument_attributes(function)
    panels = [ir.IntegerAttr(entries[PANELS]).value if PANELS in entries else None for entries in attributes]
    for entries in attributes:
        entries.pop(LAYOUT_FREE, None)  # those the pass left as they are
    _set_argument_attributes(function, attributes)
    return panels
