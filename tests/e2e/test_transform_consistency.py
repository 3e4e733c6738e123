"""Train/serve consistency: the transform inside the exported model equals what Transform materialized.

For each shipped config, on every eval-split row of the session's pipeline (>= 500 rows):
- the ``transform_features`` signature applied to the raw tf.Examples gives the same features and label as
  Transform's materialized ``transformed_examples`` (ids and buckets exactly, floats within 1e-6);
- ``serving_default`` (serialized tf.Example) and ``serving_raw`` (one dense tensor per column) give the same
  predictions for the same rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from sluice.pipeline.config import load_config
from sluice.pipeline.mlmd import latest_run

pytestmark = pytest.mark.e2e

MIN_ROWS = 500


def _records(split_dir: Path) -> List[bytes]:
    import tensorflow as tf

    files = sorted(str(p) for p in split_dir.glob("*.gz"))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _materialized(uri: str, spec: Dict) -> Dict[str, np.ndarray]:
    import tensorflow as tf

    records = _records(Path(uri) / "Split-eval")
    parsed = tf.io.parse_example(tf.constant(records), spec)
    return {k: np.asarray(v).reshape(len(records), -1) for k, v in parsed.items()}


def _rows(columns: Dict[str, np.ndarray], keys: List[str]) -> np.ndarray:
    return np.concatenate([columns[k].astype(np.float64).reshape(len(columns[k]), -1) for k in keys], axis=1)


def _sort_rows(rows: np.ndarray) -> np.ndarray:
    """Row order is Beam's business: compare the two sides as multisets (rows sorted lexicographically)."""
    keys = np.round(rows, 5)
    order = np.lexsort(keys.T[::-1])
    return rows[order]


def _pipeline(request, name):
    return request.getfixturevalue("fare" if name == "taxi_fare" else "tips")


def _model_and_record(run):
    import tensorflow as tf

    out = run["out"]
    record = latest_run(out / "metadata.sqlite", run["name"])
    summary = run["runs"][0] if "runs" in run else run["run"]
    return tf.saved_model.load(summary["saved_model_path"]), record


@pytest.mark.parametrize("name", ["taxi_fare", "taxi_tips"])
def test_exported_transform_equals_materialized_transform(request, name):
    import tensorflow as tf
    import tensorflow_transform as tft

    model, record = _model_and_record(_pipeline(request, name))
    raw = _records(Path(record.outputs["CsvExampleGen"]["Examples"]) / "Split-eval")
    assert len(raw) >= MIN_ROWS, f"only {len(raw)} eval rows"

    tft_output = tft.TFTransformOutput(record.outputs["Transform"]["TransformGraph"])
    spec = tft_output.transformed_feature_spec()
    materialized = _materialized(record.outputs["Transform"]["Examples"], spec)
    served = model.signatures["transform_features"](examples=tf.constant(raw))
    served = {k: v.numpy().reshape(len(raw), -1) for k, v in served.items()}

    keys = sorted(spec)
    assert set(keys) <= set(served), f"served transform lacks {set(keys) - set(served)}"
    ours, theirs = _sort_rows(_rows(served, keys)), _sort_rows(_rows(materialized, keys))
    assert ours.shape == theirs.shape
    column = 0
    for key in keys:
        width = served[key].shape[1]
        a, b = ours[:, column:column + width], theirs[:, column:column + width]
        if spec[key].dtype == tf.int64:
            assert np.array_equal(a, b), f"{key}: ids differ in {int((a != b).sum())} rows"
        else:
            assert np.allclose(a, b, rtol=0, atol=1e-6), f"{key}: max diff {np.abs(a - b).max()}"
        column += width


@pytest.mark.parametrize("name", ["taxi_fare", "taxi_tips"])
def test_serving_default_and_serving_raw_agree(request, name):
    import tensorflow as tf

    run = _pipeline(request, name)
    model, record = _model_and_record(run)
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml")
    raw = _records(Path(record.outputs["CsvExampleGen"]["Examples"]) / "Split-eval")[:MIN_ROWS]

    raw_sig = model.signatures["serving_raw"]
    specs = raw_sig.structured_input_signature[1]
    columns: Dict[str, list] = {c: [] for c in specs}
    complete = []
    for record_bytes in raw:
        example = tf.train.Example.FromString(record_bytes)
        filled = tf.train.Example()
        for col, tensor_spec in specs.items():
            feature = example.features.feature.get(col)
            kind = feature.WhichOneof("kind") if feature is not None else None
            values = list(getattr(feature, kind).value) if kind else []
            if not values:  # an empty optional column: send the config's default (or 0 / "") explicitly
                default = next(f.default for f in config.features if f.name == col)
                values = [default if default is not None else ("" if tensor_spec.dtype == tf.string else 0)]
            value = values[0]
            if tensor_spec.dtype == tf.string:
                value = value if isinstance(value, bytes) else str(value).encode()
                filled.features.feature[col].bytes_list.value.append(value)
            elif tensor_spec.dtype == tf.int64:
                value = int(value)
                filled.features.feature[col].int64_list.value.append(value)
            else:
                value = float(value)
                filled.features.feature[col].float_list.value.append(value)
            columns[col].append(value)
        complete.append(filled.SerializeToString())

    from_examples = model.signatures["serving_default"](examples=tf.constant(complete))["outputs"].numpy()
    from_raw = raw_sig(**{c: tf.constant(v, dtype=specs[c].dtype) for c, v in columns.items()})["outputs"].numpy()
    assert from_examples.shape == from_raw.shape == (len(raw), 1)
    assert np.allclose(from_examples, from_raw, rtol=0, atol=1e-6), np.abs(from_examples - from_raw).max()
