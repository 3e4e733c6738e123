"""The compiled Kubeflow pipeline, executed here by ``sluice compile … --dry-run``: every container task through
TFX's Kubeflow V2 entrypoint in its own process, resolvers against the emulated metadata store (see
pipeline/dry_run.py). Fare runs twice in one directory (the second must find the first's data verdict and
blessed model, as on Vertex), on the session's 3,000-row sample with fewer training steps; the multi-class
example (configs/wine.yaml) once.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

import yaml

from tests.helpers import DATA, WINE_DATA, WINE_SCHEMA, config_variant, run_cli

pytestmark = pytest.mark.e2e

ROOT_URI = "gs://bucket/sluice/dry"


def _dry_run(name: str, work: Path, sample: Path, directory: Path, env=None, **variant):
    """Compile as for Vertex and dry-run it; returns (process, compiled JSON, this run's summary.json or None)."""
    cfg = config_variant(name, work, sample, **{"train_steps": 150, **variant})
    compiled = work / f"{name}.json"
    before = set((directory / "reports").glob("*/summary.json"))
    proc = run_cli("compile", "--config", str(cfg), "--image", "europe-docker.pkg.dev/p/sluice/pipeline:1",
                   "--pipeline-root", ROOT_URI, "--data", "gs://bucket/data/", "--output", str(compiled),
                   "--dry-run", str(directory), "--dry-run-data", str(sample), timeout=1500, env=env)
    new = sorted(set((directory / "reports").glob("*/summary.json")) - before)
    assert len(new) <= 1, new
    return proc, json.loads(compiled.read_text()), (json.loads(new[0].read_text()) if new else None)


@pytest.fixture(scope="module")
def fare_dry(tmp_path_factory, sample):
    work = tmp_path_factory.mktemp("dry-fare")
    directory = work / "dry"
    first = _dry_run("taxi_fare", work, sample, directory)
    second = _dry_run("taxi_fare", work, sample, directory)
    return {"runs": [first, second], "dir": directory}


def test_compiled_spec_is_remote_and_runs_through_tfx_entrypoint(fare_dry):
    (proc, body, _), _ = fare_dry["runs"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert body["runtimeConfig"]["gcsOutputDirectory"] == ROOT_URI and str(fare_dry["dir"]) not in json.dumps(body)
    logs = sorted((fare_dry["dir"] / "logs").glob("*/*-DataGate.log"))
    assert len(logs) == 2  # one folder per dry run
    for run in sorted((fare_dry["dir"] / "logs").iterdir())[:2]:  # the two fare runs: every task command forked
        commands = sum(1 for log in run.glob("*.log") for line in log.read_text().splitlines() if line.startswith("$ "))
        forked = (run / "00-forkserver.log").read_text().count("forkserver: task ")
        assert forked == commands == 13, (run, forked, commands)  # 12 container tasks and CsvExampleGen's driver
    command = logs[0].read_text().splitlines()[0]
    assert "-m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor" in command
    assert "--executor_class_path sluice.components.data_gate.Executor" in command
    driver = sorted((fare_dry["dir"] / "logs").glob("*/*-CsvExampleGen.log"))[0].read_text()
    assert "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver" in driver  # preCacheCheck ran first


def test_first_dry_run_pushes_the_whole_bundle_and_writes_the_run_page(fare_dry):
    (proc, _, summary), _ = fare_dry["runs"]
    assert summary["status"] == "succeeded" and summary["blessed"] is True and summary["pushed"] is True
    version = Path(summary["saved_model_path"])
    assert version.parent == fare_dry["dir"] / "pipeline_root" / "serving" / "taxi_fare"
    for name in ("saved_model.pb", "assets.extra/tf_serving_warmup_requests", "sluice_push.json"):
        assert (version / name).is_file(), name
    tflite = version.parent.parent / "taxi_fare_tflite" / version.name
    assert {"model.tflite", "io_spec.json", "parity.json"} <= {p.name for p in tflite.iterdir()}
    assert summary["infra"]["blessed"] is True and summary["parity"]["passed"] is True
    assert summary["details"]["data_fingerprint"]  # CsvExampleGen's driver fingerprint reached the artifact
    assert (Path(summary["report_dir"]) / "index.html").is_file()
    assert "pushed SavedModel" in proc.stdout and "LastPassedDataResolver" in proc.stdout


def test_second_dry_run_finds_the_first_runs_verdict_and_blessed_model(fare_dry):
    (_, _, first), (proc, _, second) = fare_dry["runs"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if "resolved" in line}
    assert "verdict: found" in lines["LastPassedDataResolver"]
    assert "model: found" in lines["LatestBlessedModelResolver-model-resolver"]
    drift = [d for d in second["details"]["data_verdict"]["distances"] if d["comparison"] == "drift"]
    assert drift and not [d for d in first["details"]["data_verdict"]["distances"] if d["comparison"] == "drift"]
    assert second["metric_changes"], "the Evaluator compared with the first run's blessed model"
    store = json.loads((fare_dry["dir"] / "metadata.json").read_text())
    verdicts = [a for a in store if a["type"]["instanceSchema"].startswith("title: sluice.DataVerdict")]
    assert len(verdicts) == 2


def test_drifted_data_stops_at_the_gate_and_leaves_the_served_model_alone(fare_dry, sample, tmp_path):
    """Fares x 10: drift against the verdict the resolver found, the DataGate task fails (exit 3), nothing
    after it runs, and the serving tree is byte-identical. Every task here is a fresh process
    (``SLUICE_DRY_RUN_FORK=0``); the other dry runs fork them from the preloaded server."""
    serving = fare_dry["dir"] / "pipeline_root" / "serving"
    before = {p: p.read_bytes() for p in serving.rglob("*") if p.is_file()}
    lines = sample.read_text().splitlines()
    header = lines[0].split(",")
    fare = header.index("fare")

    def times_ten(line: str) -> str:
        cells = next(csv.reader([line]))
        if cells[fare]:
            cells[fare] = str(float(cells[fare]) * 10)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(cells)
        return buf.getvalue()

    drifted = tmp_path / "drifted.csv"
    drifted.write_text("\n".join([lines[0]] + [times_ten(l) for l in lines[1:]]) + "\n")
    proc, _, summary = _dry_run("taxi_fare", tmp_path, drifted, fare_dry["dir"], env={"SLUICE_DRY_RUN_FORK": "0"})
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stopped at task DataGate" in proc.stderr
    assert "fare [train vs last passed run] JENSEN_SHANNON_DIVERGENCE_HIGH" in proc.stdout
    assert "Transform " not in proc.stdout  # nothing after the gate ran
    assert not (fare_dry["dir"] / "logs" / summary["run_id"] / "00-forkserver.log").exists()
    assert {p: p.read_bytes() for p in serving.rglob("*") if p.is_file()} == before
    assert summary["status"] == "data_rejected" and summary["pushed"] is False


def test_multiclass_dry_run_blesses_and_pushes_with_class_names(tmp_path_factory):
    """The bundled multi-class example through every Kubeflow container task: blessed on TFMA's multi-class
    metrics, the pushed model answering the class names (a binary task runs locally in test_pipeline)."""
    import tensorflow as tf

    work = tmp_path_factory.mktemp("dry-wine")
    proc, body, summary = _dry_run("wine", work, WINE_DATA, work / "dry", schema=WINE_SCHEMA, train_steps=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert summary["pushed"] is True and summary["metrics"]["accuracy"] >= 0.85
    assert set(summary["per_class"]) == {"class_0", "class_1", "class_2"}
    model = tf.saved_model.load(summary["saved_model_path"])
    assert set(model.signatures["serving_raw"].structured_outputs) == {"outputs", "classes"}


def _records(folder: Path) -> int:
    import tensorflow as tf

    files = sorted(str(p) for p in folder.iterdir())
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def test_spans_on_kubeflow_the_window_and_the_drift_baseline_come_from_the_ledger(tmp_path):
    """data.window: 2 compiled for Vertex: span 1, then span 2 (other rows of the same data). The second run's DataGate
    compares with span 1 (from the span ledger, not a resolver), its SpanWindow step holds both spans, and
    Transform reads that window: its train split has the rows of both spans' train splits."""
    lines = DATA.read_text().splitlines(keepends=True)

    def span(number: int, rows) -> None:
        folder = tmp_path / "spans" / str(number)
        folder.mkdir(parents=True)
        (folder / "part.csv").write_text(lines[0] + "".join(rows))

    pattern = tmp_path / "spans" / "{SPAN}" / "*.csv"
    cfg = config_variant("taxi_fare", tmp_path, pattern, tflite=False, train_steps=150)
    raw = yaml.safe_load(cfg.read_text())
    raw["data"]["window"] = 2
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    directory = tmp_path / "dry"

    def dry_run():
        before = set((directory / "reports").glob("*/summary.json"))
        proc = run_cli("compile", "--config", str(cfg), "--image", "europe-docker.pkg.dev/p/sluice/pipeline:1",
                       "--pipeline-root", ROOT_URI, "--data", "gs://bucket/data/{SPAN}/*.csv",
                       "--output", str(tmp_path / "p.json"), "--dry-run", str(directory),
                       "--dry-run-data", str(pattern), timeout=1500)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        [new] = sorted(set((directory / "reports").glob("*/summary.json")) - before)
        return json.loads(new.read_text())

    span(1, lines[1::2][:2000])  # interleaved rows: the file is ordered, and its halves would drift
    first = dry_run()
    span(2, lines[2::2][:2000])
    second = dry_run()
    assert (first["details"]["data_verdict"]["span"], first["details"]["data_verdict"]["drift_baseline_span"]) == (1, None)
    assert (second["details"]["data_verdict"]["span"], second["details"]["data_verdict"]["drift_baseline_span"]) == (2, 1)
    assert [d for d in second["details"]["data_verdict"]["distances"] if d["comparison"] == "drift"]
    assert (first["details"]["spans"], second["details"]["spans"]) == ("1", "2 (window 2,1)")  # the run page's

    store = json.loads((directory / "metadata.json").read_text())
    windows = [a for a in store if a["metadata"].get("window_spans")]
    assert [w["metadata"]["window_spans"] for w in windows] == ["1", "2,1"]
    ingested = [a for a in store if a["name"].endswith("-CsvExampleGen-examples")]
    assert len(ingested) == 2
    window = Path(windows[1]["uri"])
    assert [p.name.split("-")[2] for p in sorted((window / "Split-train").iterdir())] == ["2", "1"]  # newest first
    both = sum(_records(Path(a["uri"]) / "Split-train") for a in ingested)
    assert _records(window / "Split-train") == both
    [transformed] = [a for a in store if a["name"].endswith("-Transform-transformed_examples")][1:]
    assert _records(Path(transformed["uri"]) / "Split-train") == both  # Transform read the window
    ledger = list((directory / "pipeline_root" / "_span_ledger" / "taxi-fare").glob("*/span-*/*.json"))
    assert sorted(p.parent.name for p in ledger) == ["span-1", "span-2"]
