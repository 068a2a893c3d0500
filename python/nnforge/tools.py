"""Console scripts that run native tools shipped inside the package."""

from __future__ import annotations

import os
import sys


def nnforge_opt() -> None:
    """`nnforge-opt`: mlir-opt with all upstream dialects and passes plus ours."""
    from nnforge._native import tool_path

    binary = str(tool_path("nnforge-opt"))
    os.execv(binary, [binary, *sys.argv[1:]])
