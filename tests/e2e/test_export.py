"""Export for server and mobile, on the session's fare pipeline (conftest.py): warmup requests and the push
record in the SavedModel version, the TFLite twin with its io spec, the standalone LiteRT runtime, and the
parity gate refusing a wrong TFLite model (mismatched weights, a corrupted file) so that nothing is pushed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_pipeline import FARE_FEATURES

pytestmark = pytest.mark.e2e


def _latest(root: Path, component: str, output: str) -> Path:
    return max((root / "pipeline_root" / component / output).iterdir(), key=lambda p: int(p.name))


def _tflite_dir(fare) -> Path:
    first = fare["runs"][0]
    return fare["out"] / "serving" / "taxi_fare_tflite" / first["version"]


def _eval_rows(fare, limit=200):
    import tensorflow_transform as tft

    from sluice.components.export.rows import read_rows
    from sluice.components.trainer.signatures import serving_columns
    from sluice.pipeline.config import load_config

    contract = load_config(Path(fare["out"]).parent / "taxi_fare.yaml").export_contract()
    spec = serving_columns(tft.TFTransformOutput(str(_latest(fare["out"], "Transform", "transform_graph"))), contract)
    return read_rows(str(_latest(fare["out"], "CsvExampleGen", "examples")), "eval", contract.features, spec, limit)


def test_pushed_version_carries_warmup_and_its_story(fare):
    import tensorflow as tf

    from sluice.components.export import warmup

    first = fare["runs"][0]
    version = Path(first["saved_model_path"])
    requests = warmup.read(str(version / "assets.extra" / "tf_serving_warmup_requests"))
    assert 0 < len(requests) <= 1000
    assert {r.model_spec.signature_name for r in requests} == {"serving_default", "serving_raw"}
    model = tf.saved_model.load(str(version))
    for request in requests[:4]:  # each replays against the model it ships with
        signature = model.signatures[request.model_spec.signature_name]
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        out = signature(**{k: tf.constant(v) for k, v in inputs.items()})["outputs"].numpy()
        assert np.isfinite(out).all() and len(out) == len(next(iter(inputs.values())))
    record = json.loads((version / "sluice_push.json").read_text())
    assert record["version"] == version.name and record["pipeline"] == "taxi_fare"
    assert record["metrics"]["mean_absolute_error"] == pytest.approx(first["metrics"]["mean_absolute_error"])
    assert {"model", "model_blessing", "export", "evaluation"} <= set(record["lineage_artifact_ids"])
    assert record["packages"]["tfx"] == "1.16.0" and record["config_hash"]
    assert record["data_fingerprint"] == first["details"]["data_fingerprint"]
    assert set(record["tflite_parity"]) == {"float32", "dynamic_range", "int8"}


def test_tflite_twin_ships_exactly_the_variants_that_passed_parity(fare):
    """Every configured variant is judged (metric and per row); float32 is the gate; a quantized variant that
    fails is not shipped, and the run says so on the console (issue 17: int8 had passed on the average while
    one row was $272 off)."""
    first = fare["runs"][0]
    assert first["tflite_path"] == str(_tflite_dir(fare))
    verdict = json.loads((_tflite_dir(fare) / "parity.json").read_text())
    by = {v["variant"]: v for v in verdict["variants"]}
    assert set(by) == {"float32", "dynamic_range", "int8"} and by["float32"]["passed"]
    shipped = [v for v in by if by[v]["passed"]]
    assert verdict["shipped"] == shipped and verdict["dropped"] == [v for v in by if v not in shipped]
    files = {p.name for p in _tflite_dir(fare).iterdir()}
    assert files == ({"model.tflite", "io_spec.json", "parity.json"}
                     | {f"model_{v}.tflite" for v in shipped if v != "float32"})
    for v in verdict["dropped"]:
        result = by[v]
        assert (result["metric_change"] > verdict["budget"]["metric_budget"]
                or result["row_quantile_diff"] > verdict["budget"]["row_budget"]
                or result["worst_row_diff"] > verdict["budget"]["worst_row_budget"]), result
        assert f"NOT SHIPPED TFLite parity: {v}:" in first["_stderr"]
    reference = verdict["saved_model_metric"]  # the two MAE numbers, explained on the console
    assert reference["examples"] == pytest.approx(first["metrics"]["mean_absolute_error"], rel=2e-3)
    assert "on the same rows as tf.Examples" in first["_stderr"]
    spec = json.loads((_tflite_dir(fare) / "io_spec.json").read_text())
    assert set(spec["inputs"]) == set(FARE_FEATURES) and list(spec["outputs"]) == ["outputs"]
    assert spec["inputs"]["payment_type"]["dtype"] == "string" and spec["inputs"]["trip_miles"]["dtype"] == "float32"
    assert verdict["passed"] and verdict["rows"] > 500
    assert by["float32"]["rows_outside_tolerance"] == 0
    assert by["int8"]["size_bytes"] < by["float32"]["size_bytes"]


def test_float32_tflite_answers_like_the_saved_model(fare):
    import tensorflow as tf

    from sluice.components.export import tflite

    rows = _eval_rows(fare)
    saved = tf.saved_model.load(fare["runs"][0]["saved_model_path"]).signatures["serving_raw"]
    expected = saved(**{k: tf.constant(v) for k, v in rows.columns.items()})["outputs"].numpy()
    got = tflite.predict(str(_tflite_dir(fare) / "model.tflite"), rows.columns, batch_size=64)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_litert_runtime_without_tensorflow_gives_tf_lite_answers(fare, tmp_path):
    from sluice.components.export import tflite

    rows = _eval_rows(fare, 100)
    np.savez(tmp_path / "rows.npz", **rows.columns)
    script = """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
columns = dict(np.load(sys.argv[2], allow_pickle=True))
runner = Interpreter(model_path=sys.argv[1]).get_signature_runner("serving_raw")
np.save(sys.argv[3], runner(**columns)["outputs"])
assert "tensorflow" not in sys.modules, "the mobile runtime must not need TensorFlow"
"""
    from sluice.components.export.component import tflite_dir

    export_uri = str(_latest(fare["out"], "ModelExport", "exported"))
    # int8 from the export artifact: its kernels are what differs between runtimes, shipped or not
    for name, model in (("model.tflite", str(_tflite_dir(fare) / "model.tflite")),
                        ("model_int8.tflite", str(Path(tflite_dir(export_uri, "int8")) / "model.tflite"))):
        proc = subprocess.run([sys.executable, "-c", script, model, str(tmp_path / "rows.npz"), str(tmp_path / "o.npy")],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        litert = np.load(tmp_path / "o.npy")
        reference = tflite.predict(model, rows.columns, batch_size=100)
        if name == "model.tflite":
            np.testing.assert_allclose(litert, reference, rtol=1e-5, atol=1e-5)
        else:  # int8 kernels of the newer standalone runtime may round a few rows one step differently
            close = np.isclose(litert, reference, rtol=1e-5, atol=1e-5)
            assert close.mean() >= 0.95, f"{(~close).sum()} of {close.size} rows differ"
            np.testing.assert_allclose(litert, reference, rtol=0.05)


def _settings(fare):
    from sluice.pipeline.config import load_config

    contract = load_config(Path(fare["out"]).parent / "taxi_fare.yaml").export_contract()
    return contract.model_copy(update={"variants": ["float32"]})


def _work(tmp_path) -> str:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return str(work)


def test_parity_gate_refuses_a_mismatched_model(fare, tmp_path):
    """A TFLite model built from other weights than the SavedModel's must fail float32 parity."""
    import keras

    from sluice.components.export.component import export_variants
    from sluice.components.trainer.signatures import keras_model_path

    model_dir = tmp_path / "model"
    shutil.copytree(_latest(fare["out"], "Trainer", "model"), model_dir)
    model = keras.models.load_model(keras_model_path(str(model_dir)))
    output_layer = [layer for layer in model.layers if layer.weights and len(layer.weights[0].shape) == 2][-1]
    kernel = output_layer.weights[0]
    kernel.assign(kernel.numpy() * 1.05)
    model.save(keras_model_path(str(model_dir)))
    verdict = export_variants(_settings(fare), str(model_dir), str(_latest(fare["out"], "Transform", "transform_graph")),
                              _eval_rows(fare, 50), _eval_rows(fare, 300), str(tmp_path / "export"), _work(tmp_path))
    assert verdict["passed"] is False
    result = verdict["variants"][0]
    assert result["rows_outside_tolerance"] > 0 and "float32:" in verdict["failures"][0]


def test_a_variant_whose_converter_aborts_fails_alone(fare, tmp_path, monkeypatch):
    """All steps first run in one process; when the converter aborts it (LLVM's abort with Keras 3 models),
    every missing step runs again in its own process, so only the variant that aborts fails, with its cause."""
    import stat
    import sys

    from sluice.components.export import component, tflite

    wrapper = tmp_path / "python-aborting-on-int8"
    wrapper.write_text("#!/bin/sh\n"
                       "if grep -q '\"variant\": \"int8\"' \"$3\"; then\n"
                       "  echo 'LLVM ERROR: Failed to infer result type(s).' >&2; kill -ABRT $$\n"
                       "fi\n"
                       f"exec {sys.executable} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(tflite.sys, "executable", str(wrapper))
    export_uri = tmp_path / "export"
    contract = _settings(fare).model_copy(update={"variants": ["float32", "int8"]})
    verdict = component.export_variants(contract, str(_latest(fare["out"], "Trainer", "model")),
                                        str(_latest(fare["out"], "Transform", "transform_graph")),
                                        _eval_rows(fare, 50), _eval_rows(fare, 300), str(export_uri),
                                        _work(tmp_path))
    by = {v["variant"]: v for v in verdict["variants"]}
    assert by["float32"]["passed"] is True, by["float32"]
    assert by["int8"]["passed"] is False and "TFLite int8 failed (killed by signal 6)" in by["int8"]["error"]
    assert "LLVM ERROR" in by["int8"]["error"]
    logs = {p.name for p in (export_uri / "_logs").iterdir()}
    assert {"export.log", "archive.log", "float32.log", "int8.log"} <= logs
    assert (Path(component.tflite_dir(str(export_uri), "float32")) / tflite.MODEL_FILE).is_file()
    assert not Path(component.tflite_dir(str(export_uri), "int8")).exists()


def test_parity_gate_refuses_a_corrupted_tflite_file_and_the_pusher_pushes_nothing(fare, tmp_path, monkeypatch):
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from sluice.components import pusher
    from sluice.components.export import component, tflite

    convert = tflite.run_step

    def corrupting(job, workdir, name, log_home=None, timeout=900):
        convert(job, workdir, name, log_home, timeout)
        for step in job.get("steps", [job]):  # one process for every step, or one per step
            if step["step"] == "convert":
                data = bytearray(Path(step["out_path"]).read_bytes())
                data[len(data) // 3: len(data) // 3 + 4096] = b"\xff" * 4096
                Path(step["out_path"]).write_bytes(bytes(data))

    monkeypatch.setattr(component.tflite, "run_step", corrupting)
    export_uri = tmp_path / "export"
    verdict = component.export_variants(_settings(fare), str(_latest(fare["out"], "Trainer", "model")),
                                        str(_latest(fare["out"], "Transform", "transform_graph")),
                                        _eval_rows(fare, 50), _eval_rows(fare, 300), str(export_uri),
                                        _work(tmp_path))
    assert verdict["passed"] is False and verdict["variants"][0]["error"]
    (export_uri / component.PARITY_FILE).write_text(json.dumps(verdict))

    # The Pusher, given a blessed model and this export, leaves the serving tree exactly as it was.
    serving = tmp_path / "serving" / "taxi_fare"
    shutil.copytree(fare["out"] / "serving" / "taxi_fare", serving)
    before = sorted(p.relative_to(serving) for p in serving.rglob("*"))
    model = standard_artifacts.Model()
    model.uri = str(_latest(fare["out"], "Trainer", "model"))
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    exported = component.ExportedModel()
    exported.uri = str(export_uri)
    exported.set_int_custom_property("passed", int(verdict["passed"]))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(serving)))
    pusher.Executor().Do({"model": [model], "model_blessing": [blessing], "export": [exported]},
                         {"pushed_model": [pushed]},
                         {"push_destination": proto_utils.proto_to_json(destination), "custom_config": "{}"})
    assert pushed.get_int_custom_property("pushed") == 0
    assert sorted(p.relative_to(serving) for p in serving.rglob("*")) == before
    assert not (tmp_path / "serving" / "taxi_fare_tflite").exists()
