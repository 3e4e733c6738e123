"""The span ledger: passed DataGate verdicts of data in spans, as files in the pipeline root.

Why files and not ML Metadata: on Kubeflow / Vertex AI the orchestrator owns ML Metadata, and TFX's Kubeflow V2
compiler builds resolvers for the latest artifact and the latest blessed model only
(``kubeflow/v2/step_builder.py``); Vertex's resolver returns one artifact. Neither can give the window of
spans (the newest N spans that passed the gate) nor the previous span's statistics. A compiled pipeline's
DataGate therefore also records each passed verdict here, and the ``SpanWindow`` step and the next run's gate
read it back: through ``tfx.dsl.io.fileio``, so the same code reads ``gs://`` on Vertex, the dry run's local
root and ``ram://`` in the tests. Local runs keep MLMD (``span_window``'s resolvers); both apply the same rule
(``span_window.pick_window`` / ``pick_previous``).

Layout: ``<ledger>/<data source key>/span-<N>/<write time ns>-<random>.json``, one file per passed verdict,
never rewritten. A file is written under a temporary name and renamed, so a reader never sees half of one;
one that does not parse anyway (a truncated copy, an edit by hand) stops the reader with its name: the window
is not silently built without that span.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
import uuid
from dataclasses import asdict, dataclass
from typing import List, Optional

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


def source_folder(ledger: str, data_source: str) -> str:
    """One folder per data source: a one-off ``--data`` elsewhere never enters this source's window."""
    return aio.join(ledger, hashlib.sha256(data_source.encode()).hexdigest()[:16])


def record(ledger: str, entry: Entry) -> str:
    """Write ``entry`` (its ``written_ns`` is set now) and return its URI."""
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


def entries(ledger: str, data_source: str) -> List[Entry]:
    """Every entry of ``data_source`` (unordered). Raises ``Refused`` naming an entry that does not parse."""
    folder = source_folder(ledger, data_source)
    if not fileio.exists(folder):
        return []
    out = []
    for uri in fileio.glob(aio.join(folder, "span-*", "*.json")):
        name = posixpath.basename(uri)
        if name.startswith("."):  # a write in progress (or one that died before its rename)
            continue
        try:
            body = json.loads(aio.read_text(uri))
            entry = Entry(**body, name=name)
            if not isinstance(entry.span, int) or entry.data_source != data_source:
                raise ValueError(f"span {entry.span!r} of {entry.data_source!r}")
        except (ValueError, TypeError) as error:
            raise Refused(f"span ledger entry {uri}", f"does not parse ({error})",
                          "restore it from the bucket's object versions, or delete it: its span then leaves the "
                          "window until the span passes the DataGate again") from None
        out.append(entry)
    return out


def passed(ledger_entries: List[Entry]) -> List[PassedSpan]:
    """The entries as ``span_window``'s records (the data of each is the entry itself)."""
    return [PassedSpan(e.span, (e.written_ns, e.name), e) for e in ledger_entries]
