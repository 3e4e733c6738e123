"""Child processes that die with their parent: ``command(argv)`` wraps a command so that the kernel kills it
(SIGKILL) the moment the process that started it dies, however it dies (``kill -9`` included).

sluice starts long-lived children: the InfraCheck model server (hundreds of MB, two ports), the training
workers (``multi_worker``, writing into an execution's model directory), the TFLite converter and the
dry-run's steps. A parent killed with SIGKILL runs no ``finally`` and no atexit, so without this they live
on. The wrapper is ``python -m sluice.components.lifeline <parent pid> <argv…>``: it sets Linux's
``PR_SET_PDEATHSIG`` and then ``exec``s the real command, which keeps the setting (same process). Doing it
in a ``preexec_fn`` instead would run Python code between fork and exec in a multi-threaded parent (Beam),
which CPython documents as unsafe. If the parent is already gone when the wrapper starts (a race the
setting cannot see), it exits at once. Elsewhere than Linux the command runs unchanged.

The setting is tied to the parent *thread* that forked: the callers start children from the thread that
also waits for them (an executor's ``Do``), so the child never outlives a thread that is still working.
"""

from __future__ import annotations

import os
import sys
from typing import List, Sequence

PR_SET_PDEATHSIG = 1


def command(argv: Sequence[str]) -> List[str]:
    """``argv`` wrapped so that it dies with this process (see the module docstring)."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-m", "sluice.components.lifeline", str(os.getpid()), *argv]


def bind(parent: int) -> None:
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the setting was made
        os._exit(137)


def main(args: Sequence[str]) -> None:
    if len(args) < 2 or not args[0].isdigit():
        sys.exit("usage: python -m sluice.components.lifeline PARENT_PID COMMAND [ARG…]")
    bind(int(args[0]))
    try:
        os.execvp(args[1], list(args[1:]))
    except OSError as e:
        sys.exit(f"lifeline: cannot run {args[1]!r}: {e.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
