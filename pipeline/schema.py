"""The curated schema (``schemas/<dataset>/schema.pbtxt``): loading and cheap consistency checks.

Only protobuf and tensorflow-metadata are imported here (no TensorFlow), so the check runs in milliseconds
before a pipeline starts.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import List

from sluice.pipeline.errors import ConfigError


def load_schema(path: Path):
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    if not Path(path).is_file():
        raise ConfigError("schema", f"{path} not found", "write one with TFDV or point `schema:` at the curated file")
    try:
        return text_format.Parse(Path(path).read_text(), schema_pb2.Schema())
    except text_format.ParseError as e:
        raise ConfigError(str(path), f"not a valid schema text proto: {e}", "fix the line it names")


def check_schema_columns(path: Path, columns: List[str]) -> None:
    """Every column the config uses is described by the schema (else Transform could not parse it)."""
    names = [f.name for f in load_schema(path).feature]
    for col in columns:
        if col not in names:
            hint = difflib.get_close_matches(col, names, n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else "add the feature to the curated schema"
            raise ConfigError(f"column {col!r}", f"is used by the config but not described in {path}", fix)


def infer_schema(data_location: str):
    """TFDV's inferred schema for CSV files (a file or glob), made to accept those files as the pipeline reads
    them: the starting point for a curated schema, which the DataGate passes on the same data.

    TFDV's CSV reader treats an empty cell as an absent feature, so it drafts ``value_count { min: 1 }`` for
    a column with empty cells; CsvExampleGen writes the same cell as a present feature with no value, which
    that line then rejects (``FEATURE_TYPE_LOW_NUMBER_VALUES``). Such columns get ``min: 0``.
    """
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tensorflow_data_validation as tfdv

    tf.get_logger().setLevel("ERROR")  # TFDV's Beam pass logs deprecation notices a user cannot act on
    schema = tfdv.infer_schema(tfdv.generate_statistics_from_csv(data_location=data_location))
    for feature in schema.feature:
        if feature.HasField("value_count"):  # some rows lack a value (complete columns get a fixed shape)
            feature.value_count.min = 0
    return schema


def draft_text(schema, source: str) -> str:
    """The inferred schema as text, headed by what it is and what to curate."""
    from google.protobuf import text_format

    optional = [f.name for f in schema.feature if f.HasField("value_count")]
    header = [
        f"# Drafted by `sluice schema infer` from {source}: TFDV's inference, accepting the data as it is.",
        "# Curate before trusting it as a gate: value domains from what each column means, presence from what",
        "# the source guarantees, environments for label-only columns.",
        f"# Columns with empty cells (value_count min 0): {', '.join(optional) if optional else 'none'}.",
    ]
    return "\n".join(header) + "\n" + text_format.MessageToString(schema, as_utf8=True)


def _describe(feature, schema) -> dict:
    from tensorflow_metadata.proto.v0 import schema_pb2

    domain = ""
    if feature.HasField("int_domain"):
        d = feature.int_domain
        domain = f"int [{d.min if d.HasField('min') else ''}, {d.max if d.HasField('max') else ''}]"
    elif feature.HasField("float_domain"):
        d = feature.float_domain
        domain = f"float [{format(d.min, 'g') if d.HasField('min') else ''}, {format(d.max, 'g') if d.HasField('max') else ''}]"
    elif feature.domain:
        values = next((list(s.value) for s in schema.string_domain if s.name == feature.domain), [])
        domain = f"{len(values)} strings"
    return {
        "type": schema_pb2.FeatureType.Name(feature.type),
        "required": feature.presence.min_fraction >= 1.0,
        "domain": domain,
    }


def diff_schemas(curated, inferred) -> List[tuple]:
    """Rows ``(feature, aspect, curated, inferred)`` where the curated schema departs from TFDV's inference."""
    rows = []
    cur = {f.name: _describe(f, curated) for f in curated.feature}
    inf = {f.name: _describe(f, inferred) for f in inferred.feature}
    for name in sorted(set(cur) | set(inf)):
        if name not in inf:
            rows.append((name, "feature", "present", "absent from the data"))
            continue
        if name not in cur:
            rows.append((name, "feature", "absent", "present in the data (not described: add it or ignore it)"))
            continue
        for aspect in ("type", "required", "domain"):
            if cur[name][aspect] != inf[name][aspect]:
                rows.append((name, aspect, str(cur[name][aspect]) or "-", str(inf[name][aspect]) or "-"))
    return rows
