# lit configuration: runs the .mlir tests under test/ against the installed
# nnforge package and the pinned MLIR/LLVM wheels' tools.
import os
import subprocess
import sys

import lit.formats

config.name = "nnforge"
# lit 23 rejects ShTest(True); the internal shell needs no bash.
config.test_format = lit.formats.ShTest()
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
# Tests live under test/; pytest tests (test/python) and inputs are not lit tests.
config.excludes = ["python", "Inputs", "build", "cpp", "dialects", "benchmarks",
                   ".git", ".venv", "venv"]
config.environment["PYTHONUNBUFFERED"] = "1"

# Ask the Python running lit where the installed tools are: nothing here
# depends on where the venv or the checkout lives.
_TOOLS = ["nnforge-opt", "mlir-opt", "FileCheck", "not", "count"]
# The affine generator's pipeline (nnforge.pipelines.affine_loops) for a
# CPU of 8 f32 lanes, tiles of 32 iterations per loop and parallel loops;
# then the same with affine-loop-fusion (substituted first: the names share
# a prefix).
_paths = subprocess.run(
    [sys.executable, "-c",
     "import sys, nnforge\n"
     "print(nnforge.plugin_path())\n"
     "for t in sys.argv[1:]: print(nnforge.tool_path(t))\n"
     "print(nnforge.pipelines.wrap(nnforge.pipelines.affine_loops(8, 32, True, fuse=True)))\n"
     "print(nnforge.pipelines.wrap(nnforge.pipelines.affine_loops(8, 32, True)))", *_TOOLS],
    check=True, capture_output=True, text=True).stdout.splitlines()
config.substitutions.append(("%nnforge_plugin", _paths[0]))
config.substitutions.append(("%affine_loops_fused", _paths[-2]))
config.substitutions.append(("%affine_loops", _paths[-1]))
for _tool, _path in zip(_TOOLS, _paths[1:-2]):
    config.substitutions.append(
        (r"(?<![\w/.-])" + _tool.replace("-", r"\-") + r"(?![\w/.-])", _path))
