"""Beam under faults: SIGKILL of ``sluice predict --output`` or ``sluice run`` while Beam's multi_processing
workers work leaves no worker behind (components/beam_runner.py) and no finished-looking output; two bulk runs
started together into one directory never mix (one claims it, the other stops before writing)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from tests.helpers import ROOT, config_variant, process_alive, sample_csv
from tests.serving.test_batch import _tiny_model

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _descendants(pid: int) -> List[int]:
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _table(path: Path, rows: int) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "a", "b", "c"])
        writer.writerows([i, i % 97 / 7, "x" if i % 3 else "", i % 5] for i in range(rows))
    return path


def _predict(tmp_path: Path, table: Path, out: Path, *extra: str) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "sluice"
    return subprocess.Popen([str(exe), "predict", "--model", "tiny", "--model-dir", str(tmp_path / "serving"),
                             "--input", str(table), "--output", str(out), "--keys", "id", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def test_sigkill_of_a_multi_processing_bulk_run_leaves_no_worker_and_no_summary(tmp_path):
    _tiny_model(tmp_path / "serving" / "tiny", 1)
    table = _table(tmp_path / "big.csv", 400_000)
    out = tmp_path / "out"
    parent = _predict(tmp_path, table, out, "--direct-running-mode", "multi_processing", "--direct-num-workers", "2")
    _kill_when_workers_run(parent, seconds=120)
    assert not (out / "summary.json").exists()  # unfinished, and says so by the missing summary


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_two_runs_started_together_into_one_directory_never_mix(tmp_path):
    _tiny_model(tmp_path / "serving" / "tiny", 1)
    table = _table(tmp_path / "t.csv", 2_000)
    out = tmp_path / "out"
    runs = [_predict(tmp_path, table, out) for _ in range(2)]
    results = [(r.wait(timeout=300), r.stdout.read(), r.stderr.read()) for r in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, _, err in results if code == 1)
    assert "--output" in loser and "Traceback" not in loser
    assert ("created by another run" in loser) or ("exists already" in loser)
    scored = [row for path in sorted(out.glob("predictions-*.csv")) for row in csv.DictReader(open(path))]
    assert sorted(int(r["id"]) for r in scored) == list(range(2_000))  # one run's rows, once each


def _kill_when_workers_run(parent: subprocess.Popen, seconds: float = 180) -> None:
    """SIGKILL ``parent`` once two Beam SDK workers run under it; every process below it must be gone 30 s later."""
    workers: List[int] = []
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and parent.poll() is None:
            workers = [p for p in _descendants(parent.pid) if "sdk_worker" in _cmdline(p)]
            if len(workers) >= 2:
                break
            time.sleep(0.2)
        assert len(workers) >= 2, (parent.poll(), parent.stderr.read() if parent.poll() is not None else "")
        everything = _descendants(parent.pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(process_alive(p) for p in everything):
            time.sleep(0.2)
        assert not [p for p in everything if process_alive(p)], [_cmdline(p)[:120] for p in everything]
    finally:
        for p in _descendants(parent.pid) + workers:
            if process_alive(p):
                os.kill(p, signal.SIGKILL)


def test_sigkill_of_a_multi_processing_pipeline_run_leaves_no_worker(tmp_path):
    import yaml

    cfg = config_variant("taxi_fare", tmp_path, sample_csv(tmp_path / "s.csv", 3000), tflite=False)
    raw = yaml.safe_load(cfg.read_text())
    raw["beam"] = {"direct_running_mode": "multi_processing", "direct_num_workers": 2}
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    exe = Path(sys.executable).parent / "sluice"
    parent = subprocess.Popen([str(exe), "run", "--config", str(cfg), "--output", str(tmp_path / "out")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    _kill_when_workers_run(parent)
