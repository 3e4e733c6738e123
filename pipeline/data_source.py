"""Where the CSV data is, and a pre-flight check of its header against the config.

CsvExampleGen reads files matching a pattern under a base directory; users give a file, a directory or a glob.
Checking the header before TFX starts turns "column missing" from a Beam traceback minutes into the run into
one line naming the column, in milliseconds.
"""

from __future__ import annotations

import csv
import difflib
import fnmatch
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from sluice.pipeline.config import SPAN_SPEC
from sluice.pipeline.errors import DataError

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class DataSource:
    input_base: str
    """Directory CsvExampleGen reads from."""
    pattern: str
    """Glob relative to ``input_base`` selecting the CSV files; with a span pattern it holds ``{SPAN}``."""
    files: tuple
    """The files this run reads (with a span pattern: the chosen span's)."""
    span: Optional[int] = None
    """With a span pattern: the span this run ingests (the newest one found, or the one asked for)."""

    @property
    def location(self) -> str:
        """A glob of exactly the files this run reads (a span pattern with this run's span filled in)."""
        pattern = self.pattern
        if self.span is not None:
            match = re.search(SPAN_SPEC, pattern)
            width = int(match.group("width") or 0)
            pattern = pattern[:match.start()] + str(self.span).zfill(width) + pattern[match.end():]
        return os.path.join(self.input_base, pattern)

    @property
    def description(self) -> str:
        where = os.path.join(self.input_base, self.pattern)
        return where if self.span is None else f"{where} (span {self.span})"


def split_location(text: str) -> Tuple[str, str]:
    """``(base, pattern)``: the path up to the first part holding a glob character or ``{SPAN}``, and the rest.
    Works on local paths and URIs alike (``/`` separated), so the compile and local runs split one way."""
    parts = text.split("/")
    first = next((i for i, p in enumerate(parts) if any(c in _GLOB_CHARS for c in p) or "{" in p), None)
    if first is None:
        return posixpath.dirname(text), posixpath.basename(text)
    return "/".join(parts[:first]) or ("/" if text.startswith("/") else "."), "/".join(parts[first:])


def span_regex(pattern: str) -> Tuple[str, "re.Pattern[str]"]:
    """TFX's span matching (``example_gen.utils._create_matching_glob_and_regex``) for one ``{SPAN}`` /
    ``{SPAN:width}`` spec: the glob that lists candidate files, and the regex that reads a file's span (any
    text, or exactly ``width`` characters, that must then be an integer)."""
    match = re.search(SPAN_SPEC, pattern)
    width = match.group("width")
    head, tail = pattern[:match.start()], pattern[match.end():]
    span = f"(?P<span>.{{{width}}})" if width else "(?P<span>.*)"
    return head + "*" + tail, re.compile(_glob_regex(head) + span + _glob_regex(tail) + r"\Z")


def _glob_regex(part: str) -> str:
    """A glob fragment as a regex over a relative path: ``*``, ``?`` and ``[…]`` stay inside one path part."""
    out, i = [], 0
    while i < len(part):
        c = part[i]
        close = part.find("]", i + 2) if c == "[" else -1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif close > 0:
            body = part[i + 1:close]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = close
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def list_matching(base: str, pattern: str) -> List[str]:
    """The paths under ``base`` that the ``/``-separated glob ``pattern`` matches, names starting with a dot
    included: ``tf.io.gfile.glob``'s matching, which is what CsvExampleGen lists (Python's ``glob`` skips dot
    names, so a macOS ``._part.csv`` beside ``part.csv`` would be read by TFX but not checked here)."""
    paths = [base]
    for part in (p for p in pattern.split("/") if p):
        matched = []
        for path in paths:
            if not any(c in part for c in _GLOB_CHARS):
                if os.path.lexists(os.path.join(path, part)):
                    matched.append(os.path.join(path, part))
                continue
            try:
                names = sorted(os.listdir(path))
            except OSError:  # not a directory, gone, unreadable: nothing below it
                continue
            matched += [os.path.join(path, n) for n in names if fnmatch.fnmatchcase(n, part)]
        paths = matched
    return paths


INT32_MAX = 2**31 - 1
"""TFX keeps a span in ``RangeConfig.StaticRange`` as int32 (``range_config.proto``)."""
_TFX_REGEX = set("$^|{}")
"""Characters TFX's span matching leaves unescaped when it reads the whole path as a regex
(``example_gen.utils._glob_to_regex`` escapes only ``\\ . + ( )``): a folder named with one fails there."""


def spans_at(base: str, pattern: str) -> Dict[int, List[str]]:
    """Every span under ``base`` matching ``pattern`` -> its files (sorted), as CsvExampleGen finds them.
    What would stop CsvExampleGen later, or make it read other files than checked here, is a DataError now,
    naming the file: a span part that is not a number, a zero-padded span without ``{SPAN:width}`` (TFX then
    looks for the unpadded name), a glob hit the span regex does not match (a span wider than its width), a
    folder where a file is expected, a span beyond int32, a character TFX reads as regex syntax."""
    glob_pattern, regex = span_regex(pattern)
    width = re.search(SPAN_SPEC, pattern).group("width")
    classes = re.findall(r"\[[^\]]*\]", pattern)
    if any(c.startswith("[!") or "*" in c or "?" in c for c in classes):
        raise DataError("data.path", f"{pattern} has a character class TFX's span matching reads otherwise than a "
                        "glob ([!…], or * or ? inside [ ]): CsvExampleGen would stop on it",
                        "use plain classes such as [0-9], or * and ?")
    odd = sorted(_TFX_REGEX & set(re.sub(SPAN_SPEC, "", os.path.join(str(Path(base).resolve()), pattern))))
    if odd:
        raise DataError("data.path", f"{os.path.join(base, pattern)} has {' '.join(odd)}, which TFX's span "
                        "matching reads as regular-expression syntax (CsvExampleGen would fail)",
                        "rename the folders or files without those characters")
    found: Dict[int, List[str]] = {}
    for f in list_matching(base, glob_pattern):
        match = regex.match(os.path.relpath(f, base).replace(os.sep, "/"))
        if match is None:
            raise DataError(f, f"matches {glob_pattern} but not the span pattern {pattern} (a span wider than "
                            f"{{SPAN:{width}}}?); CsvExampleGen stops on it", "move it, or fix the width")
        token = match.group("span")
        if not (token.isascii() and token.isdigit()):
            raise DataError(f, f"matches the span pattern {pattern} but {token!r} is not a span number",
                            "span folders or file parts must be whole numbers (move this file elsewhere)")
        if not width and token != str(int(token)):
            raise DataError(f, f"its span {token!r} is zero-padded: with {{SPAN}} TFX looks for "
                            f"{int(token)!r}", f"write {{SPAN:{len(token)}}} in data.path for spans of "
                            f"{len(token)} digits")
        if int(token) > INT32_MAX:
            raise DataError(f, f"span {token} is beyond TFX's span numbers (int32, at most {INT32_MAX})",
                            "number spans by day or sequence (e.g. 20240115, not a timestamp in ms)")
        if os.path.isdir(f):
            raise DataError(f, f"is a folder where {pattern} expects files",
                            f"end data.path with the files of a span, e.g. {pattern.rstrip('/')}/*.csv")
        if not os.path.isfile(f):
            raise DataError(f, "matches the span pattern but cannot be read (a broken link?)",
                            "remove it or point it at the file")
        found.setdefault(int(token), []).append(f)
    return {span: sorted(files) for span, files in sorted(found.items())}


def resolve_data_source(path: Path, span: Optional[int] = None) -> DataSource:
    """A file, a directory of ``*.csv`` files, a glob, or a span pattern (``data/{SPAN}/*.csv``) ->
    CsvExampleGen's (input_base, pattern) and the files this run reads. With a span pattern the run reads the
    newest span (TFX's rule), or ``span`` when given."""
    text = str(path)
    if re.search(SPAN_SPEC, text):
        base, pattern = split_location(text)
        spans = spans_at(base, pattern)
        if not spans:
            raise DataError("data.path", f"no files match the span pattern {text}",
                            "put each span's CSV files where {SPAN} stands for the span number (e.g. data/3/part.csv)")
        chosen = max(spans) if span is None else span
        if chosen not in spans:
            raise DataError("--span", f"span {chosen} has no files under {text} (spans found: "
                            f"{', '.join(map(str, spans))})", "pick one of the spans found")
        return DataSource(str(Path(base).resolve()), pattern, tuple(spans[chosen]), chosen)
    if span is not None:
        raise DataError("--span", f"data.path {text} has no {{SPAN}} in it", "use a span pattern such as "
                        "data/{SPAN}/*.csv, or leave --span out")
    if any(c in _GLOB_CHARS for c in text):
        head, pattern = split_location(text)
        base = Path(head)
    elif path.is_dir():
        base, pattern = path, "*.csv"
    elif path.is_file():
        base, pattern = path.parent, path.name
    else:
        raise DataError("data.path", f"{text} does not exist", "point data.path or --data at a CSV file or directory")
    files = tuple(sorted(f for f in list_matching(str(base), pattern) if os.path.isfile(f)))
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
