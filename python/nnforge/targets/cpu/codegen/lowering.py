"""The CPU lowering with optimized code generation: each op's schedule
chosen by its kind and applied, then bufferization and the lowering to LLVM.

The outermost tile loops of ops with enough iterations are `scf.forall`
loops, which `buffers_to_llvm_optimized` hands to OpenMP threads.
"""

from __future__ import annotations

from collections.abc import Callable

from mlir import ir, passmanager
from mlir.dialects import bufferization, linalg, tensor

from nnforge import pipelines
from nnforge.importers.handover import walk_ops
from nnforge.stages import StageRunner
from nnforge.targets.cpu.codegen.common import (
    Scheduled,
    apply_schedules,
    dispatches,
    is_in_dispatch,
    linalg_ops,
    static_loop_sizes,
    worth_parallel,
)
from nnforge.targets.cpu.codegen.contractions import contraction_schedule
from nnforge.targets.cpu.codegen.convolutions import (
    CONV_TO_IM2COL,
    NCHW_POOLING,
    depthwise_schedule,
    direct_convolution_schedule,
    is_direct_convolution,
    is_window_copy,
    pooling_schedule,
    window_copy_schedule,
)
from nnforge.targets.cpu.codegen.dispatch import dispatch_schedule
from nnforge.targets.cpu.codegen.elementwise import copy_schedule, elementwise_schedule
from nnforge.targets.cpu.codegen.outlining import outline_equal_ops
from nnforge.targets.cpu.codegen.reductions import reduction_schedule
from nnforge.targets.cpu.host import ScheduleSizes

# Vector lowering applied to every function once all ops are vectorized:
# contractions become outer products (FMAs), masks and transposes lower to
# what LLVM's x86 backend handles well, leading unit dims (batch, k=1) go.
_VECTOR_LOWERING = """
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_masked_transfers
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.reduction_to_contract
    transform.apply_patterns.vector.transfer_permutation_patterns
    transform.apply_patterns.vector.cast_away_vector_leading_one_dim
    transform.apply_patterns.canonicalization
  } : !transform.any_op
  transform.apply_cse to %funcs : !transform.any_op
"""
_VECTOR_LOWERING_LATE = """
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_contraction lowering_strategy = "outerproduct"
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_outerproduct
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_multi_reduction lowering_strategy = "innerreduction"
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_broadcast
    transform.apply_patterns.vector.lower_masks
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_transpose lowering_strategy = "shuffle_16x16"
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.vector.lower_shape_cast
  } : !transform.any_op
  transform.apply_patterns to %funcs {
    transform.apply_patterns.canonicalization
  } : !transform.any_op
  transform.apply_cse to %funcs : !transform.any_op
"""

# The scheduled dispatch regions back in place: the outlined functions
# inlined at each call (upstream's inliner, no clean-up pipeline) and
# erased, the regions left in place dissolved. LLVM compiled a module
# of separate dispatch functions more slowly than the same code inlined.
_INLINE_DISPATCHES = "inline{default-pipeline=},symbol-dce,nnf-inline-dispatch-regions"

# Vectorized IR on tensors -> buffers.
BUFFERIZE_OPTIMIZED = f"canonicalize,cse,{pipelines.BUFFERIZE},canonicalize,cse"


def buffers_to_llvm_optimized(threads: int) -> str:
    """Vectorized IR on buffers (`BUFFERIZE_OPTIMIZED`'s result) -> LLVM dialect.

    2-D vector transfers are unrolled (else they go through stack
    temporaries); ops the schedule left alone become scalar loops;
    transcendental functions become polynomials; horizontal sums of vector
    lanes may be reassociated (a tree of adds instead of one lane after
    another: the partial results they combine are in no particular order
    anyway), horizontal minima and maxima are trees too (exactly: they are
    associative). With `threads` other than 1 the schedules' `scf.forall` loops
    run on OpenMP threads (0: all cores).
    """
    if threads == 1:
        forall, loops_to_llvm = "scf-forall-to-for", pipelines.LOOPS_TO_LLVM
    else:
        forall, loops_to_llvm = "scf-forall-to-parallel", pipelines.parallel_loops_to_llvm(threads)
    return (
        f"func.func({forall},convert-vector-to-scf{{full-unroll=true}}),convert-linalg-to-loops,"
        f"{pipelines.APPROXIMATE_MATH},{pipelines.WIDEN_BOOLS},nnf-pairwise-vector-reductions,"
        "convert-vector-to-llvm{reassociate-fp-reductions=true},"
        f"{loops_to_llvm}"
    )


def _schedule_of(op: ir.Operation, parallel: bool, sizing: ScheduleSizes) -> str | None:
    """The transform ops scheduling `op` (on handle %op), or None to leave it scalar.

    `parallel`: whether threads may share the outer loops; only ops large
    enough get them.
    """
    if 0 in static_loop_sizes(op):
        return None  # no iterations (an empty dimension): tiling would assert
    parallel = parallel and worth_parallel(op)
    if op.name == "linalg.depthwise_conv_2d_nchw_chw":
        return depthwise_schedule(op, parallel, sizing)
    if op.name in NCHW_POOLING:
        return pooling_schedule(op, parallel, sizing)
    if op.name == "linalg.copy":
        return copy_schedule(op, parallel, sizing)
    if is_window_copy(op):
        return window_copy_schedule(op, parallel, sizing)
    if is_direct_convolution(op):
        return direct_convolution_schedule(op, parallel, sizing)
    if linalg.isa_convolution_op(op):
        return None  # what im2col did not turn into a contraction stays scalar
    return (
        contraction_schedule(op, parallel, sizing)
        or reduction_schedule(op, parallel, sizing)
        or elementwise_schedule(op, parallel, sizing)
    )


def vectorize_linalg(module: ir.Module, sizing: ScheduleSizes, parallel: bool = False) -> None:
    """Tiles and vectorizes the linalg-on-tensors ops of `module`, in place,
    to the tile and vector sizes of `sizing`.

    `parallel`: the outer tile loops of large ops are `scf.forall` loops, to
    be run by several threads. Run it after linalg fusion and
    `pipelines.dispatch_regions`, then `BUFFERIZE_OPTIMIZED` and
    `buffers_to_llvm_optimized`.

    Each dispatch region is first outlined into a function, equivalent
    regions into one (nnf-outline-dispatch-regions): a model's repeated
    blocks are scheduled once, and each schedule's clean-ups run on its
    function rather than on the whole model; once scheduled, the functions
    are inlined back (_INLINE_DISPATCHES). The ops outside dispatch regions
    are outlined likewise, equal ones into one function (`outline_equal_ops`).
    """
    passmanager.PassManager.parse("builtin.module(nnf-outline-dispatch-regions)", module.context).run(
        module.operation
    )
    # The other layouts: upstream's (NHWC/HWCF with unit strides: computed
    # directly, `direct_convolution_schedule`). Mixed-precision convolutions (f16 in,
    # f32 accumulator) came out wrong through it: they stay direct (and scalar).
    convolutions = [
        op for op in linalg_ops(module)
        if op.name in CONV_TO_IM2COL and len({value.type.element_type for value in op.operands}) == 1
        and not is_direct_convolution(op)
    ]
    if convolutions:
        im2col = [
            Scheduled(op, """
    %i, %mm = transform.structured.convert_conv2d_to_img2col %op
        : (!transform.any_op) -> (!transform.any_op, !transform.any_op)""")
            for op in convolutions
        ]
        apply_schedules(module, im2col, "", "im2col")
    _pads_into_producers(module)
    _peel_pooling_pads(module, sizing)
    _pads_as_fill_and_copy(module)
    _give_fills_private_destinations(module)
    outline_equal_ops(module)
    # Dispatch regions first: their ops are scheduled once fused into the
    # region's tile loop, which threads share instead.
    scheduled = []
    vectorized: list[ir.Operation] = []
    for dispatch in dispatches(module):
        schedule = dispatch_schedule(dispatch, parallel, sizing)
        if schedule is not None:
            scheduled.append(Scheduled(dispatch, schedule[0]))
            vectorized += schedule[1]
    for op in linalg_ops(module):
        if op in vectorized:
            continue
        in_dispatch = is_in_dispatch(op)
        body = _schedule_of(op, parallel and not in_dispatch, sizing)
        if body is not None:
            scheduled.append(Scheduled(op, body))
    apply_schedules(module, scheduled, _VECTOR_LOWERING + _VECTOR_LOWERING_LATE, "vectorization")
    passmanager.PassManager.parse(f"builtin.module({_INLINE_DISPATCHES})", module.context).run(module.operation)


def _pads_into_producers(module: ir.Module) -> None:
    """Computes each `tensor.pad` outside dispatch regions whose input only
    it reads, computed by a linalg op into an empty tensor, in place: the
    padding value is filled into the border slabs of the padded tensor
    (`_border_slabs`) and that op writes its result into the interior, so
    the result is never copied (ResNet-18: the input of every 3x3
    convolution computed directly, up to 0.8 MB a call each) and the
    interior never filled. The fills come before the producer."""
    for pad in [op for op in walk_ops(module.operation) if op.name == "tensor.pad" and not is_in_dispatch(op)]:
        producer = pad.operands[0].owner
        body = pad.regions[0].blocks[0].operations  # a constant padding value: yield alone
        value = body[0].operands[0].owner if len(body) == 1 else None
        source = ir.RankedTensorType(pad.operands[0].type)
        padded = ir.RankedTensorType(pad.results[0].type)
        if (
            isinstance(producer, ir.Block)
            or len(pad.operands) > 1  # padding amounts computed at run time
            or not (source.has_static_shape and padded.has_static_shape)
        ):
            continue
        producer = producer.operation
        init = producer.operands[len(producer.operands) - 1]
        if (
            not producer.name.startswith("linalg.")
            or producer.parent != pad.parent
            or is_in_dispatch(producer)
            or len(producer.results) != 1
            or len(list(producer.results[0].uses)) != 1
            or getattr(value, "name", None) != "arith.constant"
            or getattr(init.owner, "name", None) != "tensor.empty"
            or len(init.owner.operands)
        ):
            continue
        low = list(ir.DenseI64ArrayAttr(pad.attributes["static_low"]))
        high = list(ir.DenseI64ArrayAttr(pad.attributes["static_high"]))
        ones = [1] * len(low)
        with ir.InsertionPoint(producer), pad.location:
            constant = value.clone()
            # A buffer of its own: CSE would merge equal pads' fills, and
            # bufferization then copy the shared one for each.
            border = bufferization.AllocTensorOp(padded, []).result
            for offsets, sizes in _border_slabs(padded.shape, low, high):
                slab = tensor.extract_slice(
                    ir.RankedTensorType.get(sizes, padded.element_type), border, [], [], [], offsets, sizes, ones
                )
                filled = linalg.fill(constant.result, outs=[slab])
                border = tensor.insert_slice(filled, border, [], [], [], offsets, sizes, ones)
            interior = tensor.extract_slice(source, border, [], [], [], low, source.shape, ones)
        producer.operands[len(producer.operands) - 1] = interior
        with ir.InsertionPoint(pad), pad.location:
            result = tensor.insert_slice(producer.results[0], border, [], [], [], low, source.shape, ones)
        pad.results[0].replace_all_uses_with(result)
        pad.erase()


def _border_slabs(shape: list[int], low: list[int], high: list[int]) -> list[tuple[list[int], list[int]]]:
    """(offsets, sizes) of slabs covering the padding of a tensor of `shape`
    padded by `low` and `high`: per padded dimension, its low and its high
    part, whole along the dimensions before it and without their padding
    along those after it (no element twice)."""
    slabs = []
    for dim, (before, after) in enumerate(zip(low, high)):
        for offset, size in ((0, before), (shape[dim] - after, after)):
            if size:
                offsets = [0] * dim + [offset] + low[dim + 1:]
                sizes = shape[:dim] + [size] + [n - lo - hi for n, lo, hi in zip(shape[dim + 1:], low[dim + 1:], high[dim + 1:])]
                slabs.append((offsets, sizes))
    return slabs


def _peel_pooling_pads(module: ir.Module, sizing: ScheduleSizes) -> None:
    """Pools the inputs of the pads left (no producer to write into them) that
    NCHW poolings read as they are, all but the borders (nnf-peel-pooling-pads):
    else the whole input is copied into the padded tensor first (ResNet-18's
    stem pool on 2 threads of the AMD EPYC Zen 4: 0.18 ms for the copy, 0.12
    for the pool). A left or right border box is half a vector of columns
    wide at least: one column would be pooled element by element, and the
    stem pool's 56 columns leave 48 to the interior, three whole vectors
    (its pool 0.15-0.16 ms on 2 threads of the AMD EPYC Zen 4, 0.16-0.19
    with 16-column borders, which leave 40)."""
    passmanager.PassManager.parse(
        f"builtin.module(func.func(nnf-peel-pooling-pads{{border-width={sizing.depthwise_vector // 2}}}))",
        module.context,
    ).run(module.operation)


def _pads_as_fill_and_copy(module: ir.Module) -> None:
    """Rewrites each `tensor.pad` outside dispatch regions (those inside are
    tiled with their convolution) as a fill of the padded tensor and a
    `linalg.copy` of the input into it, to be vectorized like other linalg
    ops: bufferized as is, a pad copies row by row through a runtime call
    (memrefCopy), which took a fifth of a depthwise convolution's time."""
    pads = [
        Scheduled(op, """
    %insert = transform.structured.rewrite_in_destination_passing_style %op : (!transform.any_op) -> !transform.any_op
    %copy = transform.structured.insert_slice_to_copy %insert : (!transform.any_op) -> !transform.any_op""")
        for op in walk_ops(module.operation)
        if op.name == "tensor.pad" and not is_in_dispatch(op)
    ]
    if pads:
        apply_schedules(module, pads, "", "padding")


def _give_fills_private_destinations(module: ir.Module) -> None:
    """Gives each fill of an empty tensor outside dispatch regions a buffer
    of its own (`bufferization.alloc_tensor`, which CSE leaves alone), and
    where several linalg ops write into a fill, each of them a fill and
    buffer of its own. CSE merges identical fills (ResNet-18's four
    64 x 58 x 58 pads, the zero accumulators of its three 7x7 convolutions),
    and bufferization then copied the shared filled buffer (for the pads, and
    the interior twice) for every op writing into it."""
    for fill in [op for op in walk_ops(module.operation) if op.name == "linalg.fill" and len(op.results) == 1]:
        uses = list(fill.results[0].uses)
        empty = fill.operands[len(fill.operands) - 1].owner  # an op, or a block
        if not uses or is_in_dispatch(fill) or getattr(empty, "name", None) != "tensor.empty":
            continue
        writers = [fill]
        if len(uses) > 1 and all(_is_linalg_init(use) for use in uses):
            for use in uses[1:]:
                with ir.InsertionPoint(use.owner):
                    private = fill.clone()
                use.owner.operands[use.operand_number] = private.results[0]
                writers.append(private)
        for writer in writers:
            with ir.InsertionPoint(writer), fill.location:
                destination = bufferization.AllocTensorOp(fill.results[0].type, list(empty.operands))
            writer.operands[len(writer.operands) - 1] = destination.result


def _is_linalg_init(use: ir.OpOperand) -> bool:
    """Whether `use` is the destination operand of a linalg op (its results'
    operands come last)."""
    owner = use.owner
    return owner.name.startswith("linalg.") and use.operand_number >= len(owner.operands) - len(owner.results)


def lower_to_llvm(
    module: ir.Module,
    level: str,
    runner: StageRunner,
    sizing: ScheduleSizes,
    threads: int = 0,
    instrument: Callable[[ir.Module, StageRunner], None] | None = None,
    on_buffers: Callable[[ir.Module, StageRunner], None] | None = None,
) -> None:
    """Runs the stages from `level` to the LLVM dialect with the optimized code
    generation, sized by `sizing`.

    `threads`: 1 for sequential code, else how many OpenMP threads run the
    parallel loops (0: all cores). `instrument`, if given, runs once the
    dispatch regions are formed, before code generation (the timers of a
    profiled build). `on_buffers` is called on the bufferized module,
    before it goes to LLVM.

    The CPU replacement of `for name, pipeline in pipelines.stages(level):
    runner.run(...)`; the tiling/vectorization shows in `runner.times` (and
    the IR dumps) as stage "vectorize".
    """
    steps = pipelines.stages(level)
    for name, pipeline in steps:
        if name in ("bufferize", "linalg-to-llvm"):
            break
        runner.run(module, name, pipeline)
    runner.run(module, "dispatch-regions", pipelines.dispatch_regions(
        copy_arguments=not sizing.copy_panels,
        row_tiles=sizing.full_rate_register_rows(),
        convolution_panel=(sizing.direct_filter_panel, sizing.direct_filter_bytes),
        direct_min_width=sizing.direct_min_width,
    ))
    if instrument is not None:
        instrument(module, runner)
    with runner.stage("vectorize"):
        vectorize_linalg(module, sizing, parallel=threads != 1)
    runner.dump(module, "vectorize")
    runner.run(module, "bufferize", BUFFERIZE_OPTIMIZED)
    if on_buffers is not None:
        on_buffers(module, runner)
    runner.run(module, "linalg-to-llvm", buffers_to_llvm_optimized(threads))
