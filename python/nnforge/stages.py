"""Running pass pipelines on a module, stage by stage, and the checks between stages.

Every target lowers a model through named stages (`nnforge.pipelines`); a
`StageRunner` runs each one, verifying, timing and dumping the IR after it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from mlir import ir, passmanager

from nnforge import pipelines
from nnforge.errors import CompileError, SaveError
from nnforge.importers.handover import walk_ops

log = logging.getLogger("nnforge.compiler")


class StageRunner:
    """Runs pipeline stages on a module, verifying first, dumping and timing."""

    def __init__(self, dump_ir: str | os.PathLike | None = None, timing: bool = False):
        dump_ir = dump_ir or os.environ.get("NNFORGE_DUMP_IR")
        self.dump_dir = Path(dump_ir) if dump_ir else None
        self.timing = timing
        self.times: dict[str, float] = {}
        self._count = 0
        if self.dump_dir:
            if self.dump_dir.exists() and not self.dump_dir.is_dir():
                raise SaveError(f"cannot dump IR into {self.dump_dir}: it is a file, not a folder")
            try:
                self.dump_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise SaveError(f"cannot dump IR into {self.dump_dir}: {error.strerror or error}") from None

    def dump(self, module: ir.Module, name: str) -> None:
        if self.dump_dir:
            path = self.dump_dir / f"{self._count:02d}-{name}.mlir"
            try:
                path.write_text(str(module))
            except OSError as error:
                raise SaveError(f"cannot write {path}: {error.strerror or error}") from None
            self._count += 1

    def run(self, module: ir.Module, name: str, pipeline: str) -> None:
        with module.context:
            manager = passmanager.PassManager.parse(pipelines.wrap(pipeline))
            if self.timing:
                manager.enable_timing()
            start = time.perf_counter()
            try:
                manager.run(module.operation)
            except ir.MLIRError as error:
                raise CompileError(f"stage {name} failed: {error}") from None
            self.times[name] = time.perf_counter() - start
        log.info("stage %s: %.3f s", name, self.times[name])
        self.dump(module, name)


def verify(module: ir.Module, what: str) -> None:
    """Raises CompileError unless `module` verifies (never transform unverified IR)."""
    try:
        module.operation.verify()
    except ir.MLIRError as error:
        raise CompileError(f"{what} does not verify: {error}") from None


def check_only_llvm(module: ir.Module, also_allowed: tuple[str, ...] = ()) -> None:
    """Raises CompileError naming the ops the lowering left outside the LLVM
    dialect (and the op names in `also_allowed`)."""
    allowed = ("llvm.", *also_allowed)
    left = sorted({op.name for op in walk_ops(module.operation) if not op.name.startswith(allowed)})
    if left:
        raise CompileError(f"the lowering to LLVM left ops it could not convert: {', '.join(left)}")
