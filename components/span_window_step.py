"""``SpanWindow``: the rolling window of spans as one step, for compiled (Kubeflow / Vertex AI) pipelines.

Locally the window is a TFX resolver over ML Metadata (``span_window.PassedSpanWindow``). A compiled pipeline
cannot have one (TFX's V2 compiler builds no other resolver, and Vertex's resolver returns one artifact), so
this step, placed after the DataGate, reads the passed spans from the span ledger (``span_ledger``, written
by the gate), applies the same rule (``span_window.pick_window``) and writes the window as one Examples
artifact: each split folder holds the chosen spans' files, named ``w<rank>-span-<N>-<file>`` (the newest
span's first). Transform, the Evaluator and ModelExport read it as they would read CsvExampleGen's output.

The copy is the price of one artifact: each run copies the window's files once, through the step's machine
(``tf.io.gfile.copy``), which for a large window is minutes of a run that then trains for longer anyway. The
artifact records the spans it holds (``window_spans``, newest first) and, as its ``span``, the newest one.
"""

from __future__ import annotations

import posixpath
from typing import Any, Dict, List

from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from sluice.components import artifact_io as aio, span_ledger
from sluice.components.contracts import WindowContract
from sluice.components.data_gate import DataVerdict
from sluice.components.refusal import Refused
from sluice.components.span_window import SPAN, pick_window, span_of, span_present

WINDOW_SPANS = "window_spans"
"""Custom property of the window's Examples: its spans, newest first (``"4,2,1"``)."""


def choose(contract: WindowContract) -> List[span_ledger.Entry]:
    """The window's ledger entries, newest span first: per span its newest passed verdict whose Examples and
    data files are still there."""
    def present(record) -> bool:
        entry = record.data
        return fileio.exists(entry.examples) and span_present(contract.data_source, entry.span)

    entries = span_ledger.entries(contract.ledger, contract.data_source)
    return pick_window(span_ledger.passed(entries), contract.num_spans, present)


def copy_name(rank: int, span: int, file: str) -> str:
    """A copied file's name: the rank in the window first, so the newest span's files sort first (ModelExport
    reads its warmup and parity rows from the first files, as it reads the newest span locally)."""
    return f"w{rank:04d}-span-{span}-{file}"


def write_window(chosen: List[span_ledger.Entry], current: types.Artifact, out: types.Artifact) -> Dict[str, int]:
    """Copy every split of each chosen span into ``out`` (its split folders emptied first: a retried step must
    not keep files of an earlier attempt); returns files copied per split. Raises ``Refused`` when a span
    lacks a split this run's data has (its Examples were written with another split config)."""
    splits = artifact_utils.decode_split_names(current.split_names)
    out.split_names = current.split_names
    copied = {}
    for split in splits:
        target = artifact_utils.get_split_uri([out], split)
        if fileio.exists(target):
            fileio.rmtree(target)
        fileio.makedirs(target)
        copied[split] = 0
        for rank, entry in enumerate(chosen):
            source = standard_artifacts.Examples()
            source.uri, source.split_names = entry.examples, current.split_names
            folder = artifact_utils.get_split_uri([source], split)
            files = [f for f in fileio.glob(aio.join(folder, "*")) if not fileio.isdir(f)]
            if not files:
                raise Refused(f"span {entry.span}", f"its Examples ({entry.examples}) have no {split} split files",
                              "keep data.splits unchanged across spans, or re-ingest the span")
            for path in sorted(files):
                aio.copy_file(path, aio.join(target, copy_name(rank, entry.span, posixpath.basename(path))))
                copied[split] += 1
    return copied


def check_current(chosen: List[span_ledger.Entry], current: types.Artifact) -> None:
    """This run's span, when in the window, must be this run's Examples (the gate recorded them just before):
    anything else is a ledger entry dated after this run's, i.e. a clock or a hand edit."""
    span = span_of(current)
    mine = [e for e in chosen if e.span == span]
    if mine and mine[0].examples.rstrip("/") != current.uri.rstrip("/"):
        raise Refused(f"span ledger, span {span}", f"its newest entry names {mine[0].examples}, but this run "
                      f"ingested it as {current.uri}", "remove the newer entry (dated ahead by a clock, or "
                      "written by hand) and run again")


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        contract = WindowContract.parse(exec_properties["contract"])
        current = artifact_utils.get_single_instance(input_dict["examples"])
        out = artifact_utils.get_single_instance(output_dict["window"])
        chosen = choose(contract)
        if not chosen:  # this run's span passed the gate and was recorded just before
            raise Refused("data.window", f"the span ledger {contract.ledger} has no span of {contract.data_source} "
                          "whose data is still there", "check that the data files and the pipeline root are intact")
        check_current(chosen, current)
        write_window(chosen, current, out)
        examples_utils.set_payload_format(out, examples_utils.get_payload_format(current))
        examples_utils.set_file_format(out, examples_utils.get_file_format(current))
        out.span = chosen[0].span
        out.set_int_custom_property(SPAN, chosen[0].span)
        out.set_string_custom_property(WINDOW_SPANS, ",".join(str(e.span) for e in chosen))


class SpanWindowSpec(types.ComponentSpec):
    PARAMETERS = {"contract": ExecutionParameter(type=str)}
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        # this run's passed verdict: the step runs after the gate recorded this span in the ledger
        "verdict": ChannelParameter(type=DataVerdict),
    }
    OUTPUTS = {"window": ChannelParameter(type=standard_artifacts.Examples)}


class SpanWindow(base_component.BaseComponent):
    """``SpanWindow(examples, verdict, contract=WindowContract JSON)`` -> ``window`` (Examples)."""

    SPEC_CLASS = SpanWindowSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples, verdict, contract: str):
        super().__init__(spec=SpanWindowSpec(examples=examples, verdict=verdict, contract=contract,
                                             window=types.Channel(type=standard_artifacts.Examples)))
