"""Lowering for the CUDA target: linalg on tensors -> kernels in a cubin + host code calling them.

The result of `lower_to_cuda` is an LLVM-dialect host module. Its entry point
takes and returns host buffers (numpy arrays at the C interface, as for the
CPU target): it copies inputs and constants to device memory, launches one
kernel per linalg op and copies results back into `malloc`ed buffers the
caller frees. The kernels sit in a `gpu.binary` (a cubin from `ptxas`), and
the host code calls the `mgpu*` functions of MLIR's `libmlir_cuda_runtime.so`.

Steps (named pipelines in `nnforge.pipelines.cuda_stages`, Python rewrites in between):
 1. gpu-bufferize: one-shot bufferization.
 2. (Python) `place_in_device_memory`: buffers -> views of one device
    arena (`gpu.alloc`), inputs copied in, results copied out;
    `memref.copy` -> `linalg.copy` (a kernel like the other ops).
 3. gpu-map-matmul: `linalg.matmul` and `linalg.batch_matmul` with
    tile-aligned shapes -> a kernel with 64x64 output tiles per block (32x32
    where the grid would have few blocks; a batch per grid z) accumulating
    in shared memory, A and B tiles staged
    in shared memory per k-step of 32 (or 16), 4x4 outputs per thread as
    vector FMAs (transform dialect).
 4. gpu-generalize, then (Python) a schedule per remaining op and
    gpu-map-generic: the innermost parallel loop over 256 threads (fewer,
    down to a warp, where the grid would be small) and the blocks, up to two
    outer parallel loops over grid y/z, the rest (reductions included)
    sequential in each thread, accumulating in registers.
 5. (Python) constants -> globals of the kernel modules (in the cubin:
    device memory from module load on, no copy per call), shared-memory
    buffers -> workgroup globals, FMA contraction allowed in kernels.
 6. gpu-outline, then gpu-to-nvvm: `gpu-lower-to-nvvm-pipeline` (cubin via
    ptxas; with a dump folder, the PTX goes to kernels.ptx there).
"""

from __future__ import annotations

import math

from mlir import ir, passmanager
from mlir.dialects import arith, gpu, linalg, memref

from nnforge import pipelines
from nnforge.entry import entry_function
from nnforge.errors import CompileError
from nnforge.importers.handover import walk_ops
from nnforge.stages import StageRunner

# Matmul schedule: output tile per block (the first of these that divides
# the output and gives the grid MIN_BLOCKS blocks, else the smallest that
# divides it), k-step staged in shared memory (the first of these that
# divides k: with the output tile accumulating in shared memory, 32 ran 16 %
# faster than 16 on an H100), outputs per thread.
MATMUL_BLOCKS = ((64, 64), (32, 32))
MATMUL_K_STEPS = (32, 16)
MATMUL_THREAD = (4, 4)
# Threads per block for every other op (the innermost parallel loop).
GENERIC_THREADS = 256
# Blocks an op's grid should have at least (an H100 has 132 multiprocessors)
# before its blocks are cut below GENERIC_THREADS, and the smallest block.
MIN_BLOCKS = 128
WARP = 32
# Largest per-thread output of a reduction kept in registers while it accumulates.
MAX_PRIVATE_ACCUMULATORS = 16
# Largest grid y/z extent.
MAX_GRID_YZ = 65535

# Marks the ops a generated schedule addresses.
OP_TAG = "nnf_gpu_op"

def check_chip(chip: str) -> str:
    """`chip` if we can compile for it, else CompileError (never an LLVM abort)."""
    try:
        return pipelines.check_cuda_chip(chip)
    except ValueError as error:
        raise CompileError(str(error)) from None


def _static_type(value: ir.Value, what: str) -> ir.MemRefType:
    type_ = ir.MemRefType(value.type)
    if not type_.has_static_shape:
        raise CompileError(f"{what} has dynamic shape {type_}: the cuda target needs static shapes")
    return type_


# Alignment of each buffer in the device arena (cuMemAlloc's own alignment).
ARENA_ALIGNMENT = 256


def _byte_size(type_: ir.MemRefType) -> int:
    count = 1
    for size in type_.shape:
        count *= size
    element = type_.element_type
    if not isinstance(element, (ir.IntegerType, ir.FloatType)):
        raise CompileError(f"buffers of {element} are not supported by the cuda target")
    # i1 is stored as a byte (nnf-widen-bool-memrefs).
    return count * max(1, element.width // 8)


def place_in_device_memory(function: ir.Operation) -> None:
    """Makes a bufferized function run on device memory, host buffers at its boundary.

    All device buffers are views of one `gpu.alloc`ed arena per call (one
    cuMemAlloc and one cuMemFree instead of one per buffer): the arguments,
    copied in, and what each `memref.alloc` allocated. Constants go into
    the kernels (`constants_into_kernels`). Results are copied into fresh
    host buffers (`memref.alloc`, i.e. malloc: the caller frees them).
    `memref.copy` becomes `linalg.copy`, a kernel like any other op.
    """
    body = function.regions[0].blocks[0]
    buffers: list[tuple[ir.Value | ir.Operation, ir.MemRefType]] = [
        (argument, _static_type(argument, f"input {index}"))
        for index, argument in enumerate(body.arguments)
    ]
    for op in body.operations:
        op = op.operation
        if op.name == "memref.alloc":
            buffers.append((op, _static_type(op.results[0], f"buffer {op.location}")))
        elif op.name == "memref.dealloc":
            raise CompileError(f"unexpected memref.dealloc at {op.location} before device placement")
    offsets, total = [], 0
    for _, type_ in buffers:
        offsets.append(total)
        total += -(-_byte_size(type_) // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
    index_type = ir.IndexType.get()
    with ir.InsertionPoint.at_block_begin(body), function.location:
        arena_type = ir.MemRefType.get([max(total, 1)], ir.IntegerType.get_signless(8))
        arena = gpu.AllocOp(arena_type, None, [], [], []).memref
        for (buffer, type_), offset in zip(buffers, offsets):
            start = arith.ConstantOp(index_type, offset).result
            if isinstance(buffer, ir.Value):
                device = memref.ViewOp(type_, arena, start, []).result
                buffer.replace_all_uses_with(device)
                gpu.MemcpyOp(None, [], device, buffer)
            else:
                with ir.InsertionPoint(buffer), buffer.location:
                    device = memref.ViewOp(type_, arena, arith.ConstantOp(index_type, offset).result, []).result
                buffer.results[0].replace_all_uses_with(device)
                buffer.erase()
    for op in list(body.operations):
        op = op.operation
        if op.name == "memref.copy":
            with ir.InsertionPoint(op), op.location:
                linalg.copy(op.operands[0], outs=[op.operands[1]])
            op.erase()
    terminator = body.operations[len(body.operations) - 1].operation
    with ir.InsertionPoint(terminator), terminator.location:
        host_results = []
        for index, result in enumerate(terminator.operands):
            type_ = _static_type(result, f"result {index}")
            host_type = ir.MemRefType.get(type_.shape, type_.element_type)
            host = memref.AllocOp(host_type, [], [], alignment=64).memref
            gpu.MemcpyOp(None, [], host, result)
            host_results.append(host)
        gpu.DeallocOp(None, [], arena)
    for index, host in enumerate(host_results):
        terminator.operands[index] = host


def _transform_script(body: str) -> str:
    return (
        "module attributes {transform.with_named_sequence} {\n"
        "transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {\n"
        f"{body}  transform.yield\n}}\n}}\n"
    )


def _insert_schedule(module: ir.Module, script: str) -> None:
    """Appends a transform schedule (`@__transform_main`) to `module`."""
    with module.context:
        holder = ir.Module.parse(script)
        module.operation.attributes["transform.with_named_sequence"] = ir.UnitAttr.get()
        for op in list(holder.body.operations):
            module.body.append(op.operation)


def remove_schedule(module: ir.Module) -> None:
    """Erases the transform schedule and the op tags after it ran."""
    for op in list(module.body.operations):
        if op.operation.name == "transform.named_sequence":
            op.operation.erase()
    if "transform.with_named_sequence" in module.operation.attributes:
        del module.operation.attributes["transform.with_named_sequence"]
    for op in walk_ops(module.operation):
        if OP_TAG in op.attributes:
            del op.attributes[OP_TAG]


# The named contractions the shared-memory schedule takes: name -> leading
# batch loops (the batch is spread over grid z).
_SCHEDULED_MATMULS = {"linalg.matmul": 0, "linalg.batch_matmul": 1}


# Each thread's 4x4 micro tile, vectorized: its contraction becomes outer
# products (FMAs), its transfers 1-D vector loads and stores (what the NVVM
# lowering takes). Its accumulator stays in the block's shared-memory tile:
# upstream's hoisting of vector transfers out of the k loop refuses buffers
# that are views, so registers would need the mapping done on tensors.
_MICRO_TILE_AS_FMAS = """
  %funcs = transform.structured.match ops{["func.func"]} in %root : (!transform.any_op) -> !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.reduction_to_contract
    transform.apply_patterns.vector.transfer_permutation_patterns
    transform.apply_patterns.canonicalization
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_contraction lowering_strategy = "outerproduct"
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_outerproduct
    transform.apply_patterns.vector.lower_broadcast
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.transfer_to_scf max_transfer_rank = 1 full_unroll = true
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_transfer max_transfer_rank = 1
    transform.apply_patterns.vector.lower_shape_cast
    transform.apply_patterns.canonicalization
  } : !transform.any_op
"""


def _matmul_tiling(op: ir.Operation) -> tuple[tuple[int, int], int] | None:
    """The block tile and k-step of the shared-memory schedule for a plain
    (default maps) (batch) matmul that tiles evenly, else None."""
    batch = _SCHEDULED_MATMULS.get(op.name)
    if batch is None:
        return None
    lead = ", ".join(f"d{i}" for i in range(batch))
    m, n, k = (f"d{batch + i}" for i in range(3))
    dims = ", ".join(f"d{i}" for i in range(batch + 3))
    expected = [f"affine_map<({dims}) -> ({', '.join(filter(None, (lead, *pair)))})>"
                for pair in ((m, k), (k, n), (m, n))]
    if [str(m) for m in ir.ArrayAttr(op.attributes["indexing_maps"])] != expected:
        return None
    a, b = (ir.ShapedType(operand.type) for operand in op.operands[:2])
    if not (a.has_static_shape and b.has_static_shape) or (batch and a.shape[0] > MAX_GRID_YZ):
        return None
    (m, k), n = a.shape[batch:], b.shape[-1]
    blocks = [(rows, columns) for rows, columns in MATMUL_BLOCKS if m % rows == 0 and n % columns == 0]
    k_step = next((step for step in MATMUL_K_STEPS if k % step == 0), None)
    if not blocks or k_step is None:
        return None
    batches = math.prod(a.shape[:batch])
    block = next(
        (tile for tile in blocks if batches * (m // tile[0]) * (n // tile[1]) >= MIN_BLOCKS), blocks[-1]
    )
    return block, k_step


def insert_matmul_schedule(module: ir.Module, function: ir.Operation, on_gpu: bool = True) -> int:
    """Tags the tile-aligned (batch) matmuls and appends their shared-memory schedule; returns their count.

    `on_gpu=False` leaves the foralls unmapped and the staging buffers in
    host memory: run sequentially, the foralls do what the barrier-separated
    phases of the kernel do, which checks the tiling on a CPU.
    """
    matmuls = [(op, tiling) for op in walk_ops(function) if (tiling := _matmul_tiling(op))]
    shared = ", memory_space = #gpu.address_space<workgroup>" if on_gpu else ""
    body = ""
    for index, (op, (block, k_step)) in enumerate(matmuls):
        threads = (block[0] // MATMUL_THREAD[0], block[1] // MATMUL_THREAD[1])
        op.attributes[OP_TAG] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), index)
        batch = _SCHEDULED_MATMULS[op.name]
        ones, zeros = [1] * batch, [0] * batch
        block_mapping = ", ".join(["#gpu.block<z>"] * batch + ["#gpu.block<y>", "#gpu.block<x>"])
        any_op = "!transform.any_op"
        body += f"""
  %mm{index} = transform.structured.match attributes {{{OP_TAG} = {index} : i64}} in %root : ({any_op}) -> {any_op}
  %block{index}, %grid{index} = transform.structured.tile_using_forall %mm{index} tile_sizes {[*ones, *block]} (mapping = [{block_mapping}]) : ({any_op}) -> ({any_op}, {any_op})
  %accumulating{index} = transform.structured.promote %block{index} {{operands_to_promote = [2]{shared}}} : ({any_op}) -> {any_op}
  %step{index}, %kloop{index} = transform.structured.tile_using_for %accumulating{index} tile_sizes {[*zeros, 0, 0, k_step]} : ({any_op}) -> ({any_op}, {any_op})
  %staged{index} = transform.structured.promote %step{index} {{operands_to_promote = [0, 1]{shared}}} : ({any_op}) -> {any_op}
  %micro{index}, %threads{index} = transform.structured.tile_using_forall %staged{index} tile_sizes {[*zeros, *MATMUL_THREAD]} (mapping = [#gpu.thread<y>, #gpu.thread<x>]) : ({any_op}) -> ({any_op}, {any_op})
  transform.structured.vectorize %micro{index} : {any_op}
  %copies{index} = transform.structured.match ops{{["linalg.copy"]}} in %grid{index} : ({any_op}) -> {any_op}
  %copy{index}, %copying{index} = transform.structured.tile_using_forall %copies{index} num_threads {[*zeros, *threads]} (mapping = [#gpu.thread<y>, #gpu.thread<x>]) : ({any_op}) -> ({any_op}, {any_op})
"""
        if on_gpu:
            body += _map_to_gpu(index, (threads[1], threads[0]))
    if matmuls:
        body += _MICRO_TILE_AS_FMAS
    _insert_schedule(module, _transform_script(body))
    return len(matmuls)


def _loop_ranges(op: ir.Operation) -> list[int]:
    """The static trip counts of a linalg.generic's loops."""
    maps = [ir.AffineMapAttr(m).value for m in ir.ArrayAttr(op.attributes["indexing_maps"])]
    ranges: list[int | None] = [None] * maps[0].n_dims
    for operand, map_ in zip(op.operands, maps):
        shape = operand.type.shape if isinstance(operand.type, ir.ShapedType) else []
        for size, expr in zip(shape, map_.results):
            if isinstance(expr, ir.AffineDimExpr) and size >= 0:
                ranges[expr.position] = size
    if None in ranges:
        raise CompileError(f"cannot tell the loop trip counts of the op at {op.location}")
    return ranges


def _map_to_gpu(index: int, block_dims: tuple[int, int]) -> str:
    """Maps the forall `%grid<index>` to a launch, its nested foralls to threads."""
    any_op = "!transform.any_op"
    return f"""  %launch{index} = transform.gpu.map_forall_to_blocks %grid{index} generate_gpu_launch : ({any_op}) -> {any_op}
  %mapped{index} = transform.gpu.map_nested_forall_to_threads %launch{index} block_dims = [{block_dims[0]}, {block_dims[1]}, 1] : ({any_op}) -> {any_op}
"""


def _generic_schedule(index: int, op: ir.Operation, on_gpu: bool) -> str:
    """Tiles one linalg.generic to blocks and threads (see module doc)."""
    iterators = [str(ir.Attribute(a)) for a in ir.ArrayAttr(op.attributes["iterator_types"])]
    parallel = [d for d, kind in enumerate(iterators) if "parallel" in kind]
    if not parallel:
        raise CompileError(
            f"the op at {op.location} has no parallel loop (a full reduction): "
            "not supported by the cuda target yet"
        )
    ranges = _loop_ranges(op)
    inner = parallel[-1]
    outer = [d for d in reversed(parallel[:-1]) if ranges[d] <= MAX_GRID_YZ][:2]
    threads = min(GENERIC_THREADS, ranges[inner])
    outer_blocks = math.prod(ranges[d] for d in outer)
    # Smaller blocks, down to a warp, where few would leave most multiprocessors idle.
    while threads > WARP and -(-ranges[inner] // threads) * outer_blocks < MIN_BLOCKS:
        threads //= 2
    block_sizes = [0] * len(ranges)
    block_sizes[inner] = threads
    mapping = {inner: "#gpu.block<x>"}
    for dim, name in zip(outer, ("y", "z")):
        block_sizes[dim] = 1
        mapping[dim] = f"#gpu.block<{name}>"
    block_mapping = ", ".join(mapping[d] for d in sorted(mapping))
    thread_counts = [0] * len(ranges)
    thread_counts[inner] = threads
    any_op = "!transform.any_op"
    schedule = f"""
  %op{index} = transform.structured.match attributes {{{OP_TAG} = {index} : i64}} in %root : ({any_op}) -> {any_op}
  %block{index}, %grid{index} = transform.structured.tile_using_forall %op{index} tile_sizes {block_sizes} (mapping = [{block_mapping}]) : ({any_op}) -> ({any_op}, {any_op})
  %thread{index}, %threads{index} = transform.structured.tile_using_forall %block{index} num_threads {thread_counts} (mapping = [#gpu.thread<x>]) : ({any_op}) -> ({any_op}, {any_op})
"""
    outputs_per_thread = -(-ranges[inner] // threads) * math.prod(
        ranges[d] for d in parallel if d not in mapping
    )
    if len(parallel) < len(ranges) and outputs_per_thread <= MAX_PRIVATE_ACCUMULATORS:
        # A thread's reduction accumulates in a private copy of its outputs
        # (registers, once LLVM promotes the alloca), not in global memory
        # per iteration; the copy goes back once, after the loop.
        inits = list(range(len(op.opview.inputs), len(op.operands)))
        space = ", memory_space = #gpu.address_space<private>" if on_gpu else ""
        schedule += f"""  %private{index} = transform.structured.promote %thread{index} {{operands_to_promote = {inits}, use_alloca{space}}} : ({any_op}) -> {any_op}
"""
    return schedule + (_map_to_gpu(index, (threads, 1)) if on_gpu else "")


def _inside(op: ir.Operation, kind: str) -> bool:
    parent = op.parent
    while parent is not None and parent.name != "func.func":
        if parent.name == kind:
            return True
        parent = parent.parent
    return False


def _inside_launch(op: ir.Operation) -> bool:
    return _inside(op, "gpu.launch")


def _inside_forall(op: ir.Operation) -> bool:
    return _inside(op, "scf.forall")


def insert_generic_schedule(module: ir.Module, function: ir.Operation, on_gpu: bool = True) -> int:
    """Tags the linalg.generic ops not yet in a kernel and appends their schedule.

    `on_gpu`: as for `insert_matmul_schedule`.
    """
    generics = [
        op for op in walk_ops(function)
        if op.name == "linalg.generic" and not _inside_launch(op) and not _inside_forall(op)
    ]
    body = ""
    for index, op in enumerate(generics):
        op.attributes[OP_TAG] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), index)
        body += _generic_schedule(index, op, on_gpu)
    _insert_schedule(module, _transform_script(body))
    return len(generics)


# Host-side ops that only compute addresses, sizes or call the GPU runtime.
_HOST_OPS = (
    "gpu.", "arith.", "ub.poison", "affine.apply", "index.", "func.return",
    "memref.alloc", "memref.dim", "memref.subview", "memref.expand_shape",
    "memref.collapse_shape", "memref.view", "memref.reinterpret_cast", "memref.cast",
    "memref.get_global", "memref.extract_strided_metadata",
)


_VIEW_OPS = (
    "memref.subview", "memref.expand_shape", "memref.collapse_shape", "memref.cast",
    "memref.reinterpret_cast", "memref.view",
)


def _constant_chain(value: ir.Value, body: ir.Block) -> list[ir.Operation] | None:
    """The host ops making `value` from a constant global (get_global, then views), or None."""
    chain = []
    while isinstance(value.owner, (ir.Operation, ir.OpView)):
        op = value.owner.operation
        if op.block != body:
            return None
        chain.append(op)
        if op.name == "memref.get_global":
            return chain[::-1]
        if op.name not in _VIEW_OPS:
            return None
        value = op.operands[0]
    return None


def constants_into_kernels(function: ir.Operation) -> None:
    """Makes kernels read constant globals themselves rather than host pointers.

    The get_global (and the views of it) are cloned into each launch using
    them; outlining then moves the globals into the kernel modules, so the
    data is in the cubin and in device memory once the module is loaded.
    Host uses that remain (copying a constant result out) are host-to-host.
    """
    body = function.regions[0].blocks[0]
    for launch in [op.operation for op in body.operations if op.operation.name == "gpu.launch"]:
        entry = launch.regions[0].blocks[0]
        clones: dict[ir.Value, ir.Value] = {}
        for op in list(walk_ops(launch)):
            for index, operand in enumerate(op.operands):
                chain = _constant_chain(operand, body)
                if chain is None:
                    continue
                if operand not in clones:
                    mapped: ir.Value | None = None
                    # Independent chains: each may go first in the body.
                    with ir.InsertionPoint.at_block_begin(entry):
                        for original in chain:
                            clone = original.clone()
                            if mapped is not None:
                                clone.operands[0] = mapped
                            mapped = clone.results[0]
                    clones[operand] = mapped
                op.operands[index] = clones[operand]
    for op in reversed(list(body.operations)):
        op = op.operation
        if (op.name == "memref.get_global" or op.name in _VIEW_OPS) and not list(op.results[0].uses):
            op.erase()


def check_host_code(function: ir.Operation) -> None:
    """Raises CompileError if host code would touch device memory or a kernel would malloc."""
    left = sorted({
        op.name for op in function.regions[0].blocks[0].operations
        for op in [op.operation] if not op.name.startswith(_HOST_OPS)
    })
    if left:
        raise CompileError(
            f"the cuda target could not map these ops into kernels: {', '.join(left)}"
        )
    for op in walk_ops(function):
        if op.name == "memref.alloc" and _inside_launch(op) and not _is_workgroup(op.results[0].type):
            raise CompileError(f"a kernel allocates memory at {op.location}: not supported")


def shared_buffers_to_globals(module: ir.Module) -> None:
    """Turns workgroup-memory `memref.alloc`s in kernels into workgroup globals.

    Promotion allocates shared memory with memref.alloc; NVVM has no
    dynamic shared allocation, but a module-level global in the workgroup
    address space is a static shared-memory buffer.
    """
    count = 0
    for op in list(walk_ops(module.operation)):
        if op.name == "memref.dealloc" and _is_workgroup(op.operands[0].type):
            op.erase()
    for op in list(walk_ops(module.operation)):
        if op.name != "memref.alloc" or not _is_workgroup(op.results[0].type):
            continue
        type_ = ir.MemRefType(op.results[0].type)
        name = f"__nnf_shared_{count}"
        count += 1
        with ir.InsertionPoint.at_block_begin(module.body), op.location:
            memref.GlobalOp(
                ir.StringAttr.get(name), ir.TypeAttr.get(type_),
                sym_visibility=ir.StringAttr.get("private"), alignment=16,
            )
        with ir.InsertionPoint(op), op.location:
            shared = memref.GetGlobalOp(type_, name).result
        op.results[0].replace_all_uses_with(shared)
        op.erase()


def allow_fma_contraction(module: ir.Module) -> None:
    """Lets kernel multiply-adds fuse into FMAs, as nvcc does by default (`--fmad=true`).

    Without the `contract` flag NVPTX emits separately rounded `mul.rn` and
    `add.rn`, which ptxas may not fuse: twice the instructions in matmuls
    and convolutions.
    """
    contract = ir.Attribute.parse("#arith.fastmath<contract>")
    for op in walk_ops(module.operation):
        if op.name in ("arith.mulf", "arith.addf", "arith.subf") and _inside_launch(op):
            op.attributes["fastmath"] = contract


def _is_workgroup(type_: ir.Type) -> bool:
    return isinstance(type_, ir.MemRefType) and "workgroup" in str(type_.memory_space)


def lower_to_cuda(module: ir.Module, runner: StageRunner, chip: str = "sm_90") -> None:
    """Lowers fused linalg on tensors (in place) to an LLVM host module with a cubin."""
    stages = dict(pipelines.cuda_stages(check_chip(chip)))
    with module.context:
        function = entry_function(module)
        runner.run(module, "gpu-bufferize", stages["gpu-bufferize"])
        function = entry_function(module)
        place_in_device_memory(function)
        runner.dump(module, "gpu-device-memory")
        insert_matmul_schedule(module, function)
        runner.run(module, "gpu-map-matmul", stages["gpu-map-matmul"])
        remove_schedule(module)
        runner.run(module, "gpu-generalize", stages["gpu-generalize"])
        function = entry_function(module)
        insert_generic_schedule(module, function)
        runner.run(module, "gpu-map-generic", stages["gpu-map-generic"])
        remove_schedule(module)
        constants_into_kernels(entry_function(module))
        check_host_code(entry_function(module))
        shared_buffers_to_globals(module)
        allow_fma_contraction(module)
        runner.run(module, "gpu-outline", stages["gpu-outline"])
        if runner.dump_dir:
            (runner.dump_dir / "kernels.ptx").write_text(ptx_of(module, chip))
        runner.run(module, "gpu-to-nvvm", stages["gpu-to-nvvm"])


def ptx_of(module: ir.Module, chip: str = "sm_90") -> str:
    """The PTX of the kernels of a module lowered up to (not including) gpu-to-nvvm."""
    with module.context:
        copy = ir.Module.parse(str(module))
        ptx_pipeline = pipelines.cuda_to_nvvm(check_chip(chip), "isa")
        manager = passmanager.PassManager.parse(pipelines.wrap(ptx_pipeline))
        try:
            manager.run(copy.operation)
        except ir.MLIRError as error:
            raise CompileError(f"generating PTX failed: {error}") from None
    return "\n".join(data.decode() for _, data in kernel_objects(copy))


def kernel_objects(module: ir.Module) -> list[tuple[str, bytes]]:
    """(gpu.binary name, object bytes: cubin or PTX) for each kernel binary in `module`."""
    objects = []
    for op in walk_ops(module.operation):
        if op.name == "gpu.binary":
            name = ir.StringAttr(op.attributes["sym_name"]).value
            for attribute in ir.ArrayAttr(op.attributes["objects"]):
                objects.append((name, bytes(gpu.ObjectAttr(attribute).object)))
    return objects
