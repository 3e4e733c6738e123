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

Local orchestrators only: TFX's Kubeflow V2 compiler compiles resolvers of ``LatestArtifactStrategy`` and
``LatestBlessedModelStrategy`` alone (``kubeflow/v2/step_builder.py``), so ``sluice compile`` refuses
``data.window > 1`` with that reason.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

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


def window(examples: List[types.Artifact], verdicts: List[types.Artifact], num_spans: int, source: str,
           present: Callable[[int], bool] = lambda span: True) -> List[types.Artifact]:
    """The window (see the module docstring), newest span first (the order of TFX's ``SpanRangeStrategy``).
    ``present(span)``: whether the span still has files in the data source."""
    by_id = {a.id: a for a in examples}
    chosen: Dict[int, Optional[types.Artifact]] = {}
    for verdict in sorted(verdicts, key=lambda v: v.id):  # newer verdicts overwrite older ones per span
        if (verdict.get_int_custom_property("passed") != 1 or not verdict.has_custom_property(EXAMPLES_ID)
                or not verdict.has_custom_property(SPAN) or verdict.get_string_custom_property(DATA_SOURCE) != source):
            continue
        # None when the Examples it names is gone: the span is then left out, not served by older data
        chosen[verdict.get_int_custom_property(SPAN)] = by_id.get(verdict.get_int_custom_property(EXAMPLES_ID))
    spans = [span for span in sorted(chosen, reverse=True) if chosen[span] is not None and present(span)]
    return [chosen[span] for span in spans[:num_spans]]


def span_present(input_base: str, pattern: str, span: int) -> bool:
    """Whether ``span`` still has files under the data source (TFX's own pattern filling, ``{SPAN:w}`` too)."""
    from tfx.components.example_gen import utils
    from tfx.dsl.io import fileio

    filled = utils.get_pattern_for_span_version(pattern, True, False, False, span, None)
    return bool(fileio.glob(f"{input_base.rstrip('/')}/{filled}"))


class PassedSpanWindow(resolver.ResolverStrategy):
    """``Resolver(strategy_class=PassedSpanWindow, config={"num_spans": N, "input_base": …, "pattern": …},
    examples=…, verdicts=…)`` -> ``examples``: the window (see the module docstring)."""

    def __init__(self, num_spans: int, input_base: str, pattern: str):
        if num_spans < 1:
            raise ValueError("num_spans must be at least 1")
        self._num_spans, self._base, self._pattern = num_spans, input_base, pattern

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        chosen = window(input_dict.get("examples", []), input_dict.get("verdicts", []), self._num_spans,
                        source_key(self._base, self._pattern),
                        lambda span: span_present(self._base, self._pattern, span))
        # A resolver answers for every input key; only ``examples`` is read downstream.
        return {"examples": chosen, "verdicts": list(input_dict.get("verdicts", []))} if chosen else None


def source_key(input_base: str, pattern: str) -> str:
    """How a verdict names its data source."""
    return f"{input_base.rstrip('/')}/{pattern}"


def previous_span_verdict(verdicts: List[types.Artifact], source: str, span: int) -> List[types.Artifact]:
    """The drift baseline of a run ingesting ``span``: the passed verdict of this data source with the largest
    span below it (newest of that span); without one, the newest passed verdict of this span itself (a
    re-run: the gate then uses the statistics that verdict was compared with), else none."""
    own = [v for v in verdicts if v.get_int_custom_property("passed") == 1 and v.has_custom_property(SPAN)
           and v.get_string_custom_property(DATA_SOURCE) == source]
    below = [v for v in own if v.get_int_custom_property(SPAN) < span]
    same = [v for v in own if v.get_int_custom_property(SPAN) == span]
    pool = below or same
    return [max(pool, key=lambda v: (v.get_int_custom_property(SPAN), v.id))] if pool else []


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
