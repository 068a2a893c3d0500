"""Runs fuzz cases in child processes and counts their outcomes.

Cases go to a worker process (`test.fuzz.worker`) one at a time, each with
a time limit. A worker that dies during a case counts it as a crash (with
the signal and the cause its output names); one that runs past the limit
counts it as a hang and is killed. Either way a fresh worker takes the
next case. nnforge's own children (torch-mlir, the C compiler) get a
shorter limit than the case (NNFORGE_CHILD_TIMEOUT), so that a child that
hangs is reported by nnforge and counted as a hang too.
"""

from __future__ import annotations

import json
import os
import platform
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from test.fuzz.outcomes import CRASH, FAILURES, HANG, OUTCOMES, Result

REPOSITORY = Path(__file__).resolve().parents[2]
# Seconds a case may take (a compile through torch-mlir takes a few), and
# what nnforge's children get within it.
CASE_TIMEOUT = 120.0
CHILD_TIMEOUT = 60.0
STARTUP_TIMEOUT = 300.0
# Seconds a worker that stopped answering gets to exit (a crash dumping core).
EXIT_WAIT = 10.0


class Worker:
    """One `test.fuzz.worker` process, restarted after a crash or a hang."""

    def __init__(self, case_timeout: float = CASE_TIMEOUT, child_timeout: float = CHILD_TIMEOUT):
        self.case_timeout = case_timeout
        self.child_timeout = child_timeout
        self.process: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile(mode="w+b")
        self.buffer = b""

    def _start(self) -> None:
        environment = dict(os.environ, NNFORGE_CHILD_TIMEOUT=str(self.child_timeout), PYTHONUNBUFFERED="1")
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), environment.get("PYTHONPATH")]))
        self.log.seek(0)
        self.log.truncate()
        self.buffer = b""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "test.fuzz.worker"], cwd=REPOSITORY, env=environment,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, start_new_session=True,
        )
        if self._read_line(STARTUP_TIMEOUT) != "ready":
            self.stop()
            raise RuntimeError(f"the fuzz worker did not start:\n{self._log_tail(0)}")

    def _read_line(self, timeout: float) -> str | None:
        """The next protocol line, or None on end of file or time-out."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                # Polled: a grandchild holding the pipe would hide the worker's death.
                if not selector.select(min(left, 0.5)):
                    if self.process.poll() is not None:
                        return None
                    continue
                chunk = os.read(self.process.stdout.fileno(), 65536)
                if not chunk:
                    return None
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def _log_tail(self, start: int) -> str:
        self.log.flush()
        self.log.seek(start)
        return self.log.read().decode(errors="replace")[-20000:]

    def stop(self) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, 9)
            except ProcessLookupError:
                pass
            self.process.wait()
            self.process = None

    def run(self, family: str, seed: int, index: int) -> Result:
        from nnforge._process import describe_exit, failure_cause

        if self.process is None:
            self._start()
        name = f"{family}/{seed}/{index}"
        self.log.seek(0, os.SEEK_END)
        log_start = self.log.tell()
        start = time.monotonic()
        self.process.stdin.write(f"{family} {seed} {index}\n".encode())
        self.process.stdin.flush()
        line = self._read_line(self.case_timeout)
        seconds = round(time.monotonic() - start, 3)
        if line is not None:
            verdict = json.loads(line)
            return Result(name, verdict["outcome"], verdict["what"], verdict["detail"], verdict["seconds"])
        try:  # a worker that closed its output is dying: give it time to end
            returncode = self.process.wait(timeout=EXIT_WAIT)
        except subprocess.TimeoutExpired:  # still running: a hang
            self.stop()
            return Result(name, HANG, "", f"no verdict within {self.case_timeout:g} s", seconds)
        status = describe_exit(returncode)
        output = self._log_tail(log_start)
        cause = failure_cause("\n".join(l for l in output.splitlines() if not l.startswith("--- case")))
        self.process = None
        return Result(name, CRASH, "", f"the worker {status}" + (f": {cause}" if cause else ""), seconds)


def machine() -> dict:
    """The machine and versions a run's counts were measured on."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for package in ("numpy", "onnx", "onnxruntime", "torch", "torch_mlir"):
        try:
            from importlib.metadata import version

            versions[package] = version(package.replace("_", "-"))
        except Exception:
            versions[package] = None
    return {"cpu": cpu, "isa": platform.machine(), "cores": os.cpu_count(), "system": platform.platform(),
            "versions": versions}


def run(cases: Sequence[tuple[str, int, int]], jobs: int = 1, case_timeout: float = CASE_TIMEOUT,
        progress: bool = False) -> dict:
    """Runs `cases` ((family, seed, index) each) on `jobs` workers; the report:
    counts per family and outcome, every failing case, the machine."""
    pending = list(cases)
    lock = threading.Lock()
    results: list[Result] = []
    start = time.monotonic()

    def drain() -> None:
        worker = Worker(case_timeout)
        try:
            while True:
                with lock:
                    if not pending:
                        return
                    family, seed, index = pending.pop(0)
                result = worker.run(family, seed, index)
                with lock:
                    results.append(result)
                    if progress:
                        print(f"[{len(results)}/{len(cases)}] {result.case}: {result.outcome} "
                              f"{result.what} {result.detail[:200]}", file=sys.stderr, flush=True)
        finally:
            worker.stop()

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for future in [pool.submit(drain) for _ in range(max(1, jobs))]:
            future.result()
    return report(results, time.monotonic() - start, jobs)


def report(results: Iterable[Result], seconds: float, jobs: int) -> dict:
    results = sorted(results, key=lambda r: r.case)
    counts: dict[str, Counter] = {}
    for result in results:
        counts.setdefault(result.case.split("/")[0], Counter())[result.outcome] += 1
    total = Counter()
    for family_counts in counts.values():
        total.update(family_counts)
    return {
        "cases": len(results),
        "counts": {family: {o: c[o] for o in OUTCOMES} for family, c in sorted(counts.items())},
        "total": {o: total[o] for o in OUTCOMES},
        "failures": [r.to_dict() for r in results if r.outcome in FAILURES],
        "no_oracle": [r.to_dict() for r in results if r.outcome == "no_oracle"],
        "seconds": round(seconds, 1),
        "jobs": jobs,
        "machine": machine(),
    }
