"""Curated-schema helpers: the shipped schema parses and describes the configs; diff finds departures."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from sluice.pipeline.config import load_config
from sluice.pipeline.errors import ConfigError
from sluice.pipeline.schema import check_schema_columns, diff_schemas, load_schema
from tests.helpers import CONFIGS, SCHEMA


def test_shipped_schema_describes_every_config_column():
    for name in ("taxi_fare", "taxi_tips"):
        cfg = load_config(CONFIGS / f"{name}.yaml")
        check_schema_columns(cfg.schema_file, cfg.raw_columns())


def test_shipped_schema_has_environments_and_label_excluded_at_serving():
    schema = load_schema(SCHEMA)
    assert set(schema.default_environment) == {"TRAINING", "SERVING"}
    tips = next(f for f in schema.feature if f.name == "tips")
    assert list(tips.not_in_environment) == ["SERVING"]
    payment = next(f for f in schema.feature if f.name == "payment_type")
    assert payment.distribution_constraints.min_domain_mass == pytest.approx(0.99)


def test_unknown_column_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'trip_miles'"):
        check_schema_columns(SCHEMA, ["trip_mile"])
    bad = tmp_path / "s.pbtxt"
    bad.write_text("feature { name: ")
    with pytest.raises(ConfigError, match="not a valid schema"):
        load_schema(bad)


def test_diff_reports_type_presence_domain_and_membership():
    curated = text_format.Parse(
        """
        feature { name: "a" type: FLOAT presence { min_fraction: 1 } float_domain { min: 0 } }
        feature { name: "b" type: INT }
        feature { name: "only_curated" type: INT }
        """, schema_pb2.Schema())
    inferred = text_format.Parse(
        """
        feature { name: "a" type: FLOAT presence { min_fraction: 1 } }
        feature { name: "b" type: BYTES presence { min_fraction: 1 } }
        feature { name: "only_data" type: INT }
        """, schema_pb2.Schema())
    rows = {(r[0], r[1]): r for r in diff_schemas(curated, inferred)}
    assert rows[("a", "domain")][2] == "float [0, ]"
    assert rows[("b", "type")][2:] == ("INT", "BYTES")
    assert rows[("b", "required")][2:] == ("False", "True")
    assert rows[("only_curated", "feature")][3] == "absent from the data"
    assert "present in the data" in rows[("only_data", "feature")][3]


def test_schema_hints_name_the_line_and_escape_names():
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    from sluice.components.schema_hints import schema_change, schema_line

    schema = schema_pb2.Schema()
    for name in ("fare", "compañía", 'say "hi"'):
        schema.feature.add(name=name, type=schema_pb2.FLOAT)
    for as_utf8 in (True, False):  # TFDV writes octal escapes; `sluice schema infer` writes UTF-8
        text = "# comment\n" + text_format.MessageToString(schema, as_utf8=as_utf8)
        lines = text.splitlines()
        for name in ("fare", "compañía", 'say "hi"'):
            number = schema_line(text, name)
            assert number and "name:" in lines[number - 1]
        assert schema_change(text, "compañía", "FEATURE_TYPE_LOW_NUMBER_VALUES").startswith(
            f"line {schema_line(text, 'compañía')}: the column has empty cells")
    assert schema_change("", 'a"b', "SCHEMA_NEW_COLUMN").count('\\"') == 1
    assert schema_change("", "x", "COMPARATOR_L_INFTY_HIGH") == ""
