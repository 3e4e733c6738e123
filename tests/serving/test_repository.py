"""The model repository keeps serving through half-copied versions (issue 17: a version directory whose
``saved_model.pb`` was still being copied, or whose ``variables/`` came 3 s later, unloaded the working
version and the server answered 503 forever; a directory named ``²`` killed the poller for good)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sluice.serving.repository import ModelEntry, Repository


def _save(path: Path, scale: float) -> None:
    import tensorflow as tf

    class Scale(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(scale)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * self.w}

    module = Scale()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("versions")
    for version, scale in ((1, 1.0), (2, 2.0)):
        _save(root / str(version), scale)
    return root


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _answer(repo: Repository) -> tuple:
    version = repo.resolve("m")
    return version.version, float(version.predict("", {"x": np.array([1.0], np.float32)})["y"][0])


def _repo(base: Path, clock=None) -> Repository:
    repo = Repository([ModelEntry(name="m", base_path=base)], clock=clock)
    repo.refresh()
    return repo


def test_truncated_saved_model_pb_keeps_the_old_version_then_serves_the_new_once_whole(models, tmp_path):
    base = tmp_path / "m"
    shutil.copytree(models / "1", base / "1")
    clock = Clock()
    repo = _repo(base, clock)
    assert _answer(repo) == (1, 1.0)
    (base / "2").mkdir()
    shutil.copytree(models / "2" / "variables", base / "2" / "variables")
    whole = (models / "2" / "saved_model.pb").read_bytes()
    (base / "2" / "saved_model.pb").write_bytes(whole[: len(whole) // 3])  # the copy is still running
    for _ in range(3):
        repo.refresh()
        assert _answer(repo) == (1, 1.0)
    status = {r["version"]: r for r in repo.status("m")}
    assert status["1"]["state"] == "AVAILABLE" and status["2"]["status"]["error_code"] == "UNKNOWN"
    (base / "2" / "saved_model.pb").write_bytes(whole)  # the copy completes: files changed -> retried at once
    repo.refresh()
    assert _answer(repo) == (2, 2.0)
    assert [r["version"] for r in repo.status("m")] == ["2"]


def test_variables_arriving_late_are_retried_with_back_off(models, tmp_path):
    base = tmp_path / "m"
    shutil.copytree(models / "1", base / "1")
    clock = Clock()
    repo = _repo(base, clock)
    (base / "2").mkdir()
    shutil.copy(models / "2" / "saved_model.pb", base / "2" / "saved_model.pb")  # variables/ not there yet
    repo.refresh()
    assert _answer(repo) == (1, 1.0)
    failure = repo._errors[("m", 2)]
    assert failure.attempts == 1 and failure.retry_at == 1.0
    repo.refresh()  # nothing changed, back-off not over: not retried
    assert repo._errors[("m", 2)].attempts == 1
    clock.now = 1.5
    repo.refresh()  # back-off over: retried, fails again, waits longer
    assert repo._errors[("m", 2)].attempts == 2 and repo._errors[("m", 2)].retry_at == 3.5
    shutil.copytree(models / "2" / "variables", base / "2" / "variables")
    repo.refresh()
    assert _answer(repo) == (2, 2.0) and ("m", 2) not in repo._errors


def test_the_poller_survives_odd_names_and_keeps_answering_under_load(models, tmp_path):
    """A live poller and a reader thread: odd directory names and a broken version never make a request
    fail; the complete version is picked up."""
    base = tmp_path / "m"
    shutil.copytree(models / "1", base / "1")
    repo = Repository([ModelEntry(name="m", base_path=base)])
    repo.start(poll_seconds=0.05)
    errors, answers, stop = [], [], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                answers.append(_answer(repo))
            except Exception as e:  # any failure is a test failure
                errors.append(repr(e))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for odd in ("²", "٣", "1e3", "-4", " 5", "99999999999999999999999"):
            (base / odd).mkdir()
            (base / odd / "saved_model.pb").write_bytes(b"not a model")
        (base / "3").mkdir()
        (base / "3" / "saved_model.pb").write_bytes(b"\x08corrupt")
        time.sleep(0.5)
        assert repo._thread.is_alive()
        shutil.copytree(models / "2", base / "4")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not answers or answers[-1][0] != 4):
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
        repo.stop()
    assert errors == [] and answers[-1] == (4, 2.0)
    assert {a for a in answers} <= {(1, 1.0), (4, 2.0)}


def test_a_live_server_loads_a_new_version_only_once_its_files_settle(models, tmp_path):
    """After start-up a new version is tried once its files are unchanged across two polls: an ``assets/``
    file still growing after ``variables/`` arrived is not loaded half-way."""
    base = tmp_path / "m"
    shutil.copytree(models / "1", base / "1")
    repo = _repo(base)
    repo._started = True  # as after start(): the poller's refreshes
    shutil.copytree(models / "2", base / "2")
    growing = base / "2" / "assets" / "vocab.txt"
    growing.parent.mkdir(exist_ok=True)
    for size in (10, 20, 30):
        growing.write_text("x" * size)  # the copy goes on between polls
        repo.refresh()
        assert _answer(repo) == (1, 1.0)
    repo.refresh()  # unchanged since the last poll: loaded
    assert _answer(repo) == (2, 2.0)


def test_odd_version_names_are_not_versions():
    from sluice.serving.repository import is_version_name

    assert [n for n in ("1", "0", "42", "0002", "²", "٣", "1e3", "-4", " 5", str(2**63), str(2**63 - 1))
            if is_version_name(n)] == ["1", "0", "42", str(2**63 - 1)]
