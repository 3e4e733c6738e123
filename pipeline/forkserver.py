"""The dry run's task processes, forked from one process that imported TensorFlow and TFX once.

Vertex starts every container task as a fresh ``python -m <TFX entrypoint> …``; the dry run does the same, and
on this machine each such start spent 7–8 s importing TensorFlow, Beam, TFMA and TFX before the task did
anything (12 tasks and a driver: about 90 s of a 200 s dry run). Here one server process imports those
third-party modules once; each task is then a ``fork`` of it that runs the entrypoint module as ``__main__``
with the task's argv, working directory, environment and log, and exits with the entrypoint's status.

What stays as on Vertex: every task is its own process (no module state, no TensorFlow graph, no Beam pipeline
survives from one task to the next: each fork starts from the server's state, which has run no task), the
entrypoint module itself executes afresh as ``__main__`` (``runpy``), and of sluice — the code under test —
only this module and ``lifeline`` are imported before the fork: each task imports the executors, the
contracts and user code itself. Output is unbuffered, the exit status is the interpreter's (an exception: 1;
``sys.exit(n)``: n; a signal: -signal; Ctrl-C: SIGINT), numpy's global generator is reseeded per task.
What differs: the heavy third-party modules were imported before ``argv``, the environment and the working
directory were set, so an import-time side effect of theirs that reads those would see the server's (none of
the preloaded modules reads them); and every task shares the server's string-hash seed (``PYTHONHASHSEED`` is
fixed at interpreter start). ``SLUICE_DRY_RUN_FORK=0`` (or a platform without ``fork``) runs every task as a
fresh process.

Safety: ``fork`` copies only the calling thread. The server forks from its only Python thread, before any
task work; the native threads the imports start (jemalloc's background thread, BLAS pools) are idle and
both libraries register fork handlers. A forked task binds itself to the server with ``PR_SET_PDEATHSIG``,
and the server to the dry run (``lifeline``), so a killed dry run leaves no task behind.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

from sluice.components import lifeline

# What every task imports before doing anything: TFX's two Kubeflow V2 entrypoints and what they pull in.
PRELOAD = (
    "tensorflow",
    "apache_beam",
    "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor",
    "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver",
)
ENTRYPOINTS = frozenset(PRELOAD[2:])


def enabled() -> bool:
    return hasattr(os, "fork") and sys.platform.startswith("linux") and os.environ.get("SLUICE_DRY_RUN_FORK", "1") != "0"


def module_of(command: Sequence[str]) -> Optional[str]:
    """The entrypoint a ``python -m <entrypoint> …`` command runs, when it is one the server preloads."""
    if len(command) > 2 and command[0] == sys.executable and command[1] == "-m" and command[2] in ENTRYPOINTS:
        return command[2]
    return None


class ServerGone(RuntimeError):
    """The fork server is not there to run a task (it failed to start, or died); its log says why."""


class ForkServer:
    """The dry run's side: starts the server (bound to this process) and runs tasks through it, one at a time."""

    def __init__(self, log: Path, preload: Sequence[str] = PRELOAD) -> None:
        self.log = log
        self._log = log.open("ab")
        try:
            self._proc = subprocess.Popen(
                lifeline.command([sys.executable, "-m", "sluice.pipeline.forkserver", *preload]),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd=str(log.parent))
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self._proc.pid

    def run(self, module: str, args: Sequence[str], log: Path, cwd: Path, env: Dict[str, str]) -> int:
        """``python -m module *args`` as a forked task (output appended to ``log``); its exit status.
        Raises ``ServerGone`` when the server cannot run it."""
        request = {"module": module, "argv": [module, *args], "log": str(log), "cwd": str(cwd), "env": env}
        try:
            self._proc.stdin.write(json.dumps(request).encode() + b"\n")
            self._proc.stdin.flush()
            answer = self._proc.stdout.readline()
        except OSError:
            answer = b""
        if not answer:
            raise ServerGone(f"the dry run's fork server exited with status {self._proc.wait()} (its log: "
                             f"{self.log}); SLUICE_DRY_RUN_FORK=0 runs each task as a fresh process instead")
        return int(json.loads(answer)["code"])

    def close(self) -> None:
        for pipe in (self._proc.stdin, self._proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()


def _task(request: Dict) -> int:
    """In the forked child: become the task, run the entrypoint as ``__main__``; its exit status."""
    import runpy
    import signal
    import traceback

    lifeline.bind(int(request["parent"]))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the server ignores it; a task is interruptible
    if "numpy" in sys.modules:  # its global generator was seeded once in the server: reseed, as a new process
        sys.modules["numpy"].random.seed()
    fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    for source, target in ((null, 0), (fd, 1), (fd, 2)):
        os.dup2(source, target)
    os.close(fd)
    os.close(null)
    # Unbuffered, as the task's PYTHONUNBUFFERED=1 makes a fresh interpreter: nothing lost to a SIGKILL, and
    # stdout and stderr stay in the order they were written.
    sys.stdout, sys.stderr = (io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), line_buffering=True,
                                               write_through=True) for fd in (1, 2))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = list(request["argv"])
    sys.path[0] = request["cwd"]  # what ``python -m`` puts first
    sys.modules.pop(request["module"], None)  # as ``python -m``: the entrypoint is not imported before it runs
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as e:  # the status ``python -m`` would exit with
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # as the interpreter does: the traceback, then die of SIGINT
        traceback.print_exc()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    except BaseException:  # noqa: BLE001 - a task's crash is its exit status and its log, as in its own process
        traceback.print_exc()
        return 1
    return 0


def serve(preload: Sequence[str] = PRELOAD) -> None:
    """The server: import ``preload``, then for each request line fork a task and answer its exit status.
    A task leaves through ``sys.exit`` (atexit handlers, flushed streams, non-daemon threads joined: the
    interpreter's own exit, as when the entrypoint runs in a process of its own). Ctrl-C reaches the whole
    process group: the server ignores it (the task handles it and the dry run ends; the server dies with it)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything the preloaded modules print goes to the server's log, never into the channel
    for name in preload:
        importlib.import_module(name)
    for line in sys.stdin:
        request = {**json.loads(line), "parent": os.getpid()}
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            channel.close()
            sys.exit(_task(request))
        print(f"forkserver: task {request['module']} in process {pid}", file=sys.stderr, flush=True)
        _, status = os.waitpid(pid, 0)
        channel.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
        channel.flush()


if __name__ == "__main__":
    serve(sys.argv[1:] or PRELOAD)
