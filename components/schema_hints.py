"""Which line of the curated schema a data anomaly is about, and what to change there.

When the data is right and the schema is too strict (a draft that did not expect empty cells, a domain drawn
from an older extract), the gate's screen must point at the schema, not only at the data. ImportSchemaGen
copies the curated file unchanged, so a line number in the schema artifact is the line in the user's file.
Pure functions; protobuf only.
"""

from __future__ import annotations

import re
from typing import Optional

from google.protobuf import text_encoding

# TFDV anomaly type -> the schema change that accepts the data, when the data is right.
SCHEMA_CHANGES = {
    "FEATURE_TYPE_LOW_NUMBER_VALUES": "the column has empty cells: if they are expected, set "
                                      "`value_count { min: 0 max: 1 }` and `presence { min_count: 0 }` "
                                      "(and `optional: true` for the feature in the config)",
    "FEATURE_TYPE_LOW_FRACTION_PRESENT": "lower its `presence { min_fraction }` if rows may lack the column",
    "FEATURE_TYPE_LOW_NUMBER_PRESENT": "lower its `presence { min_count }` if rows may lack the column",
    "FEATURE_TYPE_NOT_PRESENT": "the column is absent: set `presence { min_count: 0 }` if it may be",
    "FEATURE_TYPE_HIGH_NUMBER_VALUES": "raise its `value_count { max }` if a cell may hold several values",
    "INT_TYPE_SMALL_INT": "lower its `int_domain { min }` if the smaller values are valid",
    "INT_TYPE_BIG_INT": "raise its `int_domain { max }` if the larger values are valid",
    "FLOAT_TYPE_SMALL_FLOAT": "lower its `float_domain { min }` if the smaller values are valid",
    "FLOAT_TYPE_BIG_FLOAT": "raise its `float_domain { max }` if the larger values are valid",
    "ENUM_TYPE_UNEXPECTED_STRING_VALUES": "add the new values to its string domain if they are valid",
    "UNEXPECTED_DATA_TYPE": "change its `type` if the column's type changed on purpose",
    "SCHEMA_MISSING_COLUMN": "the column is gone: set `presence { min_count: 0 }`, or remove the feature",
}
NEW_COLUMN = "SCHEMA_NEW_COLUMN"


def schema_line(schema_text: str, feature: str) -> Optional[int]:
    """The 1-based line of ``name: "<feature>"`` in a schema text proto (names may be escaped there)."""
    spellings = {feature, text_encoding.CEscape(feature.encode("utf-8"), as_utf8=False),
                 text_encoding.CEscape(feature.encode("utf-8"), as_utf8=True)}
    pattern = re.compile(r'^\s*name:\s*"(.*)"\s*$')
    for number, line in enumerate(schema_text.splitlines(), start=1):
        match = pattern.match(line)
        if match and match.group(1) in spellings:
            return number
    return None


def schema_change(schema_text: str, feature: str, anomaly: str) -> str:
    """``"line 132: <what to change>"`` for an anomaly the schema can accept; ``""`` when none applies."""
    if anomaly == NEW_COLUMN:
        escaped = text_encoding.CEscape(feature.encode("utf-8"), as_utf8=True)
        return f'not in the schema: add a `feature {{ name: "{escaped}" … }}` block if the column is meant to be there'
    change = SCHEMA_CHANGES.get(anomaly)
    if change is None:
        return ""
    line = schema_line(schema_text, feature)
    return f"line {line}: {change}" if line else change
