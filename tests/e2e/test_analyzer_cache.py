"""Opt-in analyzer cache: with ``transform.reuse_analyzer_cache``, a Transform that re-runs (here: one
feature's preprocessing changed, same data) is given the previous run's TransformCache."""

from __future__ import annotations

import pytest
import yaml

from sluice.pipeline.mlmd import latest_run
from tests.helpers import config_variant, run_json

pytestmark = pytest.mark.e2e


def test_rerun_transform_receives_the_previous_cache(tmp_path, sample):
    cfg = config_variant("taxi_fare", tmp_path, sample, tflite=False, train_steps=50)
    raw = yaml.safe_load(cfg.read_text())
    raw["transform"] = {"reuse_analyzer_cache": True}
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = tmp_path / "output"

    first = run_json("run", "--config", str(cfg), "--output", str(out))
    assert first["_exit"] in (0, 3), first["_stderr"][-3000:]
    record_1 = latest_run(out / "metadata.sqlite", "taxi_fare")
    cache_1 = record_1.outputs["Transform"]["TransformCache"]
    assert "TransformCache" not in record_1.inputs.get("Transform", {})  # nothing to reuse yet

    company = next(f for f in raw["features"] if f["name"] == "company")
    company["top_k"] = 50  # one analyzer changes; every other analyzer's inputs are the same
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    second = run_json("run", "--config", str(cfg), "--output", str(out))
    assert second["_exit"] in (0, 3), second["_stderr"][-3000:]
    record_2 = latest_run(out / "metadata.sqlite", "taxi_fare")
    assert record_2.executions["Transform"].state == "COMPLETE"
    assert record_2.inputs["Transform"]["TransformCache"] == cache_1
    assert record_2.outputs["Transform"]["TransformCache"] != cache_1
