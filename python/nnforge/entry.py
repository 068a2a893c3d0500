"""A compiled module's entry point: which function it is, its signature, and
the strings (signature, target) embedded in the code for the loaders."""

from __future__ import annotations

from dataclasses import replace

from mlir import ir

from nnforge.errors import CompileError
from nnforge.runtime import Signature, TensorSpec


def entry_function(module: ir.Module) -> ir.Operation:
    """The function to compile: the only public one with a body, or `main`,
    or the one given MLIR's C interface when it was chosen."""
    functions = [
        op.operation
        for op in module.body.operations
        if op.operation.name == "func.func"
        and len(op.operation.regions[0].blocks) > 0
        and _is_public(op.operation)
    ]
    if len(functions) == 1:
        return functions[0]
    named = [f for f in functions if ir.StringAttr(f.attributes["sym_name"]).value == "main"]
    if named:
        return named[0]
    # Once chosen, the entry has MLIR's C interface; functions added while
    # lowering (a profile's counters) do not.
    chosen = [f for f in functions if "llvm.emit_c_interface" in f.attributes]
    if len(chosen) == 1:
        return chosen[0]
    names = [ir.StringAttr(f.attributes["sym_name"]).value for f in functions]
    raise CompileError(
        f"cannot tell which function to compile: public functions {names or 'none'} "
        "(make one `main`, or the others private)"
    )


def _is_public(function: ir.Operation) -> bool:
    """Whether a function is public: no visibility, or "public" (as jax writes)."""
    visibility = function.attributes["sym_visibility"] if "sym_visibility" in function.attributes else None
    return visibility is None or ir.StringAttr(visibility).value == "public"


def mark_inputs_read_only(function: ir.Operation) -> None:
    """Marks the tensor arguments of the entry function not writable, so that
    bufferization copies an input before updating it in place (a loop
    inserting into its input tensor, as sort and scatter do): the inputs are
    the caller's arrays."""
    function_type = ir.FunctionType(ir.TypeAttr(function.attributes["function_type"]).value)
    old = list(ir.ArrayAttr(function.attributes["arg_attrs"])) if "arg_attrs" in function.attributes else []
    updated = []
    for index, type_ in enumerate(function_type.inputs):
        entries = {}
        if index < len(old):
            entries = {named.name: named.attr for named in ir.DictAttr(old[index])}
        if isinstance(type_, ir.RankedTensorType):
            entries["bufferization.writable"] = ir.BoolAttr.get(False)
        updated.append(ir.DictAttr.get(entries))
    function.attributes["arg_attrs"] = ir.ArrayAttr.get(updated)


def has_identity_layout(memref: ir.MemRefType) -> bool:
    """Whether `memref` is laid out row-major without offset or strides of its own."""
    layout = memref.layout
    return isinstance(layout, ir.AffineMapAttr) and ir.AffineMapAttr(layout).value == ir.AffineMap.get_identity(memref.rank)


def _tensor_spec(name: str, type_: ir.Type, where: str) -> TensorSpec:
    # A bufferized module (see nnforge.importers.levels) passes identity-layout
    # memrefs: the same calling convention as tensors after bufferization.
    if isinstance(type_, ir.RankedTensorType):
        shaped = ir.RankedTensorType(type_)
    elif isinstance(type_, ir.MemRefType) and has_identity_layout(ir.MemRefType(type_)):
        shaped = ir.MemRefType(type_)
    else:
        raise CompileError(
            f"{where} has type {type_}: only ranked tensors and identity-layout memrefs are supported"
        )
    shape = tuple(None if shaped.is_dynamic_dim(i) else shaped.shape[i] for i in range(shaped.rank))
    return TensorSpec(name, str(shaped.element_type), shape)


def with_unsigned_types(signature: Signature, inputs: dict[int, str], outputs: dict[int, str]) -> Signature:
    """`signature` with the unsigned element types ("ui8", ...) given by position where it has the signless
    integer type of their width: the source's types, which torch-mlir hands over signless."""

    def retyped(specs: tuple[TensorSpec, ...], types: dict[int, str]) -> tuple[TensorSpec, ...]:
        return tuple(replace(spec, dtype=types[i]) if types.get(i, "").removeprefix("u") == spec.dtype else spec
                     for i, spec in enumerate(specs))

    return replace(signature, inputs=retyped(signature.inputs, inputs), outputs=retyped(signature.outputs, outputs))

def signature_of(
    function: ir.Operation, names: tuple[list[str], list[str]] | None = None
) -> Signature:
    """The inputs and outputs of a tensor-level function, named after `names` if given."""
    entry = ir.StringAttr(function.attributes["sym_name"]).value
    function_type = ir.FunctionType(ir.TypeAttr(function.attributes["function_type"]).value)
    input_names, output_names = names or ([], [])
    if len(input_names) != len(function_type.inputs):
        input_names = [f"input{i}" for i in range(len(function_type.inputs))]
    if len(output_names) != len(function_type.results):
        output_names = [f"output{i}" for i in range(len(function_type.results))]
    inputs = tuple(
        _tensor_spec(name, t, f"input {i} of @{entry}")
        for i, (name, t) in enumerate(zip(input_names, function_type.inputs))
    )
    outputs = tuple(
        _tensor_spec(name, t, f"result {i} of @{entry}")
        for i, (name, t) in enumerate(zip(output_names, function_type.results))
    )
    return Signature(entry, inputs, outputs)


def takes_buffers(function: ir.Operation) -> bool:
    """Whether `function` is already bufferized (memrefs at its boundary)."""
    function_type = ir.FunctionType(ir.TypeAttr(function.attributes["function_type"]).value)
    return any(isinstance(t, ir.MemRefType) for t in [*function_type.inputs, *function_type.results])


def _mlir_string(text: str) -> str:
    """`text` as an MLIR string literal body (hex-escaping all but the plain)."""
    plain = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.:,[]{}")
    return "".join(c if c in plain else "".join(f"\\{b:02X}" for b in c.encode()) for c in text)


def embed_string(module: ir.Module, symbol: str, text: str) -> None:
    """Adds `text` as a NUL-terminated global string `symbol` to an LLVM-dialect module."""
    size = len(text.encode()) + 1
    with module.context:
        holder = ir.Module.parse(
            f'llvm.mlir.global external constant @{symbol}("{_mlir_string(text)}\\00")'
            f" {{addr_space = 0 : i32}} : !llvm.array<{size} x i8>"
        )
        holder.body.operations[0].move_before(module.body.operations[0])
