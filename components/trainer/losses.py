"""Custom losses, registered so a saved model reloads without ``custom_objects``.

``Huber`` is the seed's loss for noisy regression targets: quadratic for errors up to ``delta`` (precise
near the target, like MSE) and linear beyond it (outliers pull no harder than MAE would).
"""

from __future__ import annotations

from typing import Any, Dict

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="sluice")
class Huber(keras.losses.Loss):
    """Huber loss with a configurable ``delta`` (in label units)."""

    def __init__(self, delta: float = 1.0, name: str = "huber", reduction: str = "sum_over_batch_size") -> None:
        super().__init__(name=name, reduction=reduction)
        if delta <= 0:
            raise ValueError(f"Huber delta must be > 0, got {delta}")
        self.delta = float(delta)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, y_pred.dtype)
        abs_error = ops.abs(y_pred - y_true)
        quadratic = ops.minimum(abs_error, self.delta)
        linear = abs_error - quadratic
        return ops.mean(0.5 * ops.square(quadratic) + self.delta * linear, axis=-1)

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "delta": self.delta}


def make_loss(payload: Dict[str, Any]) -> keras.losses.Loss:
    """The configured loss (``model.loss``) as a Keras loss object."""
    model = payload["model"]
    name = model["loss"]
    if name == "huber":
        return Huber(delta=model["huber_delta"])
    if name == "mse":
        return keras.losses.MeanSquaredError()
    if name == "mae":
        return keras.losses.MeanAbsoluteError()
    if name == "binary_crossentropy":
        return keras.losses.BinaryCrossentropy()
    raise ValueError(f"unknown loss {name!r}")
