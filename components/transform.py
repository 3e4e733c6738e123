"""TF Transform ``preprocessing_fn``, built from the config.

TFX's Transform component imports this by path (``sluice.components.transform.preprocessing_fn``) and passes
the ``TransformContract`` (``components/contracts.py``) as ``custom_config``. The same graph is embedded in every exported serving
signature, so training and serving compute features with identical code and analyzer results.

Every output is a dense ``[batch, 1]`` tensor: Transform's output schema then declares fixed-length features,
the Trainer's tf.data input yields matching shapes, and the model never sees a SparseTensor.

The graph is written with ops that TFLite has as builtins, because the TFLite export embeds this very graph
(``components/export/``): TFT's ``bucketize`` (``UpperBound``), its one-OOV-bucket vocabulary
(``StringToHashBucketFast``) and densifying optional strings (``SparseToDense``, string ``ConcatV2``) would
each need the Flex delegate that mobile runtimes lack, so the same results are computed here with
comparisons, a default-valued table lookup, and ids densified after the lookup. Hashed features (``hash_buckets``, ``oov_buckets > 1``) still hash;
the config refuses them for a TFLite export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, Union

import tensorflow as tf
import tensorflow_transform as tft

from sluice.components.contracts import TransformContract
from sluice.components.features import (internal_name, label_key, missing_indicator_name, transformed_name,
                                        vocabulary_name)
from sluice.components.settings import BINARY, MULTICLASS, class_number

if TYPE_CHECKING:
    from sluice.components.settings import (
        BucketizedFeature,
        CategoricalStringFeature,
        Feature,
        NumericFeature,
        Task,
    )

    NumericLike = Union[NumericFeature, BucketizedFeature]


def _dense(x: Any, default: Any) -> tf.Tensor:
    """A ``[batch, 1]`` dense tensor from a dense or sparse (optional) feature; missing values -> default.

    The schema allows at most one value per row. Row ``r`` takes value ``pos[r]`` (a scatter of value positions
    by row) or the default appended after the values: builtin ``ScatterNd`` + ``Gather`` work for strings,
    where TFLite's ``SparseToDense`` does not.
    """
    if isinstance(x, tf.sparse.SparseTensor):
        default = tf.reshape(tf.cast(default, x.dtype), [1])
        rows = tf.cast(x.indices[:, :1], tf.int32)
        count = tf.shape(x.values)[0]
        batch = tf.cast(x.dense_shape[:1], tf.int32)
        position = tf.scatter_nd(rows, tf.range(1, count + 1), batch) - 1
        position = tf.where(position < 0, count, position)
        x = tf.gather(tf.concat([x.values, default], axis=0), position)
    return tf.reshape(x, [-1, 1])


def _is_missing(x: Any) -> tf.Tensor:
    """``[batch, 1]`` boolean: True where an optional feature had no value."""
    if isinstance(x, tf.sparse.SparseTensor):
        present = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, tf.ones_like(x.values, dtype=tf.int32), [x.dense_shape[0], 1])
        )
        return tf.equal(present, 0)
    return tf.zeros_like(tf.reshape(x, [-1, 1]), dtype=tf.bool)


def _numeric_default(x: Any, feature: "NumericLike") -> Any:
    """The configured default, or the analyzed mean of the present values."""
    if feature.default is not None:
        return float(feature.default)
    values = x.values if isinstance(x, tf.sparse.SparseTensor) else x
    return tft.mean(tf.cast(values, tf.float32))


def _numeric(x: Any, feature: "NumericLike") -> tf.Tensor:
    """A dense float ``[batch, 1]`` column; missing values of an optional feature are filled first."""
    if isinstance(x, tf.sparse.SparseTensor):
        x = tf.SparseTensor(x.indices, tf.cast(x.values, tf.float32), x.dense_shape)
        return _dense(x, _numeric_default(x, feature))
    return tf.cast(_dense(x, 0.0), tf.float32)


def _transform_feature(x: Any, feature: "Feature") -> tf.Tensor:
    kind = feature.kind
    name = feature.name
    if kind == "numeric":
        return tft.scale_to_z_score(_numeric(x, feature))
    if kind == "bucketized":
        return _bucketize(_numeric(x, feature), feature.buckets, name)
    if kind == "categorical_string":
        if feature.hash_buckets:
            return tf.strings.to_hash_bucket_fast(_dense(x, feature.default or ""), feature.hash_buckets)
        return _vocabulary_ids(x, feature)
    if kind == "categorical_int":
        n = int(feature.num_buckets)
        default = feature.default
        dense = tf.cast(_dense(x, n if default is None else int(default)), tf.int64)
        in_range = tf.logical_and(dense >= 0, dense < n)
        return tf.where(in_range, dense, tf.constant(n, tf.int64))  # one OOV id for anything unexpected
    raise ValueError(f"unknown feature kind {kind!r} for {name}")


def _bucketize(x: tf.Tensor, buckets: int, name: str) -> tf.Tensor:
    """``tft.bucketize``'s result (how many quantile boundaries are <= x; NaN -> the last bucket), computed
    with builtin comparisons instead of ``UpperBound``. Same quantiles analyzer and epsilon as TFT's."""
    boundaries = tft.quantiles(x, buckets, min(1.0 / buckets, 0.01), name=f"bucketize_{internal_name(name)}")  # [1, n]
    ids = tf.reduce_sum(tf.cast(x >= boundaries, tf.int64), axis=1, keepdims=True)
    last = tf.cast(tf.shape(boundaries)[1], tf.int64)
    return tf.where(tf.not_equal(x, x), last, ids)


def _vocabulary_ids(x: Any, feature: "CategoricalStringFeature") -> tf.Tensor:
    """Vocabulary ids of a (possibly optional) string feature; unseen strings -> the OOV id(s) after the
    vocabulary, an empty optional value -> the id of the configured default (``""`` unless set).

    With one OOV bucket (the default) the OOV id is the vocabulary size, the table's default value (TFT's own
    one-bucket path hashes, which TFLite cannot run). An optional feature's present values are looked up
    first and the ids densified (TFLite has no string concat or SparseToDense); the analyzer still counts the
    default for empty rows, as the dense column it sees has them. More OOV buckets hash as TFT does.
    """
    default = feature.default or ""
    filename = vocabulary_name(feature.name)
    frequency_threshold = feature.frequency_threshold or None
    dense = _dense(x, default)
    if feature.oov_buckets > 1:
        return tft.compute_and_apply_vocabulary(
            dense, top_k=feature.top_k, num_oov_buckets=feature.oov_buckets,
            frequency_threshold=frequency_threshold, vocab_filename=filename,
        )
    vocabulary = tft.vocabulary(dense, top_k=feature.top_k, frequency_threshold=frequency_threshold,
                                vocab_filename=filename)
    size = tf.cast(tft.experimental.get_vocabulary_size_by_name(filename), tf.int64)

    def ids(strings: tf.Tensor) -> tf.Tensor:
        found = tft.apply_vocabulary(strings, vocabulary, default_value=-1)
        return tf.where(found < 0, size, found)

    if not isinstance(x, tf.sparse.SparseTensor):
        return ids(dense)
    present = tf.SparseTensor(x.indices, ids(x.values), x.dense_shape)
    return _dense(present, ids(tf.constant([default]))[0])


_OPS = {">": tf.greater, ">=": tf.greater_equal, "<": tf.less, "<=": tf.less_equal}


def class_ids(raw: Any, classes: "list") -> tf.Tensor:
    """A multi-class label column -> ``[batch, 1]`` int64 class ids: the position of the cell's value in
    ``classes``; -1 for an empty cell or any other value (the DataGate refuses such data before Transform
    runs, and the Trainer counts what the gate's statistics cannot show: ``trainer.guards.check_class_ids``).
    String cells match the class text; numeric cells match numerically (``1.0`` is class ``"1"``: a CSV of
    integers with an empty cell is read as floats). Elementwise comparisons, no lookup table: K is small and
    this stays builtin-op TFLite-convertible like the rest of the graph."""
    column = _dense(raw, "" if raw.dtype == tf.string else 0)
    if column.dtype == tf.string:
        matches = tf.equal(column, tf.constant(classes, tf.string)[tf.newaxis, :])
    else:  # compared in the column's own float type (0.1 as float32 is not 0.1 as float64); ints exactly
        kind = column.dtype if column.dtype.is_floating else tf.float64
        numbers = [class_number(c) for c in classes]  # a name that is no number: NaN, which equals no cell
        numbers = tf.constant([float("nan") if n is None else n for n in numbers], kind)
        matches = tf.equal(tf.cast(column, kind), numbers[tf.newaxis, :])
    found = tf.logical_and(tf.reduce_any(matches, axis=1, keepdims=True), tf.logical_not(_is_missing(raw)))
    ids = tf.argmax(tf.cast(matches, tf.int32), axis=1, output_type=tf.int64)[:, tf.newaxis]
    return tf.where(found, ids, tf.constant(-1, tf.int64))


def _label(inputs: Mapping[str, Any], task: "Task") -> tf.Tensor:
    derive = task.derive
    if derive is None:
        raw = inputs[task.label]
        if task.type == MULTICLASS:
            return class_ids(raw, list(task.classes or []))
        if task.type == BINARY:
            return tf.cast(_dense(raw, 0), tf.int64)
        return tf.cast(_dense(raw, 0.0), tf.float32)
    left_raw = inputs[derive.left]
    left = tf.cast(_dense(left_raw, 0), tf.float32)
    missing = _is_missing(left_raw)
    if isinstance(derive.right, str):
        right_raw = inputs[derive.right]
        right = tf.cast(_dense(right_raw, 0), tf.float32)
        missing = tf.logical_or(missing, _is_missing(right_raw))
    else:
        right = tf.fill(tf.shape(left), tf.constant(float(derive.right)))
    positive = _OPS[derive.op](left, right * float(derive.scale))
    return tf.cast(tf.logical_and(positive, tf.logical_not(missing)), tf.int64)


def _user_outputs(inputs: Dict[str, Any], contract: TransformContract) -> Dict[str, tf.Tensor]:
    """Your ``preprocessing_fn(inputs, contract)``; the label as configured unless it returned the label."""
    from sluice.components import user_code

    from sluice.components.refusal import Refused

    outputs = user_code.load(contract.preprocessing_fn, "code.preprocessing_fn")(inputs, contract)
    if not isinstance(outputs, dict) or not outputs:
        raise Refused("code.preprocessing_fn", f"{contract.preprocessing_fn} returned {type(outputs).__name__}",
                      "return a non-empty dict of output name -> tensor")
    raw_labels = set(contract.task.raw_label_columns()) & set(outputs)
    if raw_labels:
        raise Refused("code.preprocessing_fn", f"an output is named like the label column {sorted(raw_labels)[0]!r}: "
                      "the model would train on the label and serving has no such input",
                      f"rename it, or return the label as {label_key(contract.task)!r}")
    outputs = dict(outputs)
    outputs.setdefault(label_key(contract.task), _label(inputs, contract.task))
    return outputs


def preprocessing_fn(inputs: Dict[str, Any], custom_config: Union[str, Mapping[str, Any]]) -> Dict[str, tf.Tensor]:
    """TFX Transform entry point: raw features -> transformed features and label.

    ``custom_config`` is the ``TransformContract`` (a dict, or its JSON), validated once here.
    Serving requests carry no label columns; TFT then prunes the label output, so the same function serves
    training (label present) and serving (label absent).
    """
    contract = TransformContract.parse(custom_config)
    if contract.preprocessing_fn:
        return _user_outputs(inputs, contract)
    outputs: Dict[str, tf.Tensor] = {}
    for feature in contract.features:
        raw = inputs[feature.name]
        outputs[transformed_name(feature.name)] = _transform_feature(raw, feature)
        if feature.missing_indicator:
            outputs[missing_indicator_name(feature.name)] = tf.cast(_is_missing(raw), tf.float32)
    outputs[label_key(contract.task)] = _label(inputs, contract.task)
    return outputs
