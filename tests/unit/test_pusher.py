"""The Pusher's atomic, idempotent filesystem push (pure helpers, no TFX run)."""

from __future__ import annotations

import json
from pathlib import Path

from sluice.components.pusher import PUSH_RECORD, existing_version_of, next_version, push_atomically


def _model(tmp_path):
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"pb")
    (model / "variables" / "variables.index").write_bytes(b"idx")
    return model


def test_push_writes_a_complete_version_and_no_staging_left(tmp_path):
    base = tmp_path / "serving" / "m"
    version = push_atomically(_model(tmp_path), base, "uri://model/1")
    assert (base / version / "saved_model.pb").read_bytes() == b"pb"
    assert (base / version / "variables" / "variables.index").exists()
    assert json.loads((base / version / PUSH_RECORD).read_text())["model_uri"] == "uri://model/1"
    assert [p.name for p in base.iterdir()] == [version]


def test_versions_increase_even_within_one_second(tmp_path):
    base = tmp_path / "serving"
    (base / "2000000000").mkdir(parents=True)
    assert next_version(base, now=1000) == "2000000001"
    assert next_version(tmp_path / "empty", now=1000) == "1000"


def test_same_model_is_found_not_pushed_twice(tmp_path):
    base = tmp_path / "serving"
    model = _model(tmp_path)
    v1 = push_atomically(model, base, "uri://model/1")
    assert existing_version_of(base, "uri://model/1") == v1
    assert existing_version_of(base, "uri://model/2") is None
    assert existing_version_of(tmp_path / "missing", "uri://model/1") is None


def test_push_adds_extras_and_the_record_under_one_version(tmp_path):
    from sluice.components.pusher import write_version

    warmup = tmp_path / "warmup.tfrecord"
    warmup.write_bytes(b"requests")
    base = tmp_path / "serving" / "m"
    (base / ".incoming-7").mkdir(parents=True)  # a crashed earlier push leaves staging behind
    (base / ".incoming-7" / "junk").write_text("x")
    version = push_atomically(_model(tmp_path), base, "uri://model/3",
                              extras={"assets.extra/tf_serving_warmup_requests": str(warmup)},
                              record={"config_hash": "abc"}, version="7")
    assert version == "7" and not (base / ".incoming-7").exists() and not (base / "7" / "junk").exists()
    assert (base / "7" / "assets.extra" / "tf_serving_warmup_requests").read_bytes() == b"requests"
    record = json.loads((base / "7" / PUSH_RECORD).read_text())
    assert record["config_hash"] == "abc" and record["version"] == "7" and record["model_uri"] == "uri://model/3"
    twin = write_version(str(tmp_path / "serving" / "m_tflite"), "7",
                         lambda d: (Path(d).mkdir(), (Path(d) / "model.tflite").write_bytes(b"t")))
    assert twin == str(tmp_path / "serving" / "m_tflite" / "7") and (Path(twin) / "model.tflite").read_bytes() == b"t"
