"""End to end: the real TFX pipeline through the `sluice` CLI on a sample of the bundled data (conftest.py).

The tests read what the session's pipelines left: the CLI's JSON summary, MLMD, the pushed SavedModel and
the report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sluice.pipeline.mlmd import executions_of, latest_run
from tests.helpers import serialized_examples

pytestmark = pytest.mark.e2e

NODES = {
    "CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "InferredSchemaGen", "ExampleValidator",
    "LastPassedDataResolver", "DataGate", "Transform", "Trainer", "LatestBlessedModelResolver", "Evaluator",
    "ModelExport", "InfraCheck", "Pusher",
}
# Nodes that legitimately execute on an unchanged re-run: resolvers always resolve, and the DataGate compares
# the data with the newest passed run's statistics (a new artifact every run), which costs a second or two.
ALWAYS_RUN = {"LastPassedDataResolver", "LatestBlessedModelResolver", "DataGate"}
FARE_FEATURES = [
    "trip_miles", "trip_seconds", "trip_start_hour", "trip_start_day", "trip_start_month",
    "pickup_community_area", "dropoff_community_area", "payment_type", "company",
    "pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude",
]


def _load_serving(path: str):
    import tensorflow as tf

    return tf.saved_model.load(path)


def test_first_run_is_blessed_and_pushed(fare):
    first = fare["runs"][0]
    assert first["_exit"] == 0, first["_stderr"][-3000:]
    assert first["status"] == "succeeded" and first["blessed"] is True and first["pushed"] is True
    pushed = Path(first["saved_model_path"])
    assert pushed.parent == fare["out"] / "serving" / "taxi_fare"
    assert (pushed / "saved_model.pb").is_file() and pushed.name == first["version"]
    assert (Path(first["report_dir"]) / "index.html").is_file()
    assert Path(first["data_report"]).is_file() and "PASSED" in Path(first["data_report"]).read_text()
    assert first["metrics"]["mean_absolute_error"] < 4.0  # the config's value threshold
    assert {c["name"] for c in first["components"]} == NODES


def test_mlmd_records_every_component_and_the_blessing(fare):
    metadata = fare["out"] / "metadata.sqlite"
    assert NODES <= set(executions_of(metadata, "taxi_fare"))
    record = latest_run(metadata, "taxi_fare")
    assert record.blessed is True and record.blessing_uri and Path(record.blessing_uri).is_dir()
    assert (Path(record.blessing_uri) / "BLESSED").exists()


def test_pushed_model_answers_finite_predictions_for_raw_examples(fare, sample):
    model = _load_serving(fare["runs"][0]["saved_model_path"])
    assert {"serving_default", "serving_raw", "transform_features"} <= set(model.signatures)
    examples = serialized_examples(sample, FARE_FEATURES, limit=64)
    import tensorflow as tf

    out = model.signatures["serving_default"](examples=tf.constant(examples))["outputs"].numpy()
    assert out.shape == (64, 1)
    assert np.isfinite(out).all()
    assert out.std() > 0.1, "predictions do not depend on the input"


def test_transform_features_signature_gives_the_label(fare, sample):
    import tensorflow as tf

    model = _load_serving(fare["runs"][0]["saved_model_path"])
    examples = serialized_examples(sample, FARE_FEATURES + ["fare"], limit=8)
    transformed = model.signatures["transform_features"](examples=tf.constant(examples))
    assert "fare_xf" in transformed and "trip_miles_xf" in transformed
    assert transformed["fare_xf"].shape == (8, 1)


def test_identical_rerun_is_served_from_cache_and_pushes_nothing_new(fare):
    first, second, third = fare["runs"]
    assert second["_exit"] == 0 and third["_exit"] == 0, second["_stderr"][-3000:]
    # Run 2 has a baseline for the first time (run 1's blessed model), so the Evaluator re-evaluates;
    # everything upstream comes from the cache and the same model is not pushed as a new version.
    cached_2 = {c["name"] for c in second["components"] if c["state"] == "CACHED"}
    assert NODES - ALWAYS_RUN - {"Evaluator", "Pusher"} <= cached_2
    assert second["saved_model_path"] == first["saved_model_path"]
    # Run 3's inputs are all unchanged: every component but the gate is a cache hit (MLMD state).
    states_3 = {c["name"]: c["state"] for c in third["components"]}
    assert all(state == "CACHED" for name, state in states_3.items() if name not in ALWAYS_RUN), states_3
    assert states_3["DataGate"] == "COMPLETE"
    assert third["saved_model_path"] == first["saved_model_path"]
    versions = [p.name for p in (fare["out"] / "serving" / "taxi_fare").iterdir()]
    assert versions == [first["version"]]


def test_cache_state_comes_from_mlmd(fare):
    record = latest_run(fare["out"] / "metadata.sqlite", "taxi_fare")
    assert record.run_id == fare["runs"][2]["run_id"]
    assert record.executions["Trainer"].state == "CACHED"


def test_classification_config_runs_end_to_end(tips, sample):
    run = tips["run"]
    assert run["_exit"] == 0, run["_stderr"][-3000:]
    assert run["blessed"] is True and run["pushed"] is True
    assert run["metrics"]["auc"] >= 0.8
    # The subclassed wide & deep model exports to TFLite too; quantized variants are judged on AUC.
    assert run["parity"]["passed"] and {v["metric"] for v in run["parity"]["variants"]} == {"auc"}
    shipped = {f"model_{v}.tflite" for v in run["parity"]["shipped"] if v != "float32"}
    assert run["tflite_path"] and {p.name for p in Path(run["tflite_path"]).glob("model*.tflite")} == {"model.tflite"} | shipped
    import tensorflow as tf

    model = _load_serving(run["saved_model_path"])
    features = FARE_FEATURES + ["fare"]
    probs = model.signatures["serving_default"](examples=tf.constant(serialized_examples(sample, features, 64)))
    p = probs["outputs"].numpy()
    assert p.shape == (64, 1) and ((p >= 0) & (p <= 1)).all()
    # The derived label lives only in Transform: tips > 0.2 * fare, computed from raw columns.
    transformed = model.signatures["transform_features"](
        examples=tf.constant(serialized_examples(sample, features + ["tips"], 64))
    )
    assert set(np.unique(transformed["big_tipper_xf"].numpy())) <= {0, 1}
