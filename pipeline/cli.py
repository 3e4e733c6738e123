"""The ``sluice`` command line.

Start-up stays fast: TensorFlow/TFX are imported only inside the commands that run a pipeline, so ``--help``
and ``sluice check`` answer in well under a second. User errors (``SluiceError``) print one line and exit 1;
a gate that says no exits 3; a crashing component prints its traceback and the path of the full log.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import traceback
from pathlib import Path
from typing import Any, List, Optional

DEFAULT_OUTPUT = "output"

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_GATE = 3
EXIT_INTERNAL = 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluice",
        description="CSV in; a validated, evaluated model out (TFX 1.16 pipeline, local or Kubeflow).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the pipeline locally (Beam DirectRunner, SQLite MLMD)",
                         description="Run the whole pipeline locally and push the model if every gate passes.")
    run.add_argument("--config", required=True, help="pipeline config YAML (e.g. configs/taxi_fare.yaml)")
    run.add_argument("--data", help="CSV file or directory of CSVs; overrides the config's data.path")
    run.add_argument("--output", default=DEFAULT_OUTPUT, help=f"run directory (default: ./{DEFAULT_OUTPUT})")
    run.add_argument("--fresh", action="store_true", help="ignore TFX's cache and re-run every component")
    run.add_argument("--rerun", action="store_true",
                     help="run the pipeline even when nothing changed since the last successful run in --output "
                          "(otherwise that run's result is printed in a second; TFX's cache still applies)")
    run.add_argument("--json", action="store_true", help="print the final summary as one JSON object on stdout")
    run.add_argument("--span", type=int, help="data in spans: ingest this span instead of the newest (backfill "
                                              "older spans oldest first, or re-ingest a corrected one; the run "
                                              "trains on the newest data.window spans that passed)")

    check = sub.add_parser("check", help="validate a config and its data/schema without running anything")
    check.add_argument("--config", required=True, help="pipeline config YAML")
    check.add_argument("--data", help="CSV file or directory; overrides data.path")
    init = sub.add_parser("init", help="write a first config and schema for a new CSV (then `sluice run`)")
    init.add_argument("--data", required=True, help="the CSV (header row, one example per line)")
    init.add_argument("--label", help="the label column (default: guessed, and the guess printed)")
    init.add_argument("--task", choices=["regression", "binary_classification", "multiclass_classification"],
                      help="default: binary for a 0/1 label, multi-class for a string label, else regression")
    init.add_argument("--out", help="folder for <name>.yaml and schema.pbtxt (default: ./<name of the CSV>)")
    init.add_argument("--force", action="store_true", help="overwrite an existing config/schema there")
    schema = sub.add_parser("schema", help="infer a schema from data, or diff the curated one against it")
    schema.add_argument("action", choices=["infer", "diff"])
    schema.add_argument("--config", help="pipeline config YAML (diff: required; infer: only for its data.path)")
    schema.add_argument("--data", help="CSV file, directory or glob; overrides data.path (infer needs no config)")
    schema.add_argument("--out", help="infer: where to write the inferred schema (default: stdout)")

    comp = sub.add_parser("compile", help="compile the pipeline for Kubeflow Pipelines / Vertex AI (KFP v2 JSON)",
                          description="Compile the same pipeline graph with KubeflowV2DagRunner; works offline. "
                          "The config's kubeflow section adds container resources and the Vertex AI Trainer; every "
                          "file must be a URI or inside the image's /sluice/ tree (else: one line, nothing written).")
    comp.add_argument("--target", choices=["kubeflow"], default="kubeflow")
    comp.add_argument("--config", required=True, help="pipeline config YAML")
    comp.add_argument("--image", required=True, help="the pipeline image (built from the root Dockerfile)")
    comp.add_argument("--pipeline-root", required=True, help="a URI, e.g. gs://bucket/sluice/<pipeline>")
    comp.add_argument("--data", help="data URI at run time, e.g. gs://bucket/data/ (default: the config's "
                      "data.path, when it is a URI or inside the project's data/ folder, which the image holds)")
    comp.add_argument("--schema", help="curated schema URI at run time, e.g. gs://bucket/schema.pbtxt (default: "
                      "the config's schema, when it is a URI or inside the project's schemas/ folder)")
    comp.add_argument("--serving-dir", help="URI the Pusher writes to (default: <pipeline-root>/serving)")
    comp.add_argument("--output", default=None, help="pipeline JSON to write (default: <pipeline name>.json)")
    comp.add_argument("--dry-run", metavar="DIR",
                      help="then execute the compiled JSON here, task by task through TFX's Kubeflow V2 container "
                           "entrypoint, with the pipeline root mapped to DIR (see docs/DEPLOY.md)")
    comp.add_argument("--dry-run-data", metavar="CSV|DIR",
                      help="local data for the dry run's CsvExampleGen (default: the compiled data, if local)")

    synth = sub.add_parser("synth", help="write seeded synthetic data shaped like a reference CSV (scale tests)")
    synth.add_argument("--like", required=True, help="reference CSV (e.g. data/taxi/data.csv)")
    synth.add_argument("--rows", type=int, required=True)
    synth.add_argument("--out", required=True, help="directory for the shards")
    synth.add_argument("--shards", type=int, default=4)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--schema", help="curated schema: keeps jittered values inside its float domains")
    synth.add_argument("--outlier-rate", type=float, default=0.001)
    synth.add_argument("--missing-rate", type=float, default=0.01)

    runs = sub.add_parser("runs", help="list past runs recorded in an output directory's MLMD")
    runs.add_argument("--output", default=DEFAULT_OUTPUT, help=f"run directory (default: ./{DEFAULT_OUTPUT})")
    runs.add_argument("--pipeline", help="only this pipeline's runs")
    runs.add_argument("--json", action="store_true", help="one JSON object per run, one per line")
    show = sub.add_parser("show", help="one run's lineage: data -> schema -> transform -> model -> blessing -> push")
    show.add_argument("run", nargs="?", default="latest", help="run id, unique prefix, or position (-1 = latest)")
    show.add_argument("--output", default=DEFAULT_OUTPUT)
    report = sub.add_parser("report", help="print the path of a run's report page (or open it)")
    report.add_argument("run", nargs="?", default="latest", help="run id, unique prefix, or position (-1 = latest)")
    report.add_argument("--output", default=DEFAULT_OUTPUT)
    report.add_argument("--open", action="store_true", help="open the page in the default browser")
    serve = sub.add_parser("serve", help="serve pushed models with TF Serving's REST + gRPC API (no Docker needed)")
    from sluice.serving.server import add_arguments

    add_arguments(serve)
    predict = sub.add_parser("predict", help="predictions for CSV rows: from an endpoint (TF Serving, `sluice "
                                             "serve`), or in bulk on Beam with --output (no endpoint)")
    predict.add_argument("--input", required=True, help="rows.csv (header, one row per line) or rows.json; with "
                                                        "--output: a CSV file, a directory of *.csv or a glob")
    predict.add_argument("--endpoint", help="REST URL (http://host:8501, the default) or gRPC target "
                                            "(grpc://host:8500)")
    predict.add_argument("--model", help="the model's name (the config's export.model_name, else its pipeline "
                                         "name; with --config, taken from it)")
    predict.add_argument("--signature", help="endpoint mode: the signature to call (default serving_raw)")
    bulk = predict.add_argument_group("bulk scoring on Beam (--output)")
    bulk.add_argument("--output", help="a new directory for predictions-*.csv / *.tfrecord (PredictionLog), "
                                       "dead_letter-*.jsonl and summary.json")
    bulk.add_argument("--model-dir", help="the Pusher's serving directory (default: output/serving)")
    bulk.add_argument("--version", type=int, help="the model version to use (default: the newest)")
    bulk.add_argument("--config", help="a pipeline config: the model's name and the Beam profile (beam:)")
    bulk.add_argument("--keys", help="comma-separated columns copied to each prediction (default: every column "
                                     "the model does not take, e.g. ids and labels)")
    bulk.add_argument("--direct-running-mode", choices=["in_memory", "multi_threading", "multi_processing"],
                      help="Beam DirectRunner mode (default: the config's, else in_memory)")
    bulk.add_argument("--direct-num-workers", type=int, help="DirectRunner workers (0: one per core)")
    bulk.add_argument("--batch-size", type=int, help="most rows per model call (default 1024)")
    bulk.add_argument("--allow-bad-rows", type=int,
                      help="exit 0 with up to this many rows in the dead-letter file (default 0: any -> exit 3)")
    monitor = sub.add_parser("monitor", help="serving skew: logged requests (serve --log-requests) vs the "
                                             "training data of the model that answered them")
    monitor.add_argument("--config", required=True, help="the pipeline config of the served model")
    monitor.add_argument("--logs", required=True, help="the directory of PredictionLog files")
    monitor.add_argument("--output", default=DEFAULT_OUTPUT,
                         help=f"the run directory that pushed the served model (default: ./{DEFAULT_OUTPUT})")
    monitor.add_argument("--report", help="where to write monitor.html/.json (default: OUTPUT/reports/monitor-<time>)")
    monitor.add_argument("--json", action="store_true", help="the result as one JSON line on stdout (an error too)")
    monitor.add_argument("--data", help="the --data the pushing run was given, if any (part of its config)")
    monitor.add_argument("--serving", metavar="DIR", help="the serving directory the versions were pushed to "
                         "(gs://… for Kubeflow/Vertex): each version's push record names its data, so no ML "
                         "Metadata is needed (default: --output's)")
    monitor.add_argument("--max-rows", type=int, default=100_000,
                         help="rows per served version to compare, a uniform sample of the logs (default 100000)")
    return parser


def _find(output: str, ref: str):
    from sluice.pipeline.errors import SluiceError
    from sluice.pipeline.mlmd import find_run

    metadata = Path(output) / "metadata.sqlite"
    if not metadata.is_file():
        raise SluiceError(str(metadata), "no runs recorded here", f"run `sluice run --output {output}` first, or pass --output")
    record = find_run(metadata, ref)
    if record is None:
        raise SluiceError(f"run {ref!r}", "no such run (or the prefix matches several)",
                          f"see `sluice runs --output {output}` for run ids")
    return record


def _report_path(output: str, run_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in run_id)
    return Path(output).resolve() / "reports" / safe / "index.html"


def _cmd_compile(args: argparse.Namespace) -> int:
    import os
    import warnings

    # The compile imports TensorFlow and google-cloud libraries: their start-up chatter is not the user's business.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from sluice.pipeline.config import load_config
    from sluice.pipeline.kubeflow import compile_kubeflow

    config = load_config(args.config)
    output = Path(args.output or f"{config.name}.json")
    serving = args.serving_dir or f"{args.pipeline_root.rstrip('/')}/serving"
    path = compile_kubeflow(config, args.image, args.pipeline_root, output, data=args.data, serving_base=serving,
                            schema=args.schema)
    print(f"sluice: compiled {config.name} for Kubeflow V2 -> {path} (image {args.image}, root {args.pipeline_root})")
    if args.dry_run:
        return _dry_run(config, path, Path(args.dry_run), args.dry_run_data)
    return EXIT_OK


def _dry_run(config, compiled: Path, directory: Path, data: Optional[str]) -> int:
    """Execute the compiled pipeline here (pipeline/dry_run.py) and print its summary like `sluice run`."""
    import json
    import logging
    import time

    from sluice.pipeline.dry_run import execute
    from sluice.pipeline.kubeflow import project_roots
    from sluice.pipeline.runner import format_summary, report_dry_run

    started = time.monotonic()
    print(f"sluice: dry run of {compiled} -> {directory.resolve()}")
    outcome = execute(json.loads(compiled.read_text()), directory, data=data, roots=project_roots(config),
                      progress=lambda line: print(line, flush=True))
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # TFMA's deprecation notices while reading results
    result = report_dry_run(config, directory.resolve(), outcome, time.monotonic() - started)
    for line in format_summary(result):
        print(line)
    if outcome.failure is not None:
        print(f"sluice: dry run stopped at task {outcome.failure.task} (log: {outcome.failure.log})",
              file=sys.stderr)
        return outcome.failure.exit_code
    return EXIT_OK if result.pushed else EXIT_GATE


def _cmd_synth(args: argparse.Namespace) -> int:
    from sluice.pipeline.errors import SluiceError
    from sluice.pipeline.synth import synthesize

    if args.rows < 1 or args.shards < 1:
        raise SluiceError("--rows/--shards", "must be at least 1", "e.g. --rows 100000 --shards 8")
    if not Path(args.like).is_file():
        raise SluiceError(args.like, "reference CSV not found", "pass --like PATH to a CSV file")
    paths = synthesize(Path(args.like), Path(args.out), args.rows, args.shards, args.seed,
                       Path(args.schema) if args.schema else None, outlier_rate=args.outlier_rate,
                       missing_rate=args.missing_rate)
    print(f"sluice: wrote {args.rows} rows in {len(paths)} files under {Path(args.out).resolve()}")
    return EXIT_OK


def _cmd_runs(args: argparse.Namespace) -> int:
    import datetime as dt
    import json

    from sluice.pipeline.mlmd import all_runs

    records = all_runs(Path(args.output) / "metadata.sqlite", args.pipeline)
    if not records:
        print(f"no runs recorded in {Path(args.output).resolve()}", file=sys.stderr)
        return EXIT_OK
    rows = []
    for i, r in enumerate(records, 1):
        rows.append({
            "n": i, "run": r.run_id, "pipeline": r.pipeline,
            "started": dt.datetime.fromtimestamp(r.started).strftime("%Y-%m-%d %H:%M:%S"),
            "seconds": round(r.seconds, 1), "data": r.data_fingerprint or "-", "spans": r.spans,
            "blessed": {True: "yes", False: "no", None: "-"}[r.blessed],
            "pushed": r.pushed_version if r.pushed else "-",
            "failed": ",".join(n for n, e in r.executions.items() if e.state == "FAILED" and "Resolver" not in n),
            "killed": ",".join(n for n, e in r.executions.items() if e.state == "CANCELED") if r.abandoned else "",
        })
    if args.json:
        for row in rows:
            print(json.dumps(row, sort_keys=True))
        return EXIT_OK
    spans = any(row["spans"] != "-" for row in rows)  # a column only for data that comes in spans
    header = (f"{'#':>3}  {'started':<19}  {'pipeline':<14} {'data':<12} " + (f"{'spans':<20} " if spans else "")
              + f"{'blessed':<7}  {'pushed':<11} {'time':>7}  run")
    print(header)
    for row in rows:
        note = f"  (failed: {row['failed']})" if row["failed"] else ""
        note += f"  (killed during: {row['killed']})" if row["killed"] else ""
        print(f"{row['n']:>3}  {row['started']:<19}  {row['pipeline']:<14} {row['data']:<12} "
              + (f"{row['spans']:<20} " if spans else "") + f"{row['blessed']:<7}  "
              f"{row['pushed']:<11} {row['seconds']:>6.1f}s  {row['run']}{note}")
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    from sluice.pipeline.run_details import lineage

    record = _find(args.output, args.run)
    print(f"run {record.run_id} ({record.pipeline}), data {record.data_fingerprint or '-'}, "
          f"blessed: {record.blessed}, pushed: {record.pushed_version if record.pushed else 'no'}")
    for step, uri in lineage(record):
        print(f"  {step:<13} {uri or '-'}")
    if record.pushed:
        print(f"  {'served at':<13} {record.pushed_destination}")
    for node, execution in sorted(record.executions.items(), key=lambda kv: kv[1].execution_id):
        if execution.state == "FAILED" and "Resolver" not in node:
            print(f"  FAILED at {node}")
    report = _report_path(args.output, record.run_id)
    print(f"  {'report':<13} {report if report.is_file() else '(none)'}")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from sluice.pipeline.errors import SluiceError

    record = _find(args.output, args.run)
    path = _report_path(args.output, record.run_id)
    if not path.is_file():
        raise SluiceError(str(path), "this run has no report page", "reports are written by `sluice run`")
    print(path)
    if args.open:
        import webbrowser

        webbrowser.open(path.as_uri())
    return EXIT_OK


def _load(config_path: str, data: Optional[str]):
    from sluice.pipeline.config import load_config

    config = load_config(config_path)
    if data:
        config = config.with_data_path(data)
    return config


def _cmd_check(args: argparse.Namespace) -> int:
    from sluice.pipeline.runner import preflight

    config = _load(args.config, args.data)
    source = preflight(config)
    print(f"ok: {config.name} ({config.task.type}, {len(config.features)} features) reads {len(source.files)} "
          f"file(s) from {source.description}")
    return EXIT_OK


def _infer_quietly(data_location: str):
    """TFDV's schema draft (``schema.infer_schema``), with TensorFlow/Beam start-up noise sent to a log file."""
    import tempfile

    from sluice.pipeline.runner import output_to_log
    from sluice.pipeline.schema import infer_schema

    log = Path(tempfile.mkstemp(prefix="sluice-schema-", suffix=".log")[1])
    with output_to_log(log, 1):
        return infer_schema(data_location)


def _cmd_init(args: argparse.Namespace) -> int:
    import os

    import yaml

    from sluice.pipeline import init
    from sluice.pipeline.config import parse_config
    from sluice.pipeline.data_source import check_columns, resolve_data_source
    from sluice.pipeline.errors import SluiceError
    from sluice.pipeline.runner import MIN_EVAL_ROWS
    from sluice.pipeline.schema import draft_text

    data = Path(args.data).resolve()
    if not data.is_file():
        raise SluiceError(f"--data {args.data}", "not a file", "give the path of one CSV file")
    check_columns(resolve_data_source(data), [])  # what CsvExampleGen would misread: one line with the fix
    name = init.project_name(data)
    try:
        plan = init.plan(init.profile(data), name, args.label, args.task, MIN_EVAL_ROWS)
    except (ValueError, csv.Error) as e:
        raise SluiceError(f"--data {args.data}", str(e), "see `sluice init --help`")
    out = Path(args.out or name).resolve()
    config_path, schema_path = out / f"{name}.yaml", out / "schema.pbtxt"
    existing = [p for p in (config_path, schema_path) if p.exists()]
    if existing and not args.force:
        raise SluiceError(str(existing[0]), "already exists", "pass --force to overwrite, or --out another folder")
    relative = os.path.relpath(data, out)
    text = init.config_text(plan, str(data) if relative.startswith("../..") else relative, schema_path.name)
    parse_config(yaml.safe_load(text), base_dir=str(out))  # valid before anything is written (else: a bug here)
    schema = _infer_quietly(str(data))
    out.mkdir(parents=True, exist_ok=True)
    schema_path.write_text(draft_text(schema, str(data)))
    config_path.write_text(text)
    for line in init.summary(plan):
        print(line)
    print(f"wrote {config_path} and {schema_path}\nnext: sluice run --config {config_path}")
    return EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    from sluice.pipeline.data_source import check_columns, resolve_data_source
    from sluice.pipeline.errors import SluiceError
    from sluice.pipeline.schema import diff_schemas, load_schema

    if args.config is None and (args.action == "diff" or not args.data):
        needs = "--config (the curated schema to compare)" if args.action == "diff" else "--data CSV or --config"
        raise SluiceError(f"schema {args.action}", f"needs {needs}",
                          f"e.g. sluice schema {args.action} " + ("--config configs/x.yaml" if args.action == "diff"
                                                                  else "--data data.csv --out schema.pbtxt"))
    config = _load(args.config, args.data) if args.config else None
    source = resolve_data_source(config.data_path if config else Path(args.data))
    check_columns(source, [])  # a header or rows CsvExampleGen would misread: one line, before TFDV
    inferred = _infer_quietly(source.location)
    if args.action == "infer":
        from sluice.pipeline.schema import draft_text

        text = draft_text(inferred, source.location)
        if args.out:
            Path(args.out).write_text(text)
            print(f"wrote the inferred schema of {source.description} to {args.out}; curate it (domains, "
                  "presence, environments) and point the config's `schema:` at it")
        else:
            print(text, end="")
        return EXIT_OK
    rows = diff_schemas(load_schema(config.schema_file), inferred)
    print(f"curated {config.schema_file} vs inferred from {source.description}: {len(rows)} difference(s)")
    width = max([len(r[0]) for r in rows] + [7])
    for feature, aspect, cur, inf in rows:
        print(f"  {feature:<{width}}  {aspect:<8}  curated: {cur:<22}  inferred: {inf}")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from sluice.pipeline import run_lock

    config = _load(args.config, args.data)
    # With --json, stdout carries only the JSON object; progress goes to stderr.
    console = sys.stderr if args.json else sys.stdout
    output = Path(args.output)
    with run_lock.hold(output) as dead:  # one run per output directory, the shortcut's answer and record included
        if dead is not None:
            print(f"sluice: the previous run in {output} ({dead.describe()}) died mid-run; this run cleans up after it",
                  file=console)
        return _run_locked(args, config, output, console)


def _run_locked(args: argparse.Namespace, config: Any, output: Path, console: Any) -> int:
    from sluice.pipeline.runner import RunFailed, format_summary, run_local, summary_json

    from sluice.pipeline import shortcut

    # None when the inputs cannot be read (the pre-flight says why) or when --span picks a span: the key is
    # of the newest span's files.
    key = shortcut.key_of(config) if args.span is None else None
    answer = None if (args.fresh or args.rerun or key is None) else shortcut.lookup(output, key)
    if answer is not None:
        return _answered(answer, args.json, console)
    # From here on the last answer may no longer hold (this run can move the drift baseline or the blessed
    # model): only a run that succeeds is recorded again.
    shortcut.forget(output)
    try:
        result = run_local(config, output, fresh=args.fresh, console=console, span=args.span)
    except RunFailed as failed:
        traceback.print_exception(type(failed.cause), failed.cause, failed.cause.__traceback__, file=sys.stderr)
        print(f"sluice: {failed} — full log: {failed.log_file}; report: {failed.result.report_dir}/index.html",
              file=sys.stderr)
        if args.json:
            print(summary_json(failed.result))
        return EXIT_INTERNAL
    for line in format_summary(result):
        print(line, file=sys.stderr if result.status in ("data_rejected", "refused") else console)
    if args.json:
        print(summary_json(result))
    if result.status == "succeeded":
        # Recorded only if the inputs did not change while the run read them.
        if key is not None and key == shortcut.key_of(config):
            shortcut.record(output, key, result.to_dict())
        return EXIT_OK
    if result.status == "refused":
        return EXIT_USER_ERROR
    return EXIT_GATE if result.status in ("not_blessed", "data_rejected", "parity_failed", "infra_failed") else EXIT_INTERNAL


def _answered(answer, as_json: bool, console) -> int:
    """Print the recorded run's result, marked as such (``pipeline/shortcut.py``)."""
    from sluice.pipeline.runner import ComponentLine, RunResult, format_summary

    known = {f.name for f in dataclasses.fields(RunResult)}
    summary = {k: v for k, v in answer.summary.items() if k in known}  # a newer/older sluice's extra keys
    summary["components"] = [ComponentLine(**c) for c in summary.get("components", [])]
    result = RunResult(**summary)
    print(f"sluice: nothing changed since run {answer.run_id} (same config, schema, data, code and packages); "
          "its result follows, nothing was re-run (--rerun runs the pipeline anyway)", file=console)
    for line in format_summary(result):
        print(line, file=console)
    if as_json:
        print(json.dumps({**answer.summary, "answered_from": answer.run_id}, sort_keys=True))
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from sluice.pipeline.errors import SluiceError
    from sluice.serving.errors import ServingError, SettingError
    from sluice.serving.server import serve

    try:
        return serve(args)
    except SettingError as e:
        raise SluiceError(e.where, e.problem, e.fix)
    except ServingError as e:
        raise SluiceError(f"--model-dir {args.model_dir}", e.message, "run `make run` (or `sluice run`) first")
    except OSError as e:
        raise SluiceError(f"ports {args.rest_port}/{args.grpc_port}", str(e),
                          "pass free ports with --rest-port / --grpc-port")


def _cmd_monitor(args: argparse.Namespace) -> int:
    import json

    from sluice.pipeline.errors import SluiceError
    from sluice.pipeline.monitor import monitor, summary_lines

    try:
        if not Path(args.config).is_file():
            raise SluiceError(f"--config {args.config}", "no such file", "pass the config of the served model")
        if args.max_rows < 100:
            raise SluiceError("--max-rows", f"{args.max_rows} rows say nothing about a distribution",
                              "pass at least 100 (default 100000)")
        result = monitor(args.config, args.logs, args.output, args.report, args.max_rows, args.data, args.serving)
    except SluiceError as e:
        if args.json:  # an alerting job reading stdout learns that the check did not run
            print(json.dumps({"passed": None, "error": {"where": e.where, "problem": e.problem, "fix": e.fix}}))
        raise
    except Exception as e:  # a bug, not the user's: with --json still a line that says the check did not run
        if not args.json:
            raise
        import traceback

        traceback.print_exc()
        print(json.dumps({"passed": None, "error": {"where": "sluice monitor", "problem": f"{type(e).__name__}: {e}",
                                                    "fix": "report this with the traceback above"}}))
        return EXIT_INTERNAL
    console = sys.stderr if args.json else sys.stdout
    for line in summary_lines(result):
        print(line, file=console)
    if args.json:
        print(json.dumps(result, sort_keys=True, default=str))
    return EXIT_OK if result["passed"] else EXIT_GATE


def _cmd_predict(args: argparse.Namespace) -> int:
    from sluice.components.features import request_key
    from sluice.pipeline.errors import SluiceError
    from sluice.serving import client
    from sluice.serving.errors import ServingError, SettingError

    if args.output is not None:
        for flag, value in (("--endpoint", args.endpoint), ("--signature", args.signature)):
            if value:
                raise SluiceError(f"{flag} with --output", "bulk scoring runs the model's serving_default here, "
                                  "without an endpoint", f"drop {flag} to score in bulk, or --output to ask the "
                                  "endpoint")
        try:
            return _bulk_predict(args)
        except SettingError as e:
            raise SluiceError(e.where, e.problem, e.fix)
    bulk_only = [flag for flag, value in (("--keys", args.keys), ("--version", args.version), ("--config", args.config),
                                          ("--model-dir", args.model_dir), ("--batch-size", args.batch_size),
                                          ("--allow-bad-rows", args.allow_bad_rows),
                                          ("--direct-running-mode", args.direct_running_mode),
                                          ("--direct-num-workers", args.direct_num_workers)) if value is not None]
    if bulk_only:
        raise SluiceError(bulk_only[0], "applies to bulk scoring only", "add --output DIR to score in bulk, or "
                          f"leave {bulk_only[0]} out to ask the endpoint")
    if args.model is None:
        raise SluiceError("--model", "missing", "name the served model (the config's export.model_name)")
    args.endpoint = args.endpoint or "http://127.0.0.1:8501"
    args.signature = args.signature or client.SIGNATURE
    try:
        rows = client.read_rows(Path(args.input))
    except (OSError, ValueError) as e:
        raise SluiceError(f"--input {args.input}", str(e), "give a CSV with a header row or a JSON list of objects")
    grpc = args.endpoint.startswith("grpc://")
    try:
        if grpc:
            service = client.GrpcClient(args.endpoint[len("grpc://"):], args.model)
        else:
            service = client.RestClient(args.endpoint, args.model)
        inputs = service.input_types(args.signature)
        # Rows use the CSV's own column names; a column TensorFlow cannot name as a signature input is sent
        # under its derived name (features.input_keys), so users never type that name.
        requests = [{request_key(k, inputs): v for k, v in row.items()} for row in rows]
        absent = sorted(name for name in inputs if not any(name in row for row in requests))
        if absent and args.signature == client.SIGNATURE:
            print(f"sluice: not in {args.input}, sent as the fill value (0 / \"\"): {', '.join(absent)}",
                  file=sys.stderr)
        answers = service.predict(client.fill_rows(requests, inputs), args.signature)
    except ServingError as e:
        raise SluiceError(f"{args.endpoint} ({args.model})", f"{e.code}: {e.message}",
                          "check the model name and that `sluice serve` (or TF Serving) is running")
    except OSError as e:
        raise SluiceError(args.endpoint, f"cannot connect: {e}", "start `sluice serve` or pass --endpoint")
    import numpy as np

    classes = answers.get("classes")
    for i, (row, value) in enumerate(zip(rows, np.asarray(answers["outputs"], np.float64).reshape(len(rows), -1))):
        line: dict = {"prediction": value.tolist() if value.size > 1 else float(value[0])}
        if classes is not None:  # multi-class: the most probable class's name (``prediction``: every class's)
            name = classes[i]
            line["class"] = name.decode() if isinstance(name, bytes) else str(name)
        print(json.dumps({**line, "input": row}))
    return EXIT_OK


def _bulk_predict(args: argparse.Namespace) -> int:
    """``sluice predict --output``: Beam RunInference over CSV files with the pushed model (serving/batch.py)."""
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter; errors still show
    warnings.filterwarnings("ignore", category=FutureWarning)
    from sluice.pipeline.errors import SluiceError
    from sluice.serving import batch
    from sluice.serving.repository import available_versions

    model_dir = args.model_dir or "output/serving"
    batch_size = 1024 if args.batch_size is None else args.batch_size
    allowed = 0 if args.allow_bad_rows is None else args.allow_bad_rows
    name, beam_config = args.model, None
    if args.config:
        config = _load(args.config, None)
        name, beam_config = name or config.model_name, config.beam
    if not name:
        raise SluiceError("--model", "missing", "name the pushed model, or pass --config")
    if beam_config is not None and beam_config.profile != "direct":
        raise SluiceError(f"beam.profile {beam_config.profile}", "bulk scoring from the command line runs on "
                          "Beam's DirectRunner", "use profile direct (in_memory or multi_processing) here")
    updates = {k: v for k, v in (("direct_running_mode", args.direct_running_mode),
                                 ("direct_num_workers", args.direct_num_workers)) if v is not None}
    if updates:
        from sluice.pipeline.platform import BeamConfig

        try:
            beam_config = BeamConfig.model_validate({**(beam_config or BeamConfig()).model_dump(), **updates})
        except ValueError as e:
            raise SluiceError("--direct-num-workers", str(e).splitlines()[-1], "give 0 (one per core) or more")
    beam_args = (beam_config.args() if beam_config is not None
                 else ["--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    if batch_size < 1 or allowed < 0:
        raise SluiceError("--batch-size / --allow-bad-rows", "must be at least 1 / 0", "pass a count")
    base = Path(model_dir) / name
    versions = available_versions(base)
    if not versions or (args.version is not None and args.version not in versions):
        have = f"it has versions {versions}" if versions else "no pushed version is there"
        raise SluiceError(f"--model-dir {model_dir} --model {name}" +
                          (f" --version {args.version}" if args.version is not None else ""), have,
                          "run `sluice run` (it pushes) or pass the serving directory and version that exist")
    version = args.version if args.version is not None else versions[-1]
    batch.check_output(args.output)
    plan = batch.prepare(str(base / str(version)), name, version, args.input,  # SettingError: one screen
                         [k.strip() for k in args.keys.split(",") if k.strip()] if args.keys else None)
    print(f"sluice: scoring {len(plan.files)} file(s) with {name} version {version} on Beam ({' '.join(beam_args)})",
          file=sys.stderr)
    outcome = batch.run(plan, args.output, beam_args, max_batch=batch_size)
    print(f"sluice: {outcome.scored} row(s) scored in {outcome.seconds:.1f} s ({outcome.rows_per_second:,.0f} rows/s) "
          f"-> {args.output}/predictions-*.csv, *.tfrecord (PredictionLog); keys: {', '.join(plan.key_columns)}")
    if outcome.dead:
        worst = "; ".join(f"{n} x {reason}" for reason, n in sorted(outcome.reasons.items(), key=lambda kv: -kv[1])[:3])
        print(f"sluice: {outcome.dead} row(s) not scored -> {args.output}/dead_letter-*.jsonl ({worst})",
              file=sys.stderr)
    if outcome.scored + outcome.dead == 0:
        print(f"sluice: {args.input} has no data rows: nothing was scored (exit {EXIT_GATE})", file=sys.stderr)
        return EXIT_GATE
    if outcome.dead > allowed:
        print(f"sluice: more rows in the dead-letter file than --allow-bad-rows {allowed}: exit "
              f"{EXIT_GATE}; fix them (each letter names the file, line and reason) or raise the allowance",
              file=sys.stderr)
        return EXIT_GATE
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    from sluice.pipeline.errors import SluiceError

    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USER_ERROR
    handlers = {"run": _cmd_run, "check": _cmd_check, "init": _cmd_init, "schema": _cmd_schema, "runs": _cmd_runs, "compile": _cmd_compile, "synth": _cmd_synth, "show": _cmd_show,
                "report": _cmd_report, "serve": _cmd_serve, "predict": _cmd_predict,
                "monitor": _cmd_monitor}
    try:
        return handlers[args.command](args)
    except SluiceError as e:
        print(f"sluice: error: {e.render()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("sluice: interrupted; the serving directory is untouched unless the Pusher had finished", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
