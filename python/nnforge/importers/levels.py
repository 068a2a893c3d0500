"""The levels an importer can stop at.

- "torch": torch-mlir's torch dialect in backend form (ATen ops on value
  tensors). The torch dialect is not part of upstream MLIR, so this level is
  returned as TEXT (a `str`), not as an `mlir.ir.Module`.
- "tosa": TOSA on tensors (StableHLO: through nnforge's rewrites,
  `stablehlo_tosa`, for static shapes).
- "linalg": linalg on tensors (with arith, math, tensor, scf). A model with
  ops torch-mlir expresses only in its TMTensor dialect (sort, top-k,
  cumulative sum, scatter) comes back bufferized instead: torch-mlir lowers
  those ops to loops on memrefs, which upstream MLIR can read, and the whole
  module is then linalg/scf on memrefs (the pipelines' "linalg-on-buffers").
- "stablehlo" (StableHLO frontend only): the StableHLO module as read (a
  portable artifact deserialized), returned as TEXT: upstream MLIR has no
  StableHLO dialect.
- "nnf": "linalg" after nnforge's `nnf-raise` pass, which rewrites the linalg
  patterns it recognizes into `nnf` ops. The number of ops raised is stored on
  the module as the attribute `nnforge.raised_ops : i64`
  (see `nnforge.importers.raised_op_count`).
"""

from __future__ import annotations

from nnforge.errors import ArgumentError

LEVELS = ("torch", "tosa", "linalg", "nnf")
# The levels of the StableHLO frontend (`import_stablehlo`).
STABLEHLO_LEVELS = ("stablehlo", "tosa", "linalg", "nnf")

# The level torch-mlir lowers to for each of ours.
TORCH_MLIR_LEVEL = {"torch": "torch", "tosa": "tosa", "linalg": "linalg", "nnf": "linalg"}


def check_level(level: str, levels: tuple[str, ...] = LEVELS) -> str:
    """`level` if it is one of `levels`, else an ArgumentError listing them."""
    if level not in levels:
        raise ArgumentError(f"unknown level {level!r}: expected one of {', '.join(levels)}")
    return level
