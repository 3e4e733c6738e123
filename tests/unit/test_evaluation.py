"""Model analysis pieces without a pipeline: sluice's TFMA metrics equal the Trainer's, the EvalConfig says
what the config says, the min-slice-size rule, and the evaluation page and summary lines."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from sluice.components.evaluation import OVERALL, build_eval_config, gate_failures, slice_spec
from sluice.pipeline.config import parse_config
from tests.helpers import CONFIGS

RNG = np.random.default_rng(3)
LABELS = RNG.gamma(2.0, 6.0, size=300)
PREDICTIONS = LABELS + RNG.normal(scale=3.0, size=300)


def _tfma_value(metric, labels, predictions, chunks=4):
    """Run a TFMA metric's combiner the way Beam would: several accumulators, merged."""
    from tensorflow_model_analysis.metrics import metric_types

    computation = metric.computations(model_names=[""], output_names=[""])[0]
    combiner = computation.combiner
    accumulators = []
    for part in np.array_split(np.arange(len(labels)), chunks):
        acc = combiner.create_accumulator()
        for i in part:
            element = metric_types.StandardMetricInputs(
                labels=np.array([labels[i]]), predictions=np.array([predictions[i]]), example_weights=np.array([1.0]))
            acc = combiner.add_input(acc, element)
        accumulators.append(acc)
    out = combiner.extract_output(combiner.merge_accumulators(accumulators))
    return float(next(iter(out.values())))


def test_tfma_huber_and_r_squared_equal_the_trainers_streaming_metrics():
    from sluice.components.evaluation_metrics import Huber, RSquared
    from sluice.components.trainer.metrics import RSquared as KerasRSquared
    from sluice.components.trainer.metrics import StreamingHuber

    y, p = LABELS.reshape(-1, 1).astype("float32"), PREDICTIONS.reshape(-1, 1).astype("float32")
    keras_huber = StreamingHuber(delta=2.0)
    keras_huber.update_state(y, p)
    keras_r2 = KerasRSquared()
    keras_r2.update_state(y, p)
    assert _tfma_value(Huber(delta=2.0), LABELS, PREDICTIONS) == pytest.approx(float(keras_huber.result()), rel=1e-5)
    assert _tfma_value(RSquared(), LABELS, PREDICTIONS) == pytest.approx(float(keras_r2.result()), rel=1e-5)


@pytest.fixture(scope="module")
def fare_raw():
    return yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text())


def _cfg(raw, **evaluation):
    raw = copy.deepcopy(raw)
    raw["evaluation"].update(evaluation)
    return parse_config(raw, base_dir=str(CONFIGS))


def test_eval_config_gates_overall_and_feature_slices_separately(fare_raw):
    ec = build_eval_config(_cfg(fare_raw).evaluation_contract())
    assert [list(s.feature_keys) for s in ec.slicing_specs] == [[], ["payment_type"], ["trip_start_hour"], ["company"],
                                                                 ["payment_type", "trip_start_day"]]
    metrics = {m.class_name: m for m in ec.metrics_specs[0].metrics}
    assert {"MeanAbsoluteError", "RootMeanSquaredError", "Huber", "RSquared", "ExampleCount", "CalibrationPlot"} <= set(metrics)
    assert metrics["Huber"].module == "sluice.components.evaluation_metrics" and '"delta": 2.0' in metrics["Huber"].config
    overall, per_slice = metrics["MeanAbsoluteError"].per_slice_thresholds
    assert [list(s.feature_keys) for s in overall.slicing_specs] == [[]]
    assert overall.threshold.value_threshold.upper_bound.value == 4.0
    assert overall.threshold.change_threshold.absolute.value == 0.25
    assert len(per_slice.slicing_specs) == 4 and per_slice.threshold.value_threshold.upper_bound.value == 8.0
    assert ec.model_specs[0].preprocessing_function_names == ["transform_features"]


def test_classification_gets_pr_auc_calibration_and_confusion_matrices():
    raw = yaml.safe_load((CONFIGS / "taxi_tips.yaml").read_text())
    ec = build_eval_config(parse_config(raw, base_dir=str(CONFIGS)).evaluation_contract())
    metrics = {m.class_name: m for m in ec.metrics_specs[0].metrics}
    assert {"AUC", "AUCPrecisionRecall", "Calibration", "CalibrationPlot", "ConfusionMatrixAtThresholds"} <= set(metrics)
    assert "0.3, 0.5, 0.7" in metrics["ConfusionMatrixAtThresholds"].config
    auc = metrics["AUC"].per_slice_thresholds[0].threshold.change_threshold
    assert auc.absolute.value == -0.01  # higher is better: may drop by at most 0.01


def test_config_rejects_slice_thresholds_without_slices(fare_raw):
    from sluice.pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="needs evaluation.slices"):
        _cfg(fare_raw, slices=[])


def test_small_slices_are_reported_not_gated():
    failures = [
        {"slice": OVERALL, "metric": "mae"},
        {"slice": "company=Big", "metric": "mae"},
        {"slice": "company=Tiny", "metric": "mae"},
        {"slice": "company=Unknown", "metric": "mae"},
    ]
    sizes = {OVERALL: 3.0, "company=Big": 50.0, "company=Tiny": 49.0}
    gating, exempt = gate_failures(failures, sizes, min_slice_size=50)
    assert [f["slice"] for f in gating] == [OVERALL, "company=Big"]  # overall gates however small the data
    assert [f["slice"] for f in exempt] == ["company=Tiny", "company=Unknown"]
    assert slice_spec("payment_type=Cash, trip_start_day=3") == "payment_type × trip_start_day"


def test_evaluation_page_explains_the_verdict():
    from sluice.pipeline.evaluation_report import render

    slices = {
        OVERALL: {"size": 600.0, "candidate": {"mae": 5.1, "example_count": 600.0}, "baseline": {"mae": 1.9},
                  "change": {"mae": 3.2}},
        "payment_type=Cash": {"size": 300.0, "candidate": {"mae": 6.0}, "baseline": {"mae": 2.0}, "change": {"mae": 4.0}},
        "payment_type=<b>": {"size": 3.0, "candidate": {"mae": 30.0}, "baseline": {}, "change": {}},
    }
    verdict = {"blessed": False, "slices": slices,
               "failures": [{"slice": OVERALL, "metric": "mae", "is_change": True, "value": 3.2, "candidate": 5.1,
                             "baseline": 1.9, "message": "change too large", "size": 600.0}],
               "exempt_failures": [{"slice": "payment_type=<b>", "metric": "mae", "is_change": False, "value": 30.0,
                                    "candidate": 30.0, "baseline": None, "message": "over", "size": 3.0}]}
    page = render(verdict, {"thresholds": [{"metric": "mae"}], "min_slice_size": 50, "report_top_k": 5},
                  [(10.0, 11.0, 5.0), (20.0, 19.0, 3.0)])
    assert "NOT BLESSED" in page and "change too large" in page and "not gated" in page
    assert "payment_type=&lt;b&gt;" in page and "<b>" not in page.replace("<body>", "")  # escaped
    assert page.count("<svg") == 3 and "<script" not in page and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_failed_threshold_is_said_in_words_from_tfmas_proto():
    import tensorflow_model_analysis as tfma
    from google.protobuf import text_format

    from sluice.components.evaluation import threshold_bounds
    from sluice.pipeline.report import describe_rule

    def failure(text, **extra):
        return {**threshold_bounds(text_format.Parse(text, tfma.MetricThreshold())), **extra}

    value = failure("value_threshold { upper_bound { value: 8.0 } }", value=10.0)
    both = failure("value_threshold { lower_bound { value: 0.5 } upper_bound { value: 1e-3 } }", value=2.0)
    change = failure("value_threshold { upper_bound { value: 4.0 } } change_threshold { direction: "
                     "LOWER_IS_BETTER absolute { value: 0.25 } }", value=3.1, is_change=True)
    drop = failure("change_threshold { direction: HIGHER_IS_BETTER absolute { value: -0.01 } }", value=-0.2,
                   is_change=True)
    assert describe_rule(value) == "must be ≤ 8"
    assert describe_rule(both) == "must be ≥ 0.5 and ≤ 0.001"
    assert describe_rule(change) == "change +3.1 vs baseline, allowed +0.25"
    assert describe_rule(drop) == "change -0.2 vs baseline, allowed -0.01"
    assert describe_rule({"message": "odd", "value": 1.0}) == "odd"


def test_a_baseline_that_is_the_candidate_itself_is_not_evaluated_twice():
    from tfx.types import standard_artifacts

    from sluice.components.evaluator import without_self_baseline

    def model(uri, id_):
        m = standard_artifacts.Model()
        m.uri, m.id = uri, id_
        return m

    same = {"model": [model("/out/Trainer/model/7", 7)], "baseline_model": [model("/out/Trainer/model/7/", 7)],
            "examples": ["e"]}
    inputs, itself = without_self_baseline(same)
    assert itself and inputs["baseline_model"] == [] and inputs["examples"] == ["e"] and same["baseline_model"]
    other = {"model": [model("/out/Trainer/model/9", 9)], "baseline_model": [model("/out/Trainer/model/7", 7)]}
    assert without_self_baseline(other) == (other, False)
    first = {"model": [model("/m", 1)], "baseline_model": []}
    assert without_self_baseline(first) == (first, False)
