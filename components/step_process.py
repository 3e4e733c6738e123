"""Run a step in a child process with its output in a log file, and say in one line why it failed.

Three places run work in a separate Python process: the TFLite conversions (the converter can abort the
process), the Trainer's worker processes (a strategy that needs a fresh runtime) and the dry run's tasks
(each one a Vertex container). They share how the child starts (behind ``lifeline``, so that it dies with
its parent, stdout and stderr into one log file) and how its failure is told: how it ended (an exit code, or
the signal that killed it) and the line of its log that names the error.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from sluice.components import lifeline


def start(command: Sequence[str], log: Path, env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
          append: bool = False) -> "subprocess.Popen[bytes]":
    """Start ``command`` behind lifeline, its stdout and stderr into ``log`` (a new log, or ``append``ed)."""
    with open(log, "ab" if append else "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(lifeline.command(list(command)), stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=cwd)


def run(command: Sequence[str], log: Path, timeout: Optional[float] = None, env: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None, append: bool = False) -> int:
    """Run ``command`` to its end (see ``start``) and return its exit status. On ``timeout`` the child is
    killed and ``subprocess.TimeoutExpired`` raised."""
    proc = start(command, log, env, cwd, append)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    finally:
        if proc.poll() is None:  # interrupted while waiting: the child does not outlive the call
            proc.kill()
            proc.wait()


def how_it_ended(code: int) -> str:
    """``exit code 2`` or ``killed by signal 9`` (a negative status is the signal, as ``subprocess`` reports it)."""
    return f"exit code {code}" if code >= 0 else f"killed by signal {-code}"


def log_lines(log: Path) -> List[str]:
    """The log's non-empty lines (undecodable bytes replaced); none when it cannot be read."""
    try:
        return [line.rstrip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return []


def cause(log: Path, limit: int = 500) -> str:
    """The line that names the error: the last one with ``Error`` or ``ERROR`` in it, else the last line."""
    lines = log_lines(log)
    found = next((line for line in reversed(lines) if "Error" in line or "ERROR" in line), lines[-1] if lines else "")
    return found[:limit]


def tail(log: Path, lines: int = 25) -> str:
    """The log's last ``lines`` lines, for a failure that needs more than one."""
    kept = log_lines(log)[-lines:]
    return "\n".join(kept) if kept else "(no log)"
