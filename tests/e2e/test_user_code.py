"""Your own code, same gates: a config naming a preprocessing_fn, a model_fn with a custom layer and its custom
objects (tests/usercode/custom.py) runs through DataGate, Transform, the Trainer (custom loop, MirroredStrategy),
the Evaluator, TFLite parity, InfraCheck and the Pusher unchanged; a path that does not import is refused in
one screen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.generality import generate
from tests.helpers import ROOT

pytestmark = pytest.mark.e2e

CODE = {"preprocessing_fn": "tests.usercode.custom.preprocessing_fn", "model_fn": "tests.usercode.custom.model_fn",
        "custom_objects": ["tests.usercode.custom.Interaction"]}


def _sluice(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")  # the team's code: importable, not installed
    return subprocess.run([str(Path(sys.executable).parent / "sluice"), *args], capture_output=True, text=True,
                          timeout=900, env=env, cwd=ROOT)


def _config(tmp_path: Path, code: dict) -> Path:
    data = tmp_path / "data" / "mixed.csv"
    if not data.exists():  # the second run in the same output reads the same file (TFX's cache applies)
        generate("mixed", tmp_path / "data")
    schema = tmp_path / "schema.pbtxt"
    if not schema.exists():
        assert _sluice("schema", "infer", "--data", str(data), "--out", str(schema)).returncode == 0
    raw = {
        "name": "homes",
        "data": {"path": str(data), "splits": {"train": 4, "eval": 1}},
        "schema": str(schema),
        "task": {"type": "regression", "label": "price"},
        "features": [{"name": "area", "kind": "numeric"}, {"name": "age", "kind": "numeric"},
                     {"name": "rooms", "kind": "numeric"}],
        "model": {"hidden_units": [32, 16], "learning_rate": 0.01, "batch_size": 64, "train_steps": 600,
                  "eval_steps": 5, "loss": "mse"},
        # Your model under the custom GradientTape loop and MirroredStrategy (two logical CPUs), as sluice's.
        "training": {"rounds": 3, "loop": "custom", "strategy": "mirrored", "cpu_devices": 2},
        "evaluation": {"metrics": ["mean_absolute_error", "example_count"],
                       "thresholds": [{"metric": "mean_absolute_error", "upper_bound": 25.0}]},
        "export": {"targets": ["saved_model", "tflite"], "tflite_variants": ["float32", "dynamic_range"]},
        "code": code,
    }
    path = tmp_path / "homes.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    import json

    work = tmp_path_factory.mktemp("usercode")
    proc = _sluice("run", "--config", str(_config(work, CODE)), "--output", str(work / "out"), "--json")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"work": work, "run": json.loads(proc.stdout.strip().splitlines()[-1])}


def test_your_preprocessing_and_model_pass_every_gate_and_are_pushed(homes):
    import keras
    import tensorflow_transform as tft

    tmp_path, run = homes["work"], homes["run"]
    assert run["blessed"] is True and run["pushed"] is True
    assert run["metrics"]["mean_absolute_error"] < 25.0
    assert set(run["parity"]["shipped"]) == {"float32", "dynamic_range"} and run["infra"]["blessed"] is True
    # Transform ran the team's preprocessing_fn, and the Trainer the team's model (custom layer included).
    transform_dir = next((tmp_path / "out" / "pipeline_root" / "Transform" / "transform_graph").iterdir())
    spec = tft.TFTransformOutput(str(transform_dir)).transformed_feature_spec()
    assert {"log_area", "age_z", "rooms_scaled", "area_per_room", "price_xf"} == set(spec)
    keras_model = next((tmp_path / "out" / "pipeline_root" / "Trainer").rglob("model.keras"))
    from tests.usercode.custom import Interaction

    model = keras.models.load_model(str(keras_model), custom_objects={"Interaction": Interaction})
    assert any(type(layer).__name__ == "Interaction" for layer in model.layers)


def test_a_model_fn_that_does_not_import_is_refused_and_the_served_model_is_untouched(homes):
    """Same output directory (Transform is cached: only the Trainer runs, and refuses)."""
    work = homes["work"]
    serving = work / "out" / "serving"
    before = sorted((p.relative_to(serving), p.stat().st_mtime_ns) for p in serving.rglob("*"))
    proc = _sluice("run", "--config", str(_config(work, {**CODE, "model_fn": "tests.usercode.nowhere.model_fn"})),
                   "--output", str(work / "out"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "Trainer refused the run: code.model_fn: cannot import 'tests.usercode.nowhere'" in proc.stderr
    assert sorted((p.relative_to(serving), p.stat().st_mtime_ns) for p in serving.rglob("*")) == before
