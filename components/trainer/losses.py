"""Custom losses, registered so a saved model reloads without ``custom_objects``.

- ``Huber`` (regression, the default): quadratic for errors up to ``delta`` (precise near the target, like
  MSE), linear beyond it (an outlier fare pulls no harder than MAE would).
- ``LogCosh`` (regression): a smooth Huber without a delta to tune — ``x²/2`` near zero, ``|x| - log 2`` far
  out; written in the overflow-safe form ``x + softplus(-2x) - log 2``.
- ``Quantile`` (regression, a.k.a. pinball): fits the ``quantile``-th conditional quantile instead of the
  mean (0.5 = median; 0.9 = "fare we stay under 90 % of the time").
- ``BinaryFocal`` (classification): cross-entropy down-weighted by ``(1 - p_t)^gamma`` so the many easy
  examples stop dominating an imbalanced label (Lin et al. 2017); ``gamma = 0`` is plain cross-entropy.

Every loss returns one value per example (``reduction`` decides how Keras combines them), so the custom
training loop can scale by the *global* batch size with ``tf.nn.compute_average_loss``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict

import keras
from keras import ops

if TYPE_CHECKING:
    from sluice.components.contracts import TrainerContract

_EPSILON = 1e-7


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


@keras.saving.register_keras_serializable(package="sluice")
class LogCosh(keras.losses.Loss):
    """``log(cosh(error))``, computed without overflowing ``cosh`` for large errors."""

    def __init__(self, name: str = "log_cosh", reduction: str = "sum_over_batch_size") -> None:
        super().__init__(name=name, reduction=reduction)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        x = y_pred - ops.cast(y_true, y_pred.dtype)
        return ops.mean(x + ops.softplus(-2.0 * x) - math.log(2.0), axis=-1)


@keras.saving.register_keras_serializable(package="sluice")
class Quantile(keras.losses.Loss):
    """Pinball loss for the ``quantile``-th quantile: under-predictions cost ``q``, over-predictions ``1-q``."""

    def __init__(self, quantile: float = 0.5, name: str = "quantile", reduction: str = "sum_over_batch_size") -> None:
        super().__init__(name=name, reduction=reduction)
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        self.quantile = float(quantile)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        error = ops.cast(y_true, y_pred.dtype) - y_pred
        return ops.mean(ops.maximum(self.quantile * error, (self.quantile - 1.0) * error), axis=-1)

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "quantile": self.quantile}


@keras.saving.register_keras_serializable(package="sluice")
class BinaryFocal(keras.losses.Loss):
    """Focal loss on probabilities (the model's sigmoid output), with class weight ``alpha`` for positives."""

    def __init__(
        self, gamma: float = 2.0, alpha: float = 0.25, name: str = "binary_focal", reduction: str = "sum_over_batch_size"
    ) -> None:
        super().__init__(name=name, reduction=reduction)
        if gamma < 0 or not 0.0 < alpha < 1.0:
            raise ValueError(f"focal loss needs gamma >= 0 and 0 < alpha < 1, got gamma={gamma}, alpha={alpha}")
        self.gamma = float(gamma)
        self.alpha = float(alpha)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, y_pred.dtype)
        p = ops.clip(y_pred, _EPSILON, 1.0 - _EPSILON)
        p_t = y_true * p + (1.0 - y_true) * (1.0 - p)
        alpha_t = y_true * self.alpha + (1.0 - y_true) * (1.0 - self.alpha)
        return ops.mean(-alpha_t * ops.power(1.0 - p_t, self.gamma) * ops.log(p_t), axis=-1)

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}


def make_loss(contract: "TrainerContract", reduction: str = "sum_over_batch_size") -> keras.losses.Loss:
    """The configured loss (``contract.model.loss``) as a Keras loss object.

    ``reduction="none"`` gives per-example losses (the custom loop averages them over the global batch).
    """
    model = contract.model
    name = model.loss
    if name == "huber":
        return Huber(delta=model.huber_delta, reduction=reduction)
    if name == "log_cosh":
        return LogCosh(reduction=reduction)
    if name == "quantile":
        return Quantile(quantile=model.quantile, reduction=reduction)
    if name == "mse":
        return keras.losses.MeanSquaredError(reduction=reduction)
    if name == "mae":
        return keras.losses.MeanAbsoluteError(reduction=reduction)
    if name == "binary_crossentropy":
        return keras.losses.BinaryCrossentropy(reduction=reduction)
    if name == "focal":
        return BinaryFocal(gamma=model.focal_gamma, alpha=model.focal_alpha, reduction=reduction)
    raise ValueError(f"unknown loss {name!r}")
