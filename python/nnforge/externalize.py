"""Large constants out of the compiled code, into a weights file.

After bufferization a model's weights are `memref.global` constants. Left
there, LLVM copies each into its IR and its object code,
and a saved library carries them: memory and time grow with the weights.
`externalize_weights` instead makes each large constant an argument of the
entry function (after its inputs) and writes its bytes, read in place from
the attribute, once into a weights file (`nnforge.weights`); the runtime
passes the file's mapped pages as those arguments.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from mlir import ir

from nnforge import weights
from nnforge._native import MlirOperation, _capsule_pointer, _library, operation_handle
from nnforge.entry import entry_function, has_identity_layout
from nnforge.importers.handover import walk_ops

# Constants at least this large leave the module; smaller ones (shapes,
# index tables, scalars) stay, where LLVM may fold them.
MIN_BYTES = 16 * 1024


class _MlirAttribute(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p)]


def _attribute(attribute: ir.Attribute) -> _MlirAttribute:
    return _MlirAttribute(_capsule_pointer(attribute._CAPIPtr, b"mlir.ir.Attribute._CAPIPtr"))


def release_unused_constants(module: ir.Module, values: list[ir.Attribute]) -> None:
    """Frees the data of the constants in `values` that nnforge's passes made
    and no op of `module` uses any more (the bytes are in the weights file)."""
    function = _library().nnforgeReleaseUnusedConstants
    function.argtypes = [MlirOperation, ctypes.POINTER(_MlirAttribute), ctypes.c_ssize_t]
    function.restype = None
    array = (_MlirAttribute * len(values))(*map(_attribute, values))
    operation = operation_handle(module.operation)
    function(operation, array, len(values))


def constant_bytes(attribute: ir.Attribute) -> memoryview | None:
    """The raw bytes of a non-splat dense or `dense_resource` attribute, in
    place (valid while its context lives); None for other attributes."""
    library = _library()
    function = library.nnforgeConstantBytes
    function.argtypes = [_MlirAttribute, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_ssize_t)]
    function.restype = ctypes.c_bool
    data, size = ctypes.c_void_p(), ctypes.c_ssize_t()
    if not function(_attribute(attribute), ctypes.byref(data), ctypes.byref(size)) or not data.value:
        return None
    return memoryview((ctypes.c_char * size.value).from_address(data.value)).cast("B")


def _symbol(op: ir.Operation) -> str:
    return ir.StringAttr(op.attributes["sym_name"]).value


def _element_bits(element: ir.Type) -> int | None:
    for kind in (ir.FloatType, ir.IntegerType):
        if isinstance(element, kind):
            return kind(element).width
    return None


def _externalizable(global_op: ir.Operation, min_bytes: int) -> memoryview | None:
    """The bytes of a `memref.global` constant worth moving out, else None
    (sub-byte elements, whose bytes are packed bits, stay)."""
    attributes = global_op.attributes
    if "constant" not in attributes or "initial_value" not in attributes:
        return None
    memref = ir.MemRefType(ir.TypeAttr(attributes["type"]).value)
    bits = _element_bits(memref.element_type)
    if not memref.has_static_shape or bits is None or bits % 8 or not has_identity_layout(memref):
        return None
    data = constant_bytes(attributes["initial_value"])
    if data is None or len(data) < min_bytes:
        return None
    return data


def externalize_weights(module: ir.Module, path: Path, min_bytes: int = MIN_BYTES) -> weights.Manifest | None:
    """Moves the large `memref.global` constants only the entry function
    reads into arguments of it, appended after its inputs, and their bytes
    into a weights file written at `path`; returns its manifest, or None
    (and no file) when there is nothing to move.

    Run on a bufferized module, before its memrefs go to LLVM.
    """
    with module.context, ir.Location.unknown():
        entry = entry_function(module)
        globals_ = {_symbol(op.operation): op.operation for op in module.body.operations
                    if op.operation.name == "memref.global"}
        readers: dict[str, list[ir.Operation]] = {}
        outside: set[str] = set()
        for function in module.body.operations:
            for op in walk_ops(function.operation):
                if op.name == "memref.get_global":
                    name = ir.FlatSymbolRefAttr(op.attributes["name"]).value
                    if function.operation == entry:
                        readers.setdefault(name, []).append(op)
                    else:
                        outside.add(name)
        moved: list[tuple[str, ir.Operation, memoryview]] = []
        for name, global_op in globals_.items():
            if name in outside or name not in readers:
                continue
            data = _externalizable(global_op, min_bytes)
            if data is not None:
                moved.append((name, global_op, data))
        if not moved:
            return None
        manifest = weights.write(path, [
            (name, str(ir.MemRefType(ir.TypeAttr(op.attributes["type"]).value).element_type),
             tuple(ir.MemRefType(ir.TypeAttr(op.attributes["type"]).value).shape), data)
            for name, op, data in moved
        ])
        values = [op.attributes["initial_value"] for _, op, _ in moved]
        block = entry.regions[0].blocks[0]
        function_type = ir.FunctionType(ir.TypeAttr(entry.attributes["function_type"]).value)
        added = []
        for name, global_op, _ in moved:
            memref = ir.TypeAttr(global_op.attributes["type"]).value
            argument = block.add_argument(memref, ir.Location.unknown())
            added.append(memref)
            for reader in readers[name]:
                reader.results[0].replace_all_uses_with(argument)
                reader.erase()
            global_op.erase()
        entry.attributes["function_type"] = ir.TypeAttr.get(
            ir.FunctionType.get([*function_type.inputs, *added], function_type.results)
        )
        release_unused_constants(module, values)
        if "arg_attrs" in entry.attributes:
            old = list(ir.ArrayAttr(entry.attributes["arg_attrs"]))
            entry.attributes["arg_attrs"] = ir.ArrayAttr.get(old + [ir.DictAttr.get({}) for _ in added])
    return manifest
