"""The parity gate's arithmetic: how far a TFLite variant's answers are from the SavedModel's, and whether
that is inside the budget. Pure numpy, so the rules are unit-tested without TensorFlow.

- ``float32`` must answer like the SavedModel row by row: ``|tflite - saved| <= atol + rtol * |saved|`` for
  every eval row (default rtol 1e-4, atol 1e-5: float32 kernels differ in summation order, nothing else).
- Quantized variants may differ per row, within limits, and must keep the task metric:
  - the task metric on the eval split, MAE (regression), AUC (binary) or accuracy (multi-class), at most
    ``metric_budget`` worse (relative) than the SavedModel's;
  - row by row, in units of the standard deviation of the SavedModel's outputs on the same rows: the
    ``row_quantile`` (0.99) of the differences at most ``row_budget`` (0.1), the worst row at most
    ``worst_row_budget`` (0.5). An average hides one answer that is badly wrong: on the taxi data an int8
    model kept MAE within 1 % while one row was $272 off (26 standard deviations of the fares it predicts).
    The spread is the unit because it is the model's own scale for any task: a relative difference explodes
    near zero (a $0 fare, a 0.01 probability) and an absolute one means nothing across tasks. On that data
    dynamic_range measured 0.015 (p99) / 0.12 (worst) and int8 0.024 / 26: a tenth of the spread for 99 %
    of rows leaves room for honest rounding, half of it for the worst row catches a saturated activation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from sluice.components.settings import ParityBudget


@dataclass(frozen=True)
class VariantResult:
    variant: str
    rows: int
    size_bytes: int
    max_abs_diff: float
    max_rel_diff: float
    rows_outside_tolerance: int
    metric: str
    metric_saved_model: float
    metric_tflite: float
    metric_change: float
    """Relative change of the task metric vs the SavedModel (signed; positive = worse)."""
    rule: str
    passed: bool
    error: Optional[str] = None
    row_spread: float = 0.0
    """Standard deviation of the SavedModel's outputs on the eval rows: the unit of the row rule."""
    row_quantile_diff: float = 0.0
    """The budget's ``row_quantile`` of ``|variant - SavedModel|``, in units of ``row_spread``."""
    worst_row_diff: float = 0.0
    """The largest ``|variant - SavedModel|``, in units of ``row_spread``."""
    slices_checked: int = 0
    worst_slice: Optional[str] = None
    worst_slice_change: float = 0.0
    """Relative change of the task metric on the worst gated slice (positive = worse)."""

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def mean_absolute_error(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(np.abs(labels.reshape(-1) - predictions.reshape(-1))))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    labels = labels.reshape(-1).astype(bool)
    scores = scores.reshape(-1).astype(np.float64)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):  # average ranks over ties
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Share of rows whose most probable class is the label (class ids); NaN for no rows."""
    probabilities = probabilities.reshape(len(probabilities), -1)
    if not len(probabilities):
        return float("nan")
    return float(np.mean(np.argmax(probabilities, axis=1) == labels.reshape(-1)))


TASK_METRICS = {"regression": ("mean_absolute_error", True), "binary_classification": ("auc", False),
                "multiclass_classification": ("accuracy", False)}
"""Task type -> (metric, lower is better)."""
_METRIC_FUNCTIONS = {"mean_absolute_error": mean_absolute_error, "auc": roc_auc, "accuracy": accuracy}


def task_metric(task_type: str, labels: np.ndarray, predictions: np.ndarray) -> float:
    return _METRIC_FUNCTIONS[TASK_METRICS[task_type][0]](labels, predictions)


def _one_row(task_type: str, rows: int, reference: float) -> float:
    """Accuracy moves in steps of one row (one flipped answer in 89 eval rows is 1.1 %): the relative change
    one row makes, allowed on top of the budget; 0 for the other metrics."""
    if TASK_METRICS[task_type][0] != "accuracy" or not rows or not reference:
        return 0.0
    return (1 + 1e-9) / (rows * abs(reference))


def slice_masks(columns: Mapping[str, np.ndarray], specs: List[List[str]], min_size: int) -> Dict[str, np.ndarray]:
    """Row masks of every slice of ``specs`` (feature crosses, as the Evaluator slices) with at least
    ``min_size`` rows, named like TFMA's slices (``payment_type=Cash, trip_start_day=3``)."""
    masks: Dict[str, np.ndarray] = {}
    for spec in specs:
        if not spec or any(f not in columns for f in spec):
            continue
        groups: Dict[tuple, List[int]] = {}
        for i, key in enumerate(zip(*(columns[f] for f in spec))):
            groups.setdefault(key, []).append(i)
        rows = len(columns[spec[0]])
        for key, index in sorted(groups.items(), key=lambda kv: str(kv[0])):
            if len(index) >= min_size:
                mask = np.zeros(rows, bool)
                mask[index] = True
                shown = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in key]
                masks[", ".join(f"{f}={v}" for f, v in zip(spec, shown))] = mask
    return masks


def _worst_slice(task_type: str, labels: np.ndarray, saved: np.ndarray, tflite: np.ndarray,
                 slices: Mapping[str, np.ndarray]):
    """``(slices judged, worst slice, its relative metric change)``; slices whose metric is undefined (one
    class for AUC) are skipped."""
    _, lower_is_better = TASK_METRICS[task_type]
    checked, worst, worst_change = 0, None, 0.0
    for name, mask in slices.items():
        reference = task_metric(task_type, labels[mask], saved[mask])
        candidate = task_metric(task_type, labels[mask], tflite[mask])
        if not (np.isfinite(reference) and reference):
            continue
        checked += 1
        change = (candidate - reference) / abs(reference) if np.isfinite(candidate) else np.inf
        change = change if lower_is_better else -change
        change = max(0.0, change - _one_row(task_type, int(mask.sum()), reference))
        if worst is None or change > worst_change:
            worst, worst_change = name, float(change)
    return checked, worst, worst_change


def compare(variant: str, task_type: str, labels: np.ndarray, saved: np.ndarray, tflite: np.ndarray,
            size_bytes: int, budget: ParityBudget, slices: Optional[Mapping[str, np.ndarray]] = None) -> VariantResult:
    """One variant against the SavedModel on the same rows (and, quantized, on each of ``slices``)."""
    saved = saved.reshape(len(saved), -1).astype(np.float64)
    tflite = tflite.reshape(len(tflite), -1).astype(np.float64)
    if saved.shape != tflite.shape:
        raise ValueError(f"{variant}: output shape {tflite.shape} differs from the SavedModel's {saved.shape}")
    diff = np.abs(tflite - saved)
    finite = bool(np.all(np.isfinite(tflite)))
    outside = int(np.sum(np.any(~(diff <= budget.atol + budget.rtol * np.abs(saved)), axis=1)))
    rel = diff / np.maximum(np.abs(saved), budget.atol)
    metric, lower_is_better = TASK_METRICS[task_type]
    reference = task_metric(task_type, labels, saved)
    candidate = task_metric(task_type, labels, tflite)
    change = (candidate - reference) / abs(reference) if reference else 0.0
    worse = change if lower_is_better else -change
    spread = max(float(np.std(saved)), budget.atol) if saved.size else budget.atol
    in_spreads = diff.max(axis=1) / spread if diff.size else np.zeros(0)
    quantile_diff = float(np.quantile(in_spreads, budget.row_quantile)) if in_spreads.size else 0.0
    worst_diff = float(in_spreads.max()) if in_spreads.size else 0.0
    checked, worst_slice, worst_slice_change = 0, None, 0.0
    if variant == "float32":
        rule = f"every row within {budget.atol:g} + {budget.rtol:g} x |SavedModel output|"
        passed = finite and outside == 0
    else:
        checked, worst_slice, worst_slice_change = _worst_slice(
            task_type, labels.reshape(-1), saved, tflite, slices or {})
        rule = (f"{metric} at most {budget.metric_budget:.1%} worse than the SavedModel's"
                + (f" ({budget.slice_metric_budget:.0%} on each gated slice)" if slices else "")
                + f"; {budget.row_quantile:.0%} of rows within {budget.row_budget:g} and every row within "
                f"{budget.worst_row_budget:g} standard deviations of the SavedModel's outputs")
        step = _one_row(task_type, len(saved), reference)
        passed = (finite and bool(np.isfinite(candidate)) and worse <= max(budget.metric_budget, step)
                  and quantile_diff <= budget.row_budget and worst_diff <= budget.worst_row_budget
                  and worst_slice_change <= budget.slice_metric_budget)
    return VariantResult(
        variant=variant, rows=len(saved), size_bytes=size_bytes,
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        max_rel_diff=float(rel.max()) if rel.size else 0.0,
        rows_outside_tolerance=outside, metric=metric, metric_saved_model=reference, metric_tflite=candidate,
        metric_change=float(worse), rule=rule, passed=passed, row_spread=spread,
        row_quantile_diff=quantile_diff, worst_row_diff=worst_diff, slices_checked=checked,
        worst_slice=worst_slice, worst_slice_change=worst_slice_change,
        error=None if finite else "non-finite outputs",
    )


def failure_lines(results: List[Mapping[str, Any]]) -> List[str]:
    """One line per failed variant, in words: what was expected and what was measured."""
    lines = []
    for r in results:
        if r["passed"]:
            continue
        if r.get("error") and r.get("rows", 0) == 0:
            lines.append(f"{r['variant']}: {r['error']}")
        elif r["variant"] == "float32":
            lines.append(f"float32: {r['rows_outside_tolerance']} of {r['rows']} rows differ from the SavedModel by "
                         f"more than the tolerance ({r['rule']}); largest difference {r['max_abs_diff']:.3g}")
        else:
            lines.append(f"{r['variant']}: {r['metric']} {r['metric_tflite']:.4g} vs SavedModel "
                         f"{r['metric_saved_model']:.4g} ({abs(r['metric_change']):.2%} "
                         f"{'worse' if r['metric_change'] > 0 else 'better'}); rows: "
                         f"{r.get('row_quantile_diff', 0):.3g} (quantile) and {r.get('worst_row_diff', 0):.3g} "
                         f"(worst row, {r['max_abs_diff']:.3g} in output units) standard deviations off"
                         + (f"; worst slice {r['worst_slice']}: {r['worst_slice_change']:+.1%}" if r.get("worst_slice") else "")
                         + " "
                         f"(rule: {r['rule']})")
    return lines
