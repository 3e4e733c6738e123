"""``sluice compile --target kubeflow``: the same pipeline graph as a local run, compiled by TFX's
``KubeflowV2DagRunner`` into a KFP v2 pipeline JSON for Kubeflow Pipelines or Vertex AI Pipelines.

- Component code is referenced by import path (``sluice.components…``) and the pipeline image (root
  ``Dockerfile``, WORKDIR ``/sluice``) has the package installed, so no user-module wheel is uploaded and the
  "No module named 'user_module_0'" failure of remote runners cannot happen.
- Files the run needs (curated schema, data) are URIs, or files the image holds: the root Dockerfile copies
  a project's ``configs/``, ``schemas/`` and ``data/`` to ``/sluice/``. A file maps into the image when it is
  inside one of those folders of the config's project (the directory holding the config's ``configs/``
  folder) or of the sluice checkout the compile runs from; a wheel install has no checkout, so only the
  project rule applies there. Anything else is an error naming the path and the fix — and after compiling,
  every string of the spec is scanned: a local path outside ``/sluice/`` fails the compile, nothing is written.
- The pipeline root may be a ``gs://`` URI: TFX probes remote roots while compiling, which fails offline, so
  the graph is compiled against a local placeholder root and the placeholder is replaced by the real root in
  the JSON (every path derived from the root — DataGate reports, serving directory — follows it).
- Platform settings come from the config's ``kubeflow`` section: per-component container resources
  (``with_platform_config``), and optionally the Trainer as a Vertex AI training job. Beam workers run the
  pipeline image unless the config names another. Local runs never read any of this.
- No MLMD connection is set: the orchestrator provides one.
"""

from __future__ import annotations

import json
import posixpath
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from sluice.pipeline.config import SPAN_SPEC, PipelineConfig, is_uri
from sluice.pipeline.platform import ContainerResources
from sluice.pipeline.data_source import DataSource, split_location
from sluice.pipeline.errors import ConfigError, SluiceError
from sluice.pipeline import kfp_spec
from sluice.pipeline.kfp_spec import type_resolver_queries
from sluice.pipeline.pipeline import Locations, create_pipeline

IMAGE_WORKDIR = "/sluice"
IMAGE_FOLDERS = ("configs", "schemas", "data")
"""A project's folders the root Dockerfile copies to ``/sluice/`` (tests/unit/test_kubeflow.py checks)."""
REPO_ROOT = Path(__file__).resolve().parent.parent
_PLACEHOLDER = "/sluice-compile-placeholder-root"
# An absolute path inside a string: at its start, or after a space, quote, '=', or an opening bracket.
# (A URI's "//host/…" follows ':' or '/', so it never matches.)
_ABSOLUTE_PATH = re.compile(r"(?:^|(?<=[\s\"'=\[(,{]))/[\w.~-][^\s\"',;)\]}]*")


def checkout_root() -> Optional[Path]:
    """The sluice checkout this module runs from, or None for an installed wheel (``site-packages/sluice``
    has no Dockerfile beside it, so its folders are not the image's)."""
    if (REPO_ROOT / "Dockerfile").is_file() and (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT
    return None


def project_roots(config: PipelineConfig) -> List[Path]:
    """Directories whose ``configs/``, ``schemas/``, ``data/`` the pipeline image holds at ``/sluice/``.

    The config's project (``<project>/configs/<name>.yaml``: the layout the root Dockerfile copies) works the
    same from a checkout or a wheel install; the checkout itself also counts, for configs kept elsewhere that
    point at its schemas.
    """
    roots: List[Path] = []
    config_dir = config.config_dir.resolve()
    if config_dir.name == "configs":
        roots.append(config_dir.parent)
    checkout = checkout_root()
    if checkout is not None and checkout not in roots:
        roots.append(checkout)
    return roots


def image_path(local: Path, roots: Sequence[Path]) -> Optional[str]:
    """``local`` as the pipeline image sees it (``/sluice/<folder>/…``), or None when the image lacks it."""
    path = Path(local).expanduser().resolve()
    for root in roots:
        try:
            rel = path.relative_to(root)
        except ValueError:
            continue
        if len(rel.parts) > 1 and rel.parts[0] in IMAGE_FOLDERS:
            return posixpath.join(IMAGE_WORKDIR, rel.as_posix())
    return None


def kfp_name(name: str) -> str:
    """KFP v2 pipeline names are ``[a-z0-9][a-z0-9-]{0,127}``: taxi_fare -> taxi-fare."""
    return re.sub(r"[^a-z0-9-]", "-", name.lower())[:128]


def remote(value: str) -> bool:
    """A URI another machine can read: ``scheme://`` but not ``file://`` (that is this machine's disk)."""
    return is_uri(value) and not value.lower().startswith("file://")


def remote_source(data: str) -> DataSource:
    """CsvExampleGen's (input_base, pattern) for a URI or image path, without touching it. A span pattern
    (``gs://…/{SPAN}/*.csv``) stays open: each run of the compiled pipeline ingests the newest span."""
    last = posixpath.basename(data.rstrip("/"))
    if re.search(SPAN_SPEC, data):
        return DataSource(*split_location(data.rstrip("/")), ())
    if any(c in last for c in "*?[") or last.endswith(".csv"):
        return DataSource(posixpath.dirname(data.rstrip("/")), last, ())
    return DataSource(data.rstrip("/"), "*.csv", ())


def _not_in_image(where: str, path: str, folder: str, fix: str, error: type = ConfigError) -> SluiceError:
    return error(where, f"{path} is on this machine and not in the pipeline image",
                 f"{fix}; or keep it in the project's {folder}/ folder beside configs/, which the image holds "
                 f"at {IMAGE_WORKDIR}/{folder}/")


def _remote_or_raise(where: str, value: str, fix: str, error: type = ConfigError) -> str:
    if not remote(value):
        raise error(where, f"{value} is a file:// URI: the pipeline's machines cannot read this machine's disk", fix)
    return value


def data_location(config: PipelineConfig, data: Optional[str]) -> str:
    """Where the pipeline's containers read the data: ``--data``, else the config's ``data.path``."""
    fix = "pass --data gs://BUCKET/path/ to a CSV file, directory or glob"
    roots = project_roots(config)
    if data:
        if is_uri(data):
            return _remote_or_raise("--data", data, fix, SluiceError)
        mapped = image_path(Path(data), roots)
        if mapped is None:
            raise _not_in_image("--data", str(Path(data).expanduser().resolve()), "data", fix, SluiceError)
        return mapped
    if is_uri(config.data.path):
        return _remote_or_raise("data.path", config.data.path, fix)
    mapped = image_path(config.data_path, roots)
    if mapped is None:
        raise _not_in_image("data.path", str(config.data_path), "data", fix)
    return mapped


def bulk_location(config: PipelineConfig) -> Optional[str]:
    """Where the compiled BulkScore step reads ``bulk_inference.input``: the URI, or its path in the image."""
    if config.bulk_inference is None:
        return None
    where, fix = "bulk_inference.input", "give a gs://BUCKET/… URI, or keep the files in the project's data/ folder"
    value = config.bulk_inference.input
    if is_uri(value):
        return _remote_or_raise(where, value, fix)
    mapped = image_path(config.resolve(value), project_roots(config))
    if mapped is None:
        raise _not_in_image(where, str(config.resolve(value)), "data", fix)
    return mapped


def schema_location(config: PipelineConfig, schema: Optional[str]) -> str:
    """Where ImportSchemaGen reads the curated schema: ``--schema`` (a URI), else the config's ``schema``."""
    fix = "copy it to gs://BUCKET/… and set schema: to that URI or pass --schema gs://…"
    if schema:
        if not is_uri(schema):
            raise SluiceError("--schema", f"{schema} is not a URI", "pass gs://BUCKET/…/schema.pbtxt; a local "
                              "schema is given by the config's schema: key")
        return _remote_or_raise("--schema", schema, fix, SluiceError)
    if is_uri(config.schema_path):
        return _remote_or_raise("schema", config.schema_path, fix)
    mapped = image_path(config.schema_file, project_roots(config))
    if mapped is None:
        raise _not_in_image("schema", str(config.schema_file), "schemas", fix)
    return mapped


def resource_spec(resources: ContainerResources):
    """The KFP ``ResourceSpec`` TFX's step builder copies into ``container.resources`` (limits; Vertex AI
    Pipelines picks a machine that satisfies them)."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
    if resources.cpu is not None:
        spec.cpu_limit = resources.cpu
    if resources.memory is not None:
        spec.memory_limit = resources.memory
    if resources.accelerator is not None:
        spec.accelerator.type = resources.accelerator.type
        spec.accelerator.count = resources.accelerator.count
    return spec


def apply_resources(pipeline, config: PipelineConfig) -> Dict[str, Dict[str, Any]]:
    """Attach each component's configured resources (``kubeflow.resources``) as its platform config.

    Returns node id -> the ``resources`` JSON its container must carry, for ``_fill_dropped_resources``.
    """
    from google.protobuf import json_format
    from tfx.dsl.components.base import base_component

    expected = {}
    for node in pipeline.components:
        resources = config.kubeflow.resources_for(node.id)
        if resources is None or not isinstance(node, base_component.BaseComponent):
            continue  # resolvers run no container
        spec = resource_spec(resources)
        node.with_platform_config(spec)
        expected[node.id] = json_format.MessageToDict(spec)
    return expected


def _fill_dropped_resources(body: Dict[str, Any], expected: Dict[str, Dict[str, Any]]) -> None:
    """Put back resources TFX's compiler drops.

    TFX 1.16's step builder copies ``platform_config`` for ordinary components but not in
    ``_build_file_based_example_gen_spec`` (CsvExampleGen): without this its container would ask for nothing.
    """
    executors = body["pipelineSpec"]["deploymentSpec"]["executors"]
    for node_id, resources in expected.items():
        container = executors[f"{node_id}_executor"]["container"]
        container.setdefault("resources", resources)
        if container["resources"] != resources:
            raise RuntimeError(f"{node_id}: compiled resources {container['resources']} != configured {resources}")


def vertex_training_config(config: PipelineConfig, image: str) -> Optional[Dict[str, Any]]:
    """The ``custom_config`` keys of TFX's Google Cloud Trainer for ``kubeflow.vertex_training`` (or None).

    The extension's executor (tfx/extensions/google_cloud_ai_platform/trainer/executor.py) reads
    ``ai_platform_training_args`` (``project`` is popped, ``job_spec`` becomes the CustomJob's spec),
    ``ai_platform_enable_vertex`` and ``ai_platform_vertex_region``, and passes the *whole* exec properties,
    custom_config included, to ``python -m tfx.scripts.run_executor`` in every replica
    (training_clients.py), so run_fn still finds its contract beside these keys. Every pool runs the
    pipeline image (TFX would default to its own image, which lacks sluice).
    """
    vertex = config.kubeflow.vertex_training
    if vertex is None:
        return None
    from tfx.v1.extensions import google_cloud_ai_platform as gcai

    machine: Dict[str, Any] = {"machine_type": vertex.machine_type}
    if vertex.accelerator is not None:
        machine.update(accelerator_type=vertex.accelerator.type, accelerator_count=vertex.accelerator.count)

    def pool(count: int) -> Dict[str, Any]:
        spec: Dict[str, Any] = {"machine_spec": dict(machine), "replica_count": count,
                                "container_spec": {"image_uri": image}}
        if vertex.boot_disk_size_gb is not None:
            spec["disk_spec"] = {"boot_disk_size_gb": vertex.boot_disk_size_gb}
        return spec

    # Pool 0 is the primary replica (TF_CONFIG task type "chief"), pool 1 the workers ("worker").
    replicas = config.vertex_replicas()
    pools = [pool(1)] + ([pool(replicas - 1)] if replicas > 1 else [])
    job_spec: Dict[str, Any] = {"worker_pool_specs": pools}
    if vertex.service_account:
        job_spec["service_account"] = vertex.service_account
    return {
        gcai.ENABLE_VERTEX_KEY: True,
        gcai.VERTEX_REGION_KEY: vertex.region,
        gcai.TRAINING_ARGS_KEY: {"project": vertex.project, "job_spec": job_spec},
    }


def _strings(node: Any, where: str = "") -> Iterator[Tuple[str, str]]:
    """Every string of a JSON document with its location (keys count: TFX puts paths in some)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key, where)
            yield from _strings(value, f"{where}.{key}" if where else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{where}[{i}]")
    elif isinstance(node, str):
        yield node, where


def local_paths(body: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(path, location) of every path in the compiled spec that only this machine has: absolute paths
    outside the image's ``/sluice/`` tree, and ``file://`` URIs. Strings holding serialized JSON (exec
    properties, custom_config) are searched too."""
    found = []
    for text, where in _strings(body):
        for match in _ABSOLUTE_PATH.finditer(text):
            path = match.group(0)
            if path != IMAGE_WORKDIR and not path.startswith(IMAGE_WORKDIR + "/"):
                found.append((path, where))
        found.extend((m.group(0), where) for m in re.finditer(r"file://[^\s\"',;)\]}]*", text, re.I))
    return found


def uncached(body: Dict[str, Any]) -> List[str]:
    """Turn Vertex's cache off for the tasks that read or write the span ledger (components/span_ledger.py:
    the gate whose contract names one, the SpanWindow step): a cached gate would not record a roll-back to
    earlier files, a cached window would keep a span whose files were deleted. The gate takes seconds; the
    window then re-runs the model side on every run (schedule runs when a span lands). Returns their names."""
    changed = []
    for name, task in kfp_spec.tasks(body).items():
        gate = kfp_spec.json_parameter(task, "gate") or {}
        window = kfp_spec.json_parameter(task, "contract") or {}
        if gate.get("span_ledger") or ("ledger" in window and "num_spans" in window):
            task["cachingOptions"] = {"enableCache": False}
            changed.append(name)
    return sorted(changed)


def compile_kubeflow(config: PipelineConfig, image: str, pipeline_root: str, output: Path,
                     data: Optional[str] = None, serving_base: Optional[str] = None,
                     schema: Optional[str] = None) -> Path:
    """Compile ``config`` into a KFP v2 pipeline JSON at ``output``; raise (writing nothing) if the spec would
    reference anything the pipeline's machines cannot reach."""
    fix_root = "pass a bucket URI such as gs://BUCKET/sluice/<pipeline>"
    if not remote(pipeline_root):
        raise SluiceError("--pipeline-root", f"{pipeline_root} is not a remote URI", fix_root)
    if serving_base is not None and not remote(serving_base):
        raise SluiceError("--serving-dir", f"{serving_base} is not a remote URI", "pass gs://BUCKET/serving, or "
                          "leave it out for <pipeline-root>/serving")
    # What the push record names as the config: the user's, with --data as given (sluice monitor --data),
    # before the compile fills in the image and the bulk table's location below. Validating --data here also
    # refuses a window over data without {SPAN}.
    pushed_config_hash = (config.with_data_path(data) if data else config).fingerprint()
    data_uri = data_location(config, data)
    bulk = bulk_location(config)
    if bulk is not None:
        config = config.model_copy(update={"bulk_inference": config.bulk_inference.model_copy(update={"input": bulk})})
    where = Locations(
        pipeline_root=_PLACEHOLDER,
        serving_base=serving_base or f"{_PLACEHOLDER}/serving",
        schema_uri=schema_location(config, schema),
        metadata_path=None,
    )
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kubeflow  # after the checks: errors are fast

    config = config.model_copy(update={"beam": config.beam.with_default_image(image)})
    pipeline = create_pipeline(config, remote_source(data_uri), where, pipeline_name=kfp_name(config.name),
                               vertex_training=vertex_training_config(config, image),
                               config_hash=pushed_config_hash)
    resources = apply_resources(pipeline, config)
    with tempfile.TemporaryDirectory() as tmp:
        runner = kubeflow.KubeflowV2DagRunner(
            config=kubeflow.KubeflowV2DagRunnerConfig(default_image=image),
            output_dir=tmp,
            output_filename="pipeline.json",
        )
        runner.run(pipeline, write_out=True)
        text = (Path(tmp) / "pipeline.json").read_text()
    body = json.loads(text.replace(_PLACEHOLDER, pipeline_root.rstrip("/")))
    _fill_dropped_resources(body, resources)
    type_resolver_queries(body)  # the drift baseline's resolver must ask for sluice.DataVerdict, not tfx.Artifact
    uncached(body)  # their answers depend on the span ledger, which Vertex's cache key cannot see
    leaks = local_paths(body)
    if leaks:
        path, at = leaks[0]
        more = f" (+{len(leaks) - 1} more)" if len(leaks) > 1 else ""
        raise SluiceError(f"compiled pipeline ({at})", f"holds the local path {path}{more}",
                          "give every file as a gs:// URI (--data, schema:) or keep it in the project's "
                          f"{', '.join(f + '/' for f in IMAGE_FOLDERS)}, which the image holds at {IMAGE_WORKDIR}/")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(body, sort_keys=True))
    return output
