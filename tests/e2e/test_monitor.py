"""``sluice monitor`` on the fare session pipeline's pushed model: eval-split rows replayed through a logging
server pass; the same rows with one feature ×10 are flagged on that feature and only it (exit 3), with the
HTML page and the JSON saying so. Traffic is sent as TF Serving clients do, serialized tf.Examples over gRPC
(``serving_default``), so an empty optional cell stays absent, as in the training data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from tests.e2e.test_export import _eval_rows
from tests.helpers import run_cli

pytestmark = pytest.mark.e2e

SHIFTED = "trip_miles"


def _replay(fare, logs: Path, shift: Optional[str] = None, rows: int = 600, batch: int = 50) -> int:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from sluice.pipeline.config import load_config
    from sluice.serving.request_log import RequestLogger
    from sluice.serving.server import LocalServer

    cfg = load_config(fare["config"])
    examples = []
    for raw in _eval_rows(fare, rows).serialized:
        example = tf.train.Example.FromString(raw)
        if shift:
            values = example.features.feature[shift].float_list.value
            values[:] = [v * 10 for v in values]
        examples.append(example.SerializeToString())
    server = LocalServer(fare["out"] / "serving", rest_port=0, grpc_port=0, logger=RequestLogger(str(logs))).start()
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
        for i in range(0, len(examples), batch):
            request = predict_pb2.PredictRequest()
            request.model_spec.name, request.model_spec.signature_name = cfg.model_name, "serving_default"
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto(np.array(examples[i:i + batch], dtype=object)))
            stub.Predict(request, timeout=60)
    finally:
        server.stop()
    return len(examples)


@pytest.fixture(scope="module")
def monitored(fare, tmp_path_factory):
    work = tmp_path_factory.mktemp("monitor")
    out = {}
    for name, shift in (("eval", None), ("shifted", SHIFTED)):
        sent = _replay(fare, work / name, shift)
        proc = run_cli("monitor", "--config", str(fare["config"]), "--logs", str(work / name), "--output",
                       str(fare["out"]), "--report", str(work / f"{name}-report"), "--json", timeout=600)
        result = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
        out[name] = {"proc": proc, "result": result, "sent": sent, "report": work / f"{name}-report"}
    return out


def test_requests_drawn_from_the_eval_split_pass(monitored):
    run = monitored["eval"]
    assert run["proc"].returncode == 0, run["proc"].stderr[-3000:]
    result = run["result"]
    assert result["passed"] is True and result["flagged"] == [] and result["prediction_shift"] is False
    [version] = result["versions"]
    assert version["rows"] == run["sent"] and version["signatures"] == {"serving_default": version["requests"]}
    assert version["sampling_rates"] == [1.0] and version["logged_from"] > 0
    measured = {(d["feature"], d["measure"].split()[0]) for d in version["distances"]}
    assert {(SHIFTED, "JENSEN_SHANNON_DIVERGENCE"), ("payment_type", "L_INFINITY"),  # numeric, string column,
            (SHIFTED, "L_INFINITY"), ("(prediction)", "JENSEN_SHANNON_DIVERGENCE")} <= measured  # missing, outputs
    assert "nothing flagged" in run["proc"].stderr


def test_one_feature_shifted_ten_fold_is_flagged_alone(monitored, fare):
    run = monitored["shifted"]
    assert run["proc"].returncode == 3, run["proc"].stderr[-3000:]
    result = run["result"]
    assert result["passed"] is False and result["flagged"] == [SHIFTED]  # the features flagged
    [version] = result["versions"]
    features = [f for f in version["blocking"] if f["feature"] != "(prediction)"]
    assert [(f["feature"], f["anomaly"]) for f in features] == [(SHIFTED, "JENSEN_SHANNON_DIVERGENCE_HIGH")]
    # the run that pushed the served version (the session's first; the two after it reused it from the cache)
    assert version["run_id"] == fare["runs"][0]["run_id"]
    assert f"FLAGGED {SHIFTED}" in run["proc"].stderr
    page = (run["report"] / "monitor.html").read_text()
    assert "FLAGGED" in page and SHIFTED in page and "<script" not in page
    saved = json.loads((run["report"] / "monitor.json").read_text())
    assert saved["flagged"] == [SHIFTED]


def test_logs_of_no_known_version_or_model_get_one_screen(fare, tmp_path, monitored):
    proc = run_cli("monitor", "--config", str(fare["config"]), "--logs", str(tmp_path / "empty"), "--output",
                   str(fare["out"]), timeout=300)
    assert proc.returncode == 1 and "--logs" in proc.stderr and "no such directory" in proc.stderr
    assert "Traceback" not in proc.stderr
    changed = tmp_path / "changed.yaml"  # not the config that pushed the served version
    changed.write_text(Path(fare["config"]).read_text().replace("learning_rate:", "learning_rate: 0.0031 #", 1))
    proc = run_cli("monitor", "--config", str(changed), "--logs", str(monitored["eval"]["report"].parent / "eval"),
                   "--output", str(fare["out"]), "--json", timeout=300)
    assert proc.returncode == 1 and "was pushed with config" in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["passed"] is None  # alerting learns it did not run
    other = tmp_path / "elsewhere"
    other.mkdir()
    proc = run_cli("monitor", "--config", str(fare["config"]), "--logs", str(monitored["eval"]["report"].parent / "eval"),
                   "--output", str(other), timeout=300)
    assert proc.returncode == 1 and "no run in its ML Metadata pushed version" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_without_ml_metadata_the_serving_directory_answers_the_same(monitored, fare, tmp_path):
    """A pipeline run on Kubeflow/Vertex leaves no ML Metadata here: `--serving DIR` finds each version's data
    through its push record (``lineage_uris``) and measures the same distances as the local run's MLMD."""
    shifted = monitored["shifted"]
    proc = run_cli("monitor", "--config", str(fare["config"]), "--logs", str(shifted["report"].parent / "shifted"),
                   "--serving", str(fare["out"] / "serving"), "--output", str(tmp_path / "no-metadata"),
                   "--report", str(tmp_path / "report"), "--json", timeout=600)
    assert proc.returncode == 3, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["flagged"] == [SHIFTED] and not (tmp_path / "no-metadata" / "metadata.sqlite").exists()
    [version], [by_mlmd] = result["versions"], shifted["result"]["versions"]
    assert version["run_id"] is None and version["distances"] == by_mlmd["distances"]

    pushed = Path(fare["runs"][0]["saved_model_path"])
    record = json.loads((pushed / "sluice_push.json").read_text())
    assert set(record["lineage_uris"]) == {"statistics", "examples", "transform_graph", "schema"}
    assert all(Path(uri).is_dir() for uri in record["lineage_uris"].values())
    # a version whose push record names no data (pushed by an older sluice) gets one screen
    older = tmp_path / "serving" / pushed.parent.name / pushed.name
    shutil.copytree(pushed, older)
    del record["lineage_uris"]
    (older / "sluice_push.json").write_text(json.dumps(record))
    proc = run_cli("monitor", "--config", str(fare["config"]), "--logs", str(shifted["report"].parent / "shifted"),
                   "--serving", str(tmp_path / "serving"), "--output", str(tmp_path / "no-metadata"), timeout=300)
    assert proc.returncode == 1 and "--serving" in proc.stderr and "push record" in proc.stderr
    assert "Traceback" not in proc.stderr
