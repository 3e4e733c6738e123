"""The rolling window of spans a model is trained on: the newest N spans whose data passed the DataGate.

TFX's own ``SpanRangeStrategy`` (``rolling_range``) takes every Examples artifact whose span is among the
newest N span numbers. That is not safe for a pipeline that gates its data: a span that failed the DataGate
was still ingested by CsvExampleGen, so it would enter the next run's window and be trained on. It also keeps
every ingested version of a span, and every span the pipeline ever ingested from any data source.

``PassedSpanWindow`` decides from the passed ``DataVerdict``s, each of which names its Examples
(``examples_id``), its span and its data source (``data_source``, written by the gate):

- only verdicts of this data source count (a one-off ``--data`` elsewhere, or the plain CSV the pipeline read
  before it moved to spans, never enters the window);
- per span, the Examples of the *newest passed verdict* is the span's data: a corrected file that passed
  replaces the wrong one, and a roll-back (TFX's cache then hands back the older Examples) is followed too;
- a span whose files are gone from the data source is left out (deleting a span's folder retracts it);
- then the newest ``num_spans`` spans.

A span whose re-ingestion failed the gate keeps its last passed data in the window (that failure has no
verdict). The resolver runs after the DataGate (``create_pipeline`` wires it downstream), so this run's span,
once it has passed, is in its own window if it is among the newest ``num_spans`` (a ``--span`` backfill of
an older span is not: that run trains on the newest spans, and its record shows which).

The rule itself (``pick_window``, ``pick_previous``) works on ``PassedSpan`` records, so the same rule serves
two sources of passed verdicts: MLMD, through the resolvers below (local runs), and the span ledger in the
pipeline root (``span_ledger``, read by the ``SpanWindow`` step of a compiled pipeline): TFX's Kubeflow V2
compiler compiles resolvers of ``LatestArtifactStrategy`` and ``LatestBlessedModelStrategy`` alone
(``kubeflow/v2/step_builder.py``) and Vertex's resolver returns one artifact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from tfx import types
from tfx.dsl.components.common import resolver

SPAN = "span"
"""CsvExampleGen's custom property on Examples (``example_gen.utils.SPAN_PROPERTY_NAME``); the DataGate's
verdict carries its data's span under the same name."""
EXAMPLES_ID = "examples_id"
"""Custom property of a passed ``DataVerdict``: the MLMD id of the Examples artifact whose data passed."""


def span_of(artifact: types.Artifact) -> int:
    """The span CsvExampleGen gave an Examples artifact. TFX keeps it as a custom property (an int, or a
    string in older releases: ``SpanRangeStrategy._get_span_custom_property``); the ``span`` property of the
    artifact class stays 0."""
    text = artifact.get_string_custom_property(SPAN) if artifact.has_custom_property(SPAN) else ""
    return int(text) if text else artifact.get_int_custom_property(SPAN)


DATA_SOURCE = "data_source"
"""Custom property of a passed ``DataVerdict``: ``<input_base>/<pattern>`` of the data it passed."""


@dataclass(frozen=True)
class PassedSpan:
    """One passed verdict of this data source, wherever it was read from (MLMD or the span ledger)."""

    span: int
    order: Tuple[Any, ...]
    """Newer verdicts sort higher: the MLMD id, or the ledger entry's write time and name."""
    data: Any
    """What the window returns for the span (an Examples artifact, a ledger entry); None when it is gone."""


def newest_per_span(passed: Iterable[PassedSpan]) -> Dict[int, PassedSpan]:
    """Per span, its newest passed verdict: a corrected file that passed replaces the wrong one, and a
    roll-back to older files (a newer verdict naming older Examples) is followed too."""
    chosen: Dict[int, PassedSpan] = {}
    for record in sorted(passed, key=lambda r: r.order):
        chosen[record.span] = record
    return chosen


def pick_window(passed: Iterable[PassedSpan], num_spans: int,
                present: Callable[[PassedSpan], bool] = lambda record: True) -> List[Any]:
    """The window's data, newest span first (the order of TFX's ``SpanRangeStrategy``): per span the newest
    passed verdict, spans whose data is gone (``data`` None, or ``present`` false: the files were deleted) left
    out, then the newest ``num_spans``. ``present`` is asked only until the window is full (each call may list
    a bucket)."""
    chosen = newest_per_span(passed)
    out: List[Any] = []
    for span in sorted(chosen, reverse=True):
        if len(out) == num_spans:
            break
        if chosen[span].data is not None and present(chosen[span]):
            out.append(chosen[span].data)
    return out


def pick_previous(passed: Iterable[PassedSpan], span: int) -> Optional[PassedSpan]:
    """The drift baseline of a run ingesting ``span``: the newest passed verdict of the largest span below it;
    without one, the newest of this span itself (a re-run: the gate then uses the statistics that verdict was
    compared with), else None. A span whose files were deleted still counts here: its statistics live in its
    verdict, and a landing zone that is pruned after ingestion must not switch the drift check off."""
    newest = newest_per_span(passed)
    below = [s for s in newest if s < span]
    return newest[max(below)] if below else newest.get(span)


def _passed_verdicts(verdicts: List[types.Artifact], source: str) -> List[types.Artifact]:
    return [v for v in verdicts if v.get_int_custom_property("passed") == 1 and v.has_custom_property(SPAN)
            and v.get_string_custom_property(DATA_SOURCE) == source]


def window(examples: List[types.Artifact], verdicts: List[types.Artifact], num_spans: int, source: str,
           present: Callable[[int], bool] = lambda span: True) -> List[types.Artifact]:
    """The window from MLMD's artifacts (see the module docstring), newest span first. ``present(span)``:
    whether the span still has files in the data source."""
    by_id = {a.id: a for a in examples}
    passed = [PassedSpan(v.get_int_custom_property(SPAN), (v.id,),
                         # None when the Examples it names is gone: the span is then left out, not served older data
                         by_id.get(v.get_int_custom_property(EXAMPLES_ID)))
              for v in _passed_verdicts(verdicts, source) if v.has_custom_property(EXAMPLES_ID)]
    return pick_window(passed, num_spans, lambda record: present(record.span))


def span_present(location: str, span: int) -> bool:
    """Whether ``span`` still has files at ``location`` (``<input_base>/<pattern>``, ``source_key``): TFX's own
    pattern filling, ``{SPAN:w}`` too."""
    from tfx.components.example_gen import utils
    from tfx.dsl.io import fileio

    return bool(fileio.glob(utils.get_pattern_for_span_version(location, True, False, False, span, None)))


class PassedSpanWindow(resolver.ResolverStrategy):
    """``Resolver(strategy_class=PassedSpanWindow, config={"num_spans": N, "input_base": …, "pattern": …},
    examples=…, verdicts=…)`` -> ``examples``: the window (see the module docstring)."""

    def __init__(self, num_spans: int, input_base: str, pattern: str):
        if num_spans < 1:
            raise ValueError("num_spans must be at least 1")
        self._num_spans, self._base, self._pattern = num_spans, input_base, pattern

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        source = source_key(self._base, self._pattern)
        chosen = window(input_dict.get("examples", []), input_dict.get("verdicts", []), self._num_spans, source,
                        lambda span: span_present(source, span))
        # A resolver answers for every input key; only ``examples`` is read downstream.
        return {"examples": chosen, "verdicts": list(input_dict.get("verdicts", []))} if chosen else None


def source_key(input_base: str, pattern: str) -> str:
    """How a verdict names its data source."""
    return f"{input_base.rstrip('/')}/{pattern}"


def previous_span_verdict(verdicts: List[types.Artifact], source: str, span: int) -> List[types.Artifact]:
    """The drift baseline from MLMD's verdicts (``pick_previous``), as a resolver answers: a list."""
    found = pick_previous([PassedSpan(v.get_int_custom_property(SPAN), (v.id,), v)
                           for v in _passed_verdicts(verdicts, source)], span)
    return [found.data] if found else []


class PreviousSpanVerdict(resolver.ResolverStrategy):
    """``Resolver(strategy_class=PreviousSpanVerdict, config={"input_base", "pattern", "span"}, verdict=…)``:
    the DataGate's drift baseline for data in spans, in local runs. TFX's ``LatestArtifactStrategy`` (used
    otherwise, and on Kubeflow, whose compiler builds nothing else) takes the newest verdict by time: after
    ``sluice run --span 2`` that is span 2, and the next span would be compared with it instead of with the
    span before it."""

    def __init__(self, input_base: str, pattern: str, span: int):
        self._source, self._span = source_key(input_base, pattern), span

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        return {"verdict": previous_span_verdict(input_dict.get("verdict", []), self._source, self._span)}
