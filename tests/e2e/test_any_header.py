"""A CSV with awkward headers, first try: `sluice schema infer` with no config drafts a schema the gate accepts on
that CSV; the pipeline trains, blesses and pushes; REST requests (`sluice predict` on the CSV's own header) and
the TFLite model answer like the SavedModel; the reports keep the CSV's names.

Headers: spaces and "/" (`od280/od315 of wine`), unicode (`compañía`), a leading digit (`1st_hour`), a
reserved word (`class`), a dot kept as is (`x.y`), two headers tf.function would clean to one name (`a.b`,
`a-b`), and a label with punctuation (`Fare ($)`).
"""

from __future__ import annotations

import csv
import html
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import ROOT, run_cli, run_json

pytestmark = pytest.mark.e2e

COMPANIES = ["Flash Cab", "Sun Taxi", "Blue Diamond"]
HEADER = ["Trip Miles (mi)", "od280/od315 of wine", "1st_hour", "compañía", "class", "x.y", "a.b", "a-b", "Fare ($)"]


def _write(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for i in range(rows):
            miles = float(rng.gamma(2.0, 2.0))
            wine = float(rng.normal(2.5, 0.7))
            hour = int(rng.integers(0, 24))
            company = "" if i % 9 == 0 else COMPANIES[int(rng.integers(0, 3))]
            klass = float(rng.uniform(0, 10))
            xy, ab, a_b = (float(v) for v in rng.normal(size=3))
            fare = (3.0 + 2.5 * miles + 1.5 * wine + (2.0 if company == "Sun Taxi" else 0.0) + 0.3 * klass
                    + (1.0 if 7 <= hour <= 9 else 0.0) + xy + 0.5 * ab - 0.5 * a_b + rng.normal(0, 0.5))
            writer.writerow([round(miles, 3), round(wine, 3), hour, company, round(klass, 3), round(xy, 3),
                             round(ab, 3), round(a_b, 3), round(fare, 2)])


def _config(work: Path, data: Path, schema: Path) -> Path:
    raw = {
        "name": "awkward",
        "data": {"path": str(data), "splits": {"train": 3, "eval": 1}},
        "schema": str(schema),
        "task": {"type": "regression", "label": "Fare ($)"},
        "features": [
            {"name": "Trip Miles (mi)", "kind": "numeric"},
            {"name": "od280/od315 of wine", "kind": "numeric"},
            {"name": "1st_hour", "kind": "categorical_int", "num_buckets": 24},
            {"name": "compañía", "kind": "categorical_string", "top_k": 10, "optional": True,
             "missing_indicator": True},
            {"name": "class", "kind": "bucketized", "buckets": 5},
            {"name": "x.y", "kind": "numeric"},
            {"name": "a.b", "kind": "numeric"},
            {"name": "a-b", "kind": "numeric"},
        ],
        "model": {"hidden_units": [32, 16], "learning_rate": 0.01, "batch_size": 64, "train_steps": 600,
                  "eval_steps": 10, "loss": "mse"},
        "training": {"rounds": 3},
        "evaluation": {"metrics": ["mean_absolute_error", "example_count"],
                       "slices": [["compañía"], ["1st_hour"]], "min_slice_size": 20,
                       "thresholds": [{"metric": "mean_absolute_error", "upper_bound": 2.5}]},
        "export": {"targets": ["saved_model", "tflite"], "tflite_variants": ["float32"]},
    }
    path = work / "awkward.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return path


@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    work = tmp_path_factory.mktemp("awkward")
    data = work / "data.csv"
    _write(data, 1600)
    schema = work / "schema.pbtxt"
    inferred = run_cli("schema", "infer", "--data", str(data), "--out", str(schema))
    assert inferred.returncode == 0, inferred.stderr[-3000:]
    config = _config(work, data, schema)
    out = work / "output"
    run = run_json("run", "--config", str(config), "--output", str(out))
    return {"work": work, "data": data, "schema": schema, "config": config, "out": out, "run": run}


def test_the_inferred_schema_passes_the_gate_and_the_model_is_blessed_and_pushed(awkward):
    run = awkward["run"]
    assert run["_exit"] == 0, run["_stderr"][-4000:]
    assert run["blessed"] is True and run["pushed"] is True, run
    assert "Traceback" not in run["_stderr"]
    assert 'name: "compañía"' in awkward["schema"].read_text()  # readable, not octal escapes


def test_rest_requests_on_the_csv_header_answer_like_the_saved_model(awkward, tmp_path):
    """`sluice predict` reads rows under the CSV's own header; the server's signature names the inputs as
    TensorFlow allows (`x.y`, `1st_hour` kept; `od280/od315 of wine` derived), and the answers are the
    SavedModel's on the same rows as tf.Examples."""
    import tensorflow as tf

    from sluice.components.features import input_keys
    from sluice.serving.server import LocalServer

    rows = tmp_path / "rows.csv"
    with open(awkward["data"], newline="") as src, open(rows, "w", newline="") as dst:
        reader, writer = csv.reader(src), csv.writer(dst)
        for _, line in zip(range(9), reader):
            writer.writerow(line[:-1])  # header + 8 rows, without the label
    keys = input_keys(HEADER[:-1])
    assert keys["x.y"] == "x.y" and keys["1st_hour"] == "1st_hour" and keys["class"] == "class"
    assert keys["od280/od315 of wine"] != "od280/od315 of wine" and keys["a.b"] != "a.b"

    server = LocalServer(awkward["out"] / "serving", rest_port=0, grpc_port=0, poll_seconds=60).start()
    try:
        exe = str(Path(sys.executable).parent / "sluice")
        proc = subprocess.run([exe, "predict", "--model", "awkward", "--input", str(rows), "--endpoint",
                               f"http://127.0.0.1:{server.rest_port}"], capture_output=True, text=True, timeout=120,
                              cwd=ROOT)
        from sluice.serving.client import RestClient

        signature = RestClient(f"http://127.0.0.1:{server.rest_port}", "awkward").input_types()
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stderr
    assert "not in" not in proc.stderr  # every input was found under the CSV's names
    assert set(signature) == set(keys.values())
    got = [json.loads(line)["prediction"] for line in proc.stdout.splitlines()]
    assert [set(json.loads(line)["input"]) for line in proc.stdout.splitlines()][0] <= set(HEADER)

    examples = []
    with open(rows, newline="") as f:
        for row in csv.DictReader(f):
            feature = {}
            for name, value in row.items():
                if value == "":
                    continue
                if name in ("1st_hour",):
                    feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
                elif name == "compañía":
                    feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
                else:
                    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
            examples.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    model = tf.saved_model.load(awkward["run"]["saved_model_path"])
    expected = model.signatures["serving_default"](examples=tf.constant(examples))["outputs"].numpy().reshape(-1)
    present = [i for i, e in enumerate(examples) if b"\xc3\xb1" in e]  # rows with a company: no fill value
    assert len(present) >= 5
    assert np.allclose(np.array(got)[present], expected[present], rtol=1e-4, atol=1e-3)


def _dense_inputs(awkward, rows: int):
    """The first ``rows`` CSV rows that have every value, keyed by input name (what serving_raw and TFLite take)."""
    from sluice.components.features import input_keys

    keys = input_keys(HEADER[:-1])
    columns = {keys[name]: [] for name in HEADER[:-1]}
    with open(awkward["data"], newline="") as f:
        for row in csv.DictReader(f):
            if row["compañía"] == "":
                continue
            for name in HEADER[:-1]:
                value = row[name]
                columns[keys[name]].append(int(value) if name == "1st_hour" else
                                           value.encode() if name == "compañía" else float(value))
            if len(columns[keys["1st_hour"]]) == rows:
                break
    return {k: np.array(v, dtype=object if k == keys["compañía"] else np.int64 if k == keys["1st_hour"]
                        else np.float32) for k, v in columns.items()}


def test_the_tflite_model_takes_the_same_input_names_and_answers_alike(awkward):
    import tensorflow as tf

    from sluice.components.export import tflite
    from sluice.components.features import input_keys

    tflite_dir = Path(awkward["run"]["tflite_path"])
    spec = json.loads((tflite_dir / "io_spec.json").read_text())
    assert set(spec["inputs"]) == set(input_keys(HEADER[:-1]).values())
    inputs = _dense_inputs(awkward, 64)
    got = tflite.predict(str(tflite_dir / "model.tflite"), inputs).reshape(-1)
    model = tf.saved_model.load(awkward["run"]["saved_model_path"])
    expected = model.signatures["serving_raw"](**{k: tf.constant(v) for k, v in inputs.items()})["outputs"]
    assert np.allclose(got, expected.numpy().reshape(-1), rtol=1e-4, atol=1e-3)
    assert awkward["run"]["parity"]["shipped"] == ["float32"]


def test_reports_keep_the_csv_names(awkward):
    run = awkward["run"]
    pages = {"run page": Path(run["report_dir"]) / "index.html", "data report": Path(run["data_report"])}
    for page, path in pages.items():
        text = path.read_text()
        for name in ("od280/od315 of wine", "compañía", "Trip Miles (mi)"):
            assert html.escape(name) in text, (page, name)

