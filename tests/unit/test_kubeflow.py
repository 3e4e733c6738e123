"""Beyond one machine: the KFP v2 compile (offline, gs:// root), Beam profiles, and the pipeline image's pins."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from sluice.pipeline.config import parse_config
from sluice.pipeline.platform import BeamConfig
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
     ["--runner=sluice.components.beam_runner.DirectRunner", "--direct_running_mode=multi_processing",
      "--direct_num_workers=0"]),
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
    from sluice.pipeline import dry_run
    from sluice.pipeline.kubeflow import IMAGE_FOLDERS, IMAGE_WORKDIR

    dockerfile = (ROOT / "Dockerfile").read_text()
    constraints = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split()
                       if "==" in line)
    pyproject = (ROOT / "pyproject.toml").read_text()
    base = re.search(r"^FROM tensorflow/tfx:(\S+)", dockerfile, re.M).group(1)
    assert base == constraints["tfx"] and f'"tfx=={base}"' in pyproject
    assert re.search(r"pip install .*-c /src/constraints\.txt \"/src\[serving\]\"", dockerfile)
    assert re.findall(r"^WORKDIR (\S+)", dockerfile, re.M)[-1] == IMAGE_WORKDIR
    copied = dry_run.image_copies(ROOT / "Dockerfile")
    for package in ("sluice", "pipeline", "components", "serving"):  # the source pip installs
        assert f"/src/{package}" in copied, package
    # What compile maps into the image is there, and nothing under WORKDIR can shadow the installed package:
    # every component runs `python -m …` there, which puts WORKDIR first on sys.path.
    assert dry_run.image_layout(ROOT / "Dockerfile") == sorted(IMAGE_FOLDERS)
    packages = re.findall(r'^"([\w.]+)" = ', pyproject, re.M)
    assert {p.split(".")[0] for p in packages} == {"sluice"}
    assert not {"sluice", "pipeline", "components", "serving"} & set(dry_run.image_layout(ROOT / "Dockerfile"))


# ------------------------------------------------------------------------------ platform settings (kubeflow:)
def _compile(raw, tmp_path, base_dir=CONFIGS, **kwargs):
    from sluice.pipeline.kubeflow import compile_kubeflow

    cfg = parse_config(raw, base_dir=str(base_dir))
    out = compile_kubeflow(cfg, IMAGE, ROOT_URI, tmp_path / "p.json", **kwargs)
    return cfg, json.loads(out.read_text()), out.read_text()


def _containers(body):
    executors = body["pipelineSpec"]["deploymentSpec"]["executors"]
    return {k.removesuffix("_executor"): v["container"] for k, v in executors.items() if "container" in v}


def _parameters(body, task):
    params = body["pipelineSpec"]["root"]["dag"]["tasks"][task]["inputs"]["parameters"]
    return {k: v["runtimeValue"]["constantValue"].get("stringValue") for k, v in params.items()}


DATAFLOW = {"project": "proj", "region": "europe-west4", "temp_location": "gs://bucket/tmp"}
NETWORKED = {**DATAFLOW, "subnetwork": "regions/europe-west4/subnetworks/private",
             "service_account_email": "dataflow@proj.iam.gserviceaccount.com", "no_use_public_ips": True,
             "disk_size_gb": 50, "labels": {"team": "ml", "cost-center": "c42"},
             "extra_args": ["--network=vpc", "--dataflow_service_options=enable_secure_boot"]}


@pytest.fixture(scope="module")
def gpu_trainer(fare_raw, tmp_path_factory):
    """Resources for every container (a GPU Trainer) and Dataflow with networking; no sdk_container_image."""
    raw = copy.deepcopy(fare_raw)
    raw["kubeflow"] = {"resources": {
        "default": {"cpu": 2, "memory": "4Gi"},
        "Trainer": {"cpu": "8", "memory": "32G", "accelerator": {"type": "NVIDIA_TESLA_T4", "count": 1}},
        "Transform": {"memory": 16},
    }}
    raw["beam"] = {"profile": "dataflow", "dataflow": NETWORKED}
    return _compile(raw, tmp_path_factory.mktemp("gpu"), data="gs://bucket/data/taxi/*.csv")


def test_component_ids_known_to_the_config_are_the_graphs(fare_raw, tmp_path):
    """``kubeflow.resources`` keys are checked against COMPONENT_IDS: it must name every container node."""
    from tfx.dsl.components.base import base_component

    from sluice.pipeline.platform import COMPONENT_IDS
    from sluice.pipeline.data_source import DataSource
    from sluice.pipeline.pipeline import OutputPaths, create_pipeline

    raw = copy.deepcopy(fare_raw)
    raw["tuner"] = {"enabled": True, "search_space": {"learning_rate": [0.001]}}
    cfg = parse_config(raw, base_dir=str(CONFIGS))
    graph = create_pipeline(cfg, DataSource(str(tmp_path), "*.csv", ()), OutputPaths(tmp_path / "out"))
    assert sorted(COMPONENT_IDS) == sorted(c.id for c in graph.components
                                           if isinstance(c, base_component.BaseComponent))


def test_resources_compile_into_each_container(gpu_trainer):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    _, body, _ = gpu_trainer
    containers = _containers(body)
    assert containers["Trainer"]["resources"] == {"cpuLimit": 8.0, "memoryLimit": 32.0,
                                                  "accelerator": {"type": "NVIDIA_TESLA_T4", "count": "1"}}
    assert containers["Transform"]["resources"] == {"cpuLimit": 2.0, "memoryLimit": 16.0}  # default cpu, own memory
    default = {"cpuLimit": 2.0, "memoryLimit": 4 * 2 ** 30 / 1e9}
    others = {name: c.get("resources") for name, c in containers.items() if name not in ("Trainer", "Transform")}
    assert others == {name: default for name in others} and "CsvExampleGen" in others  # TFX drops it; put back
    # The executors parse as KFP's own deployment proto (field names and types are right).
    deployment = json_format.ParseDict(body["pipelineSpec"]["deploymentSpec"],
                                       pipeline_spec_pb2.PipelineDeploymentConfig())
    gpu = deployment.executors["Trainer_executor"].container.resources.accelerator
    assert (gpu.type, gpu.count) == ("NVIDIA_TESLA_T4", 1)


def test_no_resources_configured_compiles_none(compiled):
    _, body, _ = compiled
    assert all("resources" not in c for c in _containers(body).values())


def test_memory_and_cpu_quantities_mean_what_kfp_says():
    from kfp.dsl.pipeline_task import PipelineTask

    from sluice.pipeline.platform import ContainerResources

    for memory in ("32G", "16Gi", "512M", "1536Mi", "2T"):
        ours = ContainerResources.model_validate({"memory": memory}).memory
        assert ours == pytest.approx(PipelineTask._validate_memory_request_limit(None, memory)), memory
    assert ContainerResources.model_validate({"memory": 7}).memory == 7.0  # a YAML number: GB
    with pytest.raises(ValueError, match="not a memory size"):  # kfp would read "7" as 7 bytes: say a unit
        ContainerResources.model_validate({"memory": "7"})
    for cpu in ("8", "0.5", "500m", "250m"):
        assert ContainerResources.model_validate({"cpu": cpu}).cpu == PipelineTask._validate_cpu_request_limit(None, cpu)


def test_vertex_accelerator_names_are_vertex_ais():
    from google.cloud.aiplatform_v1.types import AcceleratorType

    from sluice.pipeline.platform import VERTEX_ACCELERATORS

    assert set(VERTEX_ACCELERATORS) <= {a.name for a in AcceleratorType} - {"ACCELERATOR_TYPE_UNSPECIFIED"}


def test_dataflow_args_and_the_pipeline_image_reach_every_beam_component(gpu_trainer):
    _, body, _ = gpu_trainer
    expected = ["--runner=DataflowRunner", f"--sdk_container_image={IMAGE}",
                "--subnetwork=regions/europe-west4/subnetworks/private",
                "--service_account_email=dataflow@proj.iam.gserviceaccount.com", "--no_use_public_ips",
                "--disk_size_gb=50", "--labels=cost-center=c42", "--labels=team=ml", "--network=vpc",
                "--dataflow_service_options=enable_secure_boot"]
    for name in ("Transform", "StatisticsGen", "Evaluator"):
        args = _containers(body)[name]["args"]
        assert all(arg in args for arg in expected), (name, args)
    example_gen = _containers(body)["CsvExampleGen"]["lifecycle"]["preCacheCheck"]["args"]
    assert f"--sdk_container_image={IMAGE}" in example_gen


@pytest.mark.parametrize("extra,expected", [
    ({"subnetwork": "regions/europe-west4/subnetworks/s"}, ["--subnetwork=regions/europe-west4/subnetworks/s"]),
    ({"subnetwork": "https://www.googleapis.com/compute/v1/projects/host/regions/europe-west4/subnetworks/s"},
     ["--subnetwork=https://www.googleapis.com/compute/v1/projects/host/regions/europe-west4/subnetworks/s"]),
    ({"service_account_email": "df@proj.iam.gserviceaccount.com"}, ["--service_account_email=df@proj.iam.gserviceaccount.com"]),
    ({"no_use_public_ips": True}, ["--no_use_public_ips"]),
    ({"disk_size_gb": 100}, ["--disk_size_gb=100"]),
    ({"labels": {"team": "ml", "env": "prod"}}, ["--labels=env=prod", "--labels=team=ml"]),
    ({"extra_args": ["--network=vpc", "--experiments=shuffle_mode=service"]},
     ["--network=vpc", "--experiments=shuffle_mode=service"]),
    ({"sdk_container_image": "other:2"}, ["--sdk_container_image=other:2"]),
])
def test_each_dataflow_setting_gives_its_beam_flag(extra, expected):
    """Each flag is also parsed by Beam's own PipelineOptions, so the spelling is Beam's."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, WorkerOptions

    args = BeamConfig.model_validate({"profile": "dataflow", "dataflow": {**DATAFLOW, **extra}}).args()
    assert args[:7] == ["--runner=DataflowRunner", "--project=proj", "--region=europe-west4",
                        "--temp_location=gs://bucket/tmp", "--machine_type=n1-standard-4", "--max_num_workers=10",
                        "--experiments=use_runner_v2"]
    assert args[7:] == expected
    options = PipelineOptions(args)
    worker, cloud = options.view_as(WorkerOptions), options.view_as(GoogleCloudOptions)
    if "subnetwork" in extra:
        assert worker.subnetwork == extra["subnetwork"]
    if "no_use_public_ips" in extra:
        assert worker.use_public_ips is False
    if "disk_size_gb" in extra:
        assert worker.disk_size_gb == 100
    if "labels" in extra:
        assert sorted(cloud.labels) == ["env=prod", "team=ml"]
    if "service_account_email" in extra:
        assert cloud.service_account_email == extra["service_account_email"]
    if "sdk_container_image" in extra:
        assert worker.sdk_container_image == "other:2"


def test_the_pipeline_image_is_only_a_default():
    dataflow = BeamConfig.model_validate({"profile": "dataflow", "dataflow": DATAFLOW})
    assert "--sdk_container_image=img:1" in dataflow.with_default_image("img:1").args()
    assert not any(a.startswith("--sdk_container_image") for a in dataflow.args())  # local runs: untouched
    own = BeamConfig.model_validate({"profile": "dataflow", "dataflow": {**DATAFLOW, "sdk_container_image": "x:1"}})
    assert own.with_default_image("img:1").args() == own.args()
    flink = BeamConfig.model_validate({"profile": "flink", "flink": {"job_endpoint": "flink:8099"}})
    assert "--environment_config=img:1" in flink.with_default_image("img:1").args()
    direct = BeamConfig()
    assert direct.with_default_image("img:1") == direct


@pytest.mark.parametrize("dataflow,expected", [
    ({"extra_args": ["--network=vpc", "no-dashes"]}, ["beam.dataflow.extra_args", "entry 1", "'no-dashes'", "--name"]),
    ({"extra_args": ["--region=us-east1"]}, ["beam.dataflow.extra_args", "--region", "beam.dataflow.region"]),
    ({"extra_args": ["--labels=a=b"]}, ["beam.dataflow.extra_args", "beam.dataflow.labels"]),
    ({"labels": {"Team": "ml"}}, ["beam.dataflow.labels", "'Team'", "GCP label key"]),
    ({"subnetwork": "private"}, ["beam.dataflow.subnetwork", "regions/REGION/subnetworks/NAME"]),
    ({"subnetwork": "regions/us-east1/subnetworks/s"}, ["beam.dataflow.subnetwork", "'us-east1'", "'europe-west4'"]),
    ({"subnetwrk": "regions/europe-west4/subnetworks/s"}, ["beam.dataflow.subnetwrk", "did you mean 'subnetwork'"]),
    ({"disk_size_gb": 0}, ["beam.dataflow.disk_size_gb"]),
])
def test_bad_dataflow_settings_name_their_key(fare_raw, dataflow, expected):
    raw = copy.deepcopy(fare_raw)
    raw["beam"] = {"profile": "dataflow", "dataflow": {**DATAFLOW, **dataflow}}
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, base_dir=str(CONFIGS))
    message = exc.value.render()
    assert "\n" not in message and all(part in message for part in expected), message


@pytest.mark.parametrize("kubeflow,expected", [
    ({"resources": {"Trainr": {"cpu": 4}}}, ["kubeflow.resources.Trainr", "not a component", "did you mean 'Trainer'"]),
    ({"resources": {"Trainer": {"cpus": 4}}}, ["kubeflow.resources.Trainer.cpus", "did you mean 'cpu'"]),
    ({"resources": {"Trainer": {"cpu": "lots"}}}, ["kubeflow.resources.Trainer.cpu", "'lots'", "500m"]),
    ({"resources": {"Trainer": {"memory": "32GB"}}}, ["kubeflow.resources.Trainer.memory", "'32GB'", "16Gi"]),
    ({"resources": {"Trainer": {"accelerator": {"type": "NVIDIA_TESLA_T5"}}}},
     ["kubeflow.resources.Trainer.accelerator.type", "did you mean 'NVIDIA_TESLA_T4'"]),
    ({"resources": {"Tuner": {"cpu": 4}}}, ["kubeflow.resources.Tuner", "tuner.enabled"]),
    ({"vertex_training": {"project": "p", "region": "r", "replicas": 2}},
     ["kubeflow.vertex_training.replicas", "multi_worker"]),
    ({"vertex_training": {"project": "p", "region": "r"}, "resources": {"Trainer": {"cpu": 8}}},
     ["kubeflow.resources.Trainer", "vertex_training"]),
    ({"vertex_training": {"project": "p", "region": "r", "accelerator": {"type": "nvidia.com/gpu"}}},
     ["kubeflow.vertex_training.accelerator", "'nvidia.com/gpu'", "Vertex AI names"]),
    ({"vertex_training": {"project": "p", "regoin": "r"}}, ["kubeflow.vertex_training.regoin", "did you mean 'region'"]),
])
def test_bad_platform_settings_name_their_key(fare_raw, kubeflow, expected):
    raw = copy.deepcopy(fare_raw)
    raw["kubeflow"] = kubeflow
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, base_dir=str(CONFIGS))
    message = exc.value.render()
    assert "\n" not in message and all(part in message for part in expected), message


def test_platform_settings_change_neither_the_local_graph_nor_the_config_hash(fare_raw, tmp_path):
    from sluice.pipeline.data_source import DataSource
    from sluice.pipeline.pipeline import OutputPaths, create_pipeline

    raw = copy.deepcopy(fare_raw)
    raw["training"].update(strategy="multi_worker", loop="custom")
    plain = parse_config(raw, base_dir=str(CONFIGS))
    raw["kubeflow"] = {"resources": {"default": {"cpu": 4}},
                       "vertex_training": {"project": "proj", "region": "europe-west4"}}
    platform = parse_config(raw, base_dir=str(CONFIGS))
    assert platform.fingerprint() == plain.fingerprint()
    assert platform.trainer_contract() == plain.trainer_contract()
    graph = create_pipeline(platform, DataSource(str(tmp_path), "*.csv", ()), OutputPaths(tmp_path / "out"))
    trainer = next(c for c in graph.components if c.id == "Trainer")
    assert type(trainer).__module__ == "tfx.components.trainer.component"  # the stock Trainer
    assert _without_code(json.loads(trainer.exec_properties["custom_config"])) == platform.trainer_contract()
    assert all(getattr(c, "platform_config", None) is None for c in graph.components)


def _without_code(custom_config):
    """The Trainer's contract as run_fn parses it (TFX's ai_platform_* keys dropped), code version cleared."""
    from sluice.components.contracts import TrainerContract

    contract = TrainerContract.parse(custom_config)
    assert contract.code_version  # the pipeline always fingerprints the Trainer's code
    return contract.model_copy(update={"code_version": ""})


# ------------------------------------------------------------------------------------ Vertex AI training job
VERTEX = {"project": "proj", "region": "europe-west4", "machine_type": "n1-standard-8", "replicas": 3,
          "accelerator": {"type": "NVIDIA_TESLA_T4", "count": 2}, "boot_disk_size_gb": 200,
          "service_account": "trainer@proj.iam.gserviceaccount.com"}


@pytest.fixture(scope="module")
def vertex(fare_raw, tmp_path_factory):
    raw = copy.deepcopy(fare_raw)
    raw["training"].update(strategy="multi_worker", loop="custom")
    raw["kubeflow"] = {"vertex_training": VERTEX}
    return _compile(raw, tmp_path_factory.mktemp("vertex"), data="gs://bucket/data/taxi/*.csv")


def test_trainer_compiles_as_a_vertex_training_job_that_keeps_the_contract(vertex):
    from tfx.extensions.google_cloud_ai_platform import constants
    from tfx.extensions.google_cloud_ai_platform.trainer import executor as cloud

    cfg, body, _ = vertex
    assert _containers(body)["Trainer"]["args"][:2] == [
        "--executor_class_path", "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor"]
    params = _parameters(body, "Trainer")
    assert params["run_fn"] == "sluice.components.trainer.run_fn.run_fn"
    custom = json.loads(params["custom_config"])
    assert _without_code(custom) == cfg.trainer_contract()  # run_fn's contract, unchanged, beside the Vertex keys
    assert custom[constants.ENABLE_VERTEX_KEY] is True and custom[constants.VERTEX_REGION_KEY] == "europe-west4"
    args = custom[cloud.TRAINING_ARGS_KEY]
    assert args["project"] == "proj" and args["job_spec"]["service_account"] == VERTEX["service_account"]
    chief, workers = args["job_spec"]["worker_pool_specs"]
    machine = {"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 2}
    for pool, count in ((chief, 1), (workers, 2)):
        assert pool == {"machine_spec": machine, "replica_count": count, "container_spec": {"image_uri": IMAGE},
                        "disk_spec": {"boot_disk_size_gb": 200}}
    assert "ai_platform_training_args" not in _parameters(body, "Evaluator").get("custom_config", "")


def test_the_cloud_executor_submits_a_valid_custom_job_whose_replicas_run_run_fn(vertex, monkeypatch):
    """TFX's own cloud executor runs on the compiled exec properties up to the Vertex API call: the CustomJob
    it would send parses as Vertex AI's proto, and each replica's command runs TFX's Trainer executor with
    sluice's run_fn and its contract."""
    from google.cloud.aiplatform_v1.types.custom_job import CustomJob
    from tfx.extensions.google_cloud_ai_platform import runner, training_clients
    from tfx.extensions.google_cloud_ai_platform.trainer import executor as cloud
    from tfx.utils import json_utils

    cfg, body, _ = vertex
    sent = {}
    monkeypatch.setattr(training_clients.VertexJobClient, "create_client", lambda self: None)  # no credentials
    monkeypatch.setattr(runner, "_launch_cloud_training", lambda **kwargs: sent.update(kwargs))
    exec_properties = {k: v for k, v in _parameters(body, "Trainer").items() if v is not None}
    cloud.GenericExecutor().Do({}, {}, exec_properties)

    assert (sent["project"], sent["enable_vertex"], sent["vertex_region"]) == ("proj", True, "europe-west4")
    job = CustomJob(sent["training_job"])  # unknown fields or accelerator names would raise here
    pools = job.job_spec.worker_pool_specs
    assert [p.replica_count for p in pools] == [1, 2] and job.job_spec.service_account == VERTEX["service_account"]
    assert {p.container_spec.image_uri for p in pools} == {IMAGE}
    command = list(pools[1].container_spec.command)
    assert command[:3] == ["python", "-m", "tfx.scripts.run_executor"]
    assert command[command.index("--executor_class_path") + 1] == "tfx.components.trainer.executor.GenericExecutor"
    in_job = json.loads(command[command.index("--exec-properties") + 1])
    assert in_job["run_fn"] == "sluice.components.trainer.run_fn.run_fn"
    custom = json_utils.loads(in_job["custom_config"])  # what fn_args.custom_config will be in every replica
    assert _without_code(custom) == cfg.trainer_contract()


@pytest.mark.parametrize("task,chief", [("chief", True), ("worker", False)])
def test_vertex_tf_config_makes_each_replica_a_cluster_member(monkeypatch, task, chief):
    """Vertex sets TF_CONFIG with pool 0 as ``chief`` and pool 1 as ``worker``: the launcher then trains
    in-process (no local worker processes), and sluice and TFX agree on who exports the model."""
    from tfx.components.trainer import executor as tfx_trainer

    from sluice.components.trainer.strategies import is_chief, needs_fresh_process

    cluster = {"chief": ["cmle-training-workerpool0-0:2222"],
               "worker": ["cmle-training-workerpool1-0:2222", "cmle-training-workerpool1-1:2222"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task, "index": 0}}))
    from sluice.components.settings import TrainingConfig

    assert needs_fresh_process(TrainingConfig(strategy="multi_worker", loop="custom")) is False
    assert is_chief() is chief and tfx_trainer._is_chief() is chief


def test_vertex_replicas_default_to_the_configured_workers(fare_raw):
    raw = copy.deepcopy(fare_raw)
    raw["training"].update(strategy="multi_worker", loop="custom", workers=4)
    raw["kubeflow"] = {"vertex_training": {"project": "p", "region": "r"}}
    assert parse_config(raw, base_dir=str(CONFIGS)).vertex_replicas() == 4
    raw["training"] = {"strategy": "default"}
    assert parse_config(raw, base_dir=str(CONFIGS)).vertex_replicas() == 1


# --------------------------------------------------------------------------------------- no local path leaks
def _outside_config(fare_raw, tmp_path, **changes):
    """The shipped config copied outside the checkout (no configs/ folder around it), local schema copied too."""
    raw = copy.deepcopy(fare_raw)
    (tmp_path / "schema.pbtxt").write_text((ROOT / "schemas" / "taxi" / "schema.pbtxt").read_text())
    raw["schema"] = "schema.pbtxt"
    raw["data"]["path"] = "data.csv"
    raw.update(changes)
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(raw))
    from sluice.pipeline.config import load_config

    return load_config(tmp_path / "pipeline.yaml")


def test_a_local_schema_outside_the_image_fails_in_one_line_and_writes_nothing(fare_raw, tmp_path):
    from sluice.pipeline.errors import SluiceError
    from sluice.pipeline.kubeflow import compile_kubeflow

    cfg = _outside_config(fare_raw, tmp_path)
    out = tmp_path / "out" / "p.json"
    with pytest.raises(ConfigError) as exc:
        compile_kubeflow(cfg, IMAGE, ROOT_URI, out, data="gs://bucket/data/")
    message = exc.value.render()
    assert "\n" not in message and message.startswith(f"schema: {tmp_path / 'schema.pbtxt'} is on this machine")
    assert "gs://" in message and "/sluice/schemas/" in message
    assert not out.exists() and not out.parent.exists()
    with pytest.raises(ConfigError, match=r"^data.path: .*data.csv is on this machine.*--data gs://"):
        compile_kubeflow(cfg, IMAGE, ROOT_URI, out, schema="gs://bucket/schema.pbtxt")
    with pytest.raises(SluiceError, match=r"^--data: .* is on this machine"):
        compile_kubeflow(cfg, IMAGE, ROOT_URI, out, data=str(tmp_path / "data.csv"), schema="gs://bucket/s.pbtxt")
    with pytest.raises(SluiceError, match=r"^--data: file:///tmp/d is a file:// URI"):
        compile_kubeflow(cfg, IMAGE, ROOT_URI, out, data="file:///tmp/d", schema="gs://bucket/s.pbtxt")
    with pytest.raises(SluiceError, match=r"^--pipeline-root: /tmp/root is not a remote URI"):
        compile_kubeflow(cfg, IMAGE, "/tmp/root", out, data="gs://bucket/d/", schema="gs://bucket/s.pbtxt")
    with pytest.raises(SluiceError, match=r"^--serving-dir: /srv/models is not a remote URI"):
        compile_kubeflow(cfg, IMAGE, ROOT_URI, out, data="gs://bucket/d/", schema="gs://bucket/s.pbtxt",
                         serving_base="/srv/models")
    assert not out.parent.exists()


def test_with_uris_the_spec_holds_no_path_of_this_machine(fare_raw, tmp_path):
    from sluice.pipeline.kubeflow import compile_kubeflow, local_paths

    cfg = _outside_config(fare_raw, tmp_path, schema="gs://bucket/schemas/taxi/schema.pbtxt")
    out = compile_kubeflow(cfg, IMAGE, ROOT_URI, tmp_path / "p.json", data="gs://bucket/data/taxi/")
    text = out.read_text()
    assert local_paths(json.loads(text)) == []
    assert str(tmp_path) not in text, text[text.index(str(tmp_path)) - 300:text.index(str(tmp_path)) + 100]
    assert "/sluice/schemas" not in text and "/sluice/data" not in text
    assert "gs://bucket/schemas/taxi/schema.pbtxt" in text and "gs://bucket/data/taxi" in text


def test_the_scan_finds_local_paths_anywhere_in_the_spec():
    from sluice.pipeline.kubeflow import local_paths

    body = {"a": {"args": ["--temp_location=/tmp/beam", "--x=gs://b/c", "python", "-m", "x.y"]},
            "b": {"stringValue": json.dumps({"base_directory": "/home/me/serving", "ok": "/sluice/schemas/s"})},
            "c": ["file:///data/x.csv", "/sluice", "/sluice/data/d.csv", "s3://b/k", "w/o", "a / b"]}
    assert [p for p, _ in local_paths(body)] == ["/tmp/beam", "/home/me/serving", "file:///data/x.csv"]
    assert [w for _, w in local_paths(body)] == ["a.args[0]", "b.stringValue", "c[0]"]


def test_a_leak_the_explicit_checks_miss_still_fails_the_compile(compiled, fare_raw, tmp_path, monkeypatch):
    """The scan is the backstop: a local path that reaches the spec by any route stops the compile."""
    from sluice.pipeline import kubeflow
    from sluice.pipeline.errors import SluiceError

    monkeypatch.setattr(kubeflow, "schema_location", lambda config, schema: "/home/me/schema.pbtxt")
    cfg = parse_config(copy.deepcopy(fare_raw), base_dir=str(CONFIGS))
    out = tmp_path / "p.json"
    with pytest.raises(SluiceError) as exc:
        kubeflow.compile_kubeflow(cfg, IMAGE, ROOT_URI, out, data="gs://bucket/d/")
    assert exc.value.render().startswith("compiled pipeline (pipelineSpec.root.dag.tasks.ImportSchemaGen.inputs"
                                         ".parameters.schema_file.runtimeValue.constantValue.stringValue): holds "
                                         "the local path /home/me/schema.pbtxt")
    assert not out.exists()


def test_a_wheel_install_maps_the_configs_project_not_the_package(fare_raw, tmp_path, monkeypatch):
    """Installed from a wheel, kubeflow.py lives in site-packages/sluice/pipeline: no checkout beside it. The
    shipped config still compiles (its project is the directory holding configs/), so does a project of the
    same layout anywhere; a config outside any configs/ folder needs URIs."""
    from sluice.pipeline import kubeflow
    from sluice.pipeline.config import load_config

    site = tmp_path / "venv" / "lib" / "python3.10" / "site-packages" / "sluice"
    (site / "pipeline").mkdir(parents=True)
    monkeypatch.setattr(kubeflow, "REPO_ROOT", site)
    assert kubeflow.checkout_root() is None

    shipped = load_config(CONFIGS / "taxi_fare.yaml")
    assert kubeflow.project_roots(shipped) == [ROOT]
    _, body, text = _compile(fare_raw, tmp_path, data="gs://bucket/data/")
    assert "/sluice/schemas/taxi/schema.pbtxt" in text and kubeflow.local_paths(body) == []

    project = tmp_path / "myproject"
    (project / "configs").mkdir(parents=True)
    (project / "schemas").mkdir()
    (project / "schemas" / "s.pbtxt").write_text((ROOT / "schemas" / "taxi" / "schema.pbtxt").read_text())
    raw = copy.deepcopy(fare_raw)
    raw["schema"], raw["data"]["path"] = "../schemas/s.pbtxt", "../data/taxi.csv"
    (project / "configs" / "p.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(project / "configs" / "p.yaml")
    assert kubeflow.schema_location(cfg, None) == "/sluice/schemas/s.pbtxt"
    assert kubeflow.data_location(cfg, None) == "/sluice/data/taxi.csv"

    raw["schema"] = str(ROOT / "schemas" / "taxi" / "schema.pbtxt")  # the checkout's, from outside configs/
    (tmp_path / "elsewhere.yaml").write_text(yaml.safe_dump(raw))
    elsewhere = load_config(tmp_path / "elsewhere.yaml")
    with pytest.raises(ConfigError, match="^schema: .* is on this machine and not in the pipeline image"):
        kubeflow.schema_location(elsewhere, None)
    monkeypatch.setattr(kubeflow, "REPO_ROOT", ROOT)  # run from the checkout, the same file is in the image
    assert kubeflow.schema_location(elsewhere, None) == "/sluice/schemas/taxi/schema.pbtxt"


def test_the_push_record_names_the_users_config_so_monitor_recognises_it(fare_raw, tmp_path):
    """The compile fills in the Dataflow image and the bulk table's location before building the graph; the
    Pusher's config_hash is still the user's config with --data applied (what `sluice monitor --config C
    --data D --serving S` computes), not the rewritten one."""
    from sluice.pipeline.kubeflow import compile_kubeflow

    raw = copy.deepcopy(fare_raw)
    raw["beam"] = {"profile": "dataflow", "dataflow": {"project": "proj", "region": "europe-west4",
                                                        "temp_location": "gs://bucket/tmp"}}  # image filled in
    raw["bulk_inference"] = {"input": "gs://bucket/nightly/*.csv"}
    cfg = parse_config(raw, base_dir=str(CONFIGS))
    data = "gs://bucket/data/{SPAN}/*.csv"
    out = compile_kubeflow(cfg, IMAGE, ROOT_URI, tmp_path / "p.json", data=data)
    pusher = json.loads(out.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]["Pusher"]
    contract = json.loads(pusher["inputs"]["parameters"]["custom_config"]["runtimeValue"]["constantValue"]["stringValue"])
    assert contract["config_hash"] == cfg.with_data_path(data).fingerprint() != cfg.fingerprint()
    rewritten = cfg.model_copy(update={"beam": cfg.beam.with_default_image(IMAGE)}).with_data_path(data)
    assert rewritten.fingerprint() != contract["config_hash"]  # the test would see the old behaviour
