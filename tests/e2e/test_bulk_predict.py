"""``sluice predict --output`` on the fare session pipeline's pushed model: each row becomes exactly the
tf.Example CsvExampleGen made of it in that pipeline (compared feature by feature), every row is scored as the
pushed ``serving_default`` scores it (on examples built independently from the curated schema), bad rows land
in the dead-letter file with their line and reason. (That ``sluice monitor`` reads the PredictionLog output
is tested on a small model in tests/serving/test_batch.py.)"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.e2e.test_export import _latest
from tests.helpers import run_cli, serialized_examples

pytestmark = pytest.mark.e2e

ROWS = 600


@pytest.fixture(scope="module")
def bulk(fare, sample, tmp_path_factory):
    work = tmp_path_factory.mktemp("bulk")
    with open(sample, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [r for _, r in zip(range(ROWS), reader)]
    table = work / "table.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trip_id", *header])
        writer.writerows([i, *row] for i, row in enumerate(rows))
        miles = header.index("trip_miles")
        bad = list(rows[0])
        bad[miles] = "eleven"
        writer.writerow(["bad-number", *bad])
        writer.writerow(["bad-short", *rows[0][:3]])
    out = work / "out"
    proc = run_cli("predict", "--config", str(fare["config"]), "--input", str(table), "--output", str(out),
                   "--model-dir", str(fare["out"] / "serving"), "--keys", "trip_id", timeout=600)
    return {"work": work, "table": table, "out": out, "proc": proc, "header": header}


def test_bulk_scores_every_row_as_the_model_scores_its_example(bulk, fare, sample):
    import tensorflow as tf

    from sluice.pipeline.config import load_config
    from sluice.serving.batch import read_predictions

    proc = bulk["proc"]
    assert proc.returncode == 3, proc.stderr[-3000:]  # two dead letters, none allowed
    assert "Traceback" not in proc.stderr and f"{ROWS} row(s) scored" in proc.stdout
    predictions = {row["trip_id"]: float(row["prediction"]) for row in read_predictions(str(bulk["out"]))}
    assert set(predictions) == {str(i) for i in range(ROWS)}

    cfg = load_config(fare["config"])
    pushed = sorted((fare["out"] / "serving" / cfg.model_name).iterdir(), key=lambda p: int(p.name))[-1]
    examples = serialized_examples(sample, [f.name for f in cfg.features], ROWS)
    expected = tf.saved_model.load(str(pushed)).signatures["serving_default"](
        examples=tf.constant(examples))["outputs"].numpy().reshape(-1)
    got = np.array([predictions[str(i)] for i in range(ROWS)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

    letters = {}
    for path in bulk["out"].glob("dead_letter-*.jsonl"):
        for line in path.read_text().splitlines():
            letter = json.loads(line)
            letters[letter["line"]] = letter
    assert sorted(letters) == [ROWS + 2, ROWS + 3]
    assert "'trip_miles': 'eleven' is not a number" in letters[ROWS + 2]["reason"]
    assert "cells, the header" in letters[ROWS + 3]["reason"]
    summary = json.loads((bulk["out"] / "summary.json").read_text())
    assert summary["model_path"] == str(pushed) and summary["keys"] == ["trip_id"]


def _view(example, columns):
    features = example.features.feature
    return tuple((c, features[c].WhichOneof("kind"), tuple(getattr(features[c], features[c].WhichOneof("kind")).value)
                  if features[c].WhichOneof("kind") else ()) for c in columns)


def test_rows_become_the_examples_csv_example_gen_made(bulk, fare):
    """The model's inputs in the logged requests equal CsvExampleGen's examples of the same sample rows (its
    splits hold all of them): types, values, and empty cells as features without a value."""
    import tensorflow as tf

    from sluice.pipeline.config import load_config
    from sluice.serving.request_log import read_logs

    columns = sorted(f.name for f in load_config(fare["config"]).features)
    made = set()
    for split in ("train", "eval"):
        files = [str(p) for p in (_latest(fare["out"], "CsvExampleGen", "examples") / f"Split-{split}").iterdir()]
        for raw in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
            made.add(_view(tf.train.Example.FromString(raw), columns))
    logs = read_logs(str(bulk["out"]))
    assert len(logs) == ROWS
    ours = [_view(tf.train.Example.FromString(tf.make_ndarray(log.predict_log.request.inputs["examples"])[0]), columns)
            for log in logs]
    assert any(kind and not values for view in ours for _, kind, values in view), \
        "the sample has empty cells: they must be features without a value"
    missing = [view for view in ours if view not in made]
    assert not missing, f"{len(missing)} rows differ from CsvExampleGen's, e.g. {missing[0]}"
