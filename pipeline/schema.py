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
