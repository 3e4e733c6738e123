"""One run per output directory (``pipeline/run_lock.py``): a second run is refused in one line naming the
holder; a lock whose holder was SIGKILLed is taken over, and the new holder learns who died holding it."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sluice.pipeline.run_lock import RunLocked, hold
from tests.helpers import ROOT


def _holder(output: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from sluice.pipeline.run_lock import hold
        with hold(Path({str(output)!r})):
            print("held", flush=True)
            time.sleep(300)
    """)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_is_refused_in_one_line_naming_the_holder(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(RunLocked) as exc:
            with hold(tmp_path):
                pass
        message = exc.value.render()
        assert len(message.splitlines()) == 1 and f"pid {proc.pid}" in message and "--output" in message
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over_and_names_the_dead_run(tmp_path):
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with hold(tmp_path) as dead:
        assert dead is not None and dead.pid == proc.pid
    with hold(tmp_path) as dead:  # released cleanly: nothing died this time
        assert dead is None


def test_a_garbled_lock_file_does_not_block(tmp_path):
    (tmp_path / ".sluice").mkdir()
    (tmp_path / ".sluice" / "run.lock").write_bytes(b"\xff\x00 half-written")
    with hold(tmp_path) as dead:
        assert dead is not None and dead.pid == -1
