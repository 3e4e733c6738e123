"""Model analysis: the TFMA EvalConfig built from the config, the min-slice-size rule, and reading what the
Evaluator decided.

- The model is evaluated through ``serving_default`` (raw tf.Examples, as TF Serving will call it) with
  ``transform_features`` as preprocessing, so the label is Transform's (a derived label too).
- Slices: the overall slice plus ``evaluation.slices`` (single features and crosses).
- Thresholds (value bounds and change vs the baseline = the latest blessed model, resolved from MLMD) gate
  the overall slice, or with ``slices: true`` every feature slice. TFMA validates every slice of a spec, so a
  3-example slice could block a push; ``evaluator.py`` re-decides the blessing with ``gate_failures``:
  feature slices under ``evaluation.min_slice_size`` examples are reported, not gated.
- Metrics per task (settings.py's tables) plus a calibration plot, and confusion matrices for classification.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Optional, Tuple

import tensorflow_model_analysis as tfma

from sluice.components.features import label_key
from sluice.components import verdicts
from sluice.components.contracts import EvaluationContract
from sluice.components.evaluation_metrics import GUARD_PREFIX
from sluice.components.settings import (BINARY, LOWER_IS_BETTER, MACRO_METRICS, MULTICLASS, SLUICE_TFMA_METRICS,
                                       Threshold)

OVERALL = "overall"
PER_CLASS = {"auc": "AUC"}
"""Multi-class: TFMA's one-vs-rest metrics reported per class (``auc[2]`` = class id 2's AUC); precision and
recall per class come from ``evaluation_metrics.PerClassTopOne`` (most probable class)."""
METRICS_MODULE = "sluice.components.evaluation_metrics"


def _threshold(metric: str, bounds: Threshold) -> tfma.MetricThreshold:
    threshold = tfma.MetricThreshold()
    if bounds.lower_bound is not None or bounds.upper_bound is not None:
        value = tfma.GenericValueThreshold()
        if bounds.lower_bound is not None:
            value.lower_bound.value = bounds.lower_bound
        if bounds.upper_bound is not None:
            value.upper_bound.value = bounds.upper_bound
        threshold.value_threshold.CopyFrom(value)
    change = bounds.change
    if change is not None:
        lower_better = metric in LOWER_IS_BETTER
        threshold.change_threshold.CopyFrom(
            tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.LOWER_IS_BETTER if lower_better else tfma.MetricDirection.HIGHER_IS_BETTER,
                # TFMA's absolute change is candidate - baseline: allowed to be at most +a (lower is better)
                # or at least -a (higher is better).
                absolute={"value": change.absolute if lower_better else -change.absolute},
            )
        )
    return threshold


def _metric_config(contract: EvaluationContract, name: str, class_name: str) -> tfma.MetricConfig:
    if class_name == "Huber":
        return tfma.MetricConfig(class_name="Huber", module=METRICS_MODULE,
                                 config=json.dumps({"delta": contract.huber_delta, "name": name}))
    if class_name in ("MacroPrecision", "MacroRecall"):
        return tfma.MetricConfig(class_name=class_name, module=METRICS_MODULE,
                                 config=json.dumps({"name": name, "classes": len(contract.task.classes or [])}))
    if class_name in SLUICE_TFMA_METRICS:
        return tfma.MetricConfig(class_name=class_name, module=METRICS_MODULE, config=json.dumps({"name": name}))
    return tfma.MetricConfig(class_name=class_name, config=json.dumps({"name": name}))


def build_eval_config(contract: EvaluationContract) -> tfma.EvalConfig:
    """The Evaluator's EvalConfig (its typed contract, an execution property: thresholds are in its cache key).

    Multi-class: the label is the class id, the prediction ``outputs`` (K probabilities). ``macro_auc`` is
    TFMA's AUC one-vs-rest per class, macro-averaged by TFMA (a spec of its own: its thresholds gate the
    average only); a second spec binarizes by class id for the per-class AUCs the report shows (no
    thresholds). Precision and recall, macro and per class, are sluice's metrics on the most probable class
    (``evaluation_metrics.MacroPrecision`` …); the confusion matrix is TFMA's ``MultiClassConfusionMatrixPlot``."""
    feature_specs = [tfma.SlicingSpec(feature_keys=list(s)) for s in contract.slices]
    metrics: List[tfma.MetricConfig] = []
    macro: List[tfma.MetricConfig] = []
    for name, class_name in contract.metrics.items():
        mc = _metric_config(contract, name, class_name)
        for t in contract.thresholds:
            if t.metric == name:
                mc.per_slice_thresholds.append(tfma.PerSliceMetricThreshold(
                    slicing_specs=feature_specs if t.slices else [tfma.SlicingSpec()],
                    threshold=_threshold(name, t)))
        (macro if name in MACRO_METRICS else metrics).append(mc)
    classes = len(contract.task.classes or []) if contract.task.type == MULTICLASS else 0
    metrics.append(tfma.MetricConfig(class_name="Guards", module=METRICS_MODULE, config=json.dumps(
        {"task": contract.task.type, "beat_mean": contract.beat_mean, "classes": classes})))
    specs: List[tfma.MetricsSpec] = []
    if contract.task.type == BINARY:
        metrics.append(tfma.MetricConfig(class_name="CalibrationPlot", config=json.dumps({"num_buckets": 10})))
        metrics.append(tfma.MetricConfig(class_name="ConfusionMatrixAtThresholds",
                                         config=json.dumps({"thresholds": contract.confusion_thresholds})))
    elif classes:
        metrics.append(tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"))
        metrics.append(tfma.MetricConfig(class_name="PerClassTopOne", module=METRICS_MODULE,
                                         config=json.dumps({"name": "per_class", "classes": classes})))
        ids = list(range(classes))
        if macro:
            specs.append(tfma.MetricsSpec(metrics=macro, aggregate=tfma.AggregationOptions(
                macro_average=True, class_weights={i: 1.0 for i in ids})))
        specs.append(tfma.MetricsSpec(
            metrics=[tfma.MetricConfig(class_name=c, config=json.dumps({"name": n})) for n, c in PER_CLASS.items()],
            binarize=tfma.BinarizationOptions(class_ids={"values": ids})))
    elif contract.plot_range:
        low, high = contract.plot_range
        metrics.append(tfma.MetricConfig(class_name="CalibrationPlot",
                                         config=json.dumps({"num_buckets": 12, "left": low, "right": high})))
    specs.insert(0, tfma.MetricsSpec(metrics=metrics))
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_key=label_key(contract.task),
                prediction_key="outputs" if contract.task.type == MULTICLASS else "",
                preprocessing_function_names=["transform_features"],
            )
        ],
        slicing_specs=[tfma.SlicingSpec()] + feature_specs,
        metrics_specs=specs,
    )


# ----------------------------------------------------------------------------------------------- reading
def slice_name(slice_key: Any) -> str:
    """``SliceKey`` proto -> ``"payment_type=Cash, trip_start_day=3"`` (``"overall"`` for the empty key)."""
    parts = []
    for p in slice_key.single_slice_keys:
        if p.HasField("bytes_value"):
            value: Any = p.bytes_value.decode(errors="replace")
        elif p.HasField("int64_value"):
            value = p.int64_value
        else:
            value = f"{p.float_value:g}"
        parts.append(f"{p.column}={value}")
    return ", ".join(parts) or OVERALL


def slice_spec(name: str) -> str:
    """``"payment_type=Cash, trip_start_day=3"`` -> ``"payment_type × trip_start_day"``."""
    return OVERALL if name == OVERALL else " × ".join(part.split("=", 1)[0] for part in name.split(", "))


def _number(value: Any) -> Optional[float]:
    return float(value.double_value.value) if value.HasField("double_value") else None


def read_slices(evaluation_uri: str) -> Dict[str, Dict[str, Any]]:
    """Per slice: ``{"size", "candidate": {metric: v}, "baseline": {...}, "change": {...}, "guard": {...}}``
    (TFMA output; ``guard``: the candidate's sanity-guard values, ``evaluation_metrics.Guards``)."""
    slices: Dict[str, Dict[str, Any]] = {}
    for per_slice in tfma.load_metrics(evaluation_uri):
        entry = slices.setdefault(slice_name(per_slice.slice_key),
                                  {"size": None, "candidate": {}, "baseline": {}, "change": {}, "guard": {}})
        for kv in per_slice.metric_keys_and_values:
            number = _number(kv.value)
            if number is None:
                continue
            key = kv.key
            name = key.name
            if key.HasField("sub_key") and key.sub_key.HasField("class_id"):
                name = f"{name}[{key.sub_key.class_id.value}]"
            side = "change" if key.is_diff else ("baseline" if key.model_name == "baseline" else "candidate")
            if name.startswith(GUARD_PREFIX):
                if side == "candidate":
                    entry["guard"][name[len(GUARD_PREFIX):]] = number
                continue
            entry[side][name] = number
        entry["size"] = entry["candidate"].get("example_count")
    return slices


def gate_failures(failures: List[Dict[str, Any]], sizes: Dict[str, Optional[float]],
                  min_slice_size: int) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """Split TFMA's threshold failures into (gating, exempt): a feature slice with fewer than
    ``min_slice_size`` eval examples is reported but does not block; the overall slice always gates."""
    gating, exempt = [], []
    for f in failures:
        size = sizes.get(f["slice"])
        small = f["slice"] != OVERALL and (size is None or size < min_slice_size)
        (exempt if small else gating).append({**f, "size": size})
    return gating, exempt


def _failures(evaluation_uri: str, slices: Dict[str, Dict[str, Any]]) -> Tuple[bool, bool, List[Dict[str, Any]]]:
    result = tfma.load_validation_result(evaluation_uri)
    failures = []
    for per_slice in result.metric_validations_per_slice:
        name = slice_name(per_slice.slice_key)
        for failure in per_slice.failures:
            metric = failure.metric_key.name
            data = slices.get(name, {})
            failures.append({
                "slice": name,
                "metric": metric,
                "is_change": failure.metric_key.is_diff,
                "value": _number(failure.metric_value),
                "candidate": data.get("candidate", {}).get(metric),
                "baseline": data.get("baseline", {}).get(metric),
                "threshold": str(failure.metric_threshold).replace("\n", " ").strip(),
                **threshold_bounds(failure.metric_threshold),
                "message": failure.message,
            })
    return result.validation_ok, result.rubber_stamp, failures


def threshold_bounds(threshold: Any) -> Dict[str, Optional[float]]:
    """A TFMA ``MetricThreshold`` as numbers: ``lower_bound`` / ``upper_bound`` of its value threshold and
    ``allowed_change`` (TFMA's absolute change: the most a lower-is-better metric may rise, or minus the
    most a higher-is-better one may fall). None where the threshold has no such part."""
    value = threshold.value_threshold if threshold.HasField("value_threshold") else None
    change = threshold.change_threshold if threshold.HasField("change_threshold") else None
    return {
        "lower_bound": value.lower_bound.value if value is not None and value.HasField("lower_bound") else None,
        "upper_bound": value.upper_bound.value if value is not None and value.HasField("upper_bound") else None,
        "allowed_change": change.absolute.value if change is not None and change.HasField("absolute") else None,
    }


GATE_FILE = verdicts.FILES["evaluation"]


def gated_metrics(eval_config: Any) -> Dict[str, List[str]]:
    """Metric name -> the slice specs its thresholds gate (``"overall"`` or ``"a × b"``), from the EvalConfig."""
    gated: Dict[str, List[str]] = {}
    for spec in eval_config.metrics_specs:
        for mc in spec.metrics:
            name = json.loads(mc.config or "{}").get("name", mc.class_name)
            for per_slice in mc.per_slice_thresholds:
                for s in per_slice.slicing_specs:
                    gated.setdefault(name, []).append(" × ".join(s.feature_keys) or OVERALL)
    return gated


def _guard_failure(slice_: str, metric: str, value: Optional[float], size: Optional[float], rule: str) -> Dict[str, Any]:
    finite = value is not None and math.isfinite(value)
    return {"slice": slice_, "metric": metric, "is_change": False, "value": value if finite else None,
            "candidate": value if finite else None, "baseline": None, "threshold": rule, "lower_bound": None,
            "upper_bound": None, "allowed_change": None, "message": rule, "size": size, "guard": True}


def guard_failures(slices: Dict[str, Dict[str, Any]], gated: Dict[str, List[str]], min_slice_size: int,
                   task: str) -> List[Dict[str, Any]]:
    """What TFMA's thresholds let through, judged by sluice (these always gate):

    - a gated metric that is NaN, infinite or absent on a gated slice (TFMA's comparisons are false for NaN,
      so ``r_squared >= 0.5`` passed with ``r_squared = nan`` on a constant label); feature slices under
      ``min_slice_size`` are exempt as for thresholds;
    - constant predictions on the eval split (spread ≤ 1e-6 of the mean's magnitude, at least 1e-6);
    - a model no better than the trivial baseline computed on the same eval rows: the mean predictor's MSE
      (regression, i.e. r² ≤ 0), the prior's AUC of 0.5 (binary classification) or the class prior's log
      loss (multi-class: predicting each class's frequency).

    Guard values come from ``evaluation_metrics.Guards`` (``task`` names the task it was configured for;
    empty when it was not configured — an evaluation written by plain TFX — which is judged on the NaN rule
    only). Configured but absent (no eval rows) fails too: a guard never passes by not running."""
    failures = []
    for metric, specs in sorted(gated.items()):
        for name, entry in sorted(slices.items()):
            size = entry.get("size")
            if slice_spec(name) not in specs or (name != OVERALL and (size is None or size < min_slice_size)):
                continue
            value = entry["candidate"].get(metric)
            if value is None or not math.isfinite(value):
                failures.append(_guard_failure(name, metric, value, size,
                                               f"{metric} is {'missing' if value is None else value} on the eval rows: "
                                               "a gated metric must be a finite number"))
    overall = slices.get(OVERALL, {})
    guard, size = overall.get("guard") or {}, overall.get("size")
    if task and "prediction_stddev" not in guard:  # the Guards metric was configured and measured nothing
        failures.append(_guard_failure(OVERALL, "guards", None, size,
                                       "the sanity guards were not computed (no eval rows reached TFMA?)"))
    spread, mean = guard.get("prediction_stddev"), guard.get("prediction_mean")
    if spread is not None and mean is not None and spread <= 1e-6 * max(1.0, abs(mean)):
        failures.append(_guard_failure(OVERALL, "prediction_stddev", spread, size,
                                       "the model predicts the same class probabilities for every eval row"
                                       if task == MULTICLASS else
                                       f"the model predicts the same value ({mean:.6g}) for every eval row"))
    if task == MULTICLASS:
        model, prior = guard.get("model_log_loss"), guard.get("prior_log_loss")
        if model is not None and prior is not None and not (model < prior * (1 - 1e-9)):  # the prior itself, rounded
            failures.append(_guard_failure(OVERALL, "trivial_baseline", model, size,
                                           f"no better than predicting the class frequencies: log loss {model:.4g}, "
                                           f"the class prior's {prior:.4g} on the same eval rows"))
    elif task == BINARY and "auc" in guard:
        auc = guard["auc"]
        if not (auc > 0.5):
            failures.append(_guard_failure(OVERALL, "trivial_baseline", auc, size,
                                           f"ranks no better than the label prior: AUC {auc:.4g}, the prior's is 0.5"))
    elif "model_mse" in guard and "mean_predictor_mse" in guard:
        model, trivial = guard["model_mse"], guard["mean_predictor_mse"]
        if not (model < trivial):
            failures.append(_guard_failure(OVERALL, "trivial_baseline", model, size,
                                           f"no better than predicting the mean label: MSE {model:.4g}, the mean "
                                           f"predictor's {trivial:.4g} on the same eval rows"))
    return failures


def decide(evaluation_uri: str, min_slice_size: int, slices: Optional[Dict[str, Dict[str, Any]]] = None,
           eval_config: Any = None) -> Dict[str, Any]:
    """The blessing decision: TFMA's validation result with the min-slice-size rule, plus sluice's guards
    (``guard_failures``; ``eval_config`` says which metrics are gated where, and the task)."""
    slices = read_slices(evaluation_uri) if slices is None else slices
    validation_ok, rubber_stamp, failures = _failures(evaluation_uri, slices)
    gating, exempt = gate_failures(failures, {k: v["size"] for k, v in slices.items()}, min_slice_size)
    if eval_config is not None:
        gating += guard_failures(slices, gated_metrics(eval_config), min_slice_size, _task_of(eval_config))
    return {
        "blessed": not gating,
        "tfma_validation_ok": validation_ok,
        "rubber_stamp": rubber_stamp,
        "min_slice_size": min_slice_size,
        "failures": gating,
        "exempt_failures": exempt,
    }


def _task_of(eval_config: Any) -> str:
    for spec in eval_config.metrics_specs:
        for mc in spec.metrics:
            if mc.class_name == "Guards":
                return json.loads(mc.config or "{}").get("task", "")
    return ""


def read_verdict(evaluation_uri: str) -> Dict[str, Any]:
    """What the Evaluator decided, for the run summary and reports.

    ``{"blessed", "rubber_stamp", "failures", "exempt_failures", "overall": {metric: v},
    "changes": {metric: v}, "baseline": {metric: v}, "slices": read_slices(...)}``.
    """
    slices = read_slices(evaluation_uri)
    verdict = verdicts.read(evaluation_uri, "evaluation")
    if verdict is None:  # an evaluation written without sluice's executor: plain TFMA semantics
        verdict = decide(evaluation_uri, min_slice_size=0, slices=slices)
    overall = slices.get(OVERALL, {"candidate": {}, "baseline": {}, "change": {}})
    return {**verdict, "overall": overall["candidate"], "baseline": overall["baseline"],
            "changes": overall["change"], "slices": slices}
