"""Checks shared by the import tests."""

from __future__ import annotations

import re

from mlir import ir

from nnforge.importers.handover import walk_ops

TORCH_MLIR_ONLY = ("torch.", "torch_c.", "tm_tensor.")


def check_imported(result, level: str) -> None:
    """`result` is what an importer returns at `level`: verified, nothing torch-mlir-only."""
    if level == "torch":
        assert isinstance(result, str)
        assert "torch.vtensor" in result and "func.func" in result
        return
    assert isinstance(result, ir.Module)
    assert result.operation.verify()
    names = [op.name for op in walk_ops(result.operation)]
    assert not [name for name in names if name.startswith(TORCH_MLIR_ONLY)]
    assert any(name == "func.func" for name in names)
    if level == "nnf":
        assert "nnforge.raised_ops" in result.operation.attributes


def entry_signature(result) -> str:
    """The first `func.func` line of a module (or of torch-level text)."""
    return next(line for line in str(result).splitlines() if "func.func @" in line)


def input_types(result) -> list[str]:
    """The textual types of the entry function's arguments."""
    signature = entry_signature(result)
    return re.findall(r"%arg\d+: ((?:tensor|!torch\.vtensor)<[^>]*>)", signature)
