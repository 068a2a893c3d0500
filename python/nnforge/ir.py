"""`mlir.ir`, re-exported: the generated `nnf` bindings import it from here."""

from mlir.ir import *  # noqa: F401,F403
