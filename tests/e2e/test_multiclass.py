"""Multi-class end to end on the bundled example (configs/wine.yaml: the UCI Wine data as scikit-learn ships it,
three cultivars, string classes; the custom GradientTape loop with the sparse focal loss): blessed on TFMA's
multi-class metrics, the report's per-class table and confusion matrix by class name, REST and gRPC answers
with the class name, a TFLite model answering the same probabilities and names, and a label outside the
classes stopped at the DataGate with the pushed model untouched."""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import ROOT, run_json

pytestmark = pytest.mark.e2e

CLASSES = ["class_0", "class_1", "class_2"]
DATA = ROOT / "data" / "wine" / "wine.csv"


def _config(work: Path, data: Path) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "wine.yaml").read_text())
    raw["data"]["path"] = str(data)
    raw["schema"] = str(ROOT / "schemas" / "wine" / "schema.pbtxt")
    path = work / f"{data.stem}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    work = tmp_path_factory.mktemp("wine")
    out = work / "output"
    return {"run": run_json("run", "--config", str(_config(work, DATA)), "--output", str(out)), "out": out,
            "work": work}


def _rows(limit: int):
    with open(DATA, newline="") as f:
        rows = list(csv.DictReader(f))[:limit]
    return rows


def test_the_bundled_multiclass_example_is_blessed_on_tfma_multiclass_metrics(wine):
    run = wine["run"]
    assert run["_exit"] == 0 and run["blessed"] is True and run["pushed"] is True, run["_stderr"][-4000:]
    metrics = run["metrics"]
    assert metrics["accuracy"] >= 0.85 and metrics["macro_auc"] >= 0.9 and metrics["macro_recall"] >= 0.8
    assert metrics["log_loss"] < np.log(3)  # better than knowing nothing about three classes
    assert not any("[" in k for k in metrics)  # per-class values are under per_class, by name
    assert set(run["per_class"]) == set(CLASSES)
    assert all({"precision", "recall", "auc"} <= set(m) for m in run["per_class"].values())
    recalls = [m["recall"] for m in run["per_class"].values()]
    assert np.mean(recalls) == pytest.approx(metrics["macro_recall"], abs=1e-6)  # TFMA's macro = mean per class
    assert any("fewer than 200" in n for n in run["notes"])  # 178 rows: the eval split is small, and said so


def test_the_report_shows_each_class_and_the_confusion_matrix(wine):
    page = (Path(wine["run"]["report_dir"]) / "evaluation.html").read_text()
    matrix = page[page.index("Confusion matrix"):]
    assert all(html.escape(c) in matrix for c in CLASSES)
    cells = [int(v) for v in re.findall(r"<td>(\d+)</td>", matrix.split("</table>")[0])]
    assert len(cells) == 9 and sum(cells) == wine["run"]["metrics"]["example_count"]
    diagonal = sum(cells[i * 3 + i] for i in range(3))
    assert diagonal / sum(cells) == pytest.approx(wine["run"]["metrics"]["accuracy"], abs=1e-6)


def test_rest_and_grpc_answer_probabilities_and_the_class_name(wine):
    import tensorflow as tf

    from sluice.serving.client import GrpcClient, RestClient, fill_rows
    from sluice.serving.server import LocalServer

    rows = _rows(6)
    server = LocalServer(wine["out"] / "serving", rest_port=0, grpc_port=0, poll_seconds=60).start()
    try:
        client = RestClient(f"http://127.0.0.1:{server.rest_port}", "wine")
        instances = fill_rows(rows, client.input_types("serving_raw"))  # magnesium, proline: int64 inputs
        rest = client.predict(instances, "serving_raw")
        grpc = GrpcClient(f"127.0.0.1:{server.grpc_port}", "wine")
        try:
            by_grpc = grpc.predict(instances, "serving_raw")
        finally:
            grpc.close()
    finally:
        server.stop()
    model = tf.saved_model.load(wine["run"]["saved_model_path"])
    expected = model.signatures["serving_raw"](**{
        k: tf.constant([i[k] for i in instances], tf.int64 if isinstance(instances[0][k], int) else tf.float32)
        for k in instances[0]})
    probabilities = expected["outputs"].numpy()
    assert probabilities.shape == (6, 3) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    names = [CLASSES[i] for i in probabilities.argmax(axis=1)]
    assert [c.decode() for c in expected["classes"].numpy()] == names
    assert list(rest["classes"]) == names and [c.decode() for c in by_grpc["classes"]] == names
    assert np.allclose(rest["outputs"], probabilities, atol=1e-6) and np.allclose(by_grpc["outputs"], probabilities)
    assert names == [r["cultivar"] for r in rows]  # the first wines are easy ones


def test_the_tflite_model_answers_the_same_probabilities_and_class_names(wine):
    from ai_edge_litert.interpreter import Interpreter

    tflite_dir = Path(wine["run"]["tflite_path"])
    spec = json.loads((tflite_dir / "io_spec.json").read_text())
    assert spec["classes"] == CLASSES and spec["outputs"]["classes"]["dtype"] == "string"
    assert "od280/od315_of_diluted_wines" in spec["inputs"]
    rows = _rows(178)[::7]
    runner = Interpreter(model_path=str(tflite_dir / "model.tflite")).get_signature_runner("serving_raw")
    got = runner(**{k: np.array([float(r[k]) for r in rows], spec["inputs"][k]["dtype"]) for k in spec["inputs"]})
    assert got["outputs"].shape == (len(rows), 3)
    assert [c.decode() for c in got["classes"]] == [CLASSES[i] for i in got["outputs"].argmax(axis=1)]
    correct = np.mean([c.decode() == r["cultivar"] for c, r in zip(got["classes"], rows)])
    assert correct >= 0.85


def test_a_label_outside_the_classes_stops_at_the_gate_and_the_served_model_stays(wine):
    """A typo'd cultivar in 5 rows: Transform would make it class id -1; the gate names the column and value."""
    served = sorted(p.name for p in (wine["out"] / "serving" / "wine").iterdir())
    bad = wine["work"] / "wine_typo.csv"
    with open(DATA, newline="") as src, open(bad, "w", newline="") as dst:
        lines = src.read().splitlines()
        dst.write("\n".join(lines[:1] + [ln.replace("class_2", "class 2") if i % 10 == 0 else ln
                                          for i, ln in enumerate(lines[1:])]) + "\n")
    run = run_json("run", "--config", str(_config(wine["work"], bad)), "--output", str(wine["out"]))
    assert run["_exit"] != 0 and run["status"] == "data_rejected", run["_stderr"][-3000:]
    assert "cultivar" in run["error"] and "class 2" in run["error"]
    assert "Traceback" not in run["_stderr"]
    assert sorted(p.name for p in (wine["out"] / "serving" / "wine").iterdir()) == served
