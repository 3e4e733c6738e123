"""Questions to ML Metadata about a pipeline run: what ran, what was cached, what was blessed/pushed.

MLMD is the source of truth for a run (the console lines are a convenience), so the run summary, the tests
and later `sluice runs` all answer from here. Reads only, with one exception: ``mark_abandoned``, which a new
run (holding the output's run lock) uses to close the executions of a run whose process was killed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

# MLMD's Execution.State enum values (metadata_store_pb2.Execution.State) by name.
_STATE_NAMES = {0: "UNKNOWN", 1: "NEW", 2: "RUNNING", 3: "COMPLETE", 4: "FAILED", 5: "CACHED", 6: "CANCELED"}


@dataclass
class NodeExecution:
    node_id: str
    state: str
    seconds: float
    execution_id: int


@dataclass
class RunRecord:
    run_id: str
    executions: Dict[str, NodeExecution] = field(default_factory=dict)
    blessed: Optional[bool] = None
    blessing_uri: Optional[str] = None
    evaluation_uri: Optional[str] = None
    pushed: Optional[bool] = None
    pushed_destination: Optional[str] = None
    pushed_version: Optional[str] = None
    model_uri: Optional[str] = None
    outputs: Dict[str, Dict[str, str]] = field(default_factory=dict)
    """node id -> output artifact type -> URI, for every artifact the run's executions produced or reused."""
    inputs: Dict[str, Dict[str, str]] = field(default_factory=dict)
    """node id -> input artifact type -> URI."""
    pipeline: str = ""
    started: float = 0.0
    """Seconds since the epoch when the run's first execution was created."""
    seconds: float = 0.0
    """From the first execution's creation to the last execution's last update."""
    data_fingerprint: Optional[str] = None
    """A short hash of CsvExampleGen's input fingerprint (file sizes and checksums): same data, same value."""
    abandoned: bool = False
    """The run's process died mid-run (found and marked by the next run: ``mark_abandoned``)."""
    span: Optional[int] = None
    """The span CsvExampleGen ingested (0 when the data has no span pattern)."""
    window: List[int] = field(default_factory=list)
    """The spans Transform read (newest first): the rolling window, or the new span alone."""

    @property
    def spans(self) -> str:
        """``"3 (window 3,2,1)"``, ``"3"``, or ``"-"`` for data without spans, for tables and pages."""
        if not self.span and set(self.window) <= {0}:
            return "-"
        if len(self.window) > 1:
            return f"{self.span} (window {','.join(map(str, self.window))})"
        return str(self.span)


def open_store(metadata_path: Path):
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def _node_id(store, execution_id: int, pipeline_name: str) -> str:
    for ctx in store.get_contexts_by_execution(execution_id):
        if ctx.name.startswith(pipeline_name + "."):
            return ctx.name[len(pipeline_name) + 1 :]
    return "?"


def _run_contexts(store, pipeline_name: str) -> list:
    pipeline_ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_ctx is None:
        return []
    pipeline_exec_ids = {e.id for e in store.get_executions_by_context(pipeline_ctx.id)}
    runs = [
        c
        for c in store.get_contexts_by_type("pipeline_run")
        if any(e.id in pipeline_exec_ids for e in store.get_executions_by_context(c.id))
    ]
    return sorted(runs, key=lambda c: (c.create_time_since_epoch, c.id))


def run_by_id(metadata_path: Path, pipeline_name: str, run_id: str) -> Optional[RunRecord]:
    """The run ``run_id`` of ``pipeline_name``, or None (it created no execution)."""
    if not Path(metadata_path).exists():
        return None
    store = open_store(metadata_path)
    runs = [c for c in _run_contexts(store, pipeline_name) if c.name == run_id]
    return _record(store, runs[0], pipeline_name) if runs else None


ABANDONED = "sluice_abandoned"


def mark_abandoned(metadata_path: Path, reason: str) -> List[int]:
    """Close every execution still NEW or RUNNING as CANCELED, with ``reason`` in its ``sluice_abandoned``
    property; returns their ids. Only correct while holding the output's run lock (``run_lock.hold``): then
    no live process can own such an execution, so each one belongs to a run that was killed."""
    if not Path(metadata_path).exists():
        return []
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE
    store = metadata_store.MetadataStore(config)
    open_states = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)
    stale = [e for e in store.get_executions() if e.last_known_state in open_states]
    for execution in stale:
        execution.last_known_state = metadata_store_pb2.Execution.CANCELED
        execution.custom_properties[ABANDONED].string_value = reason
    if stale:
        store.put_executions(stale)
    return [e.id for e in stale]


def latest_run(metadata_path: Path, pipeline_name: str) -> Optional[RunRecord]:
    """The newest run of ``pipeline_name`` recorded in the store, or None."""
    if not Path(metadata_path).exists():
        return None
    store = open_store(metadata_path)
    runs = _run_contexts(store, pipeline_name)
    return _record(store, runs[-1], pipeline_name) if runs else None


def pipeline_names(metadata_path: Path) -> List[str]:
    if not Path(metadata_path).exists():
        return []
    return sorted(c.name for c in open_store(metadata_path).get_contexts_by_type("pipeline"))


def all_runs(metadata_path: Path, pipeline_name: Optional[str] = None) -> List[RunRecord]:
    """Every run in the store (of one pipeline, or of all), oldest first."""
    if not Path(metadata_path).exists():
        return []
    store = open_store(metadata_path)
    names = [pipeline_name] if pipeline_name else pipeline_names(metadata_path)
    records = [_record(store, ctx, name) for name in names for ctx in _run_contexts(store, name)]
    return sorted(records, key=lambda r: (r.started, r.run_id))


def find_run(metadata_path: Path, ref: Optional[str]) -> Optional[RunRecord]:
    """A run by id, unique id prefix, or position (``-1`` / ``latest`` = newest, ``1`` = oldest)."""
    runs = all_runs(metadata_path)
    if not runs:
        return None
    if ref in (None, "", "latest"):
        return runs[-1]
    if ref.lstrip("-").isdigit():
        index = int(ref)
        position = index - 1 if index > 0 else index
        return runs[position] if -len(runs) <= position < len(runs) else None
    matches = [r for r in runs if r.run_id == ref] or [r for r in runs if r.run_id.startswith(ref)]
    return matches[0] if len(matches) == 1 else None


def _record(store, run_ctx, pipeline_name: str) -> RunRecord:
    record = RunRecord(run_id=run_ctx.name, pipeline=pipeline_name)
    for execution in store.get_executions_by_context(run_ctx.id):
        node = _node_id(store, execution.id, pipeline_name)
        seconds = max(0.0, (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000.0)
        if ABANDONED in execution.custom_properties:
            record.abandoned = True
        record.executions[node] = NodeExecution(
            node_id=node,
            state=_STATE_NAMES.get(execution.last_known_state, str(execution.last_known_state)),
            seconds=seconds,
            execution_id=execution.id,
        )
    executions = store.get_executions_by_context(run_ctx.id)
    if executions:
        record.started = min(e.create_time_since_epoch for e in executions) / 1000.0
        record.seconds = max(e.last_update_time_since_epoch for e in executions) / 1000.0 - record.started
    _fill_artifacts(store, run_ctx, record)
    return record


def _fill_artifacts(store, run_ctx, record: RunRecord) -> None:
    """Inputs and outputs per node, and the run's facts from the artifacts its own nodes produced (or reused
    from the cache). Read from execution events, not from the run's context: that also holds what resolvers
    brought in, such as the previous blessed model, which says nothing about this run."""
    from ml_metadata.proto import metadata_store_pb2

    types = {t.id: t.name for t in store.get_artifact_types()}
    node_of = {e.execution_id: n for n, e in record.executions.items()}
    output_kinds = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.INTERNAL_OUTPUT)
    input_kinds = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.INTERNAL_INPUT)
    events = [e for e in store.get_events_by_execution_ids(list(node_of)) if e.type in output_kinds + input_kinds]
    by_id = {a.id: a for a in store.get_artifacts_by_id(sorted({e.artifact_id for e in events}))} if events else {}
    for event in events:
        if event.artifact_id not in by_id:
            continue
        artifact, node = by_id[event.artifact_id], node_of[event.execution_id]
        kind = types.get(artifact.type_id, "?")
        if event.type in input_kinds:
            record.inputs.setdefault(node, {})[kind] = artifact.uri
            if kind == "Examples" and node == "Transform":
                record.window = sorted({*record.window, _span(artifact)}, reverse=True)
            continue
        record.outputs.setdefault(node, {})[kind] = artifact.uri
        _fill_output(record, node, kind, artifact)


def _span(artifact) -> int:
    """CsvExampleGen's ``span`` custom property (an int, or text in older TFX releases); 0 without one."""
    value = artifact.custom_properties.get("span")
    return int(value.string_value or value.int_value) if value is not None else 0


def _fill_output(record: RunRecord, node: str, kind: str, artifact) -> None:
    props = artifact.custom_properties
    if kind == "ModelBlessing" and node == "Evaluator" and "blessed" in props:
        record.blessed = bool(props["blessed"].int_value)
        record.blessing_uri = artifact.uri
    elif kind == "ModelEvaluation" and node == "Evaluator":
        record.evaluation_uri = artifact.uri
    elif kind == "PushedModel" and "pushed" in props:
        record.pushed = bool(props["pushed"].int_value)
        if record.pushed:
            record.pushed_destination = props["pushed_destination"].string_value
            record.pushed_version = props["pushed_version"].string_value
    elif kind == "Model" and node == "Trainer":
        record.model_uri = artifact.uri
    elif kind == "Examples" and node == "CsvExampleGen":
        record.span = _span(artifact)
        if "input_fingerprint" in props:
            from sluice.components.export.component import data_fingerprint

            record.data_fingerprint = data_fingerprint(props["input_fingerprint"].string_value)


def executions_of(metadata_path: Path, pipeline_name: str) -> List[str]:
    """Node ids of every execution ever recorded for the pipeline (test helper and `sluice runs` base)."""
    store = open_store(metadata_path)
    ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if ctx is None:
        return []
    return [_node_id(store, e.id, pipeline_name) for e in store.get_executions_by_context(ctx.id)]
