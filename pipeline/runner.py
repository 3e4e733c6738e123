"""Local run: pre-flight checks, TFX's LocalDagRunner with SQLite MLMD, live progress, a summary from MLMD.

TensorFlow, Beam and TFX write thousands of log lines; they go to ``<output>/logs/<run>.log`` (file
descriptors 1 and 2 are redirected for the duration of the run) while the console gets one line per
component and the summary. The exit status is decided from MLMD (blessed? pushed?), not from log text.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, TextIO

from sluice.components.refusal import Refused
from sluice.pipeline.config import PipelineConfig, is_uri
from sluice.pipeline.data_source import DataSource, check_columns, resolve_data_source
from sluice.pipeline.errors import DataError, SluiceError
from sluice.pipeline.pipeline import OutputPaths
from sluice.pipeline.schema import check_schema_columns

@dataclass
class ComponentLine:
    name: str
    cached: bool
    seconds: float
    state: str = "COMPLETE"


@dataclass
class RunResult:
    status: str
    """``succeeded`` (blessed and pushed), ``data_rejected`` (the DataGate stopped it before Transform),
    ``not_blessed`` (the Evaluator said no), ``parity_failed`` (a TFLite variant did not answer like the
    SavedModel), ``infra_failed`` (the model did not load or answer in the local TF Serving–compatible
    server), ``refused`` (a stage refused its input for a reason the user can fix, e.g. a batch larger than
    the train split: ``components/refusal.py``) or ``failed``; nothing is pushed unless ``succeeded``."""
    pipeline: str
    run_id: str
    blessed: Optional[bool]
    pushed: bool
    saved_model_path: Optional[str]
    version: Optional[str]
    report_dir: str
    log_file: str
    seconds: float
    components: List[ComponentLine] = field(default_factory=list)
    metrics: Dict[str, float] = field(default_factory=dict)
    per_class: Dict[str, Dict[str, float]] = field(default_factory=dict)
    """Multi-class: class name -> its one-vs-rest precision / recall / AUC on the eval split."""
    metric_changes: Dict[str, float] = field(default_factory=dict)
    """Candidate minus baseline (latest blessed model), when there was a baseline."""
    failures: List[Dict[str, Any]] = field(default_factory=list)
    exempt_failures: List[Dict[str, Any]] = field(default_factory=list)
    """Threshold failures on feature slices smaller than ``evaluation.min_slice_size`` (reported only)."""
    slice_summary: List[Dict[str, Any]] = field(default_factory=list)
    """Per gated metric and slicing spec: the worst slice that gates (``slices: true`` thresholds)."""
    evaluation_report: Optional[str] = None
    details: Dict[str, Any] = field(default_factory=dict)
    """What the run page shows besides the summary (pipeline/run_details.py)."""
    tflite_path: Optional[str] = None
    parity: Dict[str, Any] = field(default_factory=dict)
    """The ModelExport verdict (``parity.json``): per TFLite variant size, differences, metric, pass/fail."""
    infra: Dict[str, Any] = field(default_factory=dict)
    """The InfraCheck verdict (``infra_check.json``): requests replayed over gRPC/REST, failures."""
    bulk: Dict[str, Any] = field(default_factory=dict)
    """BulkScore's ``summary.json`` (config ``bulk_inference``): rows scored and not, where the output is."""
    data_report: Optional[str] = None
    error: Optional[str] = None
    warnings: List[str] = field(default_factory=list)
    """What could not be read back for the summary (the run's outcome is unaffected); shown on the console."""
    notes: List[str] = field(default_factory=list)
    """What the user should know about this run's evidence (e.g. a small eval split); console and run page."""

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class RunFailed(Exception):
    """A component raised: carries the node and the log, so the CLI can say where to look."""

    def __init__(self, component: str, log_file: Path, cause: BaseException, result: RunResult) -> None:
        self.component = component
        self.log_file = log_file
        self.cause = cause
        self.result = result
        super().__init__(f"component {component} failed: {type(cause).__name__}: {cause}")


class _Progress(logging.Handler):
    """Turns LocalDagRunner's log records into console lines: a component's start, then its end with cache
    state and duration. On a terminal the end line replaces the start line in place; otherwise (a log, CI)
    both are plain lines."""

    def __init__(self, write: Callable[[str], None], tty: bool = False) -> None:
        super().__init__(level=logging.INFO)
        self.write = write
        self.tty = tty
        self.current: Optional[str] = None
        self.started = 0.0
        self.cached = False
        self.lines: List[ComponentLine] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg, args = record.msg, record.args or ()
        if msg == "Component %s is running.":
            self.current, self.started, self.cached = str(args[0]), time.monotonic(), False
            self.write(f"  {self.current:<28} running…" + ("" if self.tty else "\n"))
        elif msg == "A cached execution %d is used.":
            self.cached = True
        elif msg == "Component %s is finished." and self.current:
            line = ComponentLine(self.current, self.cached, time.monotonic() - self.started)
            self.lines.append(line)
            text = f"  {line.name:<28} {'cached' if line.cached else 'ran':<7}{line.seconds:7.1f} s"
            self.write(("\r\033[K" + text if self.tty else text) + "\n")
            self.current = None


@contextlib.contextmanager
def output_to_log(log_file: Path, console_fd: int) -> Iterator[TextIO]:
    """Send fd 1/2 (C++ logs, Beam, Keras progress) and Python logging to ``log_file``.

    Yields a text stream on what ``console_fd`` (1 or 2) was before the redirect: the console.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(saved_out if console_fd == 1 else saved_err), "w", buffering=1)
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    root = logging.getLogger()
    handlers_before = list(root.handlers)
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    old_level = root.level
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        root.addHandler(file_handler)
        root.setLevel(logging.INFO)
        yield console
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for handler in list(root.handlers):  # libraries call logging.basicConfig mid-run: undo that too
            if handler not in handlers_before:
                root.removeHandler(handler)
        root.setLevel(old_level)
        file_handler.close()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err, log_fd):
            os.close(fd)
        console.close()


def _quiet_absl() -> None:
    """absl prints every INFO line to stderr by default; keep records flowing to Python logging only."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    handler = absl_logging.get_absl_handler()
    logging.getLogger().removeHandler(handler)


def preflight(config: PipelineConfig, span: Optional[int] = None) -> DataSource:
    """Cheap checks before any TFX work: data exists, has the columns, and the schema describes them
    (``span``: the span to ingest instead of the newest, ``sluice run --span``)."""
    source = resolve_data_source(config.data_path, span)
    check_columns(source, config.raw_columns())
    check_schema_columns(config.schema_file, config.raw_columns())
    check_bulk_table(config)
    return source


def check_bulk_table(config: PipelineConfig) -> None:
    """The ``bulk_inference`` table exists and has every feature column, before training: otherwise the run
    would train and push, and only then find it cannot score (a table at a URI is checked by BulkScore)."""
    if config.bulk_inference is None or is_uri(config.bulk_inference.input):
        return
    from sluice.serving.batch import parse_header
    from sluice.serving.errors import SettingError

    try:
        table = resolve_data_source(Path(config.bulk_contract().bulk.input))
    except DataError as e:
        raise DataError("bulk_inference.input", e.problem, e.fix)
    for path in table.files:
        with open(path, "rb") as f:
            first = f.readline()
            rows = any(line.strip() for line in f)
        try:  # the rules sluice predict / BulkScore apply
            header = parse_header(first, path)
        except SettingError as e:
            raise DataError(f"bulk_inference.input {path}", e.problem, e.fix)
        if not rows:
            raise DataError(f"bulk_inference.input {path}", "has no data rows", "check the export that writes the table")
        missing = [f.name for f in config.features if f.name not in header]
        if missing:
            raise DataError(f"bulk_inference.input {path}", f"has no column {', '.join(missing)} (the model's "
                            "inputs)", "score a table with the training data's columns (an empty cell is a "
                            "missing value)")


def run_local(
    config: PipelineConfig,
    output_dir: Path,
    fresh: bool = False,
    console: TextIO = sys.stdout,
    span: Optional[int] = None,
) -> RunResult:
    """Run the pipeline locally, printing progress to ``console`` (``sys.stdout`` or ``sys.stderr``).

    Holds the output directory's run lock (``run_lock``; re-entrant, so the CLI may hold it around this).
    Raises SluiceError for user errors (``RunLocked`` included), RunFailed when a component fails.
    """
    from sluice.pipeline import run_lock

    with run_lock.hold(Path(output_dir)) as dead:
        return _run_locked(config, output_dir, fresh, console, dead, span)


def _run_locked(config: PipelineConfig, output_dir: Path, fresh: bool, console: TextIO, dead: Any,
                span: Optional[int] = None) -> RunResult:
    printer = lambda line: print(line, file=console, flush=True)  # noqa: E731
    start = time.monotonic()
    source = preflight(config, span)
    paths = OutputPaths(Path(output_dir).resolve())
    for d in (paths.root, paths.logs, paths.reports):
        d.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_file = paths.logs / f"{config.name}-{stamp}.log"
    printer(f"sluice: running {config.name} on {source.description} -> {paths.root}")
    printer(f"  log: {log_file}")
    if dead is not None:
        printer(f"  note: the previous run here ({dead.describe()}) died holding the output directory")
    for line in _close_abandoned(paths):
        printer(line)
    run_id = dt.datetime.now().isoformat()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    progress: Optional[_Progress] = None
    failure: Optional[BaseException] = None
    console_fd = 2 if console is sys.stderr else 1
    with output_to_log(log_file, console_fd) as live:
        def write(text: str) -> None:
            live.write(text)
            live.flush()

        progress = _Progress(write, tty=console.isatty())
        logging.getLogger().addHandler(progress)
        try:
            _quiet_absl()
            from tfx.orchestration.local.local_dag_runner import LocalDagRunner

            from sluice.pipeline.pipeline import create_pipeline

            tfx_pipeline = create_pipeline(config, source, paths, enable_cache=not fresh)
            with _run_temp_dir(paths):
                LocalDagRunner().run_with_ir(_with_run_id(tfx_pipeline, run_id))
        except Exception as e:  # reported below with the component that raised it
            logging.getLogger(__name__).exception("pipeline failed")
            failure = e
        finally:
            logging.getLogger().removeHandler(progress)
        result = _summarize(config, paths, log_file, progress.lines, time.monotonic() - start, run_id=run_id)

    from sluice.components.data_gate import DataGateFailed

    gate = _in_chain(failure, DataGateFailed)
    if gate is not None:
        result.status = "data_rejected"
        result.components.append(ComponentLine(progress.current or "DataGate", False, 0.0, "FAILED"))
        result.data_report = _keep_data_report(gate.report, Path(result.report_dir))
        result.error = str(gate).replace(gate.report, result.data_report or gate.report)
        _write_report(result, config)
        return result
    if failure is not None:
        component = progress.current or "pipeline"
        refusal = _in_chain(failure, Refused)
        result.status = "failed" if refusal is None else "refused"
        result.error = (f"{component} refused the run: {refusal}" if refusal is not None
                        else f"{component}: {type(failure).__name__}: {failure}")
        result.components.append(ComponentLine(component, False, 0.0, "FAILED"))
        _write_report(result, config)
        if refusal is not None:
            return result
        if isinstance(failure, SluiceError):
            raise failure
        raise RunFailed(component, log_file, failure, result) from failure
    _write_report(result, config)
    return result


MIN_EVAL_ROWS = 200
"""Below this many eval rows a metric moves by more than its thresholds' usual margins from row to row
(one row of 100 is 1 % of an accuracy): the run says so next to its verdict."""


def evidence_notes(details: Dict[str, Any], batch_size: int = 0, eval_steps: int = 0,
                   window_rows: Optional[float] = None) -> List[str]:
    """Notes on how much the run's verdict rests on, from the eval split's size as the DataGate counted it:
    a small eval split, and validation steps beyond it (the Trainer then validates on one pass:
    ``trainer.guards.eval_steps_for``). ``window_rows``: with a window of spans, the eval rows the model side
    read (the Evaluator's ``example_count``), not the new span's alone."""
    rows = ((details or {}).get("data_verdict") or {}).get("rows") or {}
    evaluated = rows.get("eval") if window_rows is None else int(window_rows)
    if evaluated is None:
        return []
    notes = []
    if evaluated < MIN_EVAL_ROWS:
        notes.append(f"the eval split has {evaluated} rows (fewer than {MIN_EVAL_ROWS}): its metrics, slices and "
                     "thresholds rest on few rows; give more data, or a larger eval share in data.splits")
    if evaluated and batch_size * eval_steps > evaluated:
        notes.append(f"model.eval_steps {eval_steps} x batch_size {batch_size} = {batch_size * eval_steps} rows, "
                     f"more than the eval split's {evaluated}: the Trainer validated on one pass "
                     f"({-(-evaluated // batch_size)} steps) instead")
    return notes


def _with_run_id(tfx_pipeline: Any, run_id: str) -> Any:
    """The pipeline's IR with ``run_id`` as its run id. ``LocalDagRunner.run`` would pick its own (the time
    of day) and not tell; knowing it lets the summary read this run's MLMD record and no other."""
    from tfx.dsl.compiler import constants
    from tfx.orchestration.portable import runtime_parameter_utils, tfx_runner

    ir = tfx_runner._make_pipeline_proto(tfx_pipeline)  # what LocalDagRunner.run does before run_with_ir
    runtime_parameter_utils.substitute_runtime_parameter(ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    return ir


TEMP_DIR = Path(".sluice") / "tmp"


@contextlib.contextmanager
def _run_temp_dir(paths: OutputPaths) -> Iterator[Path]:
    """Temporary files of this run (the components' work dirs, their children's) under
    ``<output>/.sluice/tmp/<pid>`` instead of the system's: a run killed with SIGKILL cleans nothing, and
    the next run (holding the run lock) removes what it left (``_close_abandoned``)."""
    import tempfile

    directory = paths.root / TEMP_DIR / str(os.getpid())
    directory.mkdir(parents=True, exist_ok=True)
    before = (tempfile.tempdir, os.environ.get("TMPDIR"))
    tempfile.tempdir, os.environ["TMPDIR"] = str(directory), str(directory)
    try:
        yield directory
    finally:
        tempfile.tempdir = before[0]
        if before[1] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = before[1]
        shutil.rmtree(directory, ignore_errors=True)


def _close_abandoned(paths: OutputPaths) -> List[str]:
    """Under the run lock: mark the executions of runs that were killed as such in MLMD, and remove the
    temporary files they left (their ``.sluice/tmp/<pid>`` and TFX's per-execution work dirs). Returns the
    console lines saying so."""
    from sluice.pipeline.mlmd import mark_abandoned

    ids = mark_abandoned(paths.metadata, "the run's process died before this execution finished")
    for execution_id in ids:
        for work in paths.pipeline_root.glob(f"*/.system/executor_execution/{execution_id}"):
            shutil.rmtree(work, ignore_errors=True)
    leftovers = [p for p in (paths.root / TEMP_DIR).glob("*") if p.is_dir()]
    for leftover in leftovers:
        shutil.rmtree(leftover, ignore_errors=True)
    if not ids and not leftovers:
        return []
    return [f"  note: an earlier run in this output directory was killed mid-run: {len(ids)} unfinished "
            f"execution(s) marked CANCELED in MLMD, {len(leftovers)} temporary folder(s) removed"]


def report_dry_run(config: PipelineConfig, directory: Path, outcome: Any, seconds: float) -> RunResult:
    """The run page and result of ``sluice compile --dry-run`` (``pipeline/dry_run.py``), from its tasks."""
    from sluice.pipeline.dry_run import run_record

    record = run_record(outcome, config.name)
    lines = [ComponentLine(t.name, False, t.seconds, t.state) for t in outcome.tasks if t.kind == "container"]
    result = _summarize(config, OutputPaths(directory), directory / "logs" / outcome.job, lines, seconds, record=record)
    if outcome.failure is not None:
        result.status = "data_rejected" if outcome.failure.exit_code == 3 else "failed"
        result.error = str(outcome.failure)
    _write_report(result, config)
    return result


def _in_chain(failure: Optional[BaseException], kind: type) -> Optional[BaseException]:
    """The exception of type ``kind`` behind ``failure`` (TFX's runners may wrap it), or None."""
    seen = 0
    while failure is not None and seen < 5:
        if isinstance(failure, kind):
            return failure
        failure = failure.__cause__ or failure.__context__
        seen += 1
    return None


def _keep_data_report(source: Optional[str], report_dir: Path) -> Optional[str]:
    """Copy the DataGate's HTML report next to the run report (it also stays in the artifact)."""
    if not source or not Path(source).is_file():
        return None
    report_dir.mkdir(parents=True, exist_ok=True)
    target = report_dir / "data_report.html"
    shutil.copy(source, target)
    return str(target)


def _summarize(config: PipelineConfig, paths: OutputPaths, log_file: Path, lines: List[ComponentLine],
               seconds: float, record: Any = None, run_id: Optional[str] = None) -> RunResult:
    """The run's result from its own ``RunRecord``: ``record``, or run ``run_id`` in the output's MLMD —
    never "the latest run", which may be another one's."""
    from sluice.pipeline.mlmd import run_by_id

    if record is None and run_id is not None:
        record = run_by_id(paths.metadata, config.name, run_id)
    run_id = record.run_id if record else (run_id or dt.datetime.now().isoformat())
    states = {n: e.state for n, e in record.executions.items()} if record else {}
    for line in lines:
        line.state = states.get(line.name, line.state)
        line.cached = line.cached or line.state == "CACHED"
    verdict: Dict[str, Any] = {}
    evaluation_report = None
    warnings: List[str] = []
    report_dir = paths.reports / _safe(run_id)
    if record and record.evaluation_uri:
        from sluice.components.evaluation import read_verdict
        from sluice.pipeline.evaluation_report import write_evaluation_report

        try:
            verdict = read_verdict(record.evaluation_uri)
            evaluation = {**config.evaluation.model_dump(mode="json"), "classes": config.task.classes or []}
            evaluation_report = str(write_evaluation_report(record.evaluation_uri, verdict, evaluation, report_dir))
        except Exception as e:  # the outcome comes from MLMD; only metrics and the page are lost: say so
            logging.getLogger(__name__).exception("reading the evaluation at %s", record.evaluation_uri)
            warnings.append(f"evaluation details unavailable ({type(e).__name__}: {e}); the blessing decision "
                            f"stands (from MLMD); see the log")
    pushed = bool(record and record.pushed)
    blessed = record.blessed if record else None
    from sluice.components.export.component import read_parity
    from sluice.components.infra_check import read_report

    parity = _artifact_json(record, "ModelExport", "sluice.ExportedModel", read_parity)  # parity.json
    infra = _artifact_json(record, "InfraCheck", "InfraBlessing", read_report)  # infra_check.json
    bulk = _artifact_json(record, "BulkScore", "InferenceResult", _bulk_summary)
    status = "succeeded" if pushed else ("not_blessed" if blessed is False else
                                         "parity_failed" if parity.get("passed") is False else
                                         "infra_failed" if infra.get("blessed") is False else "failed")
    tflite = None
    if pushed and parity.get("variants"):  # <serving>/<model>/<v> -> <serving>/<model>_tflite/<v>
        destination = Path(record.pushed_destination)
        tflite = destination.parent.parent / f"{destination.parent.name}_tflite" / destination.name
    details = _details(record, paths, config)
    gate_dir = record.outputs.get("DataGate", {}).get("sluice.DataVerdict") if record else None
    data_report = _keep_data_report(str(Path(gate_dir) / "data_report.html"), report_dir) if gate_dir else None
    return RunResult(
        data_report=data_report,
        status=status,
        parity=parity,
        infra=infra,
        bulk=bulk,
        tflite_path=str(tflite) if tflite and tflite.is_dir() else None,
        pipeline=config.name,
        run_id=run_id,
        blessed=blessed,
        pushed=pushed,
        saved_model_path=record.pushed_destination if pushed else None,
        version=record.pushed_version if pushed else None,
        report_dir=str(report_dir),
        log_file=str(log_file),
        seconds=round(seconds, 1),
        components=lines,
        metrics={k: v for k, v in verdict.get("overall", {}).items() if "[" not in k},
        per_class=per_class(verdict.get("overall", {}), config.task.classes or []),
        metric_changes={k: v for k, v in verdict.get("changes", {}).items() if "[" not in k},
        failures=verdict.get("failures", []),
        exempt_failures=verdict.get("exempt_failures", []),
        slice_summary=_slice_summary(config, verdict),
        evaluation_report=evaluation_report,
        details=details,
        warnings=warnings,
        notes=evidence_notes(details, config.model.batch_size, config.model.eval_steps,
                             verdict.get("overall", {}).get("example_count") if config.data.window > 1 else None),
    )


def _details(record: Any, paths: OutputPaths, config: PipelineConfig) -> Dict[str, Any]:
    from sluice.pipeline.run_details import gather

    try:
        return gather(record, paths.pipeline_root, config.training.model_dump(mode="json"))
    except Exception as e:  # the page must still be written; say what is missing
        logging.getLogger(__name__).exception("run details")
        return {"error": f"could not read run details: {type(e).__name__}: {e}"}


def per_class(metrics: Dict[str, float], classes: List[str]) -> Dict[str, Dict[str, float]]:
    """``{"precision[2]": v}`` (TFMA's per-class-id metrics, as ``evaluation.read_slices`` names them) ->
    ``{"<class 2's name>": {"precision": v}}``."""
    out: Dict[str, Dict[str, float]] = {}
    for key, value in metrics.items():
        match = re.fullmatch(r"(\w+)\[(\d+)\]", key)
        if match and not match.group(1).startswith("macro_") and int(match.group(2)) < len(classes):
            out.setdefault(classes[int(match.group(2))], {})[match.group(1)] = value
    return out


def _slice_summary(config: PipelineConfig, verdict: Dict[str, Any]) -> List[Dict[str, Any]]:
    """For each metric gated on slices and each slicing spec: the worst slice big enough to gate."""
    from sluice.components.evaluation import slice_spec
    from sluice.components.settings import LOWER_IS_BETTER

    out = []
    slices = verdict.get("slices", {})
    for t in config.evaluation.thresholds:
        if not t.slices:
            continue
        for spec in {slice_spec(n) for n in slices} - {"overall"}:
            big = [(n, s) for n, s in slices.items() if slice_spec(n) == spec and (s["size"] or 0) >= config.evaluation.min_slice_size
                   and t.metric in s["candidate"]]
            if not big:
                continue
            pick = max if t.metric in LOWER_IS_BETTER else min
            name, s = pick(big, key=lambda kv: kv[1]["candidate"][t.metric])
            out.append({"metric": t.metric, "spec": spec, "worst_slice": name, "value": s["candidate"][t.metric],
                        "size": s["size"], "gated_slices": len(big),
                        "slices": sum(1 for n in slices if slice_spec(n) == spec)})
    return sorted(out, key=lambda r: (r["metric"], r["spec"]))


def _safe(run_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in run_id)


def _bulk_summary(uri: str) -> Dict[str, Any]:
    """BulkScore's ``summary.json`` plus where its predictions are."""
    from sluice.components.bulk_score import SCORED

    summary = json.loads((Path(uri) / "summary.json").read_text())
    return {**summary, "output": str(Path(uri) / SCORED)} if "skipped" not in summary else summary


def _artifact_json(record: Any, node: str, artifact_type: str, read: Callable[[str], Any]) -> Dict[str, Any]:
    """What ``read`` finds in ``node``'s output artifact of ``artifact_type`` in this run, or {}."""
    uri = record.outputs.get(node, {}).get(artifact_type) if record else None
    if not uri:
        return {}
    with contextlib.suppress(OSError, ValueError):
        return read(uri) or {}
    return {}


def _write_report(result: RunResult, config: PipelineConfig) -> None:
    from sluice.pipeline.report import write_run_report

    write_run_report(result.to_dict(), config.model_dump(mode="json", by_alias=True), Path(result.report_dir))


def format_summary(result: RunResult) -> List[str]:
    """The closing lines of `sluice run`."""
    from sluice.pipeline.report import describe_rule

    if result.status == "data_rejected":
        return [result.error or "data gate failed", *(f"  note: {n}" for n in result.notes),
                f"  report: {Path(result.report_dir) / 'index.html'}"]
    if result.status == "refused":
        return [f"sluice: {result.error}", "  nothing was blessed or pushed: the serving directory is unchanged",
                *(f"  note: {n}" for n in result.notes), f"  report: {Path(result.report_dir) / 'index.html'}"]
    verdict = {True: "BLESSED", False: "NOT BLESSED", None: "not evaluated"}[result.blessed]
    lines = [f"sluice: {result.pipeline} {result.status} in {result.seconds:.1f} s — model {verdict}"]
    if result.metrics:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.metrics.items()))
        lines.append(f"  metrics (eval split): {shown}")
    if result.per_class:
        shown = "; ".join(f"{c} " + " ".join(f"{k}={v:.3g}" for k, v in sorted(m.items()))
                          for c, m in result.per_class.items())
        lines.append(f"  per class: {shown}")
    if result.metric_changes:
        shown = ", ".join(f"{k} {v:+.4g}" for k, v in sorted(result.metric_changes.items()) if k != "example_count")
        lines.append(f"  vs baseline (latest blessed model): {shown}")
    for row in result.slice_summary:
        lines.append(f"  slices {row['spec']}: worst {row['metric']} = {row['value']:.4g} on {row['worst_slice']} "
                     f"(n={row['size']:.0f}; {row['gated_slices']} of {row['slices']} slices gated)")
    for f in result.failures:
        base = f" vs baseline {f['baseline']:.4g}" if f.get("baseline") is not None else ""
        cand = f"{f['candidate']:.4g}" if f.get("candidate") is not None else "?"
        lines.append(f"  FAILED {f['metric']} on {f['slice']}: candidate {cand}{base} — {describe_rule(f)}")
    if result.exempt_failures:
        lines.append(f"  {len(result.exempt_failures)} threshold failure(s) on slices under the minimum size "
                     "were reported, not gated (see the evaluation report)")
    if result.pushed:
        lines.append(f"  pushed SavedModel: {result.saved_model_path}")
    else:
        lines.append("  nothing pushed: the serving directory is unchanged")
    dropped = result.parity.get("dropped", []) if result.parity.get("passed") else []
    for variant in result.parity.get("variants", []):
        verdict = "ok" if variant["passed"] else "NOT SHIPPED" if variant["variant"] in dropped else "FAILED"
        if variant.get("rows"):
            lines.append(f"  TFLite {variant['variant']:<13} {variant['size_bytes'] / 1024:7.1f} KiB  "
                         f"{variant['metric']} {variant['metric_tflite']:.4g} (SavedModel "
                         f"{variant['metric_saved_model']:.4g}), max |diff| {variant['max_abs_diff']:.2g}  {verdict}")
    reference = result.parity.get("saved_model_metric")
    if reference and result.parity.get("variants"):
        lines.append(f"  SavedModel {reference['metric']} {reference['dense_rows']:.4g} on the dense rows TFLite gets, "
                     f"{reference['examples']:.4g} on the same rows as tf.Examples (the Evaluator's way): "
                     f"{reference['rows_with_empty_cells']} of {result.parity.get('rows', 0)} rows have an empty "
                     "optional cell, sent dense as its fill value but imputed by Transform when missing")
    for line in result.parity.get("failures", []):
        lines.append(f"  {'NOT SHIPPED' if line.split(':')[0] in dropped else 'FAILED'} TFLite parity: {line}")
    if result.infra:
        checked = result.infra.get("checked", {})
        lines.append(f"  infra check: {'passed' if result.infra.get('blessed') else 'FAILED'} — "
                     f"{checked.get('grpc', 0)} gRPC + {checked.get('rest', 0)} REST warmup requests replayed "
                     "in the local TF Serving-compatible server")
        for line in result.infra.get("failures", []):
            lines.append(f"  FAILED infra check: {line}")
    if result.bulk:
        bulk = result.bulk
        lines.append(f"  bulk scoring: {bulk['skipped']}" if "skipped" in bulk else
                     f"  bulk scoring: {bulk.get('scored', 0)} row(s) scored, {bulk.get('dead_letter', 0)} not, with "
                     f"version {bulk.get('version')} -> {bulk.get('output')}")
    if result.tflite_path:
        lines.append(f"  TFLite: {result.tflite_path}")
    elif not result.parity.get("variants"):
        lines.append("  TFLite: not exported (export.targets has no tflite)")
    if result.data_report:
        lines.append(f"  data report: {result.data_report}")
    if result.evaluation_report:
        lines.append(f"  evaluation report: {result.evaluation_report}")
    lines.extend(f"  warning: {w}" for w in result.warnings)
    lines.extend(f"  note: {n}" for n in result.notes)
    lines.append(f"  report: {Path(result.report_dir) / 'index.html'}")
    return lines


def summary_json(result: RunResult) -> str:
    return json.dumps(result.to_dict(), sort_keys=True)


__all__ = ["run_local", "RunResult", "RunFailed", "format_summary", "summary_json", "preflight", "DataError"]
