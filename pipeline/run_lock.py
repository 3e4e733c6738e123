"""One run per output directory: ``hold(output)`` takes ``<output>/.sluice/run.lock`` for the whole run.

Two runs on one output directory share its MLMD store, its pipeline root and its serving tree: both would
push, and each would summarize whichever run MLMD saw last. The lock is an ``flock`` on that file, which the
kernel releases when the holder dies however it dies, so a lock left by a ``kill -9`` is never stale: the
next run simply gets it. The file also carries the holder (pid, start time, command) so that a second run
can say who holds it, and is emptied on a clean release — content found on acquiring means the previous
holder died mid-run, which the caller reports (``Holder``) and cleans up after (``mlmd.mark_abandoned``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from sluice.pipeline.errors import SluiceError

LOCK_FILE = Path(".sluice") / "run.lock"


class RunLocked(SluiceError):
    """Another run holds the output directory."""


@dataclass(frozen=True)
class Holder:
    pid: int
    started: str
    host: str
    command: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}"


def _read(fd: int) -> Optional[Holder]:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 65536).decode("utf-8", errors="replace").strip()
    if not text:
        return None
    try:
        raw = json.loads(text)
        return Holder(int(raw["pid"]), str(raw["started"]), str(raw["host"]), str(raw.get("command", "")))
    except (ValueError, KeyError, TypeError):
        return Holder(-1, "?", "?", text[:200])


def _write(fd: int, holder: Optional[Holder]) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    if holder is not None:
        os.write(fd, json.dumps(holder.__dict__).encode())
    os.fsync(fd)


_HELD: dict = {}
"""Lock files this process holds -> how many nested ``hold`` calls (an flock is per open file, so a second
open of the same lock in one process would refuse its own holder)."""


def is_held(output: Path) -> bool:
    return (Path(output).resolve() / LOCK_FILE) in _HELD


@contextlib.contextmanager
def hold(output: Path) -> Iterator[Optional[Holder]]:
    """Hold ``output``'s run lock; yields the holder of a previous run that died holding it (else None).
    Re-entrant within a process (the CLI holds it around the shortcut; ``run_local`` holds it too).

    Raises ``RunLocked`` (one line: who holds it, what to do) when a live run holds it."""
    path = Path(output).resolve() / LOCK_FILE
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield None
        finally:
            _HELD[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunLocked(str(path), f"cannot lock the output directory ({e.strerror})",
                                "use an --output on a local filesystem that supports file locks") from None
            holder = _read(fd)
            raise RunLocked(str(Path(output).resolve()), "another sluice run is using this output directory"
                            + (f" ({holder.describe()})" if holder else ""),
                            "wait for it to finish, or pass another --output") from None
        dead = _read(fd)
        _write(fd, Holder(os.getpid(), dt.datetime.now().isoformat(timespec="seconds"), socket.gethostname(),
                          " ".join(sys.argv)[:500]))
        _HELD[path] = 1
        try:
            yield dead
        finally:
            del _HELD[path]
            _write(fd, None)
    finally:
        os.close(fd)  # releases the flock
