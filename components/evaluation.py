"""TFMA EvalConfig built from the config: what the Evaluator computes and what blesses a model.

The model is evaluated through its ``serving_default`` signature (raw tf.Examples, as TF Serving will call
it) with ``transform_features`` as preprocessing, so the label TFMA compares against is Transform's label
(a derived label too). Change thresholds compare against the baseline, the latest blessed model; on the first
run there is none and TFX's Evaluator applies the value thresholds alone.
"""

from __future__ import annotations

from typing import Any, Dict, List

import tensorflow_model_analysis as tfma

from sluice.components.features import transformed_name
from sluice.pipeline.config import LOWER_IS_BETTER, PipelineConfig


def _threshold(metric: str, bounds: Dict[str, Any]) -> tfma.MetricThreshold:
    threshold = tfma.MetricThreshold()
    if bounds.get("lower_bound") is not None or bounds.get("upper_bound") is not None:
        value = tfma.GenericValueThreshold()
        if bounds.get("lower_bound") is not None:
            value.lower_bound.value = bounds["lower_bound"]
        if bounds.get("upper_bound") is not None:
            value.upper_bound.value = bounds["upper_bound"]
        threshold.value_threshold.CopyFrom(value)
    change = bounds.get("change")
    if change is not None:
        lower_better = metric in LOWER_IS_BETTER
        threshold.change_threshold.CopyFrom(
            tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.LOWER_IS_BETTER if lower_better else tfma.MetricDirection.HIGHER_IS_BETTER,
                # TFMA's absolute change is candidate - baseline: allowed to be at most +a (lower is better)
                # or at least -a (higher is better).
                absolute={"value": change["absolute"] if lower_better else -change["absolute"]},
            )
        )
    return threshold


def build_eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    class_names = config.task_metrics()
    thresholds = {t.metric: t.model_dump() for t in config.evaluation.thresholds}
    metrics: List[tfma.MetricConfig] = []
    for name in config.metric_names():
        mc = tfma.MetricConfig(class_name=class_names[name])
        if name in thresholds:
            # Gate on the overall slice; feature slices are computed and reported, not gated (a slice with
            # a handful of examples, or one class only, has no meaningful AUC).
            mc.per_slice_thresholds.append(
                tfma.PerSliceMetricThreshold(
                    slicing_specs=[tfma.SlicingSpec()], threshold=_threshold(name, thresholds[name])
                )
            )
        metrics.append(mc)
    slicing = [tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=list(s)) for s in config.evaluation.slices]
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_key=transformed_name(config.task.label),
                preprocessing_function_names=["transform_features"],
            )
        ],
        slicing_specs=slicing,
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
    )


def _slice_name(slice_key: Any) -> str:
    parts = [f"{p.column}={p.bytes_value.decode() if p.HasField('bytes_value') else (p.int64_value if p.HasField('int64_value') else p.float_value)}"
             for p in slice_key.single_slice_keys]
    return ", ".join(parts) or "overall"


def read_verdict(evaluation_uri: str) -> Dict[str, Any]:
    """What the Evaluator decided, for the run summary: validation ok?, failures, overall metric values.

    Returns ``{"validation_ok", "rubber_stamp", "failures": [{slice, metric, value, threshold, message}],
    "overall": {metric: value}}``.
    """
    result = tfma.load_validation_result(evaluation_uri)
    failures = []
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            failures.append(
                {
                    "slice": _slice_name(per_slice.slice_key),
                    "metric": failure.metric_key.name + (" (change vs baseline)" if failure.metric_key.is_diff else ""),
                    "value": _metric_number(failure.metric_value),
                    "threshold": str(failure.metric_threshold).replace("\n", " ").strip(),
                    "message": failure.message,
                }
            )
    overall: Dict[str, float] = {}
    try:
        eval_result = tfma.load_eval_result(evaluation_uri)
        for slice_key, metrics in eval_result.slicing_metrics:
            if slice_key == ():
                for name, value in metrics.get("", {}).get("", {}).items():
                    number = value.get("doubleValue")
                    if number is not None:
                        overall[name] = float(number)
    except Exception:  # metrics are informative; the verdict above is what gates
        pass
    return {
        "validation_ok": result.validation_ok,
        "rubber_stamp": result.rubber_stamp,
        "failures": failures,
        "overall": overall,
    }


def _metric_number(value: Any) -> float | None:
    if value.HasField("double_value"):
        return float(value.double_value.value)
    return None
