"""The rolling window of spans a model is trained on: the newest N spans whose data passed the DataGate.

TFX's own ``SpanRangeStrategy`` (``rolling_range``) takes every Examples artifact whose span is among the
newest N span numbers. That is not safe for a pipeline that gates its data: a span that failed the DataGate
was still ingested by CsvExampleGen, so it would enter the next run's window and be trained on. It also keeps
every ingested version of a span (a corrected file re-ingested gives two artifacts of one span), so the
corrected rows would be read next to the wrong ones.

``PassedSpanWindow`` takes the Examples artifacts that a passed ``DataVerdict`` names (``examples_id``,
written by the gate), keeps the newest artifact of each span, and returns the newest ``num_spans`` spans.
The resolver runs after the DataGate (``create_pipeline`` wires it downstream), so this run's span, once it
has passed, is always in its own window.

Local orchestrators only: TFX's Kubeflow V2 compiler compiles resolvers of ``LatestArtifactStrategy`` and
``LatestBlessedModelStrategy`` alone (``kubeflow/v2/step_builder.py``), so ``sluice compile`` refuses
``data.window > 1`` with that reason.
"""

from __future__ import annotations

from typing import Dict, List, Optional

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


def window(examples: List[types.Artifact], passed_ids: set, num_spans: int) -> List[types.Artifact]:
    """The newest artifact of each of the newest ``num_spans`` spans among ``examples`` that passed, newest
    span first (the order of TFX's ``SpanRangeStrategy``)."""
    newest: Dict[int, types.Artifact] = {}
    for artifact in examples:
        if artifact.id not in passed_ids:
            continue
        span = span_of(artifact)
        # Within a span the newer ingestion (the later MLMD id) wins: a corrected file replaces the wrong one.
        if span not in newest or artifact.id > newest[span].id:
            newest[span] = artifact
    return [newest[span] for span in sorted(newest, reverse=True)[:num_spans]]


class PassedSpanWindow(resolver.ResolverStrategy):
    """``Resolver(strategy_class=PassedSpanWindow, config={"num_spans": N}, examples=…, verdicts=…)`` ->
    ``examples``: the window (see the module docstring)."""

    def __init__(self, num_spans: int):
        if num_spans < 1:
            raise ValueError("num_spans must be at least 1")
        self._num_spans = num_spans

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        passed = {v.get_int_custom_property(EXAMPLES_ID) for v in input_dict.get("verdicts", [])
                  if v.has_custom_property(EXAMPLES_ID) and v.get_int_custom_property("passed") == 1}
        chosen = window(input_dict.get("examples", []), passed, self._num_spans)
        # A resolver answers for every input key; only ``examples`` is read downstream.
        return {"examples": chosen, "verdicts": list(input_dict.get("verdicts", []))} if chosen else None
