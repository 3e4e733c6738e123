"""The span ledger: passed DataGate verdicts of data in spans, as files in the pipeline root.

Why files and not ML Metadata: on Kubeflow / Vertex AI the orchestrator owns ML Metadata, and TFX's Kubeflow V2
compiler builds resolvers for the latest artifact and the latest blessed model only
(``kubeflow/v2/step_builder.py``); Vertex's resolver returns one artifact. Neither can give the window of
spans (the newest N spans that passed the gate) nor the previous span's statistics. A compiled pipeline's
DataGate therefore also records each passed verdict here, and the ``SpanWindow`` step and the next run's gate
read it back: through ``tfx.dsl.io.fileio``, so the same code reads ``gs://`` on Vertex, the dry run's local
root and ``ram://`` in the tests. Local runs keep MLMD (``span_window``'s resolvers); both apply the same rule
(``span_window.pick_window`` / ``pick_previous``).

Layout: ``<pipeline root>/_span_ledger/<pipeline>/<data source key>/span-<N>/<write time ns>-<random>.json``
(the pipeline's name in it: two pipelines sharing a root never share spans), one file per passed verdict that
named new Examples for its span, never rewritten. A file is written under a temporary name and renamed, so a
reader never sees half of one; one that is not a well-formed entry anyway (a truncated copy, an edit by hand,
a date ahead of the clock) stops the reader with its name: the window is not silently built without it.

Vertex's cache cannot see the ledger, so the compile turns caching off for the DataGate and the SpanWindow
step (``kubeflow.py``): a gate served from the cache would not record a roll-back to earlier files, and a
cached window would keep a span whose files were deleted. Recording is idempotent (``record``).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, List, Optional

from tfx.dsl.io import fileio

from sluice.components import artifact_io as aio
from sluice.components.refusal import Refused
from sluice.components.span_window import PassedSpan


@dataclass(frozen=True)
class Entry:
    span: int
    examples: str
    """URI of the Examples artifact whose data passed (``Split-*`` folders below it)."""
    verdict: str
    """URI of the passed verdict: its ``baseline_statistics.pb`` (and ``previous_statistics.pb``)."""
    previous_span: Optional[int]
    """The span this verdict's data was compared with (None: no drift baseline)."""
    data_source: str
    written_ns: int
    name: str = ""
    """The entry's file name (set when read): orders two entries written in the same nanosecond."""


FUTURE_NS = 3600 * 10**9
"""An entry dated more than an hour ahead is refused: it would outrank every later entry of its span (a clock
far ahead, or a hand edit)."""
_SPAN_FOLDER = re.compile(r"span-(0|[1-9][0-9]*)/?")


def source_folder(ledger: str, data_source: str) -> str:
    """One folder per data source: a one-off ``--data`` elsewhere never enters this source's window."""
    return aio.join(ledger, hashlib.sha256(data_source.encode()).hexdigest()[:16])


def record(ledger: str, entry: Entry) -> Optional[str]:
    """Write ``entry`` (its ``written_ns`` is set now) and return its URI; None when the newest entry of its span
    already names the same Examples (a gate re-run on unchanged data: the ledger only grows on news)."""
    own = [e for e in entries(ledger, entry.data_source) if e.span == entry.span]
    if own and max(own, key=lambda e: (e.written_ns, e.name)).examples == entry.examples:
        return None
    folder = aio.join(source_folder(ledger, entry.data_source), f"span-{entry.span}")
    now = time.time_ns()
    name = f"{now:020d}-{uuid.uuid4().hex[:8]}.json"
    body = {**asdict(entry), "written_ns": now}
    body.pop("name")
    fileio.makedirs(folder)
    temporary = aio.join(folder, f".{name}.tmp")
    aio.write_text(temporary, json.dumps(body, sort_keys=True))
    target = aio.join(folder, name)
    fileio.rename(temporary, target, overwrite=False)
    return target


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse(text: str, name: str, folder_span: int, data_source: str, now_ns: int) -> Entry:
    """One entry file's content, checked: ``ValueError`` / ``TypeError`` saying what is wrong with it. Every
    field is typed, the span is its folder's, the name carries its write time, and the time is not ahead."""
    body = json.loads(text)
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    entry = Entry(**body, name=name)  # a key missing or unknown: TypeError
    if not _integer(entry.span) or not 0 <= entry.span < 2 ** 31:
        raise ValueError(f"span {entry.span!r} is not a span number")
    if entry.span != folder_span:
        raise ValueError(f"span {entry.span} in the folder of span {folder_span}")
    if entry.data_source != data_source:
        raise ValueError(f"it names the data source {entry.data_source!r}")
    if not _integer(entry.written_ns) or not 0 < entry.written_ns <= now_ns + FUTURE_NS:
        raise ValueError(f"written_ns {entry.written_ns!r} is not a time up to now")
    if not name.startswith(f"{entry.written_ns:020d}-"):
        raise ValueError("its name does not start with its written_ns")
    if entry.previous_span is not None and not _integer(entry.previous_span):
        raise ValueError(f"previous_span {entry.previous_span!r} is not a span number")
    if not all(isinstance(v, str) and v for v in (entry.examples, entry.verdict)):
        raise ValueError("examples and verdict must be URIs")
    return entry


def entries(ledger: str, data_source: str) -> List[Entry]:
    """Every entry of ``data_source`` (unordered). Raises ``Refused`` naming an entry that is not one.

    Listed with ``listdir``, not a glob: the pipeline root may hold glob characters (``[…]``)."""
    folder = source_folder(ledger, data_source)
    if not fileio.exists(folder):
        return []
    out, now = [], time.time_ns()
    for child in fileio.listdir(folder):
        match = _SPAN_FOLDER.fullmatch(child)
        if not match:  # not the ledger's (a console placeholder, a note): ignored
            continue
        span_folder = aio.join(folder, child.rstrip("/"))
        for name in fileio.listdir(span_folder):
            if name.startswith(".") or not name.endswith(".json"):  # a write in progress, or not an entry
                continue
            uri = aio.join(span_folder, name)
            try:
                if fileio.isdir(uri):
                    raise ValueError("it is a folder")
                out.append(parse(aio.read_text(uri), name, int(match.group(1)), data_source, now))
            except (ValueError, TypeError, UnicodeDecodeError) as error:
                raise Refused(f"span ledger entry {uri}", f"is not a ledger entry ({error})",
                              "restore it from the bucket's object versions, or delete it: its span then leaves "
                              "the window until the span passes the DataGate again") from None
    return out


def passed(ledger_entries: List[Entry]) -> List[PassedSpan]:
    """The entries as ``span_window``'s records (the data of each is the entry itself)."""
    return [PassedSpan(e.span, (e.written_ns, e.name), e) for e in ledger_entries]
