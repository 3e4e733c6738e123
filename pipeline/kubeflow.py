"""``sluice compile --target kubeflow``: the same pipeline graph as a local run, compiled by TFX's
``KubeflowV2DagRunner`` into a KFP v2 pipeline JSON for Kubeflow Pipelines or Vertex AI Pipelines.

- Component code is referenced by import path (``sluice.components…``) and the pipeline image (root
  ``Dockerfile``, WORKDIR ``/sluice``) has the package installed, so no user-module wheel is uploaded and the
  "No module named 'user_module_0'" failure of remote runners cannot happen.
- Files of this checkout the run needs (curated schema, bundled data) are referenced at their place inside
  the image; data elsewhere is given as a URI (``--data gs://…``).
- The pipeline root may be a ``gs://`` URI: TFX probes remote roots while compiling, which fails offline, so
  the graph is compiled against a local placeholder root and the placeholder is replaced by the real root in
  the JSON (every path derived from the root — DataGate reports, serving directory — follows it).
- No MLMD connection is set: the orchestrator provides one.
"""

from __future__ import annotations

import json
import posixpath
import re
import tempfile
from pathlib import Path
from typing import Optional

from sluice.pipeline.config import PipelineConfig
from sluice.pipeline.data_source import DataSource
from sluice.pipeline.pipeline import Locations, create_pipeline

IMAGE_WORKDIR = "/sluice"
REPO_ROOT = Path(__file__).resolve().parent.parent
_PLACEHOLDER = "/sluice-compile-placeholder-root"


def image_path(local: Path) -> str:
    """A file of this checkout, as the pipeline image sees it (``/sluice/<relative path>``)."""
    try:
        return posixpath.join(IMAGE_WORKDIR, Path(local).resolve().relative_to(REPO_ROOT).as_posix())
    except ValueError:
        return str(local)  # outside the checkout: the user makes it reachable (mounted or baked in)


def kfp_name(name: str) -> str:
    """KFP v2 pipeline names are ``[a-z0-9][a-z0-9-]{0,127}``: taxi_fare -> taxi-fare."""
    return re.sub(r"[^a-z0-9-]", "-", name.lower())[:128]


def _uri(value: str) -> bool:
    return "://" in value


def remote_source(data: str) -> DataSource:
    """CsvExampleGen's (input_base, pattern) for a URI or image path, without touching it."""
    last = posixpath.basename(data.rstrip("/"))
    if any(c in last for c in "*?[") or last.endswith(".csv"):
        return DataSource(posixpath.dirname(data.rstrip("/")), last, ())
    return DataSource(data.rstrip("/"), "*.csv", ())


def compile_kubeflow(config: PipelineConfig, image: str, pipeline_root: str, output: Path,
                     data: Optional[str] = None, serving_base: Optional[str] = None) -> Path:
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kubeflow

    data_uri = data if data else (config.data.path if _uri(config.data.path) else image_path(config.data_path))
    schema_uri = config.schema_path if _uri(config.schema_path) else image_path(config.schema_file)
    root = pipeline_root.rstrip("/")
    where = Locations(
        pipeline_root=_PLACEHOLDER,
        serving_base=serving_base or f"{_PLACEHOLDER}/serving",
        schema_uri=schema_uri,
        metadata_path=None,
    )
    pipeline = create_pipeline(config, remote_source(data_uri), where, pipeline_name=kfp_name(config.name))
    with tempfile.TemporaryDirectory() as tmp:
        runner = kubeflow.KubeflowV2DagRunner(
            config=kubeflow.KubeflowV2DagRunnerConfig(default_image=image),
            output_dir=tmp,
            output_filename="pipeline.json",
        )
        runner.run(pipeline, write_out=True)
        text = (Path(tmp) / "pipeline.json").read_text()
    text = text.replace(_PLACEHOLDER, root)
    json.loads(text)  # still valid JSON after the substitution
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return output
