"""The hand-over of torch-mlir's text to nnforge's MLIR 22."""

from __future__ import annotations

import numpy as np

from nnforge.importers.handover import to_nnforge_module


def _module(values: str, shape: str) -> str:
    return (f'func.func @f() -> tensor<{shape}xi1> {{\n  %0 = arith.constant dense<{values}> : tensor<{shape}xi1>\n'
            f'  return %0 : tensor<{shape}xi1>\n}}\n')


def test_i1_hex_in_bytes_parses_as_its_elements() -> None:
    """torch-mlir's MLIR prints an i1 element per byte; the module holds the same booleans."""
    mask = np.tril(np.ones((1, 1, 16, 16), bool))
    one_byte_each = mask.astype(np.uint8).tobytes().hex().upper()
    listed = np.array2string(mask, separator=", ", threshold=mask.size).replace("True", "true") \
        .replace("False", "false")
    handed_over = to_nnforge_module(_module(f'"0x{one_byte_each}"', "1x1x16x16"), "a mask")
    assert str(handed_over) == str(to_nnforge_module(_module(listed, "1x1x16x16"), "a mask"))


def test_i1_hex_splat() -> None:
    for byte, value in (("01", "true"), ("00", "false")):
        handed_over = to_nnforge_module(_module(f'"0x{byte}"', "200"), "a splat")
        assert f"dense<{value}> : tensor<200xi1>" in str(handed_over)
