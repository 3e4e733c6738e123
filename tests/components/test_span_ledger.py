"""The span window of a compiled pipeline: the DataGate's span ledger and the ``SpanWindow`` step, on TF's
``ram://`` filesystem (the code goes through ``tfx.dsl.io.fileio`` as it would on gs://, never the local disk).
The same rule as the local resolver decides (test_spans.py): per span its newest passed verdict, spans whose
files or Examples are gone left out, other data sources ignored, the newest N."""

from __future__ import annotations

import uuid

import pytest
import tensorflow as tf

from sluice.components import span_ledger
from sluice.components.contracts import GateContract, WindowContract
from sluice.components.refusal import Refused


@pytest.fixture
def root():
    return f"ram://{uuid.uuid4().hex[:8]}"  # ram:// is one per process: a fresh root each time


def _write(uri: str, data: bytes = b"x") -> None:
    tf.io.gfile.makedirs(uri.rsplit("/", 1)[0])
    with tf.io.gfile.GFile(uri, "wb") as f:
        f.write(data)


def _examples(root: str, name: str, span: int) -> str:
    """An Examples folder as CsvExampleGen writes it (train and eval splits), its files naming their origin."""
    uri = f"{root}/CsvExampleGen/examples/{name}"
    for split in ("train", "eval"):
        _write(f"{uri}/Split-{split}/data_tfrecord-00000-of-00001.gz", f"{name} {split} span {span}".encode())
    return uri


def _record(root: str, source: str, span: int, name: str, previous=None) -> str:
    examples = _examples(root, name, span)
    verdict = f"{root}/DataGate/verdict/{name}"
    _write(f"{verdict}/baseline_statistics.pb", f"stats {name}".encode())
    span_ledger.record(f"{root}/_span_ledger", span_ledger.Entry(span=span, examples=examples, verdict=verdict,
                                                                 previous_span=previous, data_source=source,
                                                                 written_ns=0))
    return examples


def test_entries_are_read_back_per_data_source_and_a_broken_one_stops_the_reader(root):
    ledger, source = f"{root}/_span_ledger", f"{root}/data/{{SPAN}}/*.csv"
    _record(root, source, 1, "a")
    _record(root, source, 2, "b", previous=1)
    _record(root, "gs://elsewhere/{SPAN}/*.csv", 9, "c")
    got = sorted(span_ledger.entries(ledger, source), key=lambda e: e.span)
    assert [(e.span, e.previous_span, e.data_source) for e in got] == [(1, None, source), (2, 1, source)]
    assert got[0].written_ns < got[1].written_ns and got[0].name.endswith(".json")
    assert span_ledger.entries(ledger, "ram://nothing/{SPAN}/*.csv") == []
    folder = span_ledger.source_folder(ledger, source)
    _write(f"{folder}/span-3/.00000000000000000001-dead.json.tmp", b"{")  # a write that died before its rename
    assert len(span_ledger.entries(ledger, source)) == 2
    _write(f"{folder}/span-3/00000000000000000002-half.json", b'{"span": 3, "exam')  # truncated by hand
    with pytest.raises(Refused) as e:
        span_ledger.entries(ledger, source)
    assert "00000000000000000002-half.json" in e.value.where and "delete it" in e.value.fix
    _write(f"{folder}/span-3/00000000000000000002-half.json", b'{"span": "3", "rm": 1}')  # not an entry
    with pytest.raises(Refused):
        span_ledger.entries(ledger, source)


def _run_window(root: str, source: str, num_spans: int, current_examples: str, span: int, out_uri: str = ""):
    from tfx.components.util import examples_utils
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts

    from sluice.components.data_gate import DataVerdict
    from sluice.components.span_window_step import WINDOW_SPANS, Executor

    current = standard_artifacts.Examples()
    current.uri, current.split_names = current_examples, '["train", "eval"]'
    examples_utils.set_payload_format(current, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    current.set_int_custom_property("span", span)
    out = standard_artifacts.Examples()
    out.uri = out_uri or f"{root}/SpanWindow/window/{uuid.uuid4().hex[:6]}"
    contract = WindowContract(num_spans=num_spans, ledger=f"{root}/_span_ledger", data_source=source)
    Executor().Do({"examples": [current], "verdict": [DataVerdict()]}, {"window": [out]},
                  {"contract": contract.to_json()})
    files = {}
    for split in ("train", "eval"):
        for path in sorted(tf.io.gfile.glob(f"{out.uri}/Split-{split}/*")):
            with tf.io.gfile.GFile(path, "rb") as f:
                files[f"{split}/{path.rsplit('/', 1)[1]}"] = f.read().decode()
    return out, out.get_string_custom_property(WINDOW_SPANS), files


def test_the_window_step_copies_each_chosen_spans_newest_passed_data(root):
    source = f"{root}/data/{{SPAN}}/*.csv"
    for span in (1, 2, 3, 4):
        _write(f"{root}/data/{span}/part.csv", b"a,b\n1,2\n")
    _record(root, source, 1, "s1")
    _record(root, source, 2, "s2-wrong")
    _record(root, source, 2, "s2-fixed")  # the corrected file passed later: it replaces the wrong one
    _record(root, source, 3, "s3")
    _record(root, "ram://other/{SPAN}/*.csv", 5, "foreign")  # another data source: never in this window
    current = _record(root, source, 4, "s4")
    out, spans, files = _run_window(root, source, 3, current, 4)
    assert spans == "4,3,2" and out.span == 4 and out.split_names == '["train", "eval"]'
    assert files == {f"{split}/w{rank:04d}-span-{span}-data_tfrecord-00000-of-00001.gz": f"{name} {split} span {span}"
                     for split in ("train", "eval")
                     for rank, (span, name) in enumerate(((4, "s4"), (3, "s3"), (2, "s2-fixed")))}
    assert sorted(files)[0].startswith("eval/w0000-span-4-")  # the newest span's files first (ModelExport's rows)
    from tfx.components.util import examples_utils
    assert examples_utils.get_payload_format_string(out) == "FORMAT_TF_EXAMPLE"

    tf.io.gfile.remove(f"{root}/data/3/part.csv")  # deleting a span's files retracts it from the window
    tf.io.gfile.rmtree(f"{root}/CsvExampleGen/examples/s1")  # and a span whose Examples are gone is left out
    _, spans, files = _run_window(root, source, 3, current, 4, out_uri=out.uri)  # a retry into the same folder
    assert spans == "4,2" and sorted({name.split("-")[2] for name in files}) == ["2", "4"]  # nothing left over


def test_the_window_step_refuses_a_span_without_a_split_and_an_empty_ledger(root):
    source = f"{root}/data/{{SPAN}}/*.csv"
    for span in (1, 2):
        _write(f"{root}/data/{span}/part.csv", b"a,b\n1,2\n")
    with pytest.raises(Refused) as e:
        _run_window(root, source, 2, _examples(root, "unrecorded", 2), 2)
    assert e.value.where == "data.window"
    old = _record(root, source, 1, "s1")
    tf.io.gfile.rmtree(f"{old}/Split-eval")  # written with another split config
    current = _record(root, source, 2, "s2")
    with pytest.raises(Refused) as e:
        _run_window(root, source, 2, current, 2)
    assert e.value.where == "span 1" and "eval" in e.value.problem
    # this run's span must be this run's Examples: an entry dated after this run's outranks it
    _record(root, source, 2, "s2-later")
    with pytest.raises(Refused) as e:
        _run_window(root, source, 2, current, 2)
    assert e.value.where == "span ledger, span 2" and "s2-later" in e.value.problem


def test_the_gate_reads_the_previous_span_from_the_ledger(root):
    from sluice.components.data_gate import (BASELINE_STATS, PREVIOUS_STATS, BaselineGone, drift_baseline,
                                             ledger_baseline)

    source = f"{root}/data/{{SPAN}}/*.csv"
    gate = GateContract.model_validate({"validation": {}, "columns": {"a": "numeric"}, "spans": True,
                                        "data_source": source, "span_ledger": f"{root}/_span_ledger"})
    assert ledger_baseline(gate, 1) is None  # the first span: nothing to compare with
    for span in (1, 2, 3):
        _write(f"{root}/data/{span}/part.csv", b"a,b\n1,2\n")
    _record(root, source, 1, "v1")
    _record(root, source, 3, "v3", previous=1)
    _record(root, source, 2, "v2", previous=1)  # a backfill of span 2 after span 3
    _record(root, "ram://other/{SPAN}/*.csv", 3, "foreign", previous=7)
    assert ledger_baseline(gate, 4).uri.endswith("/v3")  # the next span: against 3
    assert ledger_baseline(gate, 3).uri.endswith("/v2")  # span 3 again: against the span before it
    assert drift_baseline(gate, 3, ledger_baseline(gate, 3)) == (f"{root}/DataGate/verdict/v2/{BASELINE_STATS}", 2)
    assert drift_baseline(gate, 1, ledger_baseline(gate, 1)) == (None, 0)  # span 1 again: v1 had no baseline
    # a source whose only span is this one, again: compared with what its verdict was compared with
    other = gate.model_copy(update={"data_source": "ram://other/{SPAN}/*.csv"})
    with pytest.raises(BaselineGone) as e:  # the statistics it was compared with are gone: fail closed
        drift_baseline(other, 3, ledger_baseline(other, 3))
    assert PREVIOUS_STATS in e.value.path and e.value.of == "span 7"
    _write(f"{root}/DataGate/verdict/foreign/{PREVIOUS_STATS}", b"span 7 stats")
    assert drift_baseline(other, 3, ledger_baseline(other, 3)) == (f"{root}/DataGate/verdict/foreign/{PREVIOUS_STATS}", 7)

    for span in (1, 2, 3):  # a landing zone pruned after ingestion: the statistics live in the verdicts
        tf.io.gfile.remove(f"{root}/data/{span}/part.csv")
    assert drift_baseline(gate, 4, ledger_baseline(gate, 4)) == (f"{root}/DataGate/verdict/v3/{BASELINE_STATS}", 3)
    tf.io.gfile.rmtree(f"{root}/DataGate/verdict/v3")  # its statistics pruned: a finding, never passed unchecked
    with pytest.raises(BaselineGone) as e:
        drift_baseline(gate, 4, ledger_baseline(gate, 4))
    assert e.value.of == "span 3"
    from sluice.components.data_gate import MISSING_BASELINE, baseline_gone_finding, decide
    from sluice.components.settings import ValidationConfig

    finding = baseline_gone_finding(e.value)
    assert (finding.feature, finding.anomaly, finding.severity) == ("(dataset)", MISSING_BASELINE, "ERROR")
    assert decide([finding], ValidationConfig()) == [finding]  # stops the run
    allowed = ValidationConfig(allow=[{"feature": "(dataset)", "anomaly": MISSING_BASELINE, "why": "root pruned"}])
    assert decide([finding], allowed) == [] and finding.allowed  # unless the config lets it through, visibly


def test_recording_is_idempotent_and_each_pipeline_keeps_its_own_ledger(root):
    """A gate re-run on unchanged data adds nothing; a roll-back to earlier Examples is recorded again (it is
    news for the window); the ledger lives under the pipeline's name, and glob characters in the root do not
    hide it."""
    ledger, source = f"{root}/r[1]/_span_ledger/fare", f"{root}/data/{{SPAN}}/*.csv"

    def record(examples):
        return span_ledger.record(ledger, span_ledger.Entry(span=5, examples=examples, verdict=f"{root}/v",
                                                             previous_span=None, data_source=source, written_ns=0))

    assert record(f"{root}/X5") and record(f"{root}/X5") is None
    assert record(f"{root}/X5-fixed") and record(f"{root}/X5")  # the roll-back is news
    got = sorted(span_ledger.entries(ledger, source), key=lambda e: e.written_ns)
    assert [e.examples.rsplit("/", 1)[1] for e in got] == ["X5", "X5-fixed", "X5"]
    assert span_ledger.entries(f"{root}/r[1]/_span_ledger/other-pipeline", source) == []


@pytest.mark.parametrize("body,problem", [
    ({"written_ns": "late"}, "written_ns"), ({"written_ns": 10 ** 30}, "written_ns"), ({"span": True}, "span"),
    ({"span": 7}, "folder of span 3"), ({"previous_span": "2"}, "previous_span"), ({"examples": None}, "URIs"),
    ({"span": 2 ** 31}, "span"), ({"data_source": "gs://elsewhere/{SPAN}"}, "data source")])
def test_an_entry_that_is_not_well_formed_stops_the_reader_with_its_name(root, body, problem):
    import json
    import time

    ledger, source = f"{root}/_span_ledger", f"{root}/data/{{SPAN}}/*.csv"
    now = time.time_ns()
    entry = {"span": 3, "examples": f"{root}/e", "verdict": f"{root}/v", "previous_span": None,
             "data_source": source, "written_ns": now, **body}
    name = f"{now:020d}-abcdef12.json"
    _write(f"{span_ledger.source_folder(ledger, source)}/span-3/{name}", json.dumps(entry).encode())
    with pytest.raises(Refused) as e:
        span_ledger.entries(ledger, source)
    assert name in e.value.where and problem in e.value.problem
