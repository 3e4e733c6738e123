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
    """The column names as CsvExampleGen will see them, or a DataError where it would see others.

    TFX reads the header line with a plain ``split(",")`` (``io_utils.load_csv_column_names``): no CSV
    quoting, no trimming. A header that a CSV parser reads differently (quoted names, as R's ``write.csv``
    writes them; a comma inside a name), names with spaces around them, a byte-order mark, an empty or a
    repeated name would give the pipeline other columns than the config and the schema name, so they are
    refused here with the fix.
    """
    with open(file, "rb") as fh:
        first = fh.readline()
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{file}:1", "the header is not UTF-8 text", "save the file as UTF-8 CSV")
    row = next(csv.reader([text]), None)
    if not row:
        raise DataError(file, "the file is empty (no header row)", "CSV files need a header row naming the columns")
    if text.startswith("\ufeff"):
        raise DataError(f"{file}:1", "starts with a byte-order mark, which would become part of the first column's "
                        "name", "save the file as UTF-8 without BOM")
    plain = text.rstrip("\r\n").split(",")
    if plain != row:
        raise DataError(f"{file}:1", f"the header uses CSV quoting ({text.strip()[:80]!r}): TFX's CsvExampleGen "
                        "splits the header on commas without quoting, so the columns would get other names",
                        "remove the quotes from the header row (and any comma inside a column name)")
    for name in row:
        if name != name.strip() or not name:
            raise DataError(f"{file}:1", f"column name {name!r} is empty or has spaces around it (CsvExampleGen "
                            "keeps them as part of the name)", "remove the spaces around names in the header row")
    repeated = sorted({n for n in row if row.count(n) > 1})
    if repeated:
        raise DataError(f"{file}:1", f"the header names {', '.join(map(repr, repeated))} more than once",
                        "give every column its own name")
    return row


def scan_rows(file: str, header: List[str]) -> int:
    """One streaming pass over a CSV: every line is UTF-8, has the header's field count, and is not the
    header again. Returns the number of data rows (at least one).

    These are the malformations that CsvExampleGen reports as a Beam traceback deep in a worker (or, for a
    repeated header, silently turns into string values in numeric columns); here they cost one pass of
    Python's csv reader (about 0.1 s for the bundled 15,002 rows) and get a message with the line number.
    """
    rows = 0
    with open(file, "rb") as raw:
        for number, line in enumerate(raw, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{file}:{number}", f"bytes that are not UTF-8 ({line[e.start:e.start + 8]!r})",
                                "re-encode the file as UTF-8")
    with open(file, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for fields in reader:
            if not fields:
                continue
            line = reader.line_num
            if [f.strip() for f in fields] == header:
                raise DataError(f"{file}:{line}", "repeats the header row inside the data",
                                "remove the extra header (files concatenated with their headers?)")
            if len(fields) != len(header):
                raise DataError(f"{file}:{line}", f"has {len(fields)} fields, the header has {len(header)}",
                                "quote values that contain commas, or fix the row")
            rows += 1
    if rows == 0:
        raise DataError(file, "has a header but no data rows", "point data.path at a file with data")
    return rows


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
    for f in source.files:
        scan_rows(f, header)
    return header
