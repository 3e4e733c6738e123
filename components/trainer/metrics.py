"""Streaming metrics: state variables updated batch by batch, so the value over many batches equals the
value over the whole data at once (a mean of per-batch values would not, with a short last batch).

- ``StreamingHuber``: the Huber loss as a metric (sum of per-example losses and a count), comparable across
  models trained with different losses; TFMA computes it on the eval split too.
- ``RSquared``: coefficient of determination ``1 - SS_res / SS_tot``. ``SS_tot`` needs the mean of the
  labels, unknown until the end, so it keeps ``Σy``, ``Σy²`` and ``n`` and expands
  ``Σ(y - ȳ)² = Σy² - (Σy)²/n`` in ``result()`` (float64 state: the expansion cancels badly in float32).

``task_metrics`` is the list both training loops track; classification uses Keras' own AUC (ROC and PR),
multi-class Keras' sparse (top-k) accuracy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List

import keras
from keras import ops

from sluice.components.settings import BINARY, MULTICLASS

if TYPE_CHECKING:
    from sluice.components.contracts import TrainerContract


@keras.saving.register_keras_serializable(package="sluice")
class StreamingHuber(keras.metrics.Metric):
    """Mean Huber loss over everything seen since the last ``reset_state``."""

    def __init__(self, delta: float = 1.0, name: str = "huber", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.delta = float(delta)
        self._loss = keras.losses.Huber(delta=self.delta, reduction=None)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_pred = ops.cast(ops.reshape(y_pred, (-1, 1)), self.dtype)
        y_true = ops.cast(ops.reshape(y_true, (-1, 1)), self.dtype)
        values = self._loss(y_true, y_pred)
        weights = ops.ones_like(values) if sample_weight is None else ops.cast(ops.reshape(sample_weight, (-1,)), self.dtype)
        self.total.assign_add(ops.sum(values * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self) -> Any:
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self) -> None:
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "delta": self.delta}


@keras.saving.register_keras_serializable(package="sluice")
class RSquared(keras.metrics.Metric):
    """R² over everything seen since the last ``reset_state`` (1 = perfect, 0 = predicting the mean)."""

    def __init__(self, name: str = "r_squared", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        for var in ("sum_y", "sum_y2", "ss_res", "n"):
            setattr(self, var, self.add_variable(shape=(), initializer="zeros", name=var, dtype="float64"))

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "float64")
        y_pred = ops.cast(ops.reshape(y_pred, (-1,)), "float64")
        w = ops.ones_like(y_true) if sample_weight is None else ops.cast(ops.reshape(sample_weight, (-1,)), "float64")
        self.sum_y.assign_add(ops.sum(w * y_true))
        self.sum_y2.assign_add(ops.sum(w * ops.square(y_true)))
        self.ss_res.assign_add(ops.sum(w * ops.square(y_true - y_pred)))
        self.n.assign_add(ops.sum(w))

    def result(self) -> Any:
        ss_tot = self.sum_y2 - ops.divide_no_nan(ops.square(self.sum_y), self.n)
        return ops.cast(1.0 - ops.divide_no_nan(self.ss_res, ss_tot), self.dtype)

    def reset_state(self) -> None:
        for var in (self.sum_y, self.sum_y2, self.ss_res, self.n):
            var.assign(0.0)


def task_metrics(contract: "TrainerContract") -> List[keras.metrics.Metric]:
    """The metrics both training loops report for the configured task (names as in TensorBoard)."""
    if contract.task.type == MULTICLASS:
        top_2 = [keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top_2_accuracy")]
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")] + (
            top_2 if len(contract.task.classes or []) > 2 else [])
    if contract.task.type == BINARY:
        return [
            keras.metrics.AUC(name="auc"),
            keras.metrics.AUC(curve="PR", name="pr_auc"),
            keras.metrics.BinaryAccuracy(name="binary_accuracy"),
        ]
    return [
        keras.metrics.MeanAbsoluteError(name="mean_absolute_error"),
        keras.metrics.RootMeanSquaredError(name="root_mean_squared_error"),
        StreamingHuber(delta=contract.model.huber_delta, name="huber"),
        RSquared(name="r_squared"),
    ]
