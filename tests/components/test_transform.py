"""preprocessing_fn on a tiny in-memory dataset with TF Transform's Beam implementation (seconds).

Checks each feature kind and the missing-value rules against values computed by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore")


def _contract(task=None, features=None):
    """A validated ``TransformContract`` as Transform receives it (``custom_config``: the contract as a dict)."""
    from sluice.components.contracts import TransformContract

    contract = TransformContract.model_validate({"task": task or {"type": "regression", "label": "y"},
                                                 "features": features})
    return contract.to_dict()


def _run(rows, feature_spec, custom_config, tmp_path):
    import apache_beam as beam  # noqa: F401  (TFT's Beam implementation)
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    from sluice.components.transform import preprocessing_fn

    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    with tft_beam.Context(temp_dir=str(tmp_path), force_tf_compat_v1=False):
        (transformed, _), _ = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, custom_config)
        )
    return transformed


def test_feature_kinds_and_missing_values(tmp_path):
    import tensorflow as tf

    spec = {
        "x": tf.io.FixedLenFeature([1], tf.float32),
        "opt": tf.io.VarLenFeature(tf.float32),
        "city": tf.io.FixedLenFeature([1], tf.string),
        "hour": tf.io.FixedLenFeature([1], tf.int64),
        "tag": tf.io.FixedLenFeature([1], tf.string),
        "y": tf.io.FixedLenFeature([1], tf.float32),
    }
    rows = [
        {"x": [1.0], "opt": [2.0], "city": [b"a"], "hour": [0], "tag": [b"p"], "y": [10.0]},
        {"x": [2.0], "opt": [], "city": [b"a"], "hour": [23], "tag": [b"q"], "y": [20.0]},
        {"x": [3.0], "opt": [4.0], "city": [b"b"], "hour": [99], "tag": [b"p"], "y": [30.0]},
    ]
    features = [
        {"name": "x", "kind": "numeric"},
        {"name": "opt", "kind": "numeric", "optional": True, "missing_indicator": True},
        {"name": "city", "kind": "categorical_string", "top_k": 10},
        {"name": "hour", "kind": "categorical_int", "num_buckets": 24},
        {"name": "tag", "kind": "categorical_string", "top_k": 10, "hash_buckets": 7},
    ]
    out = _run(rows, spec, _contract(features=features), tmp_path)
    by = {k: np.array([r[k] for r in out]).reshape(-1) for k in out[0]}
    x = np.array([1.0, 2.0, 3.0])
    assert np.allclose(by["x_xf"], (x - x.mean()) / x.std(), atol=1e-5)
    filled = np.array([2.0, 3.0, 4.0])  # the missing value gets the analyzed mean of the present ones (3.0)
    assert np.allclose(by["opt_xf"], (filled - filled.mean()) / filled.std(), atol=1e-5)
    assert by["opt_is_missing_xf"].tolist() == [0.0, 1.0, 0.0]
    assert by["city_xf"].tolist() == [0, 0, 1]  # most frequent first
    assert by["hour_xf"].tolist() == [0, 23, 24]  # 99 is out of range: the OOV id
    assert np.allclose(by["y_xf"], [10.0, 20.0, 30.0])
    tags = by["tag_xf"].tolist()
    assert all(0 <= t < 7 for t in tags) and tags[0] == tags[2]  # hashing: stable, in range, no vocabulary


def test_quantile_buckets(tmp_path):
    import tensorflow as tf

    spec = {"v": tf.io.FixedLenFeature([1], tf.float32), "y": tf.io.FixedLenFeature([1], tf.float32)}
    rows = [{"v": [float(i)], "y": [0.0]} for i in range(100)]
    features = [{"name": "v", "kind": "bucketized", "buckets": 4}]
    out = _run(rows, spec, _contract(features=features), tmp_path)
    ids = np.array([np.asarray(r["v_xf"]).reshape(-1)[0] for r in out])
    assert ids.min() == 0 and ids.max() == 3
    assert np.all(np.diff(ids) >= 0)  # monotone in the value
    assert abs(np.bincount(ids).max() - 25) <= 2  # quantiles: about a quarter each


def test_derived_label_with_missing_source_is_negative(tmp_path):
    import tensorflow as tf

    spec = {
        "fare": tf.io.FixedLenFeature([1], tf.float32),
        "tips": tf.io.VarLenFeature(tf.float32),
    }
    rows = [
        {"fare": [10.0], "tips": [3.0]},   # 3 > 2  -> 1
        {"fare": [10.0], "tips": [1.0]},   # 1 > 2  -> 0
        {"fare": [10.0], "tips": []},      # missing -> 0
    ]
    task = {"type": "binary_classification", "label": "big",
            "derive": {"left": "tips", "op": ">", "right": "fare", "scale": 0.2}}
    out = _run(rows, spec, _contract(task=task, features=[{"name": "fare", "kind": "numeric"}]), tmp_path)
    assert [int(np.asarray(r["big_xf"]).reshape(-1)[0]) for r in out] == [1, 0, 0]


def test_multiclass_labels_become_class_ids_in_the_order_of_classes(tmp_path):
    """String or integer cells -> the position in ``task.classes``; anything else (and empty) -> -1, which the
    DataGate refuses before Transform runs."""
    import tensorflow as tf

    features = [{"name": "x", "kind": "numeric"}]
    rows = [{"x": [1.0], "kind": [b"cherry"]}, {"x": [2.0], "kind": [b"apple"]}, {"x": [3.0], "kind": [b"kiwi"]},
            {"x": [4.0], "kind": []}]
    task = {"type": "multiclass", "label": "kind", "classes": ["apple", "banana", "cherry"]}
    spec = {"x": tf.io.FixedLenFeature([1], tf.float32), "kind": tf.io.VarLenFeature(tf.string)}
    out = _run(rows, spec, _contract(task=task, features=features), tmp_path / "s")
    assert [int(np.asarray(r["kind_xf"]).reshape(-1)[0]) for r in out] == [2, 0, -1, -1]
    ints = [{"x": [1.0], "grade": [10]}, {"x": [2.0], "grade": [3]}, {"x": [3.0], "grade": [4]}]
    task = {"type": "multiclass", "label": "grade", "classes": ["3", "7", "10"]}
    spec = {"x": tf.io.FixedLenFeature([1], tf.float32), "grade": tf.io.FixedLenFeature([1], tf.int64)}
    out = _run(ints, spec, _contract(task=task, features=features), tmp_path / "i")
    assert [int(np.asarray(r["grade_xf"]).reshape(-1)[0]) for r in out] == [2, 0, -1]
    floats = [{"x": [1.0], "grade": [10.0]}, {"x": [2.0], "grade": [3.0]}, {"x": [3.0], "grade": [3.5]}]
    spec = {"x": tf.io.FixedLenFeature([1], tf.float32), "grade": tf.io.FixedLenFeature([1], tf.float32)}
    out = _run(floats, spec, _contract(task=task, features=features), tmp_path / "f")
    assert [int(np.asarray(r["grade_xf"]).reshape(-1)[0]) for r in out] == [2, 0, -1]  # 10.0 is class "10"
    holes = [{"x": [1.0], "grade": [0]}, {"x": [2.0], "grade": []}, {"x": [3.0], "grade": [1]}]
    task = {"type": "multiclass", "label": "grade", "classes": ["0", "1"]}
    spec = {"x": tf.io.FixedLenFeature([1], tf.float32), "grade": tf.io.VarLenFeature(tf.int64)}
    out = _run(holes, spec, _contract(task=task, features=features), tmp_path / "h")
    assert [int(np.asarray(r["grade_xf"]).reshape(-1)[0]) for r in out] == [0, -1, 1]  # empty is not class 0


def test_builtin_op_rewrites_match_tft(tmp_path):
    """The TFLite-friendly forms give TFT's own answers: buckets as tft.bucketize, one OOV id after the
    vocabulary, and optional strings filled with the default (the gather path)."""
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    from sluice.components.settings import CategoricalStringFeature
    from sluice.components.transform import _bucketize, _dense, _vocabulary_ids

    spec = {"v": tf.io.FixedLenFeature([1], tf.float32), "s": tf.io.VarLenFeature(tf.string)}
    rng = np.random.default_rng(0)
    values = rng.lognormal(size=200).astype(np.float32)
    words = [b"a", b"a", b"a", b"b", b"b", b"c"]
    rows = [{"v": [float(v)], "s": [words[i % 6]] if i % 7 else []} for i, v in enumerate(values)]

    feature = CategoricalStringFeature(name="s", kind="categorical_string", top_k=2, default="zz")

    def fn(inputs):
        v = inputs["v"]
        s = _dense(inputs["s"], "zz")
        return {
            "ours": _bucketize(v, 5, "v"),
            "tft": tft.bucketize(v, 5),
            "ids": _vocabulary_ids(inputs["s"], feature),
            "s": s,
        }

    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    with tft_beam.Context(temp_dir=str(tmp_path), force_tf_compat_v1=False):
        (out, _), _ = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(fn)
    ours = np.array([np.asarray(r["ours"]).reshape(-1)[0] for r in out])
    theirs = np.array([np.asarray(r["tft"]).reshape(-1)[0] for r in out])
    assert np.array_equal(ours, theirs) and ours.max() == 4
    strings = [np.asarray(r["s"]).reshape(-1)[0] for r in out]
    assert strings[0] == b"zz" and strings[1] == b"a"  # row 0 has no value: the default
    ids = {s: int(np.asarray(r["ids"]).reshape(-1)[0]) for s, r in zip(strings, out)}
    # top_k=2 keeps "a" (86 rows) and "b" (57); "c" (28) and the default "zz" (29) share the one OOV id, 2.
    assert (ids[b"a"], ids[b"b"]) == (0, 1) and ids[b"c"] == ids[b"zz"] == 2


def test_any_csv_header_goes_through_transform(tmp_path):
    """Spaces, "/", unicode, a leading digit and a reserved word as column names (label included): every
    feature kind is transformed under its derived name, and the vocabulary file is found by that name."""
    import tensorflow as tf

    from sluice.components.features import missing_indicator_name, transformed_name, vocabulary_name

    spec = {
        "trip miles/km": tf.io.FixedLenFeature([1], tf.float32),
        "1st hour": tf.io.FixedLenFeature([1], tf.int64),
        "compañía": tf.io.VarLenFeature(tf.string),
        "class": tf.io.FixedLenFeature([1], tf.float32),
        "prix (€)": tf.io.FixedLenFeature([1], tf.float32),
    }
    rows = [{"trip miles/km": [float(i)], "1st hour": [i % 24], "compañía": [b"a" if i % 3 else b"b"] if i % 5 else [],
             "class": [float(i % 4)], "prix (€)": [2.0 * i]} for i in range(40)]
    features = [
        {"name": "trip miles/km", "kind": "numeric"},
        {"name": "1st hour", "kind": "categorical_int", "num_buckets": 24},
        {"name": "compañía", "kind": "categorical_string", "optional": True, "missing_indicator": True},
        {"name": "class", "kind": "bucketized", "buckets": 4},
    ]
    out = _run(rows, spec, _contract(task={"type": "regression", "label": "prix (€)"}, features=features), tmp_path)
    expected = {transformed_name(f["name"]) for f in features} | {missing_indicator_name("compañía"),
                                                                  transformed_name("prix (€)")}
    assert set(out[0]) == expected
    by = {k: np.array([r[k] for r in out]).reshape(-1) for k in out[0]}
    assert by[transformed_name("1st hour")].tolist() == [i % 24 for i in range(40)]
    assert by[missing_indicator_name("compañía")].tolist() == [0.0 if i % 5 else 1.0 for i in range(40)]
    assert sorted(set(by[transformed_name("compañía")].tolist())) == [0, 1, 2]  # a, b, and the empty default ""
    assert np.allclose(by[transformed_name("prix (€)")], [2.0 * i for i in range(40)])
    assert vocabulary_name("compañía").isascii()
