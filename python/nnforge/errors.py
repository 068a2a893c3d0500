"""The exceptions nnforge raises: each names what is wrong and where."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class NNForgeError(Exception):
    """Base class of nnforge's errors."""


class ModelLoadError(NNForgeError):
    """A model could not be read, traced or exported (bad path, malformed file)."""


class CompileError(NNForgeError):
    """A model or module failed to verify, lower or compile."""


class ArgumentError(NNForgeError, ValueError):
    """An argument to an nnforge function is not one it takes (an unknown
    level, pipeline or chip name)."""


class SaveError(NNForgeError):
    """A file nnforge was asked to write (a saved model, dumped IR) cannot be
    written there (no permission, a folder in the way, a full disk)."""


class InputError(NNForgeError, ValueError):
    """Inputs given to a compiled model do not match its signature."""


class ProfileError(NNForgeError):
    """A model cannot be profiled as asked: a target without timers (CUDA),
    a model not compiled in this process, a bad number of runs."""


class ExecutionError(NNForgeError, RuntimeError):
    """A check the compiled code makes at run time failed (e.g. a gather
    index out of bounds in the inputs); the message is the check's."""


@dataclass(frozen=True)
class UnsupportedOp:
    """One kind of op nnforge cannot handle, with where it occurs and, when
    known, why (`reason`)."""

    kind: str
    count: int
    locations: tuple[str, ...] = ()
    reason: str = ""

    def describe(self, max_locations: int = 5) -> str:
        where = ", ".join(self.locations[:max_locations])
        more = len(self.locations) - max_locations
        if more > 0:
            where += f", ... ({more} more)"
        return (f"{self.kind} x{self.count}" + (f" at {where}" if where else "")
                + (f": {self.reason}" if self.reason else ""))


class UnsupportedOpError(NNForgeError):
    """The model uses ops nnforge cannot handle; `ops` lists each kind."""

    def __init__(self, ops: Iterable[UnsupportedOp], context: str = ""):
        self.ops = tuple(ops)
        lines = [f"unsupported ops{f' in {context}' if context else ''}:"]
        lines += [f"  {op.describe()}" for op in self.ops]
        super().__init__("\n".join(lines))
