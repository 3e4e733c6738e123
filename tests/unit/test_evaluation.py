"""Model analysis pieces without a pipeline: sluice's TFMA metrics equal the Trainer's, the EvalConfig says
what the config says, the min-slice-size rule, and the evaluation page and summary lines."""

from __future__ import annotations

import copy
import json

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


def test_multiclass_gets_tfma_multiclass_metrics_gated_on_the_macro_average_only():
    raw = yaml.safe_load((CONFIGS / "wine.yaml").read_text())
    ec = build_eval_config(parse_config(raw, base_dir=str(CONFIGS)).evaluation_contract())
    assert ec.model_specs[0].prediction_key == "outputs"  # the probabilities, not the class names
    main, macro, per_class = ec.metrics_specs
    names = {m.class_name: m for m in main.metrics}
    assert {"SparseCategoricalAccuracy", "SparseCategoricalCrossentropy", "MultiClassConfusionMatrixPlot",
            "Guards"} <= set(names)
    assert '"classes": 3' in names["Guards"].config
    assert macro.aggregate.macro_average and dict(macro.aggregate.class_weights) == {0: 1.0, 1: 1.0, 2: 1.0}
    assert not macro.HasField("binarize")  # else the macro thresholds would gate every class too
    gated = {json.loads(m.config)["name"]: m for m in macro.metrics}
    assert set(gated) == {"macro_auc"} and gated["macro_auc"].class_name == "AUC"
    assert gated["macro_auc"].per_slice_thresholds
    assert names["MacroRecall"].per_slice_thresholds and '"classes": 3' in names["MacroRecall"].config
    assert names["PerClassTopOne"].module == "sluice.components.evaluation_metrics"
    assert list(per_class.binarize.class_ids.values) == [0, 1, 2]
    assert all(not m.per_slice_thresholds for m in per_class.metrics)


def _combine(metric, labels, predictions):
    """``metric``'s combiner run the way Beam would (split in three, merged): its output by MetricKey."""
    from tensorflow_model_analysis.metrics import metric_types

    combiner = metric.computations(model_names=[""], output_names=[""])[0].combiner
    accumulators = []
    for part in np.array_split(np.arange(len(labels)), 3):
        acc = combiner.create_accumulator()
        for i in part:
            acc = combiner.add_input(acc, metric_types.StandardMetricInputs(
                labels=np.array([labels[i]]), predictions=np.array([predictions[i]]), example_weights=np.array([1.0])))
        accumulators.append(acc)
    return combiner.extract_output(combiner.merge_accumulators(accumulators))


def _top_one(metric, labels, probabilities, **kw):
    """A top-one metric's values by read_slices' names."""
    from sluice.components import evaluation_metrics as em

    out = _combine(getattr(em, metric)(**kw), labels, probabilities)
    return {(f"{k.name}[{k.sub_key.class_id}]" if k.sub_key else k.name): v for k, v in out.items()}


def test_multiclass_precision_and_recall_are_the_most_probable_classes_as_sklearn_counts():
    from sklearn.metrics import precision_score, recall_score

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, 400)
    probs = rng.dirichlet(np.ones(4), 400) * 0.6 + 0.4 * np.eye(4)[labels] * (rng.random((400, 1)) > 0.4)
    probs /= probs.sum(axis=1, keepdims=True)
    assert (probs.max(axis=1) < 0.5).mean() > 0.2  # many right answers below 0.5: a 0.5 cut-off would miss them
    top = probs.argmax(axis=1)
    got = _top_one("PerClassTopOne", labels, probs, classes=4)
    np.testing.assert_allclose([got[f"precision[{i}]"] for i in range(4)], precision_score(labels, top, average=None))
    np.testing.assert_allclose([got[f"recall[{i}]"] for i in range(4)], recall_score(labels, top, average=None))
    assert _top_one("MacroRecall", labels, probs, classes=4)["macro_recall"] == pytest.approx(
        recall_score(labels, top, average="macro"))
    assert _top_one("MacroPrecision", labels, probs, classes=4)["macro_precision"] == pytest.approx(
        precision_score(labels, top, average="macro"))
    # A slice holding two of the four classes: the macro averages run over those two, not NaN.
    two = labels < 2
    sliced = _top_one("MacroRecall", labels[two], probs[two], classes=4)["macro_recall"]
    assert sliced == pytest.approx(np.mean([np.mean(top[two & (labels == c)] == c) for c in (0, 1)]))
    # A slice of class 0 only, answered class 1 for 60 rows: those are wrong answers, precision counts them.
    only = np.zeros(100, int)
    answers = np.eye(4)[np.r_[np.ones(60, int), np.zeros(40, int)]] * 0.7 + 0.075
    assert _top_one("MacroPrecision", only, answers, classes=4)["macro_precision"] == pytest.approx(
        precision_score(only, answers.argmax(axis=1), average="macro", zero_division=0))
    assert _top_one("MacroPrecision", only, answers, classes=4)["macro_precision"] == pytest.approx(0.5)


def test_multiclass_guards_equal_numpy_and_catch_the_class_prior():
    from sluice.components.evaluation import guard_failures

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + 2.0 * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    guard = _guards("multiclass_classification", labels, probs, classes=3)
    assert guard["model_log_loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(300), labels])), rel=1e-9)
    prior = np.bincount(labels) / 300
    assert guard["prior_log_loss"] == pytest.approx(-(prior * np.log(prior)).sum(), rel=1e-9)
    assert guard_failures(_slices({}, guard), {}, 50, "multiclass_classification") == []
    constant = _guards("multiclass_classification", labels, np.tile(prior, (300, 1)), classes=3)
    failed = {f["metric"] for f in guard_failures(_slices({}, constant), {}, 50, "multiclass_classification")}
    assert failed == {"prediction_stddev", "trivial_baseline"}  # the prior itself beats nothing
    shuffled = _guards("multiclass_classification", labels, probs[rng.permutation(300)], classes=3)
    failed = guard_failures(_slices({}, shuffled), {}, 50, "multiclass_classification")
    assert [f["metric"] for f in failed] == ["trivial_baseline"] and "class frequencies" in failed[0]["message"]
    outside = _guards("multiclass_classification", np.array([0, 1, 7, -1]), np.tile([0.2, 0.3, 0.5], (4, 1)), classes=3)
    assert outside["model_log_loss"] == pytest.approx(-np.log([0.2, 0.3]).mean())  # ids outside 0..K-1 skipped


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


# ------------------------------------------------------------------------------- guards behind TFMA's thresholds
def _guards(task, labels, predictions, **kw):
    """The Guards combiner's values as ``read_slices`` files them."""
    from sluice.components.evaluation_metrics import GUARD_PREFIX, Guards

    out = _combine(Guards(task=task, **kw), labels, predictions)
    return {k.name[len(GUARD_PREFIX):]: v for k, v in out.items()}


def _slices(candidate, guard, size=300.0, **feature_slices):
    slices = {OVERALL: {"size": size, "candidate": candidate, "baseline": {}, "change": {}, "guard": guard}}
    for name, (n, values) in feature_slices.items():
        slices[name] = {"size": n, "candidate": values, "baseline": {}, "change": {}, "guard": {}}
    return slices


def test_guard_values_equal_numpy():
    from sklearn.metrics import roc_auc_score

    g = _guards("regression", LABELS, PREDICTIONS)
    assert g["model_mse"] == pytest.approx(np.mean((LABELS - PREDICTIONS) ** 2), rel=1e-9)
    assert g["mean_predictor_mse"] == pytest.approx(np.var(LABELS), rel=1e-9)
    assert g["prediction_stddev"] == pytest.approx(np.std(PREDICTIONS), rel=1e-6)
    y = (LABELS > 12).astype(float)
    p = 1 / (1 + np.exp(-(PREDICTIONS - 12) / 4))
    assert _guards("binary_classification", y, p)["auc"] == pytest.approx(roc_auc_score(y, p), abs=2e-3)
    assert "model_mse" not in _guards("regression", LABELS, PREDICTIONS, beat_mean=False)


@pytest.mark.parametrize("case,task,labels,predictions,metric", [
    # the reproduction: fare = 10.0 everywhere, r_squared = nan was BLESSED
    ("constant label", "regression", np.full(300, 10.0), np.full(300, 10.0) + RNG.normal(0, 0.1, 300), "trivial_baseline"),
    ("constant predictions", "regression", LABELS, np.full(300, 12.0), "prediction_stddev"),
    ("worse than the mean", "regression", LABELS, LABELS.mean() + RNG.normal(0, 8.0, 300), "trivial_baseline"),
    ("anti-ranking", "binary_classification", (LABELS > 12).astype(float), 1 / (1 + np.exp(LABELS - 12)), "trivial_baseline"),
    ("the prior itself", "binary_classification", (LABELS > 12).astype(float), np.full(300, 0.4), "prediction_stddev"),
])
def test_models_no_better_than_trivial_are_never_blessed(case, task, labels, predictions, metric):
    from sluice.components.evaluation import guard_failures

    failures = guard_failures(_slices({}, _guards(task, labels, predictions)), {}, 50, task)
    assert metric in {f["metric"] for f in failures}, case
    assert all(f["message"] and f["slice"] == OVERALL for f in failures)


def test_a_useful_model_passes_the_guards():
    from sluice.components.evaluation import guard_failures

    assert guard_failures(_slices({}, _guards("regression", LABELS, PREDICTIONS)), {}, 50, "regression") == []
    y = (LABELS > 12).astype(float)
    guard = _guards("binary_classification", y, 1 / (1 + np.exp(-(PREDICTIONS - 12) / 4)))
    assert guard_failures(_slices({}, guard), {}, 50, "binary_classification") == []


def test_nan_inf_or_missing_gated_metrics_never_pass():
    from sluice.components.evaluation import guard_failures

    gated = {"r_squared": [OVERALL], "mae": ["payment_type"]}
    slices = _slices({"r_squared": float("nan"), "mae": 1.0}, {}, **{
        "payment_type=Cash": (300.0, {"mae": float("inf")}),
        "payment_type=Tiny": (3.0, {"mae": float("nan")}),     # under min_slice_size: exempt as for thresholds
        "payment_type=Card": (300.0, {}),                      # the gated metric is absent
        "company=X": (300.0, {"mae": float("nan")}),           # not a gated spec
    })
    failures = guard_failures(slices, gated, 50, "")  # "": no Guards metric configured, the NaN rule alone
    assert {(f["slice"], f["metric"]) for f in failures} == {
        (OVERALL, "r_squared"), ("payment_type=Cash", "mae"), ("payment_type=Card", "mae")}
    assert all(f["candidate"] is None for f in failures)  # no NaN reaches the JSON verdict


def test_eval_config_carries_the_guards_and_what_is_gated(fare_raw):
    import json

    from sluice.components.evaluation import gated_metrics

    eval_config = build_eval_config(_cfg(fare_raw).evaluation_contract())
    guards = [m for s in eval_config.metrics_specs for m in s.metrics if m.class_name == "Guards"]
    assert len(guards) == 1 and json.loads(guards[0].config) == {"task": "regression", "beat_mean": True, "classes": 0}
    gated = gated_metrics(eval_config)
    assert OVERALL in gated["mean_absolute_error"] and "payment_type" in gated["mean_absolute_error"]


def test_guards_that_measured_nothing_do_not_pass():
    from sluice.components.evaluation import guard_failures

    failures = guard_failures(_slices({"mae": 1.0}, {}), {}, 50, "regression")
    assert [f["metric"] for f in failures] == ["guards"]
    assert guard_failures({}, {}, 50, "binary_classification")[0]["metric"] == "guards"


def test_rare_event_ranking_is_resolved_on_the_logit_scale():
    """All scores below 0.001 (a rare-event model): linear bins would put them in one bucket (AUC 0.5)."""
    from sklearn.metrics import roc_auc_score

    from sluice.components.evaluation import guard_failures

    y = (RNG.uniform(size=2000) < 0.05).astype(float)
    p = 1e-5 * np.exp(2.0 * y + RNG.normal(0, 1, 2000))
    guard = _guards("binary_classification", y, p)
    assert guard["auc"] == pytest.approx(roc_auc_score(y, p), abs=5e-3) and guard["auc"] > 0.8
    assert guard_failures(_slices({}, guard), {}, 50, "binary_classification") == []
