"""Children die with their parent, however it dies: SIGKILL a parent that started children the way sluice's
components do, and no child survives (issue 17: the InfraCheck server lived on with 722 MB and two ports; the
multi_worker workers wrote into a dead execution's model directory)."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.helpers import ROOT, process_alive as _alive


def _wait_dead(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _parent(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True, cwd=ROOT)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigkill_of_the_parent_kills_every_wrapped_child():
    parent = _parent("""
        import subprocess, sys, time
        from sluice.components import lifeline
        children = [subprocess.Popen(lifeline.command([sys.executable, "-c", "import time; time.sleep(300)"]))
                    for _ in range(3)]
        print(" ".join(str(c.pid) for c in children), flush=True)
        time.sleep(300)
    """)
    pids = [int(p) for p in parent.stdout.readline().split()]
    try:
        assert len(pids) == 3 and all(_alive(p) for p in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert all(_wait_dead(p) for p in pids), [p for p in pids if _alive(p)]
    finally:
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_an_unwrapped_child_would_survive():
    """The control: without the wrapper the same child outlives a SIGKILLed parent (so the test above can fail)."""
    parent = _parent("""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        print(child.pid, flush=True)
        time.sleep(300)
    """)
    pid = int(parent.stdout.readline())
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert not _wait_dead(pid, seconds=1.0)
    finally:
        os.kill(pid, signal.SIGKILL)


def test_a_child_whose_parent_is_already_gone_does_not_start():
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that is no process's parent any more (not 1: pytest may be pid 1 in a container)
    out = subprocess.run([sys.executable, "-m", "sluice.components.lifeline", str(gone.pid), "echo", "started"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 137 and "started" not in out.stdout


SPAWNING = ["components", "pipeline/dry_run.py", "pipeline/forkserver.py"]


def test_every_child_process_sluice_starts_is_wrapped():
    """Each ``subprocess.Popen`` / ``subprocess.run`` under components/ and in the dry-run passes its command
    through ``lifeline.command`` (a new call site without it fails here)."""
    unwrapped = []
    files = [p for s in SPAWNING for p in ((ROOT / s).rglob("*.py") if (ROOT / s).is_dir() else [ROOT / s])]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("Popen", "run", "call", "check_call", "check_output")
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess"):
                first = node.args[0] if node.args else None
                wrapped = (isinstance(first, ast.Call) and isinstance(first.func, ast.Attribute)
                           and first.func.attr == "command")
                if not wrapped:
                    unwrapped.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert unwrapped == [], unwrapped
    assert len(files) > 10
