"""The `mlir` package's helpers for generated op classes (they import this)."""

from mlir.dialects._ods_common import *  # noqa: F401,F403
from mlir.dialects._ods_common import _cext  # noqa: F401
