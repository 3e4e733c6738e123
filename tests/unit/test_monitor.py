"""``sluice monitor``'s reading of logged requests (pipeline/monitor.py), without a pipeline: raw-column
requests (``serving_raw``, input keys that differ from CSV headers) and serialized tf.Examples become the same
tf.Examples; class-name predictions are compared by class shares."""

from __future__ import annotations

import numpy as np
import pytest

from sluice.pipeline import monitor


def _request(inputs):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def _parsed(serialized):
    import tensorflow as tf

    out = []
    for raw in serialized:
        feature = tf.train.Example.FromString(raw).features.feature
        out.append({k: (list(v.float_list.value) or list(v.int64_list.value) or list(v.bytes_list.value))
                    for k, v in feature.items()})
    return out


def test_raw_inputs_become_examples_keyed_by_the_csv_column():
    """``Fare ($)`` travels as its request key; a column the model does not take is left out."""
    from sluice.components.features import request_key

    key = request_key("Fare ($)", [])
    assert key != "Fare ($)"
    request = _request({key: np.array([1.5, 2.5], np.float32), "n": np.array([3, 4], np.int64),
                        "s": np.array([b"Cash", b"Card"]), "not_a_column": np.array([9.0, 9.0], np.float32)})
    rows = _parsed(monitor.examples_of(request, ["Fare ($)", "n", "s"]))
    assert rows == [{"Fare ($)": [1.5], "n": [3], "s": [b"Cash"]}, {"Fare ($)": [2.5], "n": [4], "s": [b"Card"]}]


def test_serialized_examples_are_taken_as_sent():
    import tensorflow as tf

    example = tf.train.Example(features=tf.train.Features(feature={
        "n": tf.train.Feature(int64_list=tf.train.Int64List(value=[7]))})).SerializeToString()
    request = _request({"examples": np.array([example, example], dtype=object)})
    assert monitor.examples_of(request, ["n", "s"]) == [example, example]


def test_predictions_are_class_names_or_the_first_output():
    assert monitor.predictions({"outputs": np.array([[0.2, 0.8]]), "classes": np.array([b"b"])}) == ["b"]
    assert monitor.predictions({"outputs": np.array([[1.5], [2.5]], np.float32)}) == [1.5, 2.5]


def test_class_shares_are_compared_with_the_categorical_threshold():
    from sluice.components.contracts import GateContract
    from sluice.components.settings import ValidationConfig

    gate = GateContract(validation=ValidationConfig(), columns={})
    same, crossed = monitor._prediction_distance(gate, ["a"] * 50 + ["b"] * 50, ["a"] * 52 + ["b"] * 48)
    assert same["value"] == pytest.approx(0.02) and not crossed
    moved, crossed = monitor._prediction_distance(gate, ["a"] * 80 + ["b"] * 20, ["a"] * 50 + ["b"] * 50)
    assert moved["value"] == pytest.approx(0.3) and crossed and moved["measure"].startswith("L_INFINITY")


def _examples(rows):
    import tensorflow as tf

    out = []
    for row in rows:
        feature = {k: tf.train.Feature(float_list=tf.train.FloatList(value=[v])) for k, v in row.items()}
        out.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return out


def _gate(columns):
    from sluice.components.contracts import GateContract
    from sluice.components.settings import ValidationConfig

    return GateContract(validation=ValidationConfig(), columns=columns)


def test_a_feature_clients_stop_sending_is_flagged_by_its_missing_share():
    """Decile JSD sees only present values: a feature sent in 1 of 10 rows (or in none) would pass it."""
    gate = _gate({"x": "numeric", "y": "numeric", "z": "numeric"})
    train = monitor.statistics(_examples([{"x": float(i), "y": float(i), "z": float(i)} for i in range(200)]))
    served = monitor.statistics(_examples([{"x": float(i), **({"y": float(i)} if i % 10 == 0 else {})}
                                           for i in range(200)]))
    rows, findings = monitor.missing_shares(gate, train, served, "served")
    assert {r["feature"]: r["value"] for r in rows} == {"x": 0.0, "y": 0.9, "z": 1.0}
    assert sorted(f.feature for f in findings) == ["y", "z"]
    assert {f.anomaly for f in findings} == {monitor.MISSING_SHARE_SHIFT}


def test_numeric_predictions_that_move_are_flagged_and_the_same_ones_are_not():
    gate = _gate({})
    rng = np.random.default_rng(0)
    reference = list(rng.normal(10, 2, 1000))
    same, crossed = monitor._prediction_distance(gate, list(rng.normal(10, 2, 600)), reference)
    assert not crossed and same["value"] < 0.05
    moved, crossed = monitor._prediction_distance(gate, list(rng.normal(14, 2, 600)), reference)
    assert crossed and moved["feature"] == monitor.PREDICTION and moved["value"] > gate.validation.skew.numeric_jsd


def test_a_version_keeps_a_uniform_sample_of_at_most_max_rows():
    served = monitor.Served(1, limit=100)
    for start in range(0, 10_000, 50):
        served.add([str(i).encode() for i in range(start, start + 50)], list(range(start, start + 50)))
    assert served.rows == 10_000 and len(served.examples) == len(served.predictions) == 100
    for kept in ([int(e) for e in served.examples], served.predictions):
        assert np.mean(kept) == pytest.approx(5000, abs=1200)  # from the whole stream, not its first 100 rows


def test_rows_of_a_response_without_the_models_output_still_count():
    """A gRPC output_filter can leave a response without ``outputs``: its rows are still what was received."""
    served = monitor.Served(1)
    served.add([b"a", b"b"], [])
    served.add([b"c"], [1.0])
    assert served.rows == 3 and served.examples == [b"a", b"b", b"c"] and served.predictions == [1.0]


def test_the_serving_environment_is_used_where_the_schema_has_one():
    import tensorflow_data_validation as tfdv

    from tests.helpers import SCHEMA, WINE_SCHEMA

    taxi, wine = tfdv.load_schema_text(str(SCHEMA)), tfdv.load_schema_text(str(WINE_SCHEMA))
    assert monitor.serving_environment(taxi) == "SERVING"
    assert monitor.serving_environment(wine) is None  # TFDV would raise "Environment SERVING not found"
    stats = monitor.statistics(_examples([{"alcohol": 13.0}]))
    tfdv.validate_statistics(stats, wine, environment=monitor.serving_environment(wine))  # no ValueError


def test_a_version_is_found_by_its_push_record_on_any_filesystem():
    """``--serving``: the push record names the data by URI (``ram://`` here, gs:// on Vertex); a record without
    them is no answer, one that is not JSON is one screen."""
    import json
    import uuid

    import tensorflow as tf

    from sluice.components import artifact_io as aio
    from sluice.pipeline.errors import SluiceError

    serving = f"ram://{uuid.uuid4().hex[:8]}/serving"
    version = f"{serving}/taxi_fare/7"
    tf.io.gfile.makedirs(version)
    uris = {"statistics": "gs://b/stats", "examples": "gs://b/examples", "transform_graph": "gs://b/tg",
            "schema": "gs://b/schema"}

    def write(body: str) -> None:
        aio.write_text(f"{version}/sluice_push.json", body)  # ram:// keeps an old tail on a plain rewrite

    write(json.dumps({"lineage_uris": uris, "config_hash": "x"}))
    found = monitor.served_version(serving, "taxi_fare", 7)
    assert (found.pushed_destination, found.statistics, found.examples, found.transform_graph, found.schema) == (
        version, *uris.values())
    assert monitor.served_version(serving, "taxi_fare", 8) is None  # no such version
    write(json.dumps({"lineage_uris": {**uris, "examples": None}}))
    assert monitor.served_version(serving, "taxi_fare", 7) is None
    write("{not json")
    with pytest.raises(SluiceError) as e:
        monitor.served_version(serving, "taxi_fare", 7)
    assert "sluice_push.json" in e.value.where
