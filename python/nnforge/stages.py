"""Running pass pipelines on a module, stage by stage, and the checks between stages.

Every target lowers a model through named stages (`nnforge.pipelines`); a
`StageRunner` runs each one, verifying, timing and dumping the IR after it,
and reports the stages as they happen (`Progress`) once a compilation has
taken more than a couple of seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from mlir import ir, passmanager

from nnforge import pipelines
from nnforge.errors import ArgumentError, CompileError, SaveError
from nnforge.importers.handover import walk_ops

log = logging.getLogger("nnforge.compiler")


class Progress:
    """Reports a compilation's stages on a stream as they happen, once it has
    run for `delay` seconds: a line per stage with its time, the running
    stage shown while it runs.

    `verbose`: None reports on an interactive terminal only, True on any
    stream, False never. A timer thread notices the delay during a long
    stage (the import releases the interpreter while its child process
    runs); stage boundaries notice it too.
    """

    DELAY = 2.0

    def __init__(self, verbose: bool | None = None, stream: TextIO | None = None, delay: float | None = None):
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.enabled = self.interactive if verbose is None else verbose
        # Read at call time, not bound as a default, so that DELAY can be changed.
        self.delay = self.DELAY if delay is None else delay
        self._start = time.perf_counter()
        self._done: list[tuple[str, float]] = []
        self._running: str | None = None
        self._reporting = False
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        if self.enabled:
            self._timer = threading.Timer(self.delay, self._report)
            self._timer.daemon = True
            self._timer.start()

    def started(self, stage: str) -> None:
        with self._lock:
            self._running = stage
            if self._reporting:
                self._show_running()
        self._report_if_late()

    def finished(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._done.append((stage, seconds))
            self._running = None
            if self._reporting:
                self._write(self._line(stage, seconds))
        self._report_if_late()

    def close(self, failed: bool = False) -> None:
        """Stops the timer; ends the report, if one began, with the total time
        (or the stage that failed)."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            if self._reporting:
                elapsed = time.perf_counter() - self._start
                if failed:
                    self._write(f"nnforge: {self._running or 'compilation'} failed after {elapsed:.2f} s\n")
                else:
                    self._write(f"nnforge: compiled in {elapsed:.2f} s\n")
            self._reporting = False

    def _report_if_late(self) -> None:
        if self.enabled and not self._reporting and time.perf_counter() - self._start >= self.delay:
            self._report()

    def _report(self) -> None:
        """Starts the report: the stages done so far, then the running one."""
        with self._lock:
            if self._reporting or not self.enabled:
                return
            self._reporting = True
            for stage, seconds in self._done:
                self._write(self._line(stage, seconds))
            if self._running:
                self._show_running()

    def _show_running(self) -> None:
        # On a terminal the line is completed in place when the stage ends.
        if self.interactive:
            self._write(f"nnforge: {self._running} ...")

    def _line(self, stage: str, seconds: float) -> str:
        return f"nnforge: {stage:<18} {seconds:7.2f} s\n"

    def _write(self, text: str) -> None:
        if self.interactive:
            text = "\r\033[K" + text  # over the running stage's line
        self.stream.write(text)
        self.stream.flush()


class StageRunner:
    """Runs pipeline stages on a module, verifying first, dumping, timing and
    reporting progress (see `Progress` for `verbose`); a context manager
    whose end ends the progress report."""

    def __init__(
        self, dump_ir: str | os.PathLike | None = None, timing: bool = False, verbose: bool | None = None
    ):
        dump_ir = dump_ir or os.environ.get("NNFORGE_DUMP_IR")
        if dump_ir and (not isinstance(dump_ir, (str, os.PathLike)) or "\0" in os.fsdecode(dump_ir)):
            raise ArgumentError(f"dump_ir takes the path of a folder, not {dump_ir!r}")
        self.dump_dir = Path(dump_ir) if dump_ir else None
        self.timing = timing
        self.times: dict[str, float] = {}
        self.progress = Progress(verbose)
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

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Times the block as stage `name` (in `times`) and reports it."""
        self.progress.started(name)
        start = time.perf_counter()
        yield
        self.times[name] = time.perf_counter() - start
        self.progress.finished(name, self.times[name])
        log.info("stage %s: %.3f s", name, self.times[name])

    def run(self, module: ir.Module, name: str, pipeline: str) -> None:
        with module.context:
            manager = passmanager.PassManager.parse(pipelines.wrap(pipeline))
            if self.timing:
                manager.enable_timing()
            with self.stage(name):
                try:
                    manager.run(module.operation)
                except ir.MLIRError as error:
                    raise CompileError(f"stage {name} failed: {error}") from None
        self.dump(module, name)

    def __enter__(self) -> StageRunner:
        return self

    def __exit__(self, error_type: type | None, *_: object) -> None:
        self.progress.close(failed=error_type is not None)


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
