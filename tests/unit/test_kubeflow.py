"""Beyond one machine: the KFP v2 compile (offline, gs:// root), Beam profiles, and the pipeline image's pins."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from sluice.pipeline.config import BeamConfig, parse_config
from sluice.pipeline.errors import ConfigError
from tests.helpers import CONFIGS, ROOT

IMAGE = "europe-docker.pkg.dev/proj/sluice/pipeline:1.0"
ROOT_URI = "gs://bucket/sluice/taxi-fare"


@pytest.fixture(scope="module")
def fare_raw():
    return yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text())


@pytest.fixture(scope="module")
def compiled(fare_raw, tmp_path_factory):
    from sluice.pipeline.kubeflow import compile_kubeflow

    raw = copy.deepcopy(fare_raw)
    raw["beam"] = {"profile": "dataflow", "dataflow": {"project": "proj", "region": "europe-west4",
                                                        "temp_location": "gs://bucket/tmp",
                                                        "sdk_container_image": IMAGE}}
    cfg = parse_config(raw, base_dir=str(CONFIGS))
    out = compile_kubeflow(cfg, IMAGE, ROOT_URI, tmp_path_factory.mktemp("kfp") / "p.json",
                           data="gs://bucket/data/taxi/*.csv")
    return cfg, json.loads(out.read_text()), out.read_text()


def test_pipeline_spec_parses_into_kfps_proto(compiled):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    _, body, _ = compiled
    spec = json_format.ParseDict(body["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    assert spec.pipeline_info.name == "taxi-fare"
    assert body["runtimeConfig"]["gcsOutputDirectory"] == ROOT_URI


def test_tasks_and_edges_are_the_local_pipelines(compiled, tmp_path):
    from sluice.pipeline.data_source import DataSource
    from sluice.pipeline.pipeline import OutputPaths, create_pipeline

    cfg, body, _ = compiled
    local = create_pipeline(cfg, DataSource(str(tmp_path), "*.csv", ()), OutputPaths(tmp_path / "out"))
    tasks = body["pipelineSpec"]["root"]["dag"]["tasks"]

    def task_of(node_id):  # a resolver node compiles into one task per resolved channel
        return sorted(t for t in tasks if t == node_id or t.startswith(node_id + "-"))

    assert sorted(t for c in local.components for t in task_of(c.id)) == sorted(tasks)
    for component in local.components:
        for task in task_of(component.id):
            depends = set(tasks[task].get("dependentTasks", []))
            # Every local upstream node is depended on (through one of its tasks), and nothing else is.
            assert all(depends & set(task_of(up.id)) for up in component.upstream_nodes), component.id
            assert depends <= {t for up in component.upstream_nodes for t in task_of(up.id)}, component.id


def test_every_container_runs_the_image_with_the_beam_profile_and_package_code(compiled):
    _, body, text = compiled
    executors = body["pipelineSpec"]["deploymentSpec"]["executors"]
    containers = {k: v["container"] for k, v in executors.items() if "container" in v}
    assert len(containers) == 12 and {c["image"] for c in containers.values()} == {IMAGE}
    transform_args = containers["Transform_executor"]["args"]
    for arg in ("--runner=DataflowRunner", "--project=proj", "--region=europe-west4",
                "--temp_location=gs://bucket/tmp", f"--sdk_container_image={IMAGE}"):
        assert arg in transform_args
    assert "sluice.components.transform.preprocessing_fn" in text and "user_module" not in text
    assert containers["Evaluator_executor"]["args"][1] == "sluice.components.evaluator.Executor"
    assert containers["ModelExport_executor"]["args"][1] == "sluice.components.export.component.Executor"
    assert containers["InfraCheck_executor"]["args"][1] == "sluice.components.infra_check.Executor"
    assert containers["Pusher_executor"]["args"][1] == "sluice.components.pusher.Executor"
    assert "/sluice/schemas/taxi/schema.pbtxt" in text  # the curated schema, inside the image
    assert "gs://bucket/data/taxi" in text and f"{ROOT_URI}/serving/taxi_fare" in text
    assert "placeholder" not in text


@pytest.mark.parametrize("beam,expected", [
    ({}, ["--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]),
    ({"direct_running_mode": "multi_processing", "direct_num_workers": 0},
     ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=0"]),
    ({"profile": "flink", "flink": {"job_endpoint": "flink:8099", "environment_type": "EXTERNAL",
                                     "environment_config": "localhost:50000", "parallelism": 4}},
     ["--runner=PortableRunner", "--job_endpoint=flink:8099", "--environment_type=EXTERNAL",
      "--environment_config=localhost:50000", "--parallelism=4"]),
    ({"profile": "spark", "spark": {"job_endpoint": "spark:8099", "environment_config": IMAGE}},
     ["--runner=PortableRunner", "--job_endpoint=spark:8099", "--environment_type=DOCKER",
      f"--environment_config={IMAGE}"]),
])
def test_beam_profiles_give_their_pipeline_args(beam, expected):
    assert BeamConfig.model_validate(beam).args() == expected


def test_dataflow_profile_needs_its_settings(fare_raw):
    raw = copy.deepcopy(fare_raw)
    raw["beam"] = {"profile": "dataflow"}
    with pytest.raises(ConfigError, match="beam.dataflow"):
        parse_config(raw, base_dir=str(CONFIGS))
    raw["beam"] = {"profile": "dataflow", "dataflow": {"project": "p", "region": "r", "temp_location": "/tmp"}}
    with pytest.raises(ConfigError, match="temp_location"):
        parse_config(raw, base_dir=str(CONFIGS))


def test_pipeline_image_pins_agree_with_pyproject_and_constraints():
    from sluice.pipeline.kubeflow import IMAGE_WORKDIR

    dockerfile = (ROOT / "Dockerfile").read_text()
    constraints = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split()
                       if "==" in line)
    pyproject = (ROOT / "pyproject.toml").read_text()
    base = re.search(r"^FROM tensorflow/tfx:(\S+)", dockerfile, re.M).group(1)
    assert base == constraints["tfx"] and f'"tfx=={base}"' in pyproject
    assert re.search(r"pip install .*-c constraints\.txt", dockerfile)
    assert re.search(r"^WORKDIR (\S+)", dockerfile, re.M).group(1) == IMAGE_WORKDIR
    for folder in ("pipeline", "components", "serving", "schemas", "configs", "data"):
        assert re.search(rf"^COPY {folder}/ {folder}/", dockerfile, re.M), folder
