"""A team's own code behind sluice's gates (`code:` in the config): its own preprocessing_fn and a Keras model
the config cannot express — a factorization-machine interaction layer beside a dense tower.

Written the way a TFX module file would be; it only has to be importable (installed, or on PYTHONPATH).
"""

from __future__ import annotations

from typing import Any, Dict

import keras
import tensorflow as tf
import tensorflow_transform as tft


def _dense(x: Any) -> tf.Tensor:
    if isinstance(x, tf.sparse.SparseTensor):
        x = tf.sparse.to_dense(tf.SparseTensor(x.indices, tf.cast(x.values, tf.float32), [x.dense_shape[0], 1]))
    return tf.reshape(tf.cast(x, tf.float32), [-1, 1])


def preprocessing_fn(inputs: Dict[str, Any], contract: Any) -> Dict[str, tf.Tensor]:
    """Log-scaled area, standardized age, rooms as a capped count, and one hand-made cross."""
    area = _dense(inputs["area"])
    rooms = tf.minimum(_dense(inputs["rooms"]), 8.0)
    return {
        "log_area": tft.scale_to_z_score(tf.math.log1p(tf.maximum(area, 0.0))),
        "age_z": tft.scale_to_z_score(_dense(inputs["age"])),
        "rooms_scaled": rooms / 8.0,
        "area_per_room": tft.scale_to_z_score(area / tf.maximum(rooms, 1.0)),
    }


@keras.saving.register_keras_serializable(package="usercode")
class Interaction(keras.layers.Layer):
    """Second-order interactions of the inputs through k-dim factors: 0.5 * ((sum v x)^2 - sum (v x)^2)."""

    def __init__(self, factors: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factors = factors

    def build(self, input_shape: Any) -> None:
        self.v = self.add_weight(name="v", shape=(int(input_shape[-1]), self.factors), initializer="glorot_uniform")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        summed = tf.matmul(x, self.v)
        squared = tf.matmul(tf.square(x), tf.square(self.v))
        return 0.5 * tf.reduce_sum(tf.square(summed) - squared, axis=1, keepdims=True)

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "factors": self.factors}


def model_fn(transformed_feature_spec: Dict[str, Any], contract: Any) -> keras.Model:
    """A wide-and-interaction model over whatever preprocessing_fn produced (the label is not in the spec)."""
    inputs = {name: keras.Input(shape=(1,), name=name, dtype="float32") for name in sorted(transformed_feature_spec)}
    x = keras.layers.Concatenate(name="features")(list(inputs.values()))
    tower = x
    for i, units in enumerate(contract.model.hidden_units):
        tower = keras.layers.Dense(units, activation="relu", name=f"tower_{i}")(tower)
    out = keras.layers.Add(name="prediction_sum")([keras.layers.Dense(1, name="tower_out")(tower),
                                                   Interaction(name="interaction")(x),
                                                   keras.layers.Dense(1, name="linear")(x)])
    return keras.Model(inputs, out, name="user_model")
