"""`nnforge run --ranks N`: a command run on N ranks through MPICH's mpiexec.

The ranks run on this machine; MPICH's launcher takes other machines from
its own options and environment (`-hosts`, `-f hostfile`, HYDRA_HOST_FILE:
see docs/distributed.md). A rank that exits or is killed ends the job
(mpiexec stops the others); a job running past `timeout` seconds is killed
with all its processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from nnforge.distributed import mpi
from nnforge.errors import ArgumentError, ExecutionError


def run_ranks(ranks: int, arguments: list[str], timeout: float) -> int:
    """Runs `nnforge ARGUMENTS` on `ranks` ranks; returns 0, or raises ExecutionError."""
    if ranks < 1:
        raise ArgumentError(f"--ranks must be a positive integer, not {ranks}")
    command = [str(mpi.launcher()), "-n", str(ranks), sys.executable, "-m", "nnforge.cli", *arguments]
    child = subprocess.Popen(command, start_new_session=True)
    try:
        returncode = child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        raise ExecutionError(f"the {ranks} ranks did not finish within {timeout:g} s: stopped (--timeout)") from None
    except KeyboardInterrupt:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        raise
    if returncode != 0:
        raise ExecutionError(f"the run on {ranks} ranks failed (mpiexec exited with status {returncode}; "
                             "the ranks' messages are above)")
    return 0
