"""``sluice compile … --dry-run DIR``: execute the compiled KFP v2 pipeline on this machine, task by task, the
way Vertex AI Pipelines / Kubeflow would, before a real submission is spent on it.

What runs for real (the same code a Vertex step runs):
- every container task, in DAG order, as its own process: the compiled ``command`` (``python -m
  tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor``) with the compiled ``args`` — the
  executor class path, the ``ExecutorInput`` JSON in place of ``{{$}}``, the Beam flags — so wrong class paths,
  exec properties that do not survive serialization, and code that reads local paths fail here;
- a task's ``lifecycle.preCacheCheck`` command first (CsvExampleGen's span/fingerprint driver); its
  ``ExecutorOutput`` updates the task's parameters and output artifact before the executor runs, as Vertex does.

What is emulated (and how), since there is no Vertex here:
- the pipeline root (``runtimeConfig.gcsOutputDirectory``, also inside exec properties such as the push
  destination) is mapped to ``DIR/pipeline_root`` — Beam's file systems do not know ``ram://`` and gs:// is
  unreachable; task outputs go to ``<root>/<job>/<task>_<n>/<output key>`` like Vertex's layout;
- files of the pipeline image (``/sluice/...``) are read from this checkout, after checking that the root
  Dockerfile copies them into the image (a file outside its COPY lines is an error: it would be missing there);
- ``--data`` replaces CsvExampleGen's ``input_base``/``input_config`` (the compiled data is usually gs://);
- ML Metadata: artifacts that tasks publish are recorded in ``DIR/metadata.json`` (name, schema title, URI,
  metadata, state LIVE) across dry runs in the same DIR; resolver tasks evaluate their compiled filter
  (``schema_title="…" AND state=LIVE [AND metadata.<key>.number_value=<n>] [AND name="{{$.inputs…}}"]``)
  against it and take the newest match — so a second dry run finds the first one's DataGate verdict and
  blessed model. A clause the emulator does not understand is an error, never ignored;
- Beam runs with the DirectRunner (the compiled runner flags are replaced: Dataflow/Flink/Spark are not
  reachable), and a Vertex AI training job Trainer runs as TFX's local GenericExecutor with the same run_fn.

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
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from sluice.pipeline import kfp_spec
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
_IMAGE_PATH = re.compile(rf"(?<![\w.\-/]){re.escape(IMAGE_ROOT)}/")
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
    """``container`` or ``resolver``."""
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
    """Emulated Vertex ML Metadata: the artifacts published by dry runs in one directory (JSON file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.artifacts: List[Dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else []

    def next_name(self) -> str:
        return f"dryrun/metadataStores/default/artifacts/{len(self.artifacts) + 1}"

    def publish(self, artifact: Dict[str, Any]) -> None:
        self.artifacts.append({**artifact, "state": "LIVE"})
        self.path.write_text(json.dumps(self.artifacts, indent=1))

    def query(self, query_filter: str, inputs: Dict[str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
        """The newest LIVE artifact matching the compiled filter, as a one-element list (or empty)."""
        checks = []
        for clause in (c.strip() for c in query_filter.split(" AND ")):
            match = _CLAUSE.match(clause)
            if not match:
                raise ValueError(f"the dry run cannot emulate the resolver clause {clause!r}")
            if clause.startswith("schema_title="):
                title = clause.split('"')[1]
                checks.append(lambda a, t=title: kfp_spec.artifact_title(a["type"]) == t)
            elif clause.startswith("metadata."):
                key, value = match.group(2), float(match.group(3))
                checks.append(lambda a, k=key, v=value: float(a.get("metadata", {}).get(k, "nan")) == v)
            elif clause.startswith("name="):
                wanted = _PLACEHOLDER.sub(lambda m: str(inputs[m.group(1)][0]["metadata"][m.group(2)])
                                          if inputs.get(m.group(1)) else "", match.group(4))
                checks.append(lambda a, n=wanted: a["name"] == n)
        found = [a for a in self.artifacts if a["state"] == "LIVE" and all(check(a) for check in checks)]
        return [{k: v for k, v in found[-1].items() if k != "state"}] if found else []


# ------------------------------------------------------------------------------------------ the spec
def image_layout(dockerfile: Path = REPO_ROOT / "Dockerfile") -> List[str]:
    """The paths (relative to the image's WORKDIR) that the pipeline image's COPY lines put there."""
    targets = []
    for line in dockerfile.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "COPY" and not any(p.startswith("--from") for p in parts):
            sources = parts[1:-1]
            if parts[-1].rstrip("/") in (".", "./"):
                targets += [s.rstrip("/") for s in sources]
            else:
                targets.append(parts[-1].rstrip("/"))
    return targets


def localize(body: Dict[str, Any], root: Path, data_dir: Optional[str], data_pattern: Optional[str]) -> Dict[str, Any]:
    """A copy of the compiled pipeline that runs here: pipeline root -> ``root``, image files -> checkout,
    CsvExampleGen's data -> ``data_dir``/``data_pattern`` (when given). Raises SluiceError for an image path
    the Dockerfile does not copy."""
    remote_root = body["runtimeConfig"]["gcsOutputDirectory"].rstrip("/")
    layout = image_layout()
    missing: List[str] = []

    def image_file(match: "re.Match[str]", text: str) -> str:
        rest = text[match.end():].split('"')[0].split()[0] if text[match.end():] else ""
        if not any(rest == p or rest.startswith(p + "/") for p in layout):
            missing.append(f"{IMAGE_ROOT}/{rest}")
        return f"{REPO_ROOT}/"

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str):
            value = value.replace(remote_root, str(root))
            return _IMAGE_PATH.sub(lambda m: image_file(m, value), value)
        return value

    local = fix(copy.deepcopy(body))
    if missing:
        raise SluiceError(missing[0], "the compiled pipeline reads this file from the image, but the root Dockerfile "
                          "does not copy it there", "add it to a COPY line, or give it as a gs:// URI")
    if data_dir:
        params = kfp_spec.tasks(local)["CsvExampleGen"]["inputs"]["parameters"]
        params["input_base"]["runtimeValue"]["constantValue"] = {"stringValue": data_dir}
        config = json.loads(params["input_config"]["runtimeValue"]["constantValue"]["stringValue"])
        for split in config["splits"]:
            split["pattern"] = data_pattern
        params["input_config"]["runtimeValue"]["constantValue"] = {"stringValue": json.dumps(config, indent=2)}
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


def _run(command: List[str], log: Path, task: str) -> None:
    with log.open("a") as out:
        out.write("$ " + " ".join(shlex.quote(c[:200]) for c in command) + "\n")
        out.flush()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT), env=env).returncode
    if code != 0:
        text = log.read_text(errors="replace")
        if "DataGateFailed: " in text:  # the gate's one screen (feature, anomaly, expected, report) is the cause
            raise DryRunFailed(task, text.rsplit("DataGateFailed: ", 1)[1].strip(), log, exit_code=3)
        lines = [l for l in text.splitlines() if l.strip()]
        cause = next((l for l in reversed(lines) if "Error" in l), lines[-1] if lines else "")
        raise DryRunFailed(task, f"exited with status {code}: {cause[:500]}", log)


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
                    job: str, seq: int, store: Store, logs: Path) -> TaskResult:
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
    log = logs / f"{seq:02d}-{name}.log"
    started = time.monotonic()
    pre = container.get("lifecycle", {}).get("preCacheCheck")
    if pre:  # the driver: span, version and fingerprint of the input data update the task before it runs
        _run(_command(pre, json.dumps(invocation)), log, name)
        driver = _read_output(invocation["outputs"]["outputFile"])
        for key, value in driver.get("parameterValues", {}).items():
            parameters[key] = ({"stringValue": value} if isinstance(value, str) else {"intValue": str(int(value))})
        _merge_metadata(outputs, driver)
        invocation["outputs"]["artifacts"] = {k: {"artifacts": v} for k, v in outputs.items()}
    _run(_command(container, json.dumps(invocation)), log, name)
    _merge_metadata(outputs, _read_output(invocation["outputs"]["outputFile"]))
    for listed in outputs.values():
        for artifact in listed:
            store.publish(artifact)
    return TaskResult(name, "container", "COMPLETE", time.monotonic() - started, outputs)


def execute(body: Dict[str, Any], directory: Path, data: Optional[str] = None,
            progress=lambda line: None) -> DryRunResult:
    """Run the compiled pipeline ``body`` (the JSON ``sluice compile`` writes) under ``directory``."""
    from sluice.pipeline.data_source import resolve_data_source

    directory = directory.resolve()
    root = directory / "pipeline_root"
    logs = directory / "logs"
    for d in (root, logs):
        d.mkdir(parents=True, exist_ok=True)
    source = resolve_data_source(Path(data)) if data else None
    local = localize(body, root, source.input_base if source else None, source.pattern if source else None)
    store = Store(directory / STORE_FILE)
    job = f"{body.get('displayName', 'pipeline')}-{time.strftime('%Y%m%d-%H%M%S')}"
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
        if "container" not in executor:
            raise SluiceError(f"task {name}", f"executor kind {sorted(executor)} is not supported by the dry run")
        progress(f"  {name:<48} running…")
        started = time.monotonic()
        try:
            done[name] = _container_task(name, task, local, inputs, str(root), job, seq, store, logs)
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
        for artifacts in task.outputs.values():
            for artifact in artifacts:
                title = kfp_spec.artifact_title(artifact["type"])
                kind = title.removeprefix("tfx.")
                meta = artifact.get("metadata", {})
                if task.kind == "container":
                    record.outputs.setdefault(node, {})[kind] = artifact["uri"]
                if task.kind != "container":
                    continue
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
                elif kind == "Examples" and meta.get("input_fingerprint"):
                    record.data_fingerprint = data_fingerprint(meta["input_fingerprint"])
    record.seconds = sum(t.seconds for t in result.tasks)
    return record
