"""DataGate's decision logic on hand-made anomalies (no pipeline run)."""

from __future__ import annotations

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2

from sluice.components.data_gate import (
    Finding,
    comparator_schema,
    decide,
    findings_from_anomalies,
    render_message,
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
    assert [f.feature for f in decide(findings, {"fail_on": "error"})] == ["payment_type"]
    assert {f.feature for f in decide(findings, {"fail_on": "warning"})} == {"payment_type", "hour"}
    allow = [{"feature": "payment_type", "anomaly": "ENUM_TYPE_UNEXPECTED_STRING_VALUES"}]
    assert decide(findings, {"fail_on": "error", "allow": allow}) == []
    assert next(f for f in findings if f.feature == "payment_type").allowed


def test_message_fits_one_screen_and_names_the_report():
    many = [Finding("train", f"f{i}", "X", "ERROR", "bad", "FLOAT") for i in range(30)]
    message = render_message(many, "/out/report.html")
    lines = message.splitlines()
    assert len(lines) <= 24
    assert "and 22 more" in message and "/out/report.html" in message and "validation.allow" in message


def test_comparators_by_column_kind_with_overrides():
    gate = {
        "validation": {
            "skew": {"categorical_linf": 0.1, "numeric_jsd": 0.2},
            "drift": {"categorical_linf": 0.3, "numeric_jsd": None},
            "comparators": {"fare": {"drift": 0.5}},
        },
        "columns": {"fare": "numeric", "payment_type": "categorical", "hour": "numeric", "absent": "numeric"},
    }
    schema = comparator_schema(SCHEMA, gate)
    by = {f.name: f for f in schema.feature}
    assert by["payment_type"].skew_comparator.infinity_norm.threshold == 0.1
    assert by["payment_type"].drift_comparator.infinity_norm.threshold == 0.3
    assert by["fare"].skew_comparator.jensen_shannon_divergence.threshold == 0.2
    assert by["fare"].drift_comparator.jensen_shannon_divergence.threshold == 0.5  # per-column override
    assert not by["hour"].HasField("drift_comparator")  # numeric drift disabled, no override
    assert not SCHEMA.feature[0].HasField("skew_comparator")  # the curated schema itself is untouched
