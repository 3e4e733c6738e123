"""The dry run's fork server (pipeline/forkserver.py): a forked task behaves as ``python -m module args`` in a
process of its own — argv, working directory, environment, log, exit status, crash, a fresh ``__main__`` —
and no task sees what an earlier one left behind. Preloading ``json`` stands in for TensorFlow/TFX here (the
dry-run e2e tests run the real entrypoints through it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sluice.pipeline import forkserver
from tests.helpers import ROOT, process_alive as _alive

pytestmark = pytest.mark.skipif(not forkserver.enabled(), reason="fork and PR_SET_PDEATHSIG are Linux's")

PROBE = textwrap.dedent("""
    import json, os, sys
    import json as preloaded
    import numpy
    preloaded.LEFT_BEHIND = getattr(preloaded, "LEFT_BEHIND", 0) + 1  # a preloaded module's state, per task
    print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": os.environ.get("PROBE_VALUE"),
                      "server_only": os.environ.get("SERVER_ONLY"), "name": __name__,
                      "seen": preloaded.LEFT_BEHIND, "pid": os.getpid(), "path0": sys.path[0],
                      "draw": numpy.random.random()}))
    mode = sys.argv[1]
    if mode == "exit":
        sys.exit(int(sys.argv[2]))
    if mode == "message":
        sys.exit("a message for the log")
    if mode == "crash":
        raise ValueError("the task crashed")
    if mode == "kill":
        os.kill(os.getpid(), 9)
    if mode == "partial":  # a line without its newline, then SIGKILL: unbuffered output keeps it
        sys.stdout.write("half a line")
        os.kill(os.getpid(), 9)
    if mode == "interrupt":
        raise KeyboardInterrupt
""")


@pytest.fixture()
def server(tmp_path, monkeypatch):
    """The server runs in ``tmp_path/server`` with a variable of its own; tasks run in ``tmp_path/task``."""
    for d in ("server", "task"):
        (tmp_path / d).mkdir()
    (tmp_path / "task" / "probe_task.py").write_text(PROBE)
    monkeypatch.setenv("SERVER_ONLY", "1")
    srv = forkserver.ForkServer(tmp_path / "server" / "server.log", preload=("json", "numpy"))
    yield srv
    srv.close()


def _run(server, tmp_path: Path, *args: str, env=None):
    log = tmp_path / "task.log"
    log.write_text("")
    code = server.run("probe_task", list(args), log, tmp_path / "task", {"PROBE_VALUE": "v1", **(env or {})})
    lines = log.read_text().splitlines()
    return code, json.loads(lines[0]), "\n".join(lines[1:])


def test_a_task_runs_as_main_with_its_argv_cwd_env_and_exit_status(server, tmp_path):
    code, seen, _ = _run(server, tmp_path, "exit", "3", env={"PROBE_VALUE": "v2"})
    assert code == 3
    assert seen["argv"] == ["exit", "3"] and seen["name"] == "__main__" and seen["env"] == "v2"
    assert seen["server_only"] is None  # the task's environment replaces the server's
    assert Path(seen["cwd"]) == tmp_path / "task" and Path(seen["path0"]) == tmp_path / "task"
    assert seen["pid"] not in (os.getpid(), server.pid)
    assert "forkserver: task probe_task in process" in (tmp_path / "server" / "server.log").read_text()


def test_crash_message_and_signal_are_the_exit_statuses_of_a_process_of_its_own(server, tmp_path):
    code, _, log = _run(server, tmp_path, "crash")
    assert code == 1 and "ValueError: the task crashed" in log and "Traceback" in log
    code, _, log = _run(server, tmp_path, "message")
    assert code == 1 and "a message for the log" in log
    code, _, _ = _run(server, tmp_path, "kill")
    assert code == -signal.SIGKILL
    code, _, log = _run(server, tmp_path, "interrupt")
    assert code == -signal.SIGINT and "KeyboardInterrupt" in log  # what `python -m` does on Ctrl-C
    code, _, log = _run(server, tmp_path, "partial")
    assert code == -signal.SIGKILL and log == "half a line"
    assert _run(server, tmp_path, "ok")[0] == 0  # the server outlives its tasks' deaths


def test_no_task_sees_state_an_earlier_task_left(server, tmp_path):
    """Each fork starts from the server, which has run no task: a module attribute set by task 1 is absent
    in task 2 (with a plain in-process loop the count would reach 3)."""
    seen = [_run(server, tmp_path, "ok")[1] for _ in range(3)]
    assert [s["seen"] for s in seen] == [1, 1, 1]
    assert len({s["draw"] for s in seen}) == 3  # numpy's global generator is reseeded in each task


def test_a_server_that_cannot_start_is_a_clear_error_not_a_hang(tmp_path):
    server = forkserver.ForkServer(tmp_path / "server.log", preload=("no_such_module_anywhere",))
    try:
        with pytest.raises(forkserver.ServerGone, match="SLUICE_DRY_RUN_FORK=0"):
            server.run("json.tool", [], tmp_path / "task.log", tmp_path, {})
    finally:
        server.close()
    assert "No module named 'no_such_module_anywhere'" in (tmp_path / "server.log").read_text()


def test_a_killed_dry_run_leaves_neither_server_nor_task(tmp_path):
    """SIGKILL the process holding the server while a task runs: the server and the task die with it."""
    (tmp_path / "sleeper.py").write_text("import os, sys\nprint(os.getpid(), flush=True)\nimport time\ntime.sleep(300)\n")
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from pathlib import Path
        from sluice.pipeline import forkserver
        server = forkserver.ForkServer(Path({str(tmp_path / 'server.log')!r}), preload=("json",))
        print(server.pid, flush=True)
        server.run("sleeper", [], Path({str(tmp_path / 'task.log')!r}), Path({str(tmp_path)!r}), {{}})
    """)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    server_pid = int(parent.stdout.readline())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (tmp_path / "task.log").exists():
        time.sleep(0.05)
    while time.monotonic() < deadline and not (tmp_path / "task.log").read_text().strip():
        time.sleep(0.05)
    task_pid = int((tmp_path / "task.log").read_text().split()[0])
    pids = [server_pid, task_pid]
    try:
        assert all(_alive(p) for p in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        assert not [p for p in pids if _alive(p)]
    finally:
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_only_tfx_entrypoints_go_through_the_server():
    python = sys.executable
    assert forkserver.module_of([python, "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor",
                                 "--x"]) == "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
    assert forkserver.module_of([python, "-m", "sluice.components.lifeline", "1"]) is None
    assert forkserver.module_of(["python3", "-m", "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"]) is None
