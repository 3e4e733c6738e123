"""sluice's regression metrics and the blessing's sanity guards as native TFMA metrics, so the Evaluator reports (and can gate on) the same
numbers the Trainer logs.

TFMA 0.47 wraps only ``tf_keras`` metrics; the Trainer's ``StreamingHuber`` / ``RSquared`` are Keras 3
objects that TFMA does not recognize (measured: ``'StreamingHuber' object has no attribute
'computations'``). These combiners keep the same sufficient statistics as the Keras metrics (sums and a
count, merged by addition across Beam workers) and apply the same formulas; ``tests/unit/test_evaluation.py``
checks they agree with the Trainer's metrics on the same data.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util


def huber_values(labels: np.ndarray, predictions: np.ndarray, delta: float) -> np.ndarray:
    """Per-example Huber loss — ``losses.Huber`` in NumPy."""
    error = np.abs(np.asarray(predictions, np.float64) - np.asarray(labels, np.float64))
    quadratic = np.minimum(error, delta)
    return 0.5 * quadratic**2 + delta * (error - quadratic)


class _Sums:
    def __init__(self, size: int) -> None:
        self.values = np.zeros(size, np.float64)


class _Additive(beam.CombineFn):
    """Accumulators that are arrays of sums: merged by addition across Beam workers."""

    def merge_accumulators(self, accumulators: Iterable[_Sums]) -> _Sums:
        merged = self.create_accumulator()
        for acc in accumulators:
            merged.values += acc.values
        return merged


class _SumsCombiner(_Additive):
    """Accumulates per-example statistics (weighted sums); ``finish`` turns the totals into the metric."""

    size = 1

    def __init__(self, key: metric_types.MetricKey, eval_config: Any, example_weighted: bool) -> None:
        self._key = key
        self._eval_config = eval_config
        self._example_weighted = example_weighted

    def stats(self, label: float, prediction: float) -> List[float]:
        raise NotImplementedError

    def finish(self, sums: np.ndarray) -> float:
        raise NotImplementedError

    def create_accumulator(self) -> _Sums:
        return _Sums(self.size + 1)

    def add_input(self, acc: _Sums, element: metric_types.StandardMetricInputs) -> _Sums:
        for label, prediction, weight in metric_util.to_label_prediction_example_weight(
            element, eval_config=self._eval_config, model_name=self._key.model_name,
            output_name=self._key.output_name, example_weighted=self._example_weighted, flatten=True,
        ):
            w = float(metric_util.safe_to_scalar(weight))
            row = self.stats(float(metric_util.safe_to_scalar(label)), float(metric_util.safe_to_scalar(prediction)))
            acc.values += w * np.asarray(row + [1.0])
        return acc

    def extract_output(self, acc: _Sums) -> Dict[metric_types.MetricKey, float]:
        return {self._key: self.finish(acc.values) if acc.values[-1] > 0 else float("nan")}


class _HuberCombiner(_SumsCombiner):
    size = 1

    def __init__(self, key: metric_types.MetricKey, eval_config: Any, example_weighted: bool, delta: float) -> None:
        super().__init__(key, eval_config, example_weighted)
        self._delta = delta

    def stats(self, label: float, prediction: float) -> List[float]:
        return [float(huber_values(np.array([label]), np.array([prediction]), self._delta)[0])]

    def finish(self, sums: np.ndarray) -> float:
        return float(sums[0] / sums[-1])


class _RSquaredCombiner(_SumsCombiner):
    size = 3  # Σy, Σy², Σ(y - ŷ)²

    def stats(self, label: float, prediction: float) -> List[float]:
        return [label, label * label, (label - prediction) ** 2]

    def finish(self, sums: np.ndarray) -> float:
        sum_y, sum_y2, ss_res, n = sums
        ss_tot = sum_y2 - sum_y * sum_y / n
        return float(1.0 - ss_res / ss_tot) if ss_tot > 0 else float("nan")


def _computations(combiner_class: type, **combiner_kwargs: Any):
    def computations(
        name: Optional[str] = None,
        eval_config: Any = None,
        model_name: str = "",
        output_name: str = "",
        example_weighted: bool = False,
        **_: Any,
    ) -> metric_types.MetricComputations:
        key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                     example_weighted=example_weighted)
        return [metric_types.MetricComputation(
            keys=[key], preprocessors=None,
            combiner=combiner_class(key, eval_config, example_weighted, **combiner_kwargs))]

    return computations


class Huber(metric_types.Metric):
    """Mean Huber loss (``delta`` in label units), as the Trainer's ``StreamingHuber``."""

    def __init__(self, delta: float = 1.0, name: str = "huber") -> None:
        super().__init__(metric_util.merge_per_key_computations(_computations(_HuberCombiner, delta=float(delta))),
                         delta=delta, name=name)


class RSquared(metric_types.Metric):
    """Coefficient of determination ``1 - SS_res / SS_tot``, as the Trainer's ``RSquared``."""

    def __init__(self, name: str = "r_squared") -> None:
        super().__init__(metric_util.merge_per_key_computations(_computations(_RSquaredCombiner)), name=name)


metric_types.register_metric(Huber)
metric_types.register_metric(RSquared)


# ------------------------------------------------------------------------------------ multi-class, top one
def class_rows(element: metric_types.StandardMetricInputs, eval_config: Any, key: metric_types.MetricKey,
               classes: int) -> Iterable[tuple]:
    """``(class id, K probabilities)`` per example of a multi-class ``element``; rows whose label is no class
    id 0..K-1 (the DataGate and the Trainer refuse such data) or whose prediction is not K wide are skipped."""
    for label, prediction, _ in metric_util.to_label_prediction_example_weight(
        element, eval_config=eval_config, model_name=key.model_name, output_name=key.output_name,
        example_weighted=False, flatten=False, allow_none=True, require_single_example_weight=False,
    ):
        p = np.asarray(prediction, np.float64).reshape(-1)
        y = int(np.asarray(label).reshape(-1)[0]) if label is not None and np.size(label) else -1
        if p.size == classes and 0 <= y < classes:
            yield y, p


def top_one_scores(matrix: np.ndarray) -> Dict[str, Any]:
    """Per-class precision and recall of the most probable class, from a ``K x K`` confusion matrix (rows:
    actual, columns: predicted), and their macro averages. Recall averages over the classes present in these
    rows (a slice without a class is not a failure of it); precision over the classes present or predicted,
    as scikit-learn does (answers of a class the slice lacks are wrong answers: precision 0 for it). A
    present class never predicted has precision 0."""
    matrix = np.asarray(matrix, np.float64)
    support, predicted, hits = matrix.sum(axis=1), matrix.sum(axis=0), np.diag(matrix)
    present, seen = support > 0, (support > 0) | (predicted > 0)
    recall = np.where(present, hits / np.maximum(support, 1), np.nan)
    precision = np.where(predicted > 0, hits / np.maximum(predicted, 1), np.where(present, 0.0, np.nan))
    return {"precision": precision, "recall": recall,
            "macro_precision": float(precision[seen].mean()) if seen.any() else float("nan"),
            "macro_recall": float(recall[present].mean()) if present.any() else float("nan")}


class _TopOneCombiner(_Additive):
    """The K x K confusion matrix of label id vs most probable class, one pass; ``keys`` says what to emit
    from it (``top_one_scores``)."""

    def __init__(self, keys: Dict[Any, metric_types.MetricKey], eval_config: Any, classes: int) -> None:
        self._keys, self._eval_config, self._k = keys, eval_config, int(classes)

    def create_accumulator(self) -> _Sums:
        return _Sums(self._k * self._k)

    def add_input(self, acc: _Sums, element: metric_types.StandardMetricInputs) -> _Sums:
        for y, p in class_rows(element, self._eval_config, next(iter(self._keys.values())), self._k):
            if np.all(np.isfinite(p)):
                acc.values[y * self._k + int(np.argmax(p))] += 1.0
        return acc

    def extract_output(self, acc: _Sums) -> Dict[metric_types.MetricKey, float]:
        scores = top_one_scores(acc.values.reshape(self._k, self._k))
        out = {}
        for what, key in self._keys.items():
            out[key] = scores[what[0]][what[1]] if isinstance(what, tuple) else scores[what]
        return {k: float(v) for k, v in out.items()}


def _top_one_metric(what: str, classes: int, name: str, per_class: bool):
    def computations(name: Optional[str] = None, eval_config: Any = None, model_name: str = "",
                     output_name: str = "", example_weighted: bool = False, **_: Any):
        def key(metric: str, class_id: Optional[int] = None) -> metric_types.MetricKey:
            return metric_types.MetricKey(name=metric, model_name=model_name, output_name=output_name,
                                          example_weighted=example_weighted,
                                          sub_key=None if class_id is None else metric_types.SubKey(class_id=class_id))

        if per_class:  # per-class precision[i] / recall[i] (report only: no threshold names these keys)
            keys = {(m, i): key(m, i) for m in ("precision", "recall") for i in range(classes)}
        else:
            keys = {what: key(name)}
        return [metric_types.MetricComputation(keys=list(keys.values()), preprocessors=None,
                                               combiner=_TopOneCombiner(keys, eval_config, classes))]

    return metric_util.merge_per_key_computations(computations)


class MacroPrecision(metric_types.Metric):
    """Multi-class: the mean over the classes present of each class's precision, the most probable class
    being the prediction (as the confusion matrix counts it; TFMA's own ``Precision`` per class cuts
    one-vs-rest probabilities at 0.5, which calls a right top class at 0.45 a miss)."""

    def __init__(self, classes: int = 2, name: str = "macro_precision") -> None:
        super().__init__(_top_one_metric("macro_precision", classes, name, False), classes=classes, name=name)


class MacroRecall(metric_types.Metric):
    """Multi-class: the mean over the classes present of each class's recall (most probable class)."""

    def __init__(self, classes: int = 2, name: str = "macro_recall") -> None:
        super().__init__(_top_one_metric("macro_recall", classes, name, False), classes=classes, name=name)


class PerClassTopOne(metric_types.Metric):
    """Multi-class: ``precision`` and ``recall`` of each class (sub-key ``class_id``), most probable class."""

    def __init__(self, classes: int = 2, name: str = "per_class") -> None:
        super().__init__(_top_one_metric("", classes, name, True), classes=classes, name=name)


metric_types.register_metric(MacroPrecision)
metric_types.register_metric(MacroRecall)
metric_types.register_metric(PerClassTopOne)


# ------------------------------------------------------------------------------------------------- guards
GUARD_PREFIX = "guard_"
AUC_BINS = 4000
LOGIT_RANGE = 20.0
"""Predictions are binned on the logit scale over [-20, 20] (probabilities 2e-9 … 1 - 2e-9): a rare-event
model whose scores all sit below 0.001 still spreads over hundreds of bins (linear bins put it in one)."""


def auc_bucket(p: float) -> int:
    p = min(max(p, 1e-12), 1 - 1e-12)
    logit = float(np.log(p / (1 - p)))
    scaled = (min(max(logit, -LOGIT_RANGE), LOGIT_RANGE) + LOGIT_RANGE) / (2 * LOGIT_RANGE)
    return min(AUC_BINS - 1, int(scaled * AUC_BINS))


class _GuardCombiner(_Additive):
    """One pass over the eval split for the blessing's sanity guards (``evaluation.guard_failures``):

    - the spread of the predictions (a constant model answers the same for every row);
    - the trivial baseline the model must beat, measured on the same rows: for regression the mean
      predictor's MSE (the variance of the labels) next to the model's MSE; for binary classification the
      model's ranking quality (AUC from per-class prediction histograms on the logit scale), against the
      prior's 0.5.

    Sums and histograms only, merged by addition across Beam workers.
    """

    def __init__(self, keys: Dict[str, metric_types.MetricKey], eval_config: Any, example_weighted: bool,
                 task: str) -> None:
        self._keys, self._eval_config, self._example_weighted = keys, eval_config, example_weighted
        self._binary = task == "binary_classification"

    def create_accumulator(self) -> _Sums:
        # n, Σp, Σp², Σy, Σy², Σ(y - p)², then (binary) AUC_BINS negatives' and AUC_BINS positives' counts
        return _Sums(6 + (2 * AUC_BINS if self._binary else 0))

    def add_input(self, acc: _Sums, element: metric_types.StandardMetricInputs) -> _Sums:
        key = next(iter(self._keys.values()))
        for label, prediction, _ in metric_util.to_label_prediction_example_weight(
            element, eval_config=self._eval_config, model_name=key.model_name, output_name=key.output_name,
            example_weighted=False, flatten=True,
        ):
            y, p = float(metric_util.safe_to_scalar(label)), float(metric_util.safe_to_scalar(prediction))
            acc.values[:6] += (1.0, p, p * p, y, y * y, (y - p) ** 2)
            if self._binary and np.isfinite(p):
                acc.values[6 + (AUC_BINS if y > 0.5 else 0) + auc_bucket(p)] += 1.0
        return acc

    def extract_output(self, acc: _Sums) -> Dict[metric_types.MetricKey, float]:
        n, sp, sp2, sy, sy2, sse = acc.values[:6]
        if n == 0:
            return {}
        out = {"prediction_stddev": float(np.sqrt(max(0.0, sp2 / n - (sp / n) ** 2))),
               "prediction_mean": float(sp / n)}
        if self._binary:
            out["auc"] = histogram_auc(acc.values[6:6 + AUC_BINS], acc.values[6 + AUC_BINS:])
        else:
            out["model_mse"] = float(sse / n)
            out["mean_predictor_mse"] = float(max(0.0, sy2 / n - (sy / n) ** 2))
        return {self._keys[name]: value for name, value in out.items() if name in self._keys}


def histogram_auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """ROC AUC from per-class prediction histograms (ties within a bucket count half): the probability that
    a random positive is scored above a random negative. NaN when a class is absent."""
    neg, pos = np.asarray(negatives, np.float64), np.asarray(positives, np.float64)
    if neg.sum() == 0 or pos.sum() == 0:
        return float("nan")
    below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])  # negatives in lower buckets
    return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


class _MultiClassGuardCombiner(_Additive):
    """The guards for K-class probabilities and a class-id label, one pass: the spread of the predicted
    probabilities (a constant model gives every row the same vector), and the model's log loss next to the
    class prior's (predicting the label frequencies of the same rows: their entropy) — the proper-scoring
    counterpart of "beat the mean predictor", which does not punish a useful model of an imbalanced label as
    "beat the majority class's accuracy" would. Rows whose label is no class id are skipped (the DataGate
    refuses such data)."""

    def __init__(self, keys: Dict[str, metric_types.MetricKey], eval_config: Any, classes: int) -> None:
        self._keys, self._eval_config, self._k = keys, eval_config, int(classes)

    def create_accumulator(self) -> _Sums:
        # n, Σ -log p(true class), then K label counts, K Σp_k and K Σp_k²
        return _Sums(2 + 3 * self._k)

    def add_input(self, acc: _Sums, element: metric_types.StandardMetricInputs) -> _Sums:
        k = self._k
        for y, p in class_rows(element, self._eval_config, next(iter(self._keys.values())), k):
            acc.values[0] += 1.0
            # clipped at 1e-7 like TFMA's (Keras') log loss, so the guard and the report show one number
            acc.values[1] += -np.log(min(max(p[y], 1e-7), 1.0)) if np.isfinite(p[y]) else np.inf
            acc.values[2 + y] += 1.0
            acc.values[2 + k:2 + 2 * k] += p
            acc.values[2 + 2 * k:] += p * p
        return acc

    def extract_output(self, acc: _Sums) -> Dict[metric_types.MetricKey, float]:
        n, k = acc.values[0], self._k
        if n == 0:
            return {}
        counts, sp, sp2 = acc.values[2:2 + k], acc.values[2 + k:2 + 2 * k], acc.values[2 + 2 * k:]
        prior = counts[counts > 0] / n
        out = {"prediction_stddev": float(np.sqrt(max(0.0, float(np.mean(sp2 / n - (sp / n) ** 2))))),
               "prediction_mean": float(np.mean(sp / n)),
               "model_log_loss": float(acc.values[1] / n),
               "prior_log_loss": float(-(prior * np.log(prior)).sum())}
        return {self._keys[name]: value for name, value in out.items() if name in self._keys}


class Guards(metric_types.Metric):
    """The blessing's sanity guards (see ``_GuardCombiner``): ``guard_prediction_stddev``,
    ``guard_prediction_mean`` and ``guard_model_mse`` + ``guard_mean_predictor_mse`` (regression),
    ``guard_auc`` (binary) or ``guard_model_log_loss`` + ``guard_prior_log_loss`` (multi-class, ``classes``
    outputs: ``_MultiClassGuardCombiner``). Read by ``evaluation.guard_failures``, kept out of the metric
    tables."""

    def __init__(self, task: str = "regression", beat_mean: bool = True, classes: int = 0,
                 name: str = "guards") -> None:
        def computations(name: Optional[str] = None, eval_config: Any = None, model_name: str = "",
                         output_name: str = "", example_weighted: bool = False, **_: Any):
            names = ["prediction_stddev", "prediction_mean"] + (
                ["model_log_loss", "prior_log_loss"] if classes else
                ["auc"] if task == "binary_classification" else ["model_mse", "mean_predictor_mse"] if beat_mean else [])
            keys = {n: metric_types.MetricKey(name=GUARD_PREFIX + n, model_name=model_name,
                                              output_name=output_name, example_weighted=example_weighted)
                    for n in names}
            combiner = (_MultiClassGuardCombiner(keys, eval_config, classes) if classes
                        else _GuardCombiner(keys, eval_config, example_weighted, task))
            return [metric_types.MetricComputation(keys=list(keys.values()), preprocessors=None, combiner=combiner)]

        super().__init__(metric_util.merge_per_key_computations(computations), task=task, beat_mean=beat_mean,
                         classes=classes, name=name)


metric_types.register_metric(Guards)
