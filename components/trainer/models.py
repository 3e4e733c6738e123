"""Keras 3 model built from the config and from what Transform produced.

Numeric features enter as z-scores; categorical ids (vocabularies, integer ids, quantile buckets) through
learned embeddings sized from Transform's actual vocabularies. The head is linear for regression and a
sigmoid probability for binary classification (what TFMA's AUC/accuracy expect).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import keras
import tensorflow_transform as tft

from sluice.components.features import cardinality, model_inputs, vocabulary_name
from sluice.components.trainer.losses import make_loss


def _vocabulary_size(feature: Mapping[str, Any], tft_output: tft.TFTransformOutput) -> int | None:
    if feature["kind"] != "categorical_string" or feature.get("hash_buckets"):
        return None
    return tft_output.vocabulary_size_by_name(vocabulary_name(feature["name"]))


def build_model(payload: Dict[str, Any], tft_output: tft.TFTransformOutput) -> keras.Model:
    """The model for ``payload`` (the config's component payload), compiled with its loss and metrics."""
    inputs: Dict[str, keras.KerasTensor] = {}
    encoded = []
    for key, categorical, feature in model_inputs(payload):
        if categorical:
            inputs[key] = keras.Input(shape=(1,), name=key, dtype="int64")
            size = cardinality(feature, _vocabulary_size(feature, tft_output))
            x = keras.layers.Embedding(size, feature["embedding_dim"], name=f"{key}_embedding")(inputs[key])
            encoded.append(keras.layers.Flatten(name=f"{key}_flat")(x))
        else:
            inputs[key] = keras.Input(shape=(1,), name=key, dtype="float32")
            encoded.append(inputs[key])

    hp = payload["model"]
    x = keras.layers.Concatenate(name="features")(encoded) if len(encoded) > 1 else encoded[0]
    for i, units in enumerate(hp["hidden_units"]):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
        if hp["dropout"]:
            x = keras.layers.Dropout(hp["dropout"], seed=hp["seed"], name=f"dropout_{i}")(x)

    binary = payload["task"]["type"] == "binary_classification"
    output = keras.layers.Dense(1, activation="sigmoid" if binary else None, name="prediction")(x)
    model = keras.Model(inputs=inputs, outputs=output, name=payload["name"])

    if binary:
        metrics = [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="binary_accuracy")]
    else:
        metrics = [
            keras.metrics.MeanAbsoluteError(name="mean_absolute_error"),
            keras.metrics.RootMeanSquaredError(name="root_mean_squared_error"),
        ]
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=hp["learning_rate"]),
        loss=make_loss(payload),
        metrics=metrics,
    )
    return model
