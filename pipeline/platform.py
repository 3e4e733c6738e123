"""Where and on what a pipeline runs: Beam profiles (direct, Dataflow, Flink, Spark) and Kubeflow/Vertex
platform settings (container resources, the Trainer as a Vertex AI training job).

Sections of ``PipelineConfig`` (``pipeline/config.py``) that no component receives: they shape the graph's
``beam_pipeline_args`` and the Kubeflow compile (``pipeline/kubeflow.py``), never a component's contract,
so changing them re-runs nothing. No TensorFlow import.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Dict, List, Literal, Optional

from pydantic import Field, field_validator, model_validator

from sluice.components.settings import _not_in, _Strict

# --------------------------------------------------------------------------------------------- runtime
_SUBNETWORK = r"(https://www\.googleapis\.com/compute/v1/projects/[^/]+/)?regions/[^/]+/subnetworks/[^/]+"


class DataflowProfile(_Strict):
    """Google Cloud Dataflow (``beam.profile: dataflow``)."""

    project: str = Field(min_length=1)
    region: str = Field(min_length=1)
    temp_location: str = Field(pattern=r"^gs://")
    """A gs:// path Dataflow stages and writes temporary files to."""
    machine_type: str = "n1-standard-4"
    max_num_workers: int = Field(default=10, ge=1)
    sdk_container_image: Optional[str] = None
    """Workers' image. Unset: ``sluice compile`` uses the pipeline image (``--image``), which has sluice
    installed, so ``sluice.components…`` module paths resolve on the workers too."""
    service_account_email: Optional[str] = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    """The workers' identity (needs the Dataflow Worker role and access to the buckets)."""
    subnetwork: Optional[str] = None
    """``regions/REGION/subnetworks/NAME`` or the full ``https://www.googleapis.com/compute/v1/projects/…``
    URL (Shared VPC); it must be in ``region``."""
    no_use_public_ips: bool = False
    """Workers get private IPs only (the subnetwork needs Private Google Access)."""
    disk_size_gb: Optional[int] = Field(default=None, ge=1)
    labels: Dict[str, str] = Field(default_factory=dict)
    """Job labels (cost attribution): GCP label rules, lowercase keys and values."""
    extra_args: List[str] = Field(default_factory=list)
    """Any other Dataflow/Beam flag, verbatim (``--network=NAME``, ``--dataflow_service_options=…``)."""

    @field_validator("subnetwork")
    @classmethod
    def _subnetwork_form(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not re.fullmatch(_SUBNETWORK, v):
            raise ValueError(f"{v!r} is not a subnetwork: write regions/REGION/subnetworks/NAME or "
                             "https://www.googleapis.com/compute/v1/projects/HOST_PROJECT/regions/REGION/subnetworks/NAME")
        return v

    @field_validator("labels")
    @classmethod
    def _gcp_labels(cls, v: Dict[str, str]) -> Dict[str, str]:
        # Dataflow rejects the job at submission otherwise, minutes into a pipeline run.
        for key, value in v.items():
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key):
                raise ValueError(f"{key!r} is not a GCP label key (lowercase letters, digits, _ and -, "
                                 "starting with a letter, at most 63 characters)")
            if not re.fullmatch(r"[a-z0-9_-]{0,63}", str(value)):
                raise ValueError(f"{key}: {value!r} is not a GCP label value (lowercase letters, digits, _ and -, "
                                 "at most 63 characters)")
        return v

    @field_validator("extra_args")
    @classmethod
    def _flags(cls, v: List[str]) -> List[str]:
        # A typed key and a free flag for the same option would be two sources of truth (Beam keeps the last).
        for i, arg in enumerate(v):
            if not arg.startswith("--") or len(arg) < 3 or arg[2] in "-= ":
                raise ValueError(f"entry {i} ({arg!r}) is not a flag: each entry is one '--name' or '--name=value'")
            name = arg[2:].split("=", 1)[0]
            if name in DATAFLOW_TYPED_FLAGS:
                raise ValueError(f"entry {i} ({arg!r}) sets --{name}, which beam.dataflow.{DATAFLOW_TYPED_FLAGS[name]} "
                                 "owns; set that key instead")
        return v

    @model_validator(mode="after")
    def _subnetwork_region(self) -> "DataflowProfile":
        if self.subnetwork:
            region = re.search(r"regions/([^/]+)/", self.subnetwork).group(1)
            if region != self.region:
                raise ValueError(f"subnetwork: is in region {region!r}, the job runs in {self.region!r} "
                                 "(Dataflow needs the subnetwork in the job's region)")
        return self

    def args(self) -> List[str]:
        """``beam_pipeline_args`` for Dataflow (flag names as Beam's ``PipelineOptions`` parse them)."""
        args = ["--runner=DataflowRunner", f"--project={self.project}", f"--region={self.region}",
                f"--temp_location={self.temp_location}", f"--machine_type={self.machine_type}",
                f"--max_num_workers={self.max_num_workers}", "--experiments=use_runner_v2"]
        if self.sdk_container_image:
            args.append(f"--sdk_container_image={self.sdk_container_image}")
        if self.service_account_email:
            args.append(f"--service_account_email={self.service_account_email}")
        if self.subnetwork:
            args.append(f"--subnetwork={self.subnetwork}")
        if self.no_use_public_ips:
            args.append("--no_use_public_ips")
        if self.disk_size_gb is not None:
            args.append(f"--disk_size_gb={self.disk_size_gb}")
        args.extend(f"--labels={k}={v}" for k, v in sorted(self.labels.items()))
        return args + list(self.extra_args)


# Beam flags the typed ``beam.dataflow`` keys produce -> the key (``extra_args`` may not set them again).
DATAFLOW_TYPED_FLAGS = {
    "runner": "profile", "project": "project", "region": "region", "temp_location": "temp_location",
    "machine_type": "machine_type", "worker_machine_type": "machine_type", "max_num_workers": "max_num_workers",
    "sdk_container_image": "sdk_container_image", "worker_harness_container_image": "sdk_container_image",
    "service_account_email": "service_account_email", "subnetwork": "subnetwork",
    "no_use_public_ips": "no_use_public_ips", "use_public_ips": "no_use_public_ips",
    "disk_size_gb": "disk_size_gb", "labels": "labels", "label": "labels",
}


class PortableProfile(_Strict):
    """A portable runner (Flink or Spark job server)."""

    job_endpoint: str = "localhost:8099"
    environment_type: Literal["DOCKER", "PROCESS", "EXTERNAL", "LOOPBACK"] = "DOCKER"
    environment_config: Optional[str] = None
    """DOCKER: the SDK harness image (the pipeline image); EXTERNAL: the worker pool address."""
    parallelism: Optional[int] = Field(default=None, ge=1)


class BeamConfig(_Strict):
    """Where TFX's Beam-based components (ExampleGen, StatisticsGen, Transform, Evaluator) run."""

    profile: Literal["direct", "dataflow", "flink", "spark"] = "direct"
    direct_running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = "in_memory"
    direct_num_workers: int = Field(default=1, ge=0)
    """0 means one worker per core."""
    dataflow: Optional[DataflowProfile] = None
    flink: Optional[PortableProfile] = None
    spark: Optional[PortableProfile] = None

    @model_validator(mode="after")
    def _profile_has_settings(self) -> "BeamConfig":
        if self.profile == "dataflow" and self.dataflow is None:
            raise ValueError("dataflow: profile 'dataflow' needs beam.dataflow {project, region, temp_location}")
        return self

    def args(self) -> List[str]:
        """``beam_pipeline_args`` for the chosen profile."""
        if self.profile == "dataflow":
            assert self.dataflow is not None
            return self.dataflow.args()
        if self.profile in ("flink", "spark"):
            p = getattr(self, self.profile) or PortableProfile()
            args = ["--runner=PortableRunner", f"--job_endpoint={p.job_endpoint}",
                    f"--environment_type={p.environment_type}"]
            if p.environment_config:
                args.append(f"--environment_config={p.environment_config}")
            if p.parallelism:
                args.append(f"--parallelism={p.parallelism}")
            return args
        # multi_processing: Beam's engine with workers that die with this process (components/beam_runner.py)
        runner = "sluice.components.beam_runner.DirectRunner" if self.direct_running_mode == "multi_processing" \
            else "DirectRunner"
        return [
            f"--runner={runner}",
            f"--direct_running_mode={self.direct_running_mode}",
            f"--direct_num_workers={self.direct_num_workers}",
        ]

    def with_default_image(self, image: str) -> "BeamConfig":
        """A copy whose remote workers run ``image`` unless the config names another one.

        Dataflow (and a portable runner's DOCKER environment) otherwise starts Beam's stock SDK image, where
        ``sluice.components…`` (Transform's preprocessing_fn) cannot be imported. The compile knows the
        pipeline image, which has sluice installed; local runs never call this.
        """
        if self.profile == "dataflow" and self.dataflow is not None and not self.dataflow.sdk_container_image:
            return self.model_copy(update={"dataflow": self.dataflow.model_copy(update={"sdk_container_image": image})})
        if self.profile in ("flink", "spark"):
            portable = getattr(self, self.profile) or PortableProfile()
            if portable.environment_type == "DOCKER" and not portable.environment_config:
                return self.model_copy(update={self.profile: portable.model_copy(update={"environment_config": image})})
        return self


# ------------------------------------------------------------------------------------------- kubeflow
# Nodes of the pipeline graph (pipeline/pipeline.py) that run in a container of their own on Kubeflow/Vertex.
# Resolvers run no container. tests/unit/test_kubeflow.py holds this list equal to the graph's ids.
COMPONENT_IDS = (
    "CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "InferredSchemaGen", "ExampleValidator", "DataGate",
    "Transform", "Tuner", "Trainer", "Evaluator", "ModelExport", "InfraCheck", "Pusher",
)
# Vertex AI's accelerator names (google.cloud.aiplatform_v1 AcceleratorType at the pinned 1.165.1; a unit test
# keeps them valid). Vertex Pipelines and Vertex training jobs accept only these.
VERTEX_ACCELERATORS = (
    "NVIDIA_TESLA_K80", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P4", "NVIDIA_TESLA_T4",
    "NVIDIA_TESLA_A100", "NVIDIA_A100_80GB", "NVIDIA_L4", "NVIDIA_H100_80GB", "NVIDIA_H100_MEGA_80GB",
    "NVIDIA_H200_141GB", "NVIDIA_B200", "NVIDIA_GB200", "NVIDIA_RTX_PRO_6000",
    "TPU_V2", "TPU_V3", "TPU_V4_POD", "TPU_V5_LITEPOD",
)
# Kubernetes quantity suffixes -> bytes (the same table as kfp's PipelineTask.set_memory_limit).
_MEMORY_UNITS = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
                 "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


class Accelerator(_Strict):
    """A GPU/TPU request: ``{type: NVIDIA_TESLA_T4, count: 1}``."""

    type: str
    """A Vertex AI accelerator name (``NVIDIA_TESLA_T4``, ``NVIDIA_L4``, ``TPU_V3`` …); on open-source Kubeflow
    a Kubernetes resource name with a ``/`` (``nvidia.com/gpu``) is accepted too."""
    count: int = Field(default=1, ge=1)

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if "/" in v:  # a Kubernetes extended resource (KFP on GKE / any cluster): the scheduler judges it
            return v
        if v not in VERTEX_ACCELERATORS:
            raise ValueError(_not_in(v, VERTEX_ACCELERATORS, also="or a Kubernetes resource name such as nvidia.com/gpu"))
        return v


class ContainerResources(_Strict):
    """What one component's container asks for (KFP ``ResourceSpec`` limits; Vertex picks the machine)."""

    cpu: Optional[float] = Field(default=None, gt=0)
    """CPUs: a number (``8``, ``0.5``) or Kubernetes millicores (``"500m"``)."""
    memory: Optional[float] = Field(default=None, gt=0)
    """Memory in GB: a number, or a Kubernetes quantity (``"32G"``, ``"16Gi"``, ``"512M"``)."""
    accelerator: Optional[Accelerator] = None

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu_quantity(cls, v: Any) -> Any:
        if isinstance(v, str):
            m = re.fullmatch(r"\s*((?:\d+\.)?\d+)(m?)\s*", v)
            if not m:
                raise ValueError(f"{v!r} is not a CPU count (write 8, 0.5 or \"500m\")")
            return float(m.group(1)) / (1000 if m.group(2) else 1)
        return v

    @field_validator("memory", mode="before")
    @classmethod
    def _memory_quantity(cls, v: Any) -> Any:
        if isinstance(v, str):
            # A unit is required: Kubernetes reads a bare "32" as bytes, a YAML number here means GB.
            m = re.fullmatch(r"\s*((?:\d+\.)?\d+)\s*([KMGTPE]i?)\s*", v)
            if not m:
                raise ValueError(f"{v!r} is not a memory size (write 32G, 16Gi, 512M, or a number of GB)")
            return float(m.group(1)) * _MEMORY_UNITS[m.group(2)] / 1e9
        return v

    def over(self, default: "ContainerResources") -> "ContainerResources":
        """These settings, with ``default``'s for every field left unset (a component inherits the rest)."""
        mine = self.model_dump(exclude_unset=True, exclude_none=True)
        return ContainerResources.model_validate({**default.model_dump(exclude_none=True), **mine})

    @property
    def empty(self) -> bool:
        return self.cpu is None and self.memory is None and self.accelerator is None


class VertexTraining(_Strict):
    """Run the Trainer as a Vertex AI custom training job (TFX's Google Cloud extension Trainer).

    The pipeline's Trainer task only submits the job and waits; the job's replicas run TFX's Trainer
    executor (and so sluice's run_fn) in the pipeline image. With ``training.strategy: multi_worker`` the job
    has a chief pool of one replica and a worker pool of ``replicas - 1``: Vertex sets ``TF_CONFIG`` (chief,
    worker) on each, and the launcher trains in-process as that cluster member.
    """

    project: str = Field(min_length=1)
    region: str = Field(min_length=1)
    machine_type: str = "n1-standard-8"
    replicas: Optional[int] = Field(default=None, ge=1)
    """Machines in the job, chief included. Default: ``training.workers`` for ``multi_worker``, else 1."""
    accelerator: Optional[Accelerator] = None
    """Per replica; a Vertex AI accelerator name."""
    service_account: Optional[str] = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    """The job's identity (reads the transformed examples, writes the model under the pipeline root)."""
    boot_disk_size_gb: Optional[int] = Field(default=None, ge=100)
    """Per replica (Vertex's default and minimum is 100)."""

    @field_validator("accelerator")
    @classmethod
    def _vertex_accelerator(cls, v: Optional[Accelerator]) -> Optional[Accelerator]:
        if v is not None and v.type not in VERTEX_ACCELERATORS:
            raise ValueError("type " + _not_in(v.type, VERTEX_ACCELERATORS, also="training jobs take Vertex AI names"))
        return v


class KubeflowConfig(_Strict):
    """Platform settings that only ``sluice compile`` reads (``sluice run`` ignores this section)."""

    resources: Dict[str, ContainerResources] = Field(default_factory=dict)
    """Component id (``Trainer``, ``Transform`` …) or ``default`` -> ``{cpu, memory, accelerator}``."""
    vertex_training: Optional[VertexTraining] = None

    @field_validator("resources")
    @classmethod
    def _known_components(cls, v: Dict[str, ContainerResources]) -> Dict[str, ContainerResources]:
        for node in v:
            if node != "default" and node not in COMPONENT_IDS:
                hint = difflib.get_close_matches(node, ("default",) + COMPONENT_IDS, n=1)
                raise ValueError(f"{node}: not a component of the pipeline (allowed: default, "
                                 f"{', '.join(COMPONENT_IDS)})" + (f"; did you mean {hint[0]!r}?" if hint else ""))
        return v

    def resources_for(self, node_id: str) -> Optional[ContainerResources]:
        """The container resources of ``node_id`` (its own settings over ``default``), None when unset."""
        default = self.resources.get("default", ContainerResources())
        own = self.resources.get(node_id)
        merged = own.over(default) if own is not None else default
        return None if merged.empty else merged
