"""How a fuzz case ended, and the record the runner keeps of it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Outcomes, best first. The first three are what the suite wants.
OK = "ok"                # ran, and agreed with the oracle (or, without one, no error was due)
CLEAN = "clean"          # refused with an NNForgeError naming the problem
NO_ORACLE = "no_oracle"  # nnforge computed a result; the oracle (onnxruntime) refuses the input
UNCLEAN = "unclean"      # an exception that is not an NNForgeError (or an empty message)
WRONG = "wrong"          # a result that differs from the oracle's, without an error
HANG = "hang"            # ran past the case's time limit, or an nnforge child did
CRASH = "crash"          # the process running the case died (signal, abort, exit)

OUTCOMES = (OK, CLEAN, NO_ORACLE, UNCLEAN, WRONG, HANG, CRASH)
# Outcomes that fail the suite.
FAILURES = (UNCLEAN, WRONG, HANG, CRASH)


@dataclass
class Result:
    """One case's outcome: `case` is "family/seed/index", `what` the input it
    tried, `detail` the error or the difference seen."""

    case: str
    outcome: str
    what: str = ""
    detail: str = ""
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
