"""``sluice compile … --dry-run DIR``: execute the compiled KFP v2 pipeline on this machine, task by task, the
way Vertex AI Pipelines / Kubeflow would, before a real submission is spent on it.

What runs for real (the same code a Vertex step runs):
- every container task, in DAG order, as its own process: the compiled ``command`` (``python -m
  tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor``) with the compiled ``args`` — the
  executor class path, the ``ExecutorInput`` JSON in place of ``{{$}}``, the Beam flags — so wrong class paths,
  exec properties that do not survive serialization, artifact type names the entrypoint cannot import and
  code that reads local paths fail here (the tasks import sluice from this machine's install, not the image).
  Each task process is forked from one that imported TensorFlow, Beam and TFX once (``forkserver.py``: it
  runs the entrypoint afresh as ``__main__``, sluice imported by the task; a dry run takes about 0.6x the
  time); ``SLUICE_DRY_RUN_FORK=0`` starts each one as a fresh interpreter instead;
- a task's ``lifecycle.preCacheCheck`` command first (CsvExampleGen's span/fingerprint driver); its
  ``ExecutorOutput`` updates the task's parameters and output artifact before the executor runs, as Vertex does.

What is emulated (and how), since there is no Vertex here:
- the pipeline root (``runtimeConfig.gcsOutputDirectory``, also inside exec properties such as the push
  destination under it) is mapped to ``DIR/pipeline_root`` — Beam's file systems do not know ``ram://`` and gs:// is
  unreachable; task outputs go to ``<root>/<job>/<task>_<n>/<output key>`` like Vertex's layout;
- files of the pipeline image (``/sluice/...``) are read from the project they were compiled from (the
  config's project or this checkout, as ``sluice compile`` maps them), after checking that the project's
  Dockerfile copies them into the image's WORKDIR (a file outside its COPY lines is an error: it would be
  missing there); any other URI left in a task's parameters (a gs:// schema, serving dir or data) is an
  error before anything runs, since it cannot be read here;
- ``--dry-run-data`` replaces CsvExampleGen's ``input_base``/``input_config`` (the compiled data is usually
  gs://);
- ML Metadata: artifacts that tasks publish are recorded in ``DIR/metadata.json`` (pipeline, name, schema
  title, URI, metadata, state LIVE) across dry runs in the same DIR; resolver tasks evaluate their compiled
  filter (``schema_title="…" AND state=LIVE [AND metadata.<key>.number_value=<n>] [AND
  name="{{$.inputs…}}"]``) against the artifacts of the same pipeline (Vertex scopes them by the pipeline's
  context) and take the newest match — so a second dry run finds the first one's DataGate verdict and
  blessed model. A clause the emulator does not understand is an error, never ignored. Importer tasks
  publish their ``artifactUri`` as an artifact of their type;
- Beam runs with the DirectRunner (the compiled runner flags are replaced: Dataflow/Flink/Spark are not
  reachable), and a Vertex AI training job Trainer runs as TFX's local GenericExecutor with the same run_fn.

The run stops at the first failed task (Vertex would finish independent branches). Pipeline spec 2.0.0 (what
TFX 1.16 writes) is supported; other versions are refused.

What only a real Vertex run proves: IAM and service accounts, the image actually building and pulling,
Dataflow workers (the SDK container, networking, quotas), GPUs and the Vertex training job with its
TF_CONFIG, Vertex's caching, and ML Metadata's real query semantics.
"""

from __future__ import annotations

import copy
import json
import os
import posixpath
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from sluice.components import step_process
from sluice.pipeline import forkserver, kfp_spec
from sluice.pipeline.errors import SluiceError

IMAGE_ROOT = "/sluice"
REPO_ROOT = Path(__file__).resolve().parent.parent
STORE_FILE = "metadata.json"
LOCAL_BEAM_ARGS = ["--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]
# Executors that submit work to Google Cloud, and the local executor that runs the same user code.
LOCAL_EXECUTORS = {
    "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor":
        "tfx.components.trainer.executor.GenericExecutor",
    "tfx.extensions.google_cloud_ai_platform.trainer.executor.Executor": "tfx.components.trainer.executor.Executor",
}
_IMAGE_PATH = re.compile(rf"(?<![\w.\-/:]){re.escape(IMAGE_ROOT)}(?=/|$|[\s\"'])(/[^\s\"',;)\]}}]*)?")
_STORAGE_URI = re.compile(r"\b(?:gs|s3|hdfs|file)://[^\s\"',;)\]}]*")
SPEC_VERSION = "2.0.0"
_CLAUSE = re.compile(r'^(schema_title="[^"]*"|state=LIVE|metadata\.(\w+)\.number_value=(-?[\d.]+)|name="(.*)")$')
_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.artifacts\['(\w+)'\]\.metadata\['(\w+)'\]\}\}")


class DryRunFailed(SluiceError):
    """A task of the compiled pipeline failed in the dry run (exit 3 for a gate, 4 for a crash)."""

    def __init__(self, task: str, problem: str, log: Path, exit_code: int = 4) -> None:
        self.exit_code = exit_code
        self.task = task
        self.log = log
        super().__init__(f"dry run, task {task}", problem, f"full log: {log}")


@dataclass
class TaskResult:
    name: str
    kind: str
    """``container``, ``resolver`` or ``importer``."""
    state: str
    seconds: float
    outputs: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)
    """Output key -> RuntimeArtifact dicts (name, type, uri, metadata)."""


@dataclass
class DryRunResult:
    job: str
    root: str
    tasks: List[TaskResult]
    failure: Optional[DryRunFailed] = None

    def artifact(self, task: str, key: str) -> Optional[Dict[str, Any]]:
        for result in self.tasks:
            if result.name == task and result.outputs.get(key):
                return result.outputs[key][0]
        return None


# ------------------------------------------------------------------------------------------ the store
class Store:
    """Emulated Vertex ML Metadata: the artifacts published by dry runs in one directory (JSON file), each
    tagged with its pipeline; queries see only their own pipeline's artifacts, as Vertex's do."""

    def __init__(self, path: Path, pipeline: str) -> None:
        self.path = path
        self.pipeline = pipeline
        self.artifacts: List[Dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else []

    def next_name(self) -> str:
        return f"dryrun/metadataStores/default/artifacts/{len(self.artifacts) + 1}"

    def publish(self, artifact: Dict[str, Any]) -> None:
        self.artifacts.append({**artifact, "pipeline": self.pipeline, "state": "LIVE"})
        self.path.write_text(json.dumps(self.artifacts, indent=1))

    def query(self, query_filter: str, inputs: Dict[str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
        """The newest LIVE artifact matching the compiled filter, as a one-element list (or empty)."""
        checks = []
        for clause in (c.strip() for c in query_filter.split(" AND ")):
            match = _CLAUSE.match(clause)
            if not match:
                raise SluiceError("dry run", f"cannot emulate the resolver clause {clause!r} of {query_filter!r}",
                                  "only schema_title, state=LIVE, metadata.<key>.number_value and name are known")
            if clause.startswith("schema_title="):
                title = clause.split('"')[1]
                checks.append(lambda a, t=title: kfp_spec.artifact_title(a["type"]) == t)
            elif clause.startswith("metadata."):
                key, value = match.group(2), float(match.group(3))
                checks.append(lambda a, k=key, v=value: float(a.get("metadata", {}).get(k, "nan")) == v)
            elif clause.startswith("name="):
                wanted = _PLACEHOLDER.sub(lambda m: _input_metadata(inputs, m.group(1), m.group(2)), match.group(4))
                checks.append(lambda a, n=wanted: bool(n) and a["name"] == n)
        found = [a for a in self.artifacts if a["state"] == "LIVE" and a.get("pipeline") == self.pipeline
                 and all(check(a) for check in checks)]
        return [{k: v for k, v in found[-1].items() if k not in ("state", "pipeline")}] if found else []


def _input_metadata(inputs: Dict[str, List[Dict[str, Any]]], key: str, field: str) -> str:
    """``{{$.inputs.artifacts['key'].metadata['field']}}``: empty (matches nothing) when absent."""
    listed = inputs.get(key) or [{}]
    return str(listed[0].get("metadata", {}).get(field, ""))


# ------------------------------------------------------------------------------------------ the spec
def image_copies(dockerfile: Path) -> List[str]:
    """Absolute destinations of the Dockerfile's COPY lines from the build context (WORKDIR tracked)."""
    workdir, out = "/", []
    for line in dockerfile.read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["WORKDIR"]:
            workdir = posixpath.join(workdir, parts[1])
        if parts[:1] != ["COPY"] or any(p.startswith("--from") for p in parts):
            continue
        sources, target = parts[1:-1], posixpath.join(workdir, parts[-1])
        if parts[-1].endswith("/") and len(sources) > 1 or target.rstrip("/") == workdir.rstrip("/"):
            out += [posixpath.join(target, posixpath.basename(s.rstrip("/"))) for s in sources]
        else:
            out.append(posixpath.normpath(target))
    return [posixpath.normpath(t) for t in out]


def image_layout(dockerfile: Path) -> List[str]:
    """What the image holds under ``/sluice/`` (the compile's image paths), relative to it, sorted."""
    prefix = IMAGE_ROOT + "/"
    return sorted(t[len(prefix):] for t in image_copies(dockerfile) if t.startswith(prefix))


def _dockerfile(roots: Sequence[Path]) -> Path:
    for root in roots:
        if (root / "Dockerfile").is_file():
            return root / "Dockerfile"
    raise SluiceError("dry run", f"no Dockerfile in {', '.join(map(str, roots)) or 'the project'} to check the "
                      "image's files against", "run it from the project whose Dockerfile builds the pipeline image")


def _replace_root(text: str, remote_root: str, root: str) -> str:
    """``remote_root`` -> ``root`` where it is the whole path prefix (``gs://b/r`` but not ``gs://b/r2``)."""
    return re.sub(re.escape(remote_root) + r"(?=$|/|[\s\"',;)\]}])", lambda _: root, text)


def localize(body: Dict[str, Any], root: Path, data_dir: Optional[str], data_pattern: Optional[str],
             roots: Sequence[Path] = (REPO_ROOT,)) -> Dict[str, Any]:
    """A copy of the compiled pipeline that runs here: image files -> the project in ``roots`` that has them,
    pipeline root -> ``root``, CsvExampleGen's data -> ``data_dir``/``data_pattern`` (when given).

    Raises SluiceError, before anything runs, for an image path the Dockerfile does not copy, a spec version
    other than TFX 1.16's, and any storage URI left in a task's parameters (it cannot be read here)."""
    version = body["pipelineSpec"].get("schemaVersion")
    if version != SPEC_VERSION:
        raise SluiceError("dry run", f"pipeline spec version {version} is not supported", f"compile with TFX 1.16 "
                          f"(spec {SPEC_VERSION})")
    remote_root = body["runtimeConfig"]["gcsOutputDirectory"].rstrip("/")
    layout = image_layout(_dockerfile(roots))
    missing: List[str] = []

    def image_file(match: "re.Match[str]") -> str:
        rest = (match.group(1) or "").lstrip("/")
        if rest and not any(rest == p or rest.startswith(p + "/") for p in layout):
            missing.append(f"{IMAGE_ROOT}/{rest}")
        home = next((r for r in roots if (r / rest).exists()), roots[0])
        return str(home / rest) if rest else str(home)

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str):  # image paths first: the local root may itself lie under /sluice/
            return _replace_root(_IMAGE_PATH.sub(image_file, value), remote_root, str(root))
        return value

    local = fix(copy.deepcopy(body))
    if missing:
        raise SluiceError(missing[0], "the compiled pipeline reads this file from the image, but the Dockerfile "
                          "does not copy it there", "add it to a COPY line, or give it as a gs:// URI")
    if data_dir:
        params = kfp_spec.tasks(local)["CsvExampleGen"]["inputs"]["parameters"]
        compiled_base = params["input_base"]["runtimeValue"]["constantValue"]["stringValue"]
        params["input_base"]["runtimeValue"]["constantValue"] = {"stringValue": data_dir}
        config = json.loads(params["input_config"]["runtimeValue"]["constantValue"]["stringValue"])
        compiled_source = f"{compiled_base.rstrip('/')}/{config['splits'][0]['pattern']}"
        for split in config["splits"]:
            split["pattern"] = data_pattern
        params["input_config"]["runtimeValue"]["constantValue"] = {"stringValue": json.dumps(config, indent=2)}
        # Contracts that name the data source (the DataGate's verdicts, the span window) name the local data.
        for task in kfp_spec.tasks(local).values():
            for key, param in task.get("inputs", {}).get("parameters", {}).items():
                contract = kfp_spec.json_parameter(task, key)
                if contract is not None and contract.get("data_source") == compiled_source:
                    contract["data_source"] = f"{data_dir.rstrip('/')}/{data_pattern}"
                    param["runtimeValue"]["constantValue"] = {"stringValue": json.dumps(contract)}
    for name, task in kfp_spec.tasks(local).items():
        for key, param in task.get("inputs", {}).get("parameters", {}).items():
            if "runtimeValue" not in param:
                raise SluiceError(f"dry run, task {name}", f"parameter {key} is a pipeline input ({sorted(param)}), "
                                  "which the dry run does not emulate", "compile it as a constant")
            uri = _STORAGE_URI.search(json.dumps(param["runtimeValue"]["constantValue"]))
            if uri:
                raise SluiceError(f"dry run, task {name}", f"parameter {key} reads {uri.group(0)}, outside the pipeline "
                                  "root: the dry run cannot reach it", "pass --dry-run-data for the data; keep the "
                                  "schema in the project's schemas/ folder and the serving dir under the root")
    return local


# ------------------------------------------------------------------------------------------ running
def _runtime_artifact(name: str, artifact_type: Dict[str, Any], uri: str) -> Dict[str, Any]:
    return {"name": name, "type": artifact_type, "uri": uri, "metadata": {}}


def _inputs(task: Dict[str, Any], done: Dict[str, TaskResult]) -> Dict[str, List[Dict[str, Any]]]:
    """Input artifacts from upstream outputs (an empty resolver result is an empty list)."""
    out = {}
    for key, spec in task.get("inputs", {}).get("artifacts", {}).items():
        producer = spec["taskOutputArtifact"]
        out[key] = done[producer["producerTask"]].outputs.get(producer["outputArtifactKey"], [])
    return out


def _command(container: Dict[str, Any], invocation: str, lifecycle: bool = False) -> List[str]:
    args = [invocation if a == "{{$}}" else a for a in container["args"]]
    keep, i = [], 0
    while i < len(args):  # the compiled Beam flags would reach Dataflow: run Beam here instead
        if args[i] in ("--executor_class_path", "--json_serialized_invocation_args"):
            value = args[i + 1]
            if args[i] == "--executor_class_path":
                value = LOCAL_EXECUTORS.get(value, value)
            keep += [args[i], value]
            i += 2
            continue
        if not args[i].startswith("--"):
            keep.append(args[i])
        i += 1
    command = list(container["command"])
    if command[0] in ("python", "python3"):
        command[0] = sys.executable
    return command + keep + LOCAL_BEAM_ARGS


def _run(command: List[str], log: Path, task: str, server: Optional[forkserver.ForkServer] = None) -> None:
    """One task process: forked from ``server`` when it preloads the command's entrypoint, else started fresh."""
    with log.open("a") as out:
        out.write("$ " + " ".join(shlex.quote(c[:200]) for c in command) + "\n")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # cwd: this run's log folder, holding no source (python -m puts cwd first on sys.path; a checkout's
    # sluice/ folder there would be imported instead of the install, which the image must not rely on).
    module = forkserver.module_of(command)
    if server is not None and module:
        try:
            code = server.run(module, command[3:], log, log.parent, env)
        except forkserver.ServerGone as gone:
            raise DryRunFailed(task, str(gone), log, exit_code=4) from None
    else:
        code = step_process.run(command, log, env=env, cwd=str(log.parent), append=True)
    if code != 0:
        text = log.read_text(errors="replace")
        if "DataGateFailed: " in text:  # the gate's one screen (feature, anomaly, expected, report) is the cause
            raise DryRunFailed(task, text.rsplit("DataGateFailed: ", 1)[1].strip(), log, exit_code=3)
        raise DryRunFailed(task, f"{step_process.how_it_ended(code)}: {step_process.cause(log)}", log)


def _read_output(path: str) -> Dict[str, Any]:
    from tfx.dsl.io import fileio

    if not fileio.exists(path):
        return {}
    with fileio.open(path, "r") as f:
        return json.loads(f.read())


def _merge_metadata(outputs: Dict[str, List[Dict[str, Any]]], executor_output: Dict[str, Any]) -> None:
    """What Vertex does with a task's ``ExecutorOutput``: the artifacts it lists update the task's output
    artifacts' metadata (properties, custom properties); name, type and URI stay the task's."""
    for key, listed in executor_output.get("artifacts", {}).items():
        outputs[key] = [{**given, "metadata": written.get("metadata", {})}
                        for written, given in zip(listed["artifacts"], outputs[key])]


def _container_task(name: str, task: Dict[str, Any], body: Dict[str, Any], inputs: Dict[str, Any], root: str,
                    job: str, seq: int, store: Store, logs: Path,
                    server: Optional[forkserver.ForkServer] = None) -> TaskResult:
    component = kfp_spec.component_of(body, task)
    container = kfp_spec.executor_of(body, task)["container"]
    task_root = posixpath.join(root, job, f"{name}_{seq}")
    outputs = {}
    for key, spec in component.get("outputDefinitions", {}).get("artifacts", {}).items():
        outputs[key] = [_runtime_artifact(store.next_name() + f"-{name}-{key}", spec["artifactType"],
                                          posixpath.join(task_root, key))]
    parameters = {k: v["runtimeValue"]["constantValue"] for k, v in task.get("inputs", {}).get("parameters", {}).items()}
    invocation = {"inputs": {"parameters": parameters, "artifacts": {k: {"artifacts": v} for k, v in inputs.items()}},
                  "outputs": {"artifacts": {k: {"artifacts": v} for k, v in outputs.items()},
                              "outputFile": posixpath.join(task_root, "executor_output.json")}}
    log = logs / f"{seq:02d}-{name}.log"  # one folder per dry run: a log never mixes two runs
    started = time.monotonic()
    pre = container.get("lifecycle", {}).get("preCacheCheck")
    if pre:  # the driver: span, version and fingerprint of the input data update the task before it runs
        _run(_command(pre, json.dumps(invocation)), log, name, server)
        driver = _read_output(invocation["outputs"]["outputFile"])
        for key, value in driver.get("parameterValues", {}).items():
            parameters[key] = ({"stringValue": value} if isinstance(value, str) else {"intValue": str(int(value))})
        _merge_metadata(outputs, driver)
        invocation["outputs"]["artifacts"] = {k: {"artifacts": v} for k, v in outputs.items()}
    _run(_command(container, json.dumps(invocation)), log, name, server)
    _merge_metadata(outputs, _read_output(invocation["outputs"]["outputFile"]))
    for listed in outputs.values():
        for artifact in listed:
            store.publish(artifact)
    return TaskResult(name, "container", "COMPLETE", time.monotonic() - started, outputs)


def _importer_task(name: str, task: Dict[str, Any], body: Dict[str, Any], store: Store) -> TaskResult:
    """An importer node, as Vertex runs it: its ``artifactUri`` becomes a published artifact of its type."""
    spec = kfp_spec.executor_of(body, task)["importer"]
    uri = spec["artifactUri"]["constantValue"]["stringValue"]
    [(key, output)] = kfp_spec.component_of(body, task)["outputDefinitions"]["artifacts"].items()
    artifact = {**_runtime_artifact(store.next_name() + f"-{name}-{key}", output["artifactType"], uri),
                "metadata": spec.get("metadata", {})}
    store.publish(artifact)
    return TaskResult(name, "importer", "COMPLETE", 0.0, {key: [artifact]})


def execute(body: Dict[str, Any], directory: Path, data: Optional[str] = None,
            roots: Sequence[Path] = (REPO_ROOT,), progress=lambda line: None) -> DryRunResult:
    """Run the compiled pipeline ``body`` (the JSON ``sluice compile`` writes) under ``directory``; image
    files are read from the first of ``roots`` (project directories) that has them."""
    from sluice.pipeline.data_source import resolve_data_source

    directory = directory.resolve()
    root = directory / "pipeline_root"
    source = resolve_data_source(Path(data)) if data else None
    local = localize(body, root, source.input_base if source else None, source.pattern if source else None, roots)
    store = Store(directory / STORE_FILE, body["pipelineSpec"]["pipelineInfo"]["name"])
    job = f"{body.get('displayName', 'pipeline')}-{time.strftime('%Y%m%d-%H%M%S')}"
    while (directory / "logs" / job).exists():  # two dry runs within one second
        job += "-1"
    logs = directory / "logs" / job
    for d in (root, logs):
        d.mkdir(parents=True, exist_ok=True)
    server = forkserver.ForkServer(logs / "00-forkserver.log") if forkserver.enabled() else None
    try:
        return _execute(local, store, job, root, logs, server, progress)
    finally:
        if server is not None:
            server.close()


def _execute(local: Dict[str, Any], store: Store, job: str, root: Path, logs: Path,
             server: Optional[forkserver.ForkServer], progress) -> DryRunResult:
    done: Dict[str, TaskResult] = {}
    graph = kfp_spec.tasks(local)
    for seq, name in enumerate(kfp_spec.topological_order(local), 1):
        task = graph[name]
        executor = kfp_spec.executor_of(local, task)
        inputs = _inputs(task, done)
        if "resolver" in executor:
            started = time.monotonic()
            outputs = {key: store.query(query["filter"], inputs)
                       for key, query in executor["resolver"]["outputArtifactQueries"].items()}
            done[name] = TaskResult(name, "resolver", "COMPLETE", time.monotonic() - started, outputs)
            found = ", ".join(f"{k}: {'found' if v else 'none'}" for k, v in outputs.items())
            progress(f"  {name:<48} resolved   ({found})")
            continue
        if "importer" in executor:
            done[name] = _importer_task(name, task, local, store)
            progress(f"  {name:<48} imported   {done[name].outputs}")
            continue
        if "container" not in executor:
            raise SluiceError(f"dry run, task {name}", f"executor kind {sorted(executor)} is not supported",
                              "containers, importers and resolvers are")
        progress(f"  {name:<48} running…")
        started = time.monotonic()
        try:
            done[name] = _container_task(name, task, local, inputs, str(root), job, seq, store, logs, server)
        except DryRunFailed as failed:
            progress(f"  {name:<48} FAILED {time.monotonic() - started:6.1f} s")
            done[name] = TaskResult(name, "container", "FAILED", time.monotonic() - started)
            return DryRunResult(job=job, root=str(root), tasks=list(done.values()), failure=failed)
        progress(f"  {name:<48} ran    {done[name].seconds:6.1f} s")
    return DryRunResult(job=job, root=str(root), tasks=list(done.values()))


def run_record(result: DryRunResult, pipeline: str):
    """The dry run as a ``RunRecord`` (what MLMD gives a local run), so the run page can be written from it."""
    from sluice.components.export.component import data_fingerprint
    from sluice.pipeline.mlmd import NodeExecution, RunRecord

    record = RunRecord(run_id=result.job, pipeline=pipeline)
    for i, task in enumerate(result.tasks, 1):
        node = task.name.split("-model-")[0]
        record.executions[node] = NodeExecution(node, task.state, task.seconds, i)
        if task.kind == "resolver":  # what a resolver returns is an earlier run's artifact
            continue
        for artifacts in task.outputs.values():
            for artifact in artifacts:
                kind = kfp_spec.artifact_title(artifact["type"]).removeprefix("tfx.")
                meta = artifact.get("metadata", {})
                record.outputs.setdefault(node, {})[kind] = artifact["uri"]
                if kind == "ModelBlessing":
                    record.blessed, record.blessing_uri = bool(meta.get("blessed")), artifact["uri"]
                elif kind == "ModelEvaluation":
                    record.evaluation_uri = artifact["uri"]
                elif kind == "PushedModel":
                    record.pushed = bool(meta.get("pushed"))
                    if record.pushed:
                        record.pushed_destination = meta.get("pushed_destination")
                        record.pushed_version = str(meta.get("pushed_version"))
                elif kind == "Model":
                    record.model_uri = artifact["uri"]
                elif kind == "Examples" and meta.get("window_spans"):  # the SpanWindow step's
                    record.window = [int(span) for span in str(meta["window_spans"]).split(",")]
                elif kind == "Examples" and meta.get("input_fingerprint"):
                    record.data_fingerprint = data_fingerprint(meta["input_fingerprint"])
                    span = meta.get("custom:span", meta.get("span"))  # TFX's V2 entrypoint prefixes custom ones
                    if span is not None:
                        record.span = int(span)
    record.seconds = sum(t.seconds for t in result.tasks)
    return record
