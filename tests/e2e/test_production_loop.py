"""The production loop on one output directory, as it runs after launch (issue 20's "done means"):

- data arrives in spans (``data/{SPAN}/*.csv``, ``data.window: 3``): spans 1 and 2 are there at the start,
  the first run backfills span 1 (``--span 1``), the next takes the newest; both pass and train on their
  window; span 3 is corrupted (``trip_miles`` ×100, as a unit change upstream would do) and stops at the
  DataGate with the served model untouched; span 4 passes and its window leaves span 3 out;
- the pushed model scores a 100,000-row table in bulk (``sluice predict --output``);
- a logging server receives traffic with ``trip_miles`` ×10 and ``sluice monitor`` flags that feature alone.

The spans are interleaved rows of the bundled data, so good spans do not drift from each other.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_monitor import _replay
from tests.helpers import DATA, config_variant, run_cli, run_json

pytestmark = pytest.mark.e2e

SPANS, ROWS_PER_SPAN, CORRUPT, SHIFTED = 4, 2000, 3, "trip_miles"
BULK_ROWS = 100_000
NIGHTLY_ROWS = 1500


def _write_span(root: Path, span: int, header, rows) -> None:
    folder = root / "spans" / str(span)
    folder.mkdir(parents=True)
    miles = header.index(SHIFTED)
    with open(folder / "part.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            if span == CORRUPT and row[miles]:
                row = [*row[:miles], str(float(row[miles]) * 100), *row[miles + 1:]]
            writer.writerow(row)


def _served(out: Path) -> dict:
    """Every file under the serving directory with its bytes: what "untouched" is checked against."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "serving").rglob("*")) if p.is_file()}


def _verdicts(out: Path) -> list:
    """The DataGate's verdicts in execution order: (passed, span, the span drift was measured against)."""
    found = []
    for path in (out / "pipeline_root" / "_data_reports").glob("*/*.json"):
        body = json.loads(path.read_text())
        if "span" in body:
            found.append((int(path.parent.name), body["passed"], body["span"], body.get("drift_baseline_span")))
    return [v[1:] for v in sorted(found)]


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    work = tmp_path_factory.mktemp("loop")
    with open(DATA, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [r for _, r in zip(range(SPANS * ROWS_PER_SPAN), reader)]
    cfg = config_variant("taxi_fare", work, work / "spans" / "{SPAN}" / "*.csv", tflite=False, train_steps=200)
    raw = yaml.safe_load(cfg.read_text())
    raw["data"]["window"] = 3
    nightly = work / "nightly.csv"  # the table each pushing run scores in the pipeline (bulk_inference)
    with open(nightly, "w", newline="") as f:
        csv.writer(f).writerows([["trip_id", *header], *([i, *row] for i, row in enumerate(rows[:NIGHTLY_ROWS]))])
    raw["bulk_inference"] = {"input": str(nightly), "keys": ["trip_id"]}
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = work / "output"
    runs, served_before_corrupt = [], None
    for span in range(1, SPANS + 1):
        # spans 1 and 2 are there from the start: the first run backfills span 1 (--span), the second the newest
        for new in ((1, 2) if span == 1 else () if span == 2 else (span,)):
            _write_span(work, new, header, rows[new - 1::SPANS])
        if span == CORRUPT:
            served_before_corrupt = _served(out)
        runs.append(run_json("run", "--config", str(cfg), "--output", str(out), *(["--span", "1"] if span == 1 else [])))
        if span == CORRUPT:
            served_after_corrupt = _served(out)
    listed = run_cli("runs", "--output", str(out), "--json")
    return {"work": work, "config": cfg, "out": out, "runs": runs, "header": header, "rows": rows,
            "runs_json": [json.loads(line) for line in listed.stdout.splitlines() if line.startswith("{")],
            "corrupt": (served_before_corrupt, served_after_corrupt)}


def test_good_spans_train_on_their_window_and_the_corrupted_one_stops_at_the_gate(loop):
    runs = loop["runs"]
    for i, run in enumerate(runs, start=1):
        if i == CORRUPT:
            assert run["_exit"] == 3 and run["status"] == "data_rejected", run["_stderr"][-3000:]
            assert SHIFTED in run["error"] and not run["pushed"]
        else:
            assert run["_exit"] == 0 and run["status"] == "succeeded" and run["pushed"], run["_stderr"][-3000:]
            assert f"(span {i})" in run["_stderr"]  # the run says which span it ingests
    # Spans per run, as `sluice runs` shows them: the window holds only spans that passed the gate.
    assert [r["spans"] for r in loop["runs_json"]] == ["1", "2 (window 2,1)", "3", "4 (window 4,2,1)"]
    assert [r["pushed"] != "-" for r in loop["runs_json"]] == [True, True, False, True]
    assert loop["runs_json"][CORRUPT - 1]["blessed"] == "-"  # the previous blessing is not this run's
    page = (Path(runs[-1]["report_dir"]) / "index.html").read_text()
    assert "<td>spans</td><td>4 (window 4,2,1)</td>" in page
    # Drift is measured against the previous span that passed: span 4 against 2, not the rejected 3.
    assert _verdicts(loop["out"]) == [(True, 1, None), (True, 2, 1), (False, 3, 2), (True, 4, 2)]


def test_each_pushing_run_scores_the_table_in_the_pipeline_with_the_version_it_pushed(loop):
    from sluice.serving.batch import read_predictions

    for i, run in enumerate(loop["runs"], start=1):
        if i == CORRUPT:
            assert not run.get("bulk")  # stopped at the gate: nothing after it ran
            continue
        bulk = run["bulk"]
        assert bulk["scored"] == NIGHTLY_ROWS and bulk["dead_letter"] == 0, bulk
        assert str(bulk["version"]) == run["version"] and f"bulk scoring: {NIGHTLY_ROWS} row(s) scored" in run["_stderr"]
    ids = sorted(int(r["trip_id"]) for r in read_predictions(loop["runs"][-1]["bulk"]["output"]))
    assert ids == list(range(NIGHTLY_ROWS))


def test_the_window_is_what_the_model_was_trained_and_evaluated_on(loop):
    counts = [run["metrics"]["example_count"] for run in loop["runs"] if run["status"] == "succeeded"]
    # eval rows: one span's, then two spans', then three (1, 2 and 4) — hash splits, so about 1:2:3
    assert counts[0] * 1.6 < counts[1] < counts[0] * 2.4 and counts[0] * 2.5 < counts[2] < counts[0] * 3.5, counts


def test_the_corrupted_span_leaves_the_served_model_untouched(loop):
    before, after = loop["corrupt"]
    assert before and before == after
    page = Path(loop["runs"][CORRUPT - 1]["report_dir"]) / "data_report.html"
    assert "train vs span 2" in page.read_text()


def test_the_pushed_model_scores_100k_rows_in_bulk(loop):
    table = loop["work"] / "table.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(loop["header"])
        good = [r for i, r in enumerate(loop["rows"]) if i % SPANS != CORRUPT - 1]
        for i in range(BULK_ROWS):
            writer.writerow(good[i % len(good)])
    out = loop["work"] / "scored"
    proc = run_cli("predict", "--config", str(loop["config"]), "--input", str(table), "--output", str(out),
                   "--model-dir", str(loop["out"] / "serving"), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scored"] == BULK_ROWS and summary["dead_letter"] == 0
    assert str(summary["version"]) == loop["runs"][-1]["version"]


def test_shifted_traffic_is_flagged_on_that_feature_alone(loop):
    logs = loop["work"] / "logs"
    sent = _replay({"config": loop["config"], "out": loop["out"]}, logs, shift=SHIFTED)
    proc = run_cli("monitor", "--config", str(loop["config"]), "--logs", str(logs), "--output", str(loop["out"]),
                   "--json", timeout=600)
    assert proc.returncode == 3, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["flagged"] == [SHIFTED]
    [version] = result["versions"]
    assert version["rows"] == sent and version["run_id"] == loop["runs"][-1]["run_id"]
