"""Where the CSV data is, and a pre-flight check of its header against the config.

CsvExampleGen reads files matching a pattern under a base directory; users give a file, a directory or a glob.
Checking the header before TFX starts turns "column missing" from a Beam traceback minutes into the run into
one line naming the column, in milliseconds.
"""

from __future__ import annotations

import csv
import difflib
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List

from sluice.pipeline.errors import DataError

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class DataSource:
    input_base: str
    """Directory CsvExampleGen reads from."""
    pattern: str
    """Glob relative to ``input_base`` selecting the CSV files."""
    files: tuple

    @property
    def description(self) -> str:
        return os.path.join(self.input_base, self.pattern)


def resolve_data_source(path: Path) -> DataSource:
    """A file, a directory of ``*.csv`` files, or a glob -> CsvExampleGen's (input_base, pattern)."""
    text = str(path)
    if any(c in _GLOB_CHARS for c in text):
        parts = Path(text).parts
        first = next(i for i, p in enumerate(parts) if any(c in _GLOB_CHARS for c in p))
        base = Path(*parts[:first]) if first else Path(".")
        pattern = str(Path(*parts[first:]))
    elif path.is_dir():
        base, pattern = path, "*.csv"
    elif path.is_file():
        base, pattern = path.parent, path.name
    else:
        raise DataError("data.path", f"{text} does not exist", "point data.path or --data at a CSV file or directory")
    files = tuple(sorted(f for f in glob.glob(str(base / pattern)) if os.path.isfile(f)))
    if not files:
        raise DataError("data.path", f"no CSV files match {base / pattern}", "check the path or glob")
    return DataSource(str(base.resolve()), pattern, files)


def read_header(file: str) -> List[str]:
    try:
        with open(file, newline="", encoding="utf-8") as fh:
            row = next(csv.reader(fh), None)
    except UnicodeDecodeError:
        raise DataError(file, "the header is not UTF-8 text", "save the file as UTF-8 CSV")
    if not row:
        raise DataError(file, "the file is empty (no header row)", "CSV files need a header row naming the columns")
    return [c.strip() for c in row]


def check_columns(source: DataSource, required: List[str]) -> List[str]:
    """Every file has the same header and it contains every required column. Returns the header."""
    header = read_header(source.files[0])
    for f in source.files[1:]:
        other = read_header(f)
        if other != header:
            raise DataError(f, f"header differs from {source.files[0]}", "all CSV files of one dataset need the same columns")
    for col in required:
        if col not in header:
            hint = difflib.get_close_matches(col, header, n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else f"the file's columns are: {', '.join(header)}"
            raise DataError(f"column {col!r}", f"is used by the config but missing from {source.files[0]}", fix)
    return header
