"""Any CSV header works: the names sluice derives from a column are valid where TensorFlow and Keras need
them, stable, distinct, and the CSV's own name is kept wherever TensorFlow allows it."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from sluice.components.features import (input_keys, internal_name, missing_indicator_name, name_clashes,
                                        request_key, transformed_name, vocabulary_name)
from sluice.components.settings import CategoricalStringFeature, NumericFeature
from sluice.pipeline.config import parse_config
from sluice.pipeline.errors import ConfigError
from tests.helpers import CONFIGS

AWKWARD = ["od280/od315_of_diluted_wines", "Trip Miles", "trip miles", "trip-miles", "1st_hour", "class",
           "prix (€)", "naïve", "a.b", "a b", "a/b", "a-b", "a_b", "___", "€", "x" * 200, "名前", " lead", "tab\tin",
           "ends/", "a//b"]
KERAS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")  # stricter than Keras needs: no "/" and a valid scope
TF_NODE = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*\Z")


def test_plain_identifiers_are_kept_so_existing_pipelines_keep_their_names():
    names = ["trip_miles", "fare", "payment_type", "pickup_community_area", "Z9"]
    assert input_keys(names) == {n: n for n in names}
    for name in names:
        assert internal_name(name) == name
        assert transformed_name(name) == f"{name}_xf" and vocabulary_name(name) == f"{name}_vocab"
        assert missing_indicator_name(name) == f"{name}_is_missing_xf"


@pytest.mark.parametrize("column", AWKWARD)
def test_derived_names_are_valid_identifiers_and_stable(column):
    name = internal_name(column)
    assert KERAS_NAME.match(name), name
    assert len(name) <= 48
    assert internal_name(column) == name  # no state: every process derives the same name
    assert KERAS_NAME.match(transformed_name(column)) and KERAS_NAME.match(vocabulary_name(column))
    key = input_keys([column])[column]
    assert TF_NODE.match(key), key
    assert key == column if TF_NODE.match(column) and not column.endswith("/") and "//" not in column else key == name
    assert input_keys([key]) == {key: key}  # a request already keyed by input key maps to itself
    assert request_key(column, [key]) == key and request_key(key, [key]) == key


def test_headers_that_clean_to_the_same_name_stay_apart():
    internal = [internal_name(c) for c in AWKWARD]
    assert len(set(internal)) == len(AWKWARD)
    keys = input_keys(AWKWARD)
    assert len(set(keys.values())) == len(AWKWARD)
    # tf.function cleans a.b, a/b and a-b all to a_b: with a_b present, none of them may keep its own name
    assert keys["a_b"] == "a_b" and {keys["a.b"], keys["a/b"], keys["a-b"]} == {
        internal_name("a.b"), internal_name("a/b"), internal_name("a-b")}
    alone = input_keys(["a.b", "fare"])
    assert alone["a.b"] == "a.b"


def test_tensorflow_keeps_the_csv_names_it_allows_and_takes_every_input_key():
    """The rule matches TensorFlow's: a SavedModel signature with these input keys saves, loads and answers."""
    import tensorflow as tf

    keys = list(input_keys(AWKWARD).values())
    assert "od280/od315_of_diluted_wines" in keys and "1st_hour" in keys and "class" in keys

    class Module(tf.Module):
        @tf.function(input_signature=[{k: tf.TensorSpec([None], tf.float32, name=k) for k in keys}])
        def serve(self, columns):
            return {"outputs": tf.add_n([columns[k] * (i + 1) for i, k in enumerate(keys)])}

    module = Module()
    path = f"ram://names/{id(module)}"
    tf.saved_model.save(module, path, signatures={"serving_raw": module.serve.get_concrete_function()})
    from tensorflow.python.saved_model import loader_impl

    signature = loader_impl.parse_saved_model(path).meta_graphs[0].signature_def["serving_raw"]
    assert set(signature.inputs) == set(keys)  # what TF Serving matches request inputs against
    loaded = tf.saved_model.load(path).signatures["serving_raw"]
    out = loaded(**{k: tf.constant([1.0]) for k in keys})["outputs"].numpy()
    assert out.tolist() == [sum(range(1, len(keys) + 1))]


def test_keras_takes_the_transformed_names():
    """Keras refuses "/" in an input name (the crash behind this issue); every derived name builds and runs."""
    import keras
    import numpy as np

    with pytest.raises(ValueError, match="/"):
        keras.Input(shape=(1,), name="od280/od315_of_diluted_wines")
    inputs = {transformed_name(c): keras.Input(shape=(1,), name=transformed_name(c)) for c in AWKWARD}
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Concatenate()(list(inputs.values()))))
    assert sorted(t.name for t in model.inputs) == sorted(inputs)
    out = model({k: np.ones((2, 1), np.float32) for k in inputs})
    assert tuple(out.shape) == (2, 1)


def test_a_column_named_like_another_columns_output_is_refused_with_the_pair():
    features = [NumericFeature(name="x", kind="numeric", optional=True, missing_indicator=True),
                NumericFeature(name="x_is_missing", kind="numeric")]
    assert name_clashes(features) == ["'x' and 'x_is_missing' both become 'x_is_missing_xf'"]
    assert name_clashes([CategoricalStringFeature(name="Trip", kind="categorical_string"),
                         CategoricalStringFeature(name="trip", kind="categorical_string")]) == [
        "'Trip' and 'trip' differ only in case (their vocabulary files would too)"]
    sent_as = internal_name("a b")
    clash = name_clashes([NumericFeature(name="a b", kind="numeric"), NumericFeature(name=sent_as, kind="numeric")])
    assert f"'a b' is sent as {sent_as!r}, which is also a column" in clash


def _fare_config(**renames: str) -> dict:
    raw = yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text())
    raw = copy.deepcopy(raw)
    for feature in raw["features"]:
        feature["name"] = renames.get(feature["name"], feature["name"])
    raw["evaluation"]["slices"] = [[renames.get(c, c) for c in s] for s in raw["evaluation"]["slices"]]
    return raw


def test_config_with_awkward_headers_loads_and_a_clash_gets_one_line():
    config = parse_config(_fare_config(trip_miles="Trip Miles (mi)", payment_type="payment/type",
                                       company="compañía"))
    assert [f.name for f in config.features][:1] == ["Trip Miles (mi)"]
    raw = _fare_config(trip_seconds="x", trip_miles="x_is_missing")
    raw["features"][1].update(optional=True, missing_indicator=True)
    with pytest.raises(ConfigError) as exc:
        parse_config(raw)
    text = exc.value.render()
    assert "both become 'x_is_missing_xf'" in text and "rename one" in text
