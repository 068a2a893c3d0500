"""StableHLO (what jax, TensorFlow and PyTorch/XLA export) -> MLIR.

The module is converted to linalg in torch-mlir's child process
(`torch_mlir_worker`, `stablehlo_lowering`), handed over as text, parsed
and verified in `nnforge.context()`. There, `linalg-detensorize` turns the
0-d tensor code the conversion leaves (loop counters, conditions, sort
comparators and scatter updates called per element) back into scalar code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from nnforge.errors import CompileError, ModelLoadError
from nnforge.importers import handover
from nnforge.importers.levels import STABLEHLO_LEVELS, check_level
from nnforge.importers.stablehlo_lowering import BYTECODE_MAGIC

# Makes the 0-d tensor code of the conversion scalar again.
SCALARIZE = "builtin.module(func.func(linalg-detensorize{aggressive-mode}),canonicalize,cse)"
# File names of StableHLO modules: text, or bytecode / portable artifacts.
SUFFIXES = (".mlir", ".mlirbc")

# How deserialization fails on a module with Shardy (sdy) attributes.
SHARDY_DIAGNOSTIC = "dialect 'sdy'"
# jax names each argument of an exported function by its location, each
# result by an attribute.
_ARGUMENT_NAME = re.compile(r'loc\("([^"]+)"\)')
RESULT_NAME_ATTRIBUTE = "jax.result_info"
# A frame of a jax location: "file":line:column.
_FRAME = re.compile(r'"([^"]+)":(\d+):\d+')
# The name jax gives an op: "jit(f)/scatter-add".
_OP_NAME = re.compile(r'loc\("([^"]+)"\(')


def is_exported(source: Any) -> bool:
    """Whether `source` is a `jax.export.Exported` (checked without importing jax)."""
    return type(source).__name__ == "Exported" and hasattr(source, "mlir_module_serialized")


def looks_like_stablehlo(data: bytes) -> bool:
    """Whether MLIR in `data` (bytecode or text) holds StableHLO, CHLO or VHLO."""
    if data.startswith(BYTECODE_MAGIC):
        return b"StableHLO" in data[:64] or b"stablehlo" in data or b"vhlo" in data
    return re.search(rb"\b(stablehlo|chlo|vhlo)\.", data) is not None


def read_source(source: Any) -> tuple[bytes, str]:
    """(the module's bytes, words naming it) of a StableHLO source."""
    if is_exported(source):
        return bytes(source.mlir_module_serialized), f"jax export of {source.fun_name}"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "the StableHLO bytes"
    is_text = isinstance(source, str) and ("\n" in source or "{" in source)
    if isinstance(source, str) and is_text:
        return source.encode(), "the StableHLO text"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such file")
        return path.read_bytes(), str(path)
    raise ModelLoadError(
        "import_stablehlo takes StableHLO text, a portable artifact (bytes or a .mlirbc path) "
        f"or a jax.export.Exported, not {type(source).__name__}"
    )


def location_describer() -> handover.LocationDescriber:
    """Describes a jax location as its innermost source line outside jax, and the op's name."""
    try:
        import jax

        jax_dir = os.path.dirname(jax.__file__) + os.sep
    except ImportError:
        jax_dir = None

    def describe(location: str) -> str:
        frames = _FRAME.findall(location)  # innermost first
        user = [(file, line) for file, line in frames if not (jax_dir and file.startswith(jax_dir))]
        file, line = (user or frames or [("", "")])[0]
        name = _OP_NAME.match(location)
        where = f"{file}:{line}" if file else ""
        if name:
            where = f"{where} ({name.group(1)})" if where else name.group(1)
        return where

    return describe


def io_names(function) -> tuple[list[str], list[str]]:
    """(input names, output names) jax gave an entry function (an
    `mlir.ir.Operation`): each argument's location names it ("params[0]['w']",
    "x"), each result's `jax.result_info` ("result[1]"). Empty lists where
    names are missing or repeated (the caller numbers them then)."""
    from mlir import ir

    inputs = [_ARGUMENT_NAME.fullmatch(str(arg.location)) for arg in function.regions[0].blocks[0].arguments]
    input_names = [match.group(1) for match in inputs if match]
    outputs = []
    if "res_attrs" in function.attributes:
        for attributes in ir.ArrayAttr(function.attributes["res_attrs"]):
            attributes = ir.DictAttr(attributes)
            if RESULT_NAME_ATTRIBUTE in attributes:
                outputs.append(ir.StringAttr(attributes[RESULT_NAME_ATTRIBUTE]).value)

    def unique(names: list[str], count: int) -> list[str]:
        return names if len(names) == count and len(set(names)) == count else []

    function_type = ir.FunctionType(ir.TypeAttr(function.attributes["function_type"]).value)
    return unique(input_names, len(function_type.inputs)), unique(outputs, len(function_type.results))


def scalarize(module) -> None:
    """Runs SCALARIZE on a module in nnforge's MLIR."""
    from mlir import ir, passmanager

    with module.context:
        try:
            passmanager.PassManager.parse(SCALARIZE).run(module.operation)
        except ir.MLIRError as error:
            raise CompileError(f"making the 0-d tensor code scalar failed: {error}") from None


def import_stablehlo(source: Any, *, level: str = "linalg"):
    """Imports a StableHLO module into MLIR.

    `source`: StableHLO text, a portable artifact (bytes, or the path of a
    `.mlirbc` file; a `.mlir` path is read as text or bytecode) or a
    `jax.export.Exported`. `level`: "stablehlo" (the module as read, as
    text), "tosa" (TOSA, the exporters' level: static shapes only), "linalg"
    (an `mlir.ir.Module` in `nnforge.context()`, verified), or "nnf"
    (linalg after `nnf-raise`).

    Raises ModelLoadError when the source cannot be read, UnsupportedOpError
    naming each kind of op left unconverted with its count and source lines,
    CompileError for other failures.
    """
    check_level(level, STABLEHLO_LEVELS)
    data, what = read_source(source)
    try:
        text = handover.run_worker(
            data, "stablehlo", "linalg" if level == "nnf" else level, location_describer(), what
        )
    except ModelLoadError as error:
        if SHARDY_DIAGNOSTIC not in str(error):
            raise
        raise ModelLoadError(
            f"{error}\n(the module is written with the Shardy dialect, sdy, which torch-mlir's StableHLO cannot read: "
            "export it with jax.config.update('jax_use_shardy_partitioner', False), or give "
            "nnforge.compile the jax.jit-wrapped function)"
        ) from None
    if level == "stablehlo":
        return text
    module = handover.to_nnforge_module(text, what)
    if level == "tosa":
        return module
    scalarize(module)
    if level == "nnf":
        handover.raise_to_nnf(module)
    return module
