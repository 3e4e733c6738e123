"""The Trainer's losses: a registry from ``model.loss`` to a Keras loss object.

- ``huber`` (regression; Keras' ``Huber`` with its ``delta`` kept in the config): quadratic for errors up to ``delta`` (precise near
  the target, like MSE), linear beyond it (an outlier fare pulls no harder than MAE would).
- ``log_cosh`` (regression; Keras' ``LogCosh``, which uses the overflow-safe ``x + softplus(-2x) - log 2``):
  a smooth Huber without a delta to tune.
- ``quantile`` (regression, a.k.a. pinball; ``Quantile`` here, Keras has none): fits the ``quantile``-th
  conditional quantile instead of the mean (0.5 = median; 0.9 = "fare we stay under 90 % of the time").
- ``focal`` (classification; Keras' ``BinaryFocalCrossentropy`` with class balancing): cross-entropy
  down-weighted by ``(1 - p_t)^gamma`` so the many easy examples stop dominating an imbalanced label
  (Lin et al. 2017), positives weighted ``alpha``; ``gamma = 0`` is (weighted) cross-entropy.
- ``sparse_categorical_crossentropy`` (multi-class; Keras'): the label is the class id, the prediction K
  softmax probabilities.
- ``sparse_focal`` (multi-class; ``SparseFocal`` here: Keras' ``CategoricalFocalCrossentropy`` takes one-hot
  labels): the focal down-weighting for class ids, each class weighted ``alpha``.

Every loss returns one value per example (``reduction`` decides how Keras combines them), so the custom
training loop can scale by the *global* batch size with ``tf.nn.compute_average_loss``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict

import keras
from keras import ops

if TYPE_CHECKING:
    from sluice.components.contracts import TrainerContract
    from sluice.components.settings import ModelConfig


@keras.saving.register_keras_serializable(package="sluice")
class Huber(keras.losses.Huber):
    """Keras' Huber loss, plus ``delta`` in its config: Keras 3.6's ``Huber.get_config`` leaves ``delta`` out,
    so a saved and reloaded model would silently train with ``delta = 1`` (tests/unit/test_losses.py)."""

    def __init__(self, delta: float = 1.0, name: str = "huber", reduction: str = "sum_over_batch_size") -> None:
        if delta <= 0:
            raise ValueError(f"Huber delta must be > 0, got {delta}")
        super().__init__(delta=delta, name=name, reduction=reduction)
        self.delta = float(delta)

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "delta": self.delta}


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
class SparseFocal(keras.losses.Loss):
    """Focal cross-entropy on class ids: ``-alpha (1 - p_y)^gamma log p_y`` where ``p_y`` is the predicted
    probability of the true class; Keras' ``CategoricalFocalCrossentropy`` on the one-hot label (equal, by
    tests/unit/test_losses.py), without materializing the one-hot in the input pipeline."""

    def __init__(self, gamma: float = 2.0, alpha: float = 0.25, name: str = "sparse_focal",
                 reduction: str = "sum_over_batch_size") -> None:
        super().__init__(name=name, reduction=reduction)
        self.gamma, self.alpha = float(gamma), float(alpha)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ids = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        p = ops.clip(y_pred, keras.backend.epsilon(), 1.0 - keras.backend.epsilon())
        p_true = ops.sum(ops.one_hot(ids, ops.shape(y_pred)[-1], dtype=p.dtype) * p, axis=-1)
        return -self.alpha * ops.power(1.0 - p_true, self.gamma) * ops.log(p_true)

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}


# ``model.loss`` -> the Keras loss, built from the model settings: Keras' own where tests/unit/test_losses.py
# proves it the loss we mean; ``Quantile`` (Keras has none) and ``Huber`` (its config) are ours.
LOSSES: Dict[str, Callable[["ModelConfig", str], keras.losses.Loss]] = {
    "huber": lambda m, r: Huber(delta=m.huber_delta, reduction=r),
    "log_cosh": lambda m, r: keras.losses.LogCosh(reduction=r),
    "quantile": lambda m, r: Quantile(quantile=m.quantile, reduction=r),
    "mse": lambda m, r: keras.losses.MeanSquaredError(reduction=r),
    "mae": lambda m, r: keras.losses.MeanAbsoluteError(reduction=r),
    "binary_crossentropy": lambda m, r: keras.losses.BinaryCrossentropy(reduction=r),
    "focal": lambda m, r: keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=True, alpha=m.focal_alpha, gamma=m.focal_gamma, reduction=r),
    "sparse_categorical_crossentropy": lambda m, r: keras.losses.SparseCategoricalCrossentropy(reduction=r),
    "sparse_focal": lambda m, r: SparseFocal(gamma=m.focal_gamma, alpha=m.focal_alpha, reduction=r),
}


def make_loss(contract: "TrainerContract", reduction: str = "sum_over_batch_size") -> keras.losses.Loss:
    """The configured loss (``contract.model.loss``) as a Keras loss object.

    ``reduction="none"`` gives per-example losses (the custom loop averages them over the global batch).
    """
    return LOSSES[contract.model.loss](contract.model, reduction)
