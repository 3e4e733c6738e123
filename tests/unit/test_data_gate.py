"""DataGate's decision logic on hand-made anomalies (no pipeline run)."""

from __future__ import annotations

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2

import pytest

from sluice.components.contracts import GateContract
from sluice.components.settings import ValidationConfig

from sluice.components.data_gate import (
    Finding,
    comparator_schema,
    decide,
    decile_jsd,
    findings_from_anomalies,
    render_message,
    threshold_for,
)

SCHEMA = text_format.Parse(
    """
    feature { name: "fare" type: FLOAT float_domain { min: 0 } presence { min_fraction: 1 } }
    feature { name: "payment_type" type: BYTES domain: "payment_type" }
    feature { name: "hour" type: INT int_domain { min: 0 max: 23 } }
    string_domain { name: "payment_type" value: "Cash" value: "Credit Card" }
    """,
    schema_pb2.Schema(),
)

ANOMALIES = text_format.Parse(
    """
    anomaly_info {
      key: "payment_type"
      value {
        severity: ERROR
        reason { type: ENUM_TYPE_UNEXPECTED_STRING_VALUES description: "Examples contain values missing from the schema: Crypto (~50%)." }
      }
    }
    anomaly_info {
      key: "hour"
      value { severity: WARNING reason { type: INT_TYPE_BIG_INT description: "Unexpectedly large value: 99." } }
    }
    """,
    anomalies_pb2.Anomalies(),
)


def test_findings_carry_feature_type_severity_and_expectation():
    findings = findings_from_anomalies(ANOMALIES, "train", SCHEMA)
    by = {f.feature: f for f in findings}
    assert by["payment_type"].anomaly == "ENUM_TYPE_UNEXPECTED_STRING_VALUES"
    assert by["payment_type"].severity == "ERROR"
    assert "one of Cash, Credit Card" in by["payment_type"].expected
    assert by["hour"].expected == "INT, in [0, 23]"


def test_severity_floor_and_allow_list():
    findings = findings_from_anomalies(ANOMALIES, "train", SCHEMA)
    assert [f.feature for f in decide(findings, ValidationConfig(fail_on="error"))] == ["payment_type"]
    assert {f.feature for f in decide(findings, ValidationConfig(fail_on="warning"))} == {"payment_type", "hour"}
    allow = [{"feature": "payment_type", "anomaly": "ENUM_TYPE_UNEXPECTED_STRING_VALUES"}]
    assert decide(findings, ValidationConfig.model_validate({"fail_on": "error", "allow": allow})) == []
    assert next(f for f in findings if f.feature == "payment_type").allowed


def test_message_fits_one_screen_and_names_the_report():
    many = [Finding("train", f"f{i}", "X", "ERROR", "bad", "FLOAT") for i in range(30)]
    message = render_message(many, "/out/report.html")
    lines = message.splitlines()
    assert len(lines) <= 24
    assert "and 22 more" in message and "/out/report.html" in message and "validation.allow" in message


GATE = GateContract.model_validate({
    "validation": {
        "skew": {"categorical_linf": 0.1, "numeric_jsd": 0.2},
        "drift": {"categorical_linf": 0.3, "numeric_jsd": None},
        "comparators": {"fare": {"drift": 0.5}, "payment_type": {"skew": 0.05}},
    },
    "columns": {"fare": "numeric", "payment_type": "categorical", "hour": "numeric", "absent": "numeric"},
})


def test_thresholds_by_column_kind_with_overrides():
    assert threshold_for(GATE, "payment_type", "skew") == 0.05  # per-column override
    assert threshold_for(GATE, "payment_type", "drift") == 0.3
    assert threshold_for(GATE, "fare", "skew") == 0.2
    assert threshold_for(GATE, "fare", "drift") == 0.5
    assert threshold_for(GATE, "hour", "drift") is None  # numeric drift off, no override


def test_tfdv_comparators_only_on_string_columns():
    schema = comparator_schema(SCHEMA, GATE)
    by = {f.name: f for f in schema.feature}
    assert by["payment_type"].skew_comparator.infinity_norm.threshold == 0.05
    assert by["payment_type"].drift_comparator.infinity_norm.threshold == 0.3
    assert not by["fare"].HasField("skew_comparator")  # numeric: decile JSD, computed by the gate
    assert not SCHEMA.feature[1].HasField("skew_comparator")  # the curated schema itself is untouched


def _deciles(values):
    import numpy as np

    qs = np.quantile(np.asarray(values, float), np.linspace(0, 1, 11))
    return [(qs[i], qs[i + 1], len(values) / 10) for i in range(10)]


def test_decile_jsd_is_zero_for_the_same_data_and_large_for_a_scaled_one():
    import numpy as np

    rng = np.random.default_rng(0)
    fares = np.concatenate([rng.lognormal(2.2, 0.6, 5000), [700.0]])  # one far-off value, as in the taxi data
    half_a, half_b = fares[::2], fares[1::2]
    assert decile_jsd(_deciles(fares), _deciles(fares)) == pytest.approx(0.0, abs=1e-9)
    assert decile_jsd(_deciles(half_a), _deciles(half_b)) < 0.02
    assert decile_jsd(_deciles(fares), _deciles(fares * 10)) > 0.5
    assert 0.0 <= decile_jsd(_deciles(fares), _deciles(fares + 1000)) <= 1.0


def test_decile_jsd_sees_a_shifted_constant_and_a_flipped_flag():
    import numpy as np

    assert decile_jsd(_deciles(np.full(1000, 5.0)), _deciles(np.full(1000, 10.0))) == pytest.approx(1.0)
    assert decile_jsd(_deciles(np.full(1000, 5.0)), _deciles(np.full(1000, 3.0))) == pytest.approx(1.0)  # down too
    assert decile_jsd(_deciles(np.array([0.0] * 500 + [1.0] * 500)), _deciles(np.full(1000, -1.0))) > 0.9
    assert decile_jsd(_deciles(np.full(1000, 5.0)), _deciles(np.full(1000, 5.0))) == pytest.approx(0.0, abs=1e-9)
    rare = np.array([0.0] * 900 + [1.0] * 100)  # a 0/1 flag set on 10 % of rows, then on 90 %
    assert decile_jsd(_deciles(rare), _deciles(1 - rare)) > 0.3
    assert decile_jsd(_deciles(rare), _deciles(rare)) == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(1)
    days = rng.integers(1, 8, 4000).astype(float)  # a weekday column: two random halves stay close
    assert decile_jsd(_deciles(days[::2]), _deciles(days[1::2])) < 0.05


# ------------------------------------------------------------------ columns TFDV lets through (real TFDV stats)
def _stats(columns):
    """TFDV statistics of a DataFrame built from ``columns`` (as CsvExampleGen's examples would give)."""
    import pandas as pd
    import tensorflow_data_validation as tfdv

    return tfdv.generate_statistics_from_dataframe(pd.DataFrame(columns))


CONTENT_GATE = GateContract.model_validate({
    "validation": {}, "label": "fare",
    "columns": {"fare": "numeric", "payment_type": "categorical", "miles": "numeric", "lat": "numeric"},
})
ROWS = 200


def _good(**override):
    columns = {
        "fare": [5.0 + i % 37 for i in range(ROWS)],
        "payment_type": ["Cash" if i % 3 else "Credit Card" for i in range(ROWS)],
        "miles": [0.5 * (i % 11) for i in range(ROWS)],
        "lat": [41.8 + 0.001 * (i % 13) for i in range(ROWS)],
    }
    columns.update(override)
    return {k: v for k, v in columns.items() if v is not None}


def _kinds(findings):
    return {(f.feature, f.anomaly) for f in findings}


def test_good_columns_raise_nothing():
    from sluice.components.data_gate import content_findings

    assert content_findings(CONTENT_GATE, "train", _stats(_good())) == []
    assert content_findings(CONTENT_GATE, "eval", _stats(_good()), baseline=_stats(_good())) == []


@pytest.mark.parametrize("override,expected", [
    ({"fare": [10.0] * ROWS}, {("fare", "LABEL_CONSTANT")}),                        # r² = nan, was blessed
    ({"payment_type": ["Cash"] * ROWS}, {("payment_type", "FEATURE_CONSTANT")}),
    ({"miles": [2.0] * ROWS}, {("miles", "FEATURE_CONSTANT")}),
    ({"lat": [float("nan")] * ROWS}, {("lat", "COLUMN_EMPTY")}),                     # optional, empty everywhere
    ({"lat": None}, {("lat", "COLUMN_EMPTY")}),                                       # absent from the stats
    ({"fare": [float("nan")] * ROWS}, {("fare", "COLUMN_EMPTY")}),
])
def test_columns_tfdv_accepts_are_stopped(override, expected):
    from sluice.components.data_gate import content_findings

    found = content_findings(CONTENT_GATE, "train", _stats(_good(**override)))
    assert _kinds(found) == expected
    assert all(f.severity == "ERROR" and decide([f], ValidationConfig()) == [f] for f in found)


def test_a_column_with_one_value_but_some_rows_missing_is_not_constant():
    """Present vs missing varies (an optional feature's missing indicator learns from it)."""
    from sluice.components.data_gate import content_findings

    lat = [41.9 if i % 4 else float("nan") for i in range(ROWS)]
    assert content_findings(CONTENT_GATE, "train", _stats(_good(lat=lat))) == []


def test_a_column_the_last_passed_run_had_has_vanished_and_can_be_allowed():
    from sluice.components.data_gate import content_findings

    found = content_findings(CONTENT_GATE, "train", _stats(_good(lat=None)), baseline=_stats(_good()))
    assert _kinds(found) == {("lat", "COLUMN_VANISHED")}
    allow = ValidationConfig.model_validate({"allow": [{"feature": "lat", "anomaly": "COLUMN_VANISHED", "why": "sensor retired"}]})
    assert decide(found, allow) == [] and found[0].allowed


def test_features_are_judged_on_train_the_label_on_every_split():
    from sluice.components.data_gate import content_findings

    one_value = _stats(_good(miles=[2.0] * ROWS, fare=[10.0] * ROWS))
    assert _kinds(content_findings(CONTENT_GATE, "eval", one_value)) == {("fare", "LABEL_CONSTANT")}
    derived = CONTENT_GATE.model_copy(update={"label": None})  # a derived label's raw columns are features
    assert _kinds(content_findings(derived, "train", one_value)) == {("fare", "FEATURE_CONSTANT"),
                                                                      ("miles", "FEATURE_CONSTANT")}


def test_statistics_section_is_offline_and_shows_every_split():
    """Issue 17: the statistics section was blank offline (TFDV's Facets view loads its scripts from the web)."""
    from sluice.components import stats_view

    train, eval_ = _stats(_good()), _stats(_good(lat=[float("nan")] * ROWS, payment_type=["Cash"] * ROWS))
    page = stats_view.render({"train": train, "eval": eval_, "last passed run (train)": None},
                             columns=["fare", "payment_type", "miles", "lat", "gone"])
    assert "<script" not in page and "http" not in page and "<link" not in page
    for name in ("fare", "payment_type", "miles", "lat", "gone"):
        assert f"<code>{name}</code>" in page
    assert "train (200 rows)" in page and "eval (200 rows)" in page
    assert "empty in every row" in page and "one value in every row" in page and "absent" in page
    assert 'class="hist"' in page and "median" in page and "Credit Card" in page


@pytest.mark.parametrize("labels,classes,found", [
    (["a", "b", "c"] * 60, ["a", "b", "c"], None),
    (["a", "b", "c"] * 59 + ["a", "b", "typo"], ["a", "b", "c"], "typo"),   # one stray value in 180 rows
    ([0, 1, 2] * 60, ["0", "1", "2"], None),
    ([0, 1, 2] * 59 + [0, 1, 3], ["0", "1", "2"], "3"),                       # an integer class beyond the last
    ([0, 1, 2] * 59 + [-1, 1, 2], ["0", "1", "2"], "-1"),
])
def test_a_multiclass_label_outside_its_classes_stops_the_gate(labels, classes, found):
    """Transform would turn such a label into class id -1: the gate names the value instead."""
    from sluice.components.data_gate import LABEL_UNKNOWN_CLASS, content_findings

    gate = GateContract.model_validate({"validation": {}, "label": "y", "label_classes": classes,
                                        "columns": {"y": "categorical", "x": "numeric"}})
    stats = _stats({"y": labels, "x": [0.1 * i for i in range(len(labels))]})
    findings = [f for f in content_findings(gate, "train", stats) if f.anomaly == LABEL_UNKNOWN_CLASS]
    if found is None:
        assert findings == []
    else:
        assert len(findings) == 1 and found in findings[0].description and "task.classes" in findings[0].expected
