"""TF Transform ``preprocessing_fn``, built from the config.

TFX's Transform component imports this by path (``sluice.components.transform.preprocessing_fn``) and passes
the config's component payload as ``custom_config``. The same graph is embedded in every exported serving
signature, so training and serving compute features with identical code and analyzer results.

Every output is a dense ``[batch, 1]`` tensor: Transform's output schema then declares fixed-length features,
the Trainer's tf.data input yields matching shapes, and the model never sees a SparseTensor.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from sluice.components.features import label_key, missing_indicator_name, transformed_name, vocabulary_name


def _dense(x: Any, default: Any) -> tf.Tensor:
    """A ``[batch, 1]`` dense tensor from a dense or sparse (optional) feature; missing values -> default."""
    if isinstance(x, tf.sparse.SparseTensor):
        default = tf.cast(default, x.dtype)
        x = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value=default
        )
    return tf.reshape(x, [-1, 1])


def _is_missing(x: Any) -> tf.Tensor:
    """``[batch, 1]`` boolean: True where an optional feature had no value."""
    if isinstance(x, tf.sparse.SparseTensor):
        present = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, tf.ones_like(x.values, dtype=tf.int32), [x.dense_shape[0], 1])
        )
        return tf.equal(present, 0)
    return tf.zeros_like(tf.reshape(x, [-1, 1]), dtype=tf.bool)


def _numeric_default(x: Any, feature: Mapping[str, Any]) -> Any:
    """The configured default, or the analyzed mean of the present values."""
    if feature.get("default") is not None:
        return float(feature["default"])
    values = x.values if isinstance(x, tf.sparse.SparseTensor) else x
    return tft.mean(tf.cast(values, tf.float32))


def _numeric(x: Any, feature: Mapping[str, Any]) -> tf.Tensor:
    """A dense float ``[batch, 1]`` column; missing values of an optional feature are filled first."""
    if isinstance(x, tf.sparse.SparseTensor):
        x = tf.SparseTensor(x.indices, tf.cast(x.values, tf.float32), x.dense_shape)
        return _dense(x, _numeric_default(x, feature))
    return tf.cast(_dense(x, 0.0), tf.float32)


def _transform_feature(x: Any, feature: Mapping[str, Any]) -> tf.Tensor:
    kind = feature["kind"]
    name = feature["name"]
    if kind == "numeric":
        return tft.scale_to_z_score(_numeric(x, feature))
    if kind == "bucketized":
        return tft.bucketize(_numeric(x, feature), feature["buckets"], name=f"bucketize_{name}")
    if kind == "categorical_string":
        default = feature.get("default") or ""
        dense = _dense(x, default)
        if feature.get("hash_buckets"):
            return tf.strings.to_hash_bucket_fast(dense, feature["hash_buckets"])
        return tft.compute_and_apply_vocabulary(
            dense,
            top_k=feature["top_k"],
            num_oov_buckets=feature["oov_buckets"],
            frequency_threshold=feature["frequency_threshold"] or None,
            vocab_filename=vocabulary_name(name),
        )
    if kind == "categorical_int":
        n = int(feature["num_buckets"])
        default = feature.get("default")
        dense = tf.cast(_dense(x, n if default is None else int(default)), tf.int64)
        in_range = tf.logical_and(dense >= 0, dense < n)
        return tf.where(in_range, dense, tf.constant(n, tf.int64))  # one OOV id for anything unexpected
    raise ValueError(f"unknown feature kind {kind!r} for {name}")


_OPS = {">": tf.greater, ">=": tf.greater_equal, "<": tf.less, "<=": tf.less_equal}


def _label(inputs: Mapping[str, Any], task: Mapping[str, Any]) -> tf.Tensor:
    derive = task.get("derive")
    if derive is None:
        raw = inputs[task["label"]]
        if task["type"] == "binary_classification":
            return tf.cast(_dense(raw, 0), tf.int64)
        return tf.cast(_dense(raw, 0.0), tf.float32)
    left_raw = inputs[derive["left"]]
    left = tf.cast(_dense(left_raw, 0), tf.float32)
    missing = _is_missing(left_raw)
    if isinstance(derive["right"], str):
        right_raw = inputs[derive["right"]]
        right = tf.cast(_dense(right_raw, 0), tf.float32)
        missing = tf.logical_or(missing, _is_missing(right_raw))
    else:
        right = tf.fill(tf.shape(left), tf.constant(float(derive["right"])))
    positive = _OPS[derive["op"]](left, right * float(derive.get("scale", 1.0)))
    return tf.cast(tf.logical_and(positive, tf.logical_not(missing)), tf.int64)


def preprocessing_fn(inputs: Dict[str, Any], custom_config: Dict[str, Any]) -> Dict[str, tf.Tensor]:
    """TFX Transform entry point: raw features -> transformed features and label.

    Serving requests carry no label columns; TFT then prunes the label output, so the same function serves
    training (label present) and serving (label absent).
    """
    outputs: Dict[str, tf.Tensor] = {}
    for feature in custom_config["features"]:
        raw = inputs[feature["name"]]
        outputs[transformed_name(feature["name"])] = _transform_feature(raw, feature)
        if feature.get("missing_indicator"):
            outputs[missing_indicator_name(feature["name"])] = tf.cast(_is_missing(raw), tf.float32)
    outputs[label_key(custom_config)] = _label(inputs, custom_config["task"])
    return outputs
