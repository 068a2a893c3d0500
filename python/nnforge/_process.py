"""Helpers for nnforge's child processes."""

from __future__ import annotations

import sys


def die_with_parent() -> None:
    """Asks Linux to kill this process when its parent dies, even mid-work:
    a child compiling for a process that is gone must not run on."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
