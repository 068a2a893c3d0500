"""The regions of a profiled module: what `nnf-profile-dispatch-regions`
timed, read back from its IR while each region is still one op.

Each region is described by the ops it computes, the source lines those ops
came from (their MLIR locations: the frames of the model's own code, not the
framework's), and the regions or inputs its operands come from (the edges of
the model's graph).
"""

from __future__ import annotations

import linecache
from dataclasses import dataclass
from pathlib import Path

from mlir import ir

from nnforge import pipelines
from nnforge.entry import entry_function
from nnforge.stages import StageRunner

REGION_ATTRIBUTE = "nnf.profile_region"
# The function returning the address of a profiled module's counters.
COUNTERS_FUNCTION = "nnf_profile_counters_address"
# Ops that compute nothing themselves, left out of a region's op list.
_NOT_COMPUTING = frozenset({"tensor.empty", "arith.constant", "nnf.yield", "bufferization.alloc_tensor"})
# Folders of installed packages: frames there are the framework's, not the model's.
_PACKAGE_FOLDERS = ("site-packages", "dist-packages")


@dataclass(frozen=True)
class Source:
    """Where an op came from: `where` is "file.py:line" (or an ONNX node's
    name), `code` the text of that line when the file can be read."""

    where: str
    code: str = ""

    def describe(self) -> str:
        return f"{self.where} {self.code}".strip()


@dataclass(frozen=True)
class Region:
    """A timed part of a model.

    `id`: its counters' index; `kind`: "function" (the whole call),
    "dispatch" (an `nnf.dispatch` region), or the name of the op computed
    outside any (e.g. "linalg.matmul"); `ops`: the ops it computes, in
    order; `sources`: the distinct source lines of those ops; `inputs`: the
    graph nodes its operands come from ("region:<id>", "input:<index>");
    `result`: the types of its results.
    """

    id: int
    kind: str
    ops: tuple[str, ...]
    sources: tuple[Source, ...]
    inputs: tuple[str, ...]
    result: str

    @property
    def node(self) -> str:
        """The region's name as a node of the graph."""
        return f"region:{self.id}"

    @property
    def label(self) -> str:
        """What it computes, shortly: "dispatch: matmul + 2 generic"."""
        counts: dict[str, int] = {}
        for op in self.ops:
            short = op.removeprefix("linalg.")
            counts[short] = counts.get(short, 0) + 1
        summary = " + ".join(name if count == 1 else f"{count} {name}" for name, count in counts.items())
        return f"{self.kind}: {summary}" if self.kind == "dispatch" else summary or self.kind


@dataclass(frozen=True)
class RegionMap:
    """The regions of a profiled module's entry function: `function` (the
    whole call), `regions` (those in it), `outputs` (the nodes each result
    comes from) and the names of its inputs."""

    function: Region
    regions: tuple[Region, ...]
    outputs: tuple[tuple[str, ...], ...]
    input_names: tuple[str, ...] = ()


def instrument(module: ir.Module, runner: StageRunner) -> RegionMap:
    """Runs `nnf-profile-dispatch-regions` on `module` as the stage
    "profile-regions"; returns the regions of its entry function (its
    `input_names` left for the caller, who has the signature)."""
    with module.context:
        entry = ir.StringAttr(entry_function(module).attributes["sym_name"]).value
    runner.run(module, "profile-regions", pipelines.PROFILE_REGIONS)
    return read_regions(module, entry)


def read_regions(module: ir.Module, entry: str) -> RegionMap:
    """The regions of function `entry` in a module that
    `nnf-profile-dispatch-regions` instrumented."""
    function = next(
        op.operation for op in module.body.operations
        if op.operation.name == "func.func" and ir.StringAttr(op.operation.attributes["sym_name"]).value == entry
    )
    # Graph nodes each value's computation depends on, for the values of the
    # function's top-level ops in order (an unprofiled op, such as a reshape,
    # passes on the nodes of its operands).
    feeds: dict[ir.Value, tuple[str, ...]] = {}
    entry_block = function.regions[0].blocks[0]

    def nodes_of(value: ir.Value) -> tuple[str, ...]:
        if isinstance(value, ir.BlockArgument):
            return (f"input:{value.arg_number}",) if value.owner == entry_block else ()
        return feeds.get(value, ())

    regions = []
    outputs: tuple[tuple[str, ...], ...] = ()
    for block in function.regions[0].blocks:
        for op in block.operations:
            op = op.operation
            inputs = tuple(dict.fromkeys(node for value in op.operands for node in nodes_of(value)))
            if REGION_ATTRIBUTE in op.attributes:
                region = _region(op, inputs)
                regions.append(region)
                inputs = (region.node,)
            if op.name == "func.return":
                outputs = tuple(nodes_of(value) for value in op.operands)
            for result in op.results:
                feeds[result] = inputs
    whole = Region(
        id=ir.IntegerAttr(function.attributes[REGION_ATTRIBUTE]).value, kind="function", ops=(), sources=(),
        inputs=(), result="",
    )
    return RegionMap(whole, tuple(regions), outputs)


def _region(op: ir.Operation, inputs: tuple[str, ...]) -> Region:
    if op.name == "nnf.dispatch":
        members = [inner.operation for inner in op.regions[0].blocks[0].operations]
        kind = "dispatch"
    else:
        members = [op]
        kind = op.name
    computing = [member for member in members if member.name not in _NOT_COMPUTING]
    sources = dict.fromkeys(source for member in computing if (source := _source(member.location)) is not None)
    return Region(
        id=ir.IntegerAttr(op.attributes[REGION_ATTRIBUTE]).value,
        kind=kind,
        ops=tuple(member.name for member in computing),
        sources=tuple(sources),
        inputs=inputs,
        result=", ".join(_describe_type(result.type) for result in op.results),
    )


def _describe_type(type_: ir.Type) -> str:
    """`tensor<4x32xf32>` -> "4x32xf32"."""
    text = str(type_)
    for prefix in ("tensor<", "memref<"):
        if text.startswith(prefix) and text.endswith(">"):
            return text[len(prefix):-1]
    return text


def _frames(location: ir.Location) -> list[ir.Location]:
    """The file and name locations in `location`, innermost call first."""
    if location.is_a_callsite():
        return _frames(location.callee) + _frames(location.caller)
    if location.is_a_fused():
        return [frame for part in location.locations for frame in _frames(part)]
    if location.is_a_file() or location.is_a_name():
        return [location]
    return []


def _source(location: ir.Location) -> Source | None:
    """The source line an op came from: the innermost frame in the model's
    own code (not in an installed package such as torch), else the
    innermost frame; a name (an ONNX node's) as it is."""
    frames = _frames(location)
    if not frames:
        return None
    files = [frame for frame in frames if frame.is_a_file()]
    own = [frame for frame in files if not any(folder in Path(frame.filename).parts for folder in _PACKAGE_FOLDERS)]
    if own or files:
        frame = (own or files)[0]
        if frame.filename in ("", "-"):  # MLIR parsed from text or bytes: a line of the model's MLIR
            return Source(f"MLIR line {frame.start_line}")
        code = linecache.getline(frame.filename, frame.start_line).strip() if frame.start_line > 0 else ""
        return Source(f"{Path(frame.filename).name}:{frame.start_line}", code)
    return Source(frames[0].name_str)
