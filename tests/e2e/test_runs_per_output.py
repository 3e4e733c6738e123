"""Runs sharing an output directory (issue 17): a second `sluice run` while one is running is refused in
one line and touches nothing; a run killed with SIGKILL leaves no process behind, and the next run marks it
(MLMD state, `sluice runs`), cleans its temporary files and reports its own run — not "the latest"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.test_children_die_with_parent import _wait_dead
from tests.helpers import ROOT, config_variant, run_cli, run_json

pytestmark = pytest.mark.e2e


def _descendants(pid: int):
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def test_second_run_refused_killed_run_marked_and_cleaned(tmp_path, sample):
    cfg = config_variant("taxi_fare", tmp_path, sample, tflite=False, train_steps=100)
    out = tmp_path / "output"
    exe = Path(sys.executable).parent / "sluice"
    first = subprocess.Popen([str(exe), "run", "--config", str(cfg), "--output", str(out)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=dict(os.environ, PYTHONUNBUFFERED="1"))
    seen = []
    try:
        for line in first.stdout:  # wait until the run is well inside TFX
            seen.append(line)
            if "Transform" in line and "running" in line:
                break
        assert any("Transform" in line for line in seen), "".join(seen)

        second = run_cli("run", "--config", str(cfg), "--output", str(out), timeout=120)
        assert second.returncode == 1, second.stderr[-2000:]
        message = second.stderr.strip()
        assert len(message.splitlines()) == 1 and "another sluice run" in message and f"pid {first.pid}" in message

        family = _descendants(first.pid)
        first.send_signal(signal.SIGKILL)
        first.wait()
        survivors = [p for p in family if not _wait_dead(p)]
        assert survivors == [], survivors
        assert list((out / ".sluice" / "tmp").iterdir()), "the killed run's temp folder should be left"
    finally:
        if first.poll() is None:
            first.kill()
        first.stdout.close()

    third = run_json("run", "--config", str(cfg), "--output", str(out))
    assert third["_exit"] == 0 and third["pushed"], third["_stderr"][-3000:]
    assert "was killed mid-run" in third["_stderr"]
    assert not any((out / ".sluice" / "tmp").iterdir())
    runs = [json.loads(line) for line in run_cli("runs", "--output", str(out), "--json").stdout.splitlines()]
    assert len(runs) == 2
    killed, own = runs
    assert "Transform" in killed["killed"] or "Trainer" in killed["killed"], killed
    assert own["run"] == third["run_id"] and own["killed"] == "" and own["pushed"] == third["version"]
