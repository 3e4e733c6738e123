"""Data in spans (``data.path: data/{SPAN}/*.csv``, ``data.window: N``) without running a pipeline: which span a
run reads (checked against TFX's own resolution), the config's refusals, the window's choice of Examples, the
drift baseline, the graph, the Kubeflow compile, and how runs show their spans."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import yaml

from sluice.pipeline.config import parse_config
from sluice.pipeline.data_source import resolve_data_source
from sluice.pipeline.errors import ConfigError, DataError
from tests.helpers import CONFIGS

HEADER = "trip_miles,fare\n"


def _span(root, name, rows="1.0,2.0\n", file="part.csv"):
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file).write_text(HEADER + rows)
    return folder / file


def _raw(**data):
    raw = copy.deepcopy(yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text()))
    raw["data"].update(data)
    return raw


# ------------------------------------------------------------------------------------ which span a run reads
@pytest.mark.parametrize("pattern,folders,expected", [
    ("{SPAN}/*.csv", ["1", "2", "10"], 10),  # numbers, not text order ("10" < "2")
    ("span-{SPAN:3}/*.csv", ["span-001", "span-007", "span-012"], 12),
    ("{SPAN}/*.csv", ["0"], 0),
])
def test_the_newest_span_is_the_one_tfx_would_ingest(tmp_path, pattern, folders, expected):
    from tfx.components.example_gen import utils
    from tfx.proto import example_gen_pb2

    for folder in folders:
        _span(tmp_path, folder)
    source = resolve_data_source(tmp_path / pattern)
    assert source.span == expected and source.pattern == pattern and source.input_base == str(tmp_path)
    assert source.files == (str(tmp_path / folders[-1] / "part.csv"),)
    _, tfx_span, _ = utils.calculate_splits_fingerprint_span_and_version(
        str(tmp_path), [example_gen_pb2.Input.Split(name="single_split", pattern=pattern)])
    assert tfx_span == expected
    assert "(span" in source.description
    assert sorted(__import__("glob").glob(source.location)) == list(source.files)  # what `schema infer` reads


def test_a_span_of_several_files_reads_them_all(tmp_path):
    _span(tmp_path, "1")
    _span(tmp_path, "2", file="a.csv")
    _span(tmp_path, "2", file="b.csv")
    source = resolve_data_source(tmp_path / "{SPAN}" / "*.csv")
    assert source.span == 2 and [f.rsplit("/", 1)[1] for f in source.files] == ["a.csv", "b.csv"]


def test_a_matching_folder_that_is_not_a_span_number_is_named_before_tfx_crashes_on_it(tmp_path):
    from tfx.components.example_gen import utils
    from tfx.proto import example_gen_pb2

    _span(tmp_path, "1")
    _span(tmp_path, "latest")
    with pytest.raises(DataError) as e:
        resolve_data_source(tmp_path / "{SPAN}" / "*.csv")
    assert "latest" in str(e.value) and "not a span number" in str(e.value)
    with pytest.raises(ValueError):  # what CsvExampleGen would have done minutes later
        utils.calculate_splits_fingerprint_span_and_version(
            str(tmp_path), [example_gen_pb2.Input.Split(name="single_split", pattern="{SPAN}/*.csv")])


def _tfx_files(base, pattern, span):
    """The files TFX's ExampleGen driver reads for ``span`` (pinned, as local runs pin it)."""
    from tfx.components.example_gen import utils
    from tfx.dsl.io import fileio
    from tfx.proto import example_gen_pb2, range_config_pb2

    split = example_gen_pb2.Input.Split(name="single_split", pattern=pattern)
    pinned = range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(
        start_span_number=span, end_span_number=span))
    _, found, _ = utils.calculate_splits_fingerprint_span_and_version(str(base), [split], pinned)
    assert found == span
    return sorted(fileio.glob(str(base / utils.get_pattern_for_span_version(pattern, True, False, False, span, None))))


@pytest.mark.parametrize("pattern,names", [
    ("{SPAN}/part-[0-9].csv", ["1/part-1.csv", "10/part-2.csv", "10/part-x.csv"]),  # a class in the pattern
    ("{SPAN}/*.csv", ["1/a.csv", "2/a.csv", "2/.b.csv"]),  # a dot file: TFX lists it (a macOS ._ copy)
    ("day-{SPAN:2}/*.csv", ["day-01/a.csv", "day-02/a.csv"]),
])
def test_the_files_checked_are_the_files_tfx_reads_for_the_pinned_span(tmp_path, pattern, names):
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(HEADER + "1,2\n")
    source = resolve_data_source(tmp_path / pattern)
    assert list(source.files) == _tfx_files(tmp_path, pattern, source.span)
    assert sorted(__import__("glob").glob(source.location) + [f for f in source.files if "/." in f]) == \
        sorted(source.files)


@pytest.mark.parametrize("pattern,names,problem", [
    ("{SPAN}/*.csv", ["01/a.csv", "02/a.csv"], "zero-padded"),  # TFX would look for 2/, which is not there
    ("{SPAN:1}/*.csv", ["9/a.csv", "10/a.csv"], "not the span pattern"),  # wider than its width
    ("{SPAN}/*.csv", ["202401151230/a.csv"], "int32"),  # a timestamp: beyond TFX's span numbers
    ("{SPAN}/*.csv", ["1/a.csv", "\u00b2/a.csv"], "not a span number"),  # a superscript two is no ASCII digit
    ("{SPAN}", ["1/a.csv"], "folder where"),  # one folder per span, without the files part
    ("{SPAN}/*.csv", ["1/a.csv/x"], "folder where"),  # a directory named like a file
])
def test_layouts_tfx_would_stop_on_or_read_otherwise_are_one_screen(tmp_path, pattern, names, problem):
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(HEADER)
    with pytest.raises(DataError) as e:
        resolve_data_source(tmp_path / pattern)
    assert problem in str(e.value)


@pytest.mark.parametrize("pattern", ["{SPAN}/part-[!_]*.csv", "{SPAN}/part-[*a].csv"])
def test_character_classes_tfx_reads_otherwise_are_refused(tmp_path, pattern):
    _span(tmp_path, "3", file="part-a1.csv")
    with pytest.raises(DataError) as e:
        resolve_data_source(tmp_path / pattern)
    assert "character class" in str(e.value)


def test_a_broken_link_among_a_spans_files_is_one_screen(tmp_path):
    _span(tmp_path, "1")
    (tmp_path / "1" / "b.csv").symlink_to(tmp_path / "gone.csv")
    with pytest.raises(DataError) as e:
        resolve_data_source(tmp_path / "{SPAN}" / "*.csv")
    assert "broken link" in str(e.value)


def test_a_folder_name_tfx_reads_as_regex_is_refused(tmp_path):
    _span(tmp_path / "cost$", "1")
    with pytest.raises(DataError) as e:
        resolve_data_source(tmp_path / "cost$" / "{SPAN}" / "*.csv")
    assert "regular-expression" in str(e.value)


def test_no_span_at_all_is_one_screen(tmp_path):
    with pytest.raises(DataError) as e:
        resolve_data_source(tmp_path / "{SPAN}" / "*.csv")
    assert "no files match the span pattern" in str(e.value)


def test_the_no_op_key_tells_two_spans_with_the_same_file_name_apart(tmp_path):
    from sluice.pipeline import shortcut

    one, two = _span(tmp_path, "1"), _span(tmp_path, "2")
    assert shortcut.data_fingerprint([str(one)], str(tmp_path)) != shortcut.data_fingerprint([str(two)], str(tmp_path))


# ---------------------------------------------------------------------------------------------- the config
@pytest.mark.parametrize("data,problem", [
    ({"path": "data/{VERSION}/*.csv"}, "only placeholder"),
    ({"path": "data/{YYYY}-{MM}-{DD}/*.csv"}, "only placeholder"),
    ({"path": "data/{SPAN}/{SPAN}.csv"}, "holds {SPAN} once"),
    ({"path": "data/taxi/data.csv", "window": 3}, "needs a span pattern"),
    ({"path": "data/{SPAN}/*.csv", "window": 0}, "window"),
])
def test_span_settings_the_config_refuses(data, problem):
    with pytest.raises(ConfigError) as e:
        parse_config(_raw(**data), base_dir=str(CONFIGS))
    assert problem in str(e.value)


def test_data_flag_is_held_to_the_same_rules(tmp_path):
    cfg = parse_config(_raw(path="data/{SPAN}/*.csv", window=3), base_dir=str(CONFIGS))
    with pytest.raises(ConfigError) as e:
        cfg.with_data_path(str(tmp_path / "plain.csv"))
    assert "--data" in str(e.value) and "needs a span pattern" in str(e.value)
    assert cfg.with_data_path(str(tmp_path / "{SPAN:2}" / "*.csv")).data.window == 3


# ------------------------------------------------------------------------------------------------ the window
def _examples(id_, span):
    from tfx.types import standard_artifacts

    artifact = standard_artifacts.Examples()
    artifact.id = id_
    artifact.set_int_custom_property("span", span)
    return artifact


SOURCE = "/data/{SPAN}/*.csv"


SPAN_OF_EXAMPLES = {1: 1, 2: 2, 3: 3, 4: 2, 5: 4}  # the Examples ids of the window tests -> their span


def _verdict_of(id_, examples_id, passed=1, source=SOURCE):
    from sluice.components.data_gate import DataVerdict
    from sluice.components.span_window import DATA_SOURCE, EXAMPLES_ID, SPAN

    v = DataVerdict()
    v.id = id_
    v.set_int_custom_property(EXAMPLES_ID, examples_id)
    v.set_int_custom_property(SPAN, SPAN_OF_EXAMPLES.get(examples_id, 0))
    v.set_int_custom_property("passed", passed)
    v.set_string_custom_property(DATA_SOURCE, source)
    return v


def test_the_window_takes_the_newest_passed_spans_each_as_its_newest_passed_verdict_names_it():
    from sluice.components.span_window import window

    # span 3 failed the gate (no verdict); span 2 was ingested twice (a corrected file) and both passed
    ingested = [_examples(1, 1), _examples(2, 2), _examples(3, 3), _examples(4, 2), _examples(5, 4)]
    verdicts = [_verdict_of(11, 1), _verdict_of(12, 2), _verdict_of(14, 4), _verdict_of(15, 5)]
    assert [a.id for a in window(ingested, verdicts, 3, SOURCE)] == [5, 4, 1]
    assert [a.id for a in window(ingested, verdicts, 1, SOURCE)] == [5]
    # rolled back: span 2's files are the first ones again; TFX's cache hands back Examples 2, which passes anew
    rolled_back = verdicts + [_verdict_of(16, 2)]
    assert [a.id for a in window(ingested, rolled_back, 3, SOURCE)] == [5, 2, 1]
    # a verdict that did not pass, or of another data source, counts for nothing
    others = [_verdict_of(11, 1), _verdict_of(13, 3, passed=0), _verdict_of(17, 5, source="/old/data.csv")]
    assert [a.id for a in window(ingested, others, 3, SOURCE)] == [1]
    assert window(ingested, [], 3, SOURCE) == []
    # span 4's folder was deleted: retracted
    assert [a.id for a in window(ingested, verdicts, 3, SOURCE, present=lambda span: span != 4)] == [4, 1]
    # the Examples span 2's newest verdict names is gone: span 2 is left out, not served by its older data
    assert [a.id for a in window([a for a in ingested if a.id != 4], verdicts, 3, SOURCE)] == [5, 1]


def test_the_window_resolver_reads_the_files_that_are_still_there(tmp_path):
    from sluice.components.span_window import PassedSpanWindow, source_key

    for span in ("01", "02"):
        _span(tmp_path, span)
    source = source_key(str(tmp_path), "{SPAN:2}/*.csv")
    strategy = PassedSpanWindow(num_spans=3, input_base=str(tmp_path), pattern="{SPAN:2}/*.csv")
    inputs = {"examples": [_examples(1, 1), _examples(2, 2), _examples(3, 3)],
              "verdicts": [_verdict_of(11, 1, source=source), _verdict_of(12, 2, source=source),
                           _verdict_of(13, 3, source=source)]}  # span 3 passed, then its folder was deleted
    assert [a.id for a in strategy.resolve_artifacts(None, inputs)["examples"]] == [2, 1]
    with pytest.raises(ValueError):
        PassedSpanWindow(num_spans=0, input_base=str(tmp_path), pattern="{SPAN}/*.csv")


def test_a_string_span_property_is_read_as_tfx_reads_it():
    from sluice.components.span_window import span_of

    artifact = _examples(1, 0)
    artifact.set_string_custom_property("span", "17")
    assert span_of(artifact) == 17


# -------------------------------------------------------------------------------------------- drift baseline
def _verdict(tmp_path, name, span, previous_span=None):
    from sluice.components import data_gate

    folder = tmp_path / name
    folder.mkdir()
    (folder / data_gate.BASELINE_STATS).write_bytes(b"this span")
    v = data_gate.DataVerdict()
    v.uri = str(folder)
    v.set_int_custom_property(data_gate.SPAN, span)
    if previous_span is not None:
        (folder / data_gate.PREVIOUS_STATS).write_bytes(b"previous span")
        v.set_int_custom_property(data_gate.PREVIOUS_SPAN, previous_span)
    return v


def test_drift_is_measured_against_the_previous_span_even_on_a_re_run(tmp_path):
    from sluice.components.data_gate import BASELINE_STATS, PREVIOUS_STATS, Baseline
    from sluice.components.data_gate import drift_baseline as from_verdict

    def drift_baseline(gate, span, verdict):
        return from_verdict(gate, span, Baseline.of_verdict(verdict) if verdict is not None else None)

    spans, plain = SimpleNamespace(spans=True), SimpleNamespace(spans=False)
    newest = _verdict(tmp_path, "v2", span=2, previous_span=1)
    assert drift_baseline(spans, 3, newest) == (str(tmp_path / "v2" / BASELINE_STATS), 2)  # a new span
    assert drift_baseline(spans, 2, newest) == (str(tmp_path / "v2" / PREVIOUS_STATS), 1)  # span 2 again
    first = _verdict(tmp_path, "v1", span=1)
    assert drift_baseline(spans, 1, first) == (None, 0)  # the first span, again: nothing before it
    assert drift_baseline(plain, 0, _verdict(tmp_path, "v0", span=0, previous_span=0))[0].endswith(BASELINE_STATS)
    assert drift_baseline(spans, 1, None) == (None, 0)


# --------------------------------------------------------------------------------------- graph and compile
def _graph(tmp_path, window, span=4):
    from sluice.pipeline.data_source import DataSource
    from sluice.pipeline.pipeline import OutputPaths, create_pipeline

    cfg = parse_config(_raw(path=str(tmp_path / "{SPAN}" / "*.csv"), window=window), base_dir=str(CONFIGS))
    source = DataSource(str(tmp_path), "{SPAN}/*.csv", (str(tmp_path / "4" / "a.csv"),), span)
    return cfg, {c.id: c for c in create_pipeline(cfg, source, OutputPaths(tmp_path / "out")).components}


def test_the_model_side_reads_the_window_and_the_gate_the_new_span(tmp_path):
    cfg, nodes = _graph(tmp_path, window=3)
    window = nodes["SpanWindowResolver"]
    assert window.exec_properties["source_uri"] == {"num_spans": 3, "input_base": str(tmp_path),  # TFX's key
                                                    "pattern": "{SPAN}/*.csv"}  # for a resolver's config
    for node in ("Transform", "Evaluator", "ModelExport"):
        assert nodes[node].inputs["examples"] is window.outputs["examples"], node
    assert nodes["StatisticsGen"].inputs["examples"] is nodes["CsvExampleGen"].outputs["examples"]
    assert nodes["DataGate"].inputs["examples"] is nodes["CsvExampleGen"].outputs["examples"]
    assert "DataGate" in {n.id for n in window.upstream_nodes}  # resolved once this span has passed
    baseline = nodes["LastPassedDataResolver"].exec_properties
    assert baseline["resolver_class"].__name__ == "PreviousSpanVerdict" and baseline["source_uri"]["span"] == 4
    pinned = json.loads(nodes["CsvExampleGen"].exec_properties["range_config"])["static_range"]
    assert pinned == {"start_span_number": 4, "end_span_number": 4}  # the span the pre-flight checked
    assert cfg.gate_contract().spans is True
    gate = json.loads(nodes["DataGate"].exec_properties["gate"])
    assert gate["data_source"] == f"{tmp_path}/{{SPAN}}/*.csv"  # what a passed verdict names
    _, nodes = _graph(tmp_path / "one", window=1)
    assert "SpanWindowResolver" not in nodes
    assert nodes["Transform"].inputs["examples"] is nodes["CsvExampleGen"].outputs["examples"]


def test_kubeflow_compiles_an_open_span_pattern_and_the_window_as_a_step_over_the_ledger(tmp_path):
    from sluice.pipeline.kubeflow import compile_kubeflow

    def compiled(window):
        raw = _raw(path="gs://bucket/taxi/{SPAN}/*.csv", window=window)
        out = compile_kubeflow(parse_config(raw, base_dir=str(CONFIGS)), "img:1", "gs://bucket/root",
                               tmp_path / f"w{window}.json")
        return json.loads(out.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]

    def params(task):
        return {k: v["runtimeValue"]["constantValue"].get("stringValue") for k, v in task["inputs"]["parameters"].items()
                if "runtimeValue" in v}

    tasks = compiled(1)
    value = params(tasks["CsvExampleGen"])
    assert value["input_base"] == "gs://bucket/taxi"
    assert json.loads(value["input_config"])["splits"][0]["pattern"] == "{SPAN}/*.csv"
    assert "range_config" not in value  # open: each run on Vertex ingests the newest span (TFX's driver)
    gate = json.loads(params(tasks["DataGate"])["gate"])
    # the drift baseline is the previous span, from the ledger (Vertex's resolver would give the newest verdict)
    assert gate["span_ledger"] == "gs://bucket/root/_span_ledger/taxi-fare" and gate["spans"] is True
    assert gate["data_source"] == "gs://bucket/taxi/{SPAN}/*.csv"
    assert "LastPassedDataResolver" not in tasks and "baseline" not in tasks["DataGate"]["inputs"].get("artifacts", {})
    assert "SpanWindow" not in tasks
    # Vertex's cache key cannot see the ledger: a cached gate would not record a roll-back
    assert tasks["DataGate"]["cachingOptions"] == {"enableCache": False}
    assert tasks["Transform"]["cachingOptions"] == {"enableCache": True}

    tasks = compiled(3)
    assert tasks["SpanWindow"]["cachingOptions"] == {"enableCache": False}  # nor keep a deleted span
    assert sorted(tasks["SpanWindow"]["dependentTasks"]) == ["CsvExampleGen", "DataGate"]  # after the gate recorded
    window = json.loads(params(tasks["SpanWindow"])["contract"])
    assert {k: window[k] for k in ("num_spans", "ledger", "data_source")} == {
        "num_spans": 3, "ledger": "gs://bucket/root/_span_ledger/taxi-fare",
        "data_source": "gs://bucket/taxi/{SPAN}/*.csv"}
    for node in ("Transform", "Evaluator", "ModelExport"):
        assert tasks[node]["inputs"]["artifacts"]["examples"]["taskOutputArtifact"] == {
            "outputArtifactKey": "window", "producerTask": "SpanWindow"}, node
    assert tasks["StatisticsGen"]["inputs"]["artifacts"]["examples"]["taskOutputArtifact"]["producerTask"] == "CsvExampleGen"
    with pytest.raises(ConfigError) as e:  # a window counts spans: compiled data without {SPAN} has none
        compile_kubeflow(parse_config(_raw(path="gs://bucket/taxi/{SPAN}/*.csv", window=3), base_dir=str(CONFIGS)),
                         "img:1", "gs://bucket/root", tmp_path / "flat.json", data="gs://bucket/flat/*.csv")
    assert "--data" in str(e.value) and "window: 3" in str(e.value) and not (tmp_path / "flat.json").exists()


# ---------------------------------------------------------------------------------------------------- runs
@pytest.mark.parametrize("span,window,shown", [
    (0, [0], "-"), (None, [], "-"), (3, [], "3"), (3, [3], "3"), (4, [4, 2, 1], "4 (window 4,2,1)")])
def test_runs_show_their_spans(span, window, shown):
    from sluice.pipeline.mlmd import RunRecord

    assert RunRecord(run_id="r", span=span, window=window).spans == shown


def test_kubeflow_compiles_the_bulk_step_and_refuses_a_table_its_machines_cannot_read(tmp_path):
    from sluice.pipeline.errors import SluiceError
    from sluice.pipeline.kubeflow import compile_kubeflow

    raw = _raw(path="gs://bucket/taxi/{SPAN}/*.csv")
    raw["bulk_inference"] = {"input": "gs://bucket/nightly/*.csv"}
    out = compile_kubeflow(parse_config(raw, base_dir=str(CONFIGS)), "img:1", "gs://bucket/root", tmp_path / "p.json")
    tasks = json.loads(out.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]
    assert tasks["BulkScore"]["dependentTasks"] == ["Pusher"]
    contract = json.loads(tasks["BulkScore"]["inputs"]["parameters"]["contract"]["runtimeValue"]["constantValue"]["stringValue"])
    assert contract["bulk"]["input"] == "gs://bucket/nightly/*.csv"
    raw["bulk_inference"] = {"input": str(tmp_path / "nightly.csv")}  # this machine's disk, not in the image
    with pytest.raises(SluiceError) as e:
        compile_kubeflow(parse_config(raw, base_dir=str(CONFIGS)), "img:1", "gs://bucket/root", tmp_path / "q.json")
    assert "bulk_inference.input" in str(e.value) and not (tmp_path / "q.json").exists()


def test_drift_after_a_backfill_is_against_the_span_before_not_the_newest_verdict():
    from sluice.components.span_window import SPAN, previous_span_verdict

    def verdict(id_, span, source=SOURCE, passed=1):
        v = _verdict_of(id_, id_, passed=passed, source=source)
        v.set_int_custom_property(SPAN, span)
        return v

    # spans 1..5 passed, then `--span 2` re-ran (verdict 16), and a one-off run elsewhere passed (17)
    verdicts = [verdict(10 + s, s) for s in range(1, 6)] + [verdict(16, 2), verdict(17, 9, source="/tmp/x")]
    assert [v.id for v in previous_span_verdict(verdicts, SOURCE, 6)] == [15]  # the next span: against 5
    assert [v.id for v in previous_span_verdict(verdicts, SOURCE, 3)] == [16]  # span 3 again: against 2
    assert [v.id for v in previous_span_verdict(verdicts, SOURCE, 1)] == [11]  # span 1: its own (a re-run)
    assert previous_span_verdict(verdicts + [verdict(18, 0, passed=0)], SOURCE, 0) == []


def test_with_a_window_deleting_an_older_span_is_no_no_op(tmp_path):
    import shutil

    from sluice.pipeline import shortcut

    for span in ("1", "2", "3"):
        _span(tmp_path / "data", span)
    cfg = parse_config(_raw(path=str(tmp_path / "data" / "{SPAN}" / "*.csv"), window=3), base_dir=str(CONFIGS))
    before = shortcut.key_of(cfg)
    shutil.rmtree(tmp_path / "data" / "2")
    assert before is not None and shortcut.key_of(cfg) != before


@pytest.mark.parametrize("pattern,span", [("{SPAN}/*.csv", 7), ("span-{SPAN:3}/*.csv", 7), ("d{SPAN:2}x/p-*.csv", 12),
                                          ("{SPAN}.csv", 0)])
def test_the_files_a_run_names_are_filled_in_as_tfx_fills_them(pattern, span):
    """``DataSource.location`` fills the span without TFX (the no-op shortcut must not import it): the same
    text as TFX's own ``get_pattern_for_span_version``."""
    from tfx.components.example_gen import utils

    from sluice.pipeline.data_source import DataSource

    assert DataSource("/data", pattern, (), span).location == \
        "/data/" + utils.get_pattern_for_span_version(pattern, True, False, False, span, None)
