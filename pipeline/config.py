"""Typed pipeline configuration: the only place a config is validated.

One YAML file describes one pipeline (data, features, task, model, gates, runtime). ``load_config`` turns it
into a ``PipelineConfig`` or raises ``ConfigError`` with one line that names the key path, the bad value and
what is allowed. Everything downstream (the TFX graph, Transform, the Trainer, the Evaluator) reads this
object, never the raw YAML, so a value is checked once and means the same thing everywhere — including on
Kubeflow, where the relevant parts travel as ``custom_config`` JSON (see ``component_payload``).

This module imports no TensorFlow: it is used by the CLI's fast paths and by unit tests.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Dict, List, Literal, Optional, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from sluice.components.features import raw_label_columns
from sluice.pipeline.errors import ConfigError

REGRESSION = "regression"
BINARY = "binary_classification"

# Evaluation metric names users write -> TFMA class names (``huber`` and ``r_squared`` are sluice's own TFMA
# metrics, the same formulas as the Trainer's streaming metrics). The same names are used in thresholds.
REGRESSION_METRICS = {
    "mean_absolute_error": "MeanAbsoluteError",
    "root_mean_squared_error": "RootMeanSquaredError",
    "mean_squared_error": "MeanSquaredError",
    "huber": "Huber",
    "r_squared": "RSquared",
    "mean_label": "MeanLabel",
    "mean_prediction": "MeanPrediction",
    "example_count": "ExampleCount",
}
BINARY_METRICS = {
    "auc": "AUC",
    "pr_auc": "AUCPrecisionRecall",
    "binary_accuracy": "BinaryAccuracy",
    "precision": "Precision",
    "recall": "Recall",
    "calibration": "Calibration",
    "mean_label": "MeanLabel",
    "mean_prediction": "MeanPrediction",
    "example_count": "ExampleCount",
}
SLUICE_TFMA_METRICS = {"Huber", "RSquared"}
# Metrics where a smaller value is better (decides the direction of change thresholds).
LOWER_IS_BETTER = {"mean_absolute_error", "root_mean_squared_error", "mean_squared_error", "huber"}

LOSSES = {
    REGRESSION: ("huber", "log_cosh", "quantile", "mse", "mae"),
    BINARY: ("binary_crossentropy", "focal"),
}


class _Strict(BaseModel):
    """Base: unknown keys are errors, values are not silently coerced across types."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------- features
class _FeatureBase(_Strict):
    name: str = Field(min_length=1)
    optional: bool = False
    """The column may be empty; missing values are filled with ``default`` (numerics: the analyzed mean)."""
    default: Optional[Union[float, str]] = None
    missing_indicator: bool = False
    """Also feed the model a 0/1 ``<name>_is_missing`` input (needs ``optional: true``)."""

    @model_validator(mode="after")
    def _indicator_needs_optional(self) -> "_FeatureBase":
        if self.missing_indicator and not self.optional:
            raise ValueError("missing_indicator: needs optional: true (a required column is never missing)")
        return self


class NumericFeature(_FeatureBase):
    """A float/int column, standardized to z-scores by Transform."""

    kind: Literal["numeric"]


class CategoricalStringFeature(_FeatureBase):
    """A string column: vocabulary of the ``top_k`` most frequent values plus OOV buckets, or hashing."""

    kind: Literal["categorical_string"]
    top_k: int = Field(default=1000, ge=1)
    oov_buckets: int = Field(default=1, ge=1)
    frequency_threshold: int = Field(default=0, ge=0)
    hash_buckets: Optional[int] = Field(default=None, ge=2)
    embedding_dim: int = Field(default=8, ge=1)


class CategoricalIntFeature(_FeatureBase):
    """An integer id column with values in ``[0, num_buckets)``; anything else maps to one OOV bucket."""

    kind: Literal["categorical_int"]
    num_buckets: int = Field(ge=1)
    embedding_dim: int = Field(default=8, ge=1)


class BucketizedFeature(_FeatureBase):
    """A numeric column cut into ``buckets`` quantile buckets by Transform."""

    kind: Literal["bucketized"]
    buckets: int = Field(default=10, ge=2)
    embedding_dim: int = Field(default=4, ge=1)


Feature = Annotated[
    Union[NumericFeature, CategoricalStringFeature, CategoricalIntFeature, BucketizedFeature],
    Field(discriminator="kind"),
]
FEATURE_KINDS = ("numeric", "categorical_string", "categorical_int", "bucketized")


# ------------------------------------------------------------------------------------------------- task
class DerivedLabel(_Strict):
    """A label computed in Transform from raw columns: ``label = left <op> scale * right``.

    Example (TFX's taxi "big tipper"): ``{left: tips, op: ">", right: fare, scale: 0.2}``. ``right`` is a
    column name or a number. Rows where a column is missing get label 0.
    """

    left: str
    op: Literal[">", ">=", "<", "<="]
    right: Union[float, str]
    scale: float = 1.0


class Task(_Strict):
    type: Literal["regression", "binary_classification"]
    label: str = Field(min_length=1)
    """The raw label column, or the name given to a derived label."""
    derive: Optional[DerivedLabel] = None

    @model_validator(mode="after")
    def _derive_only_for_binary(self) -> "Task":
        if self.derive is not None and self.type != BINARY:
            raise ValueError("derive: only supported when task.type is binary_classification")
        return self

    def raw_label_columns(self) -> List[str]:
        """The raw CSV columns the label is computed from."""
        return raw_label_columns(self.model_dump())


# ------------------------------------------------------------------------------------------------ model
class ModelConfig(_Strict):
    """The Keras model and its loss (components/trainer/models.py, losses.py, layers.py)."""

    architecture: Literal["mlp", "wide_deep"] = "mlp"
    """``mlp``: functional stack of ConstrainedDense; ``wide_deep``: subclassed linear + residual tower."""
    hidden_units: List[int] = Field(default_factory=lambda: [64, 32], min_length=1)
    activation: Literal["relu", "leaky_softplus"] = "relu"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    noise_stddev: float = Field(default=0.0, ge=0.0)
    """Gaussian noise added to the encoded inputs while training only (a regularizer)."""
    l2: float = Field(default=0.0, ge=0.0)
    """L2 penalty on hidden kernels (summed into the loss with the other regularization losses)."""
    max_norm: Optional[float] = Field(default=None, gt=0.0)
    """Max-norm constraint on each hidden unit's incoming weights (mlp)."""
    reconstruction_weight: float = Field(default=0.0, ge=0.0)
    """Weight of the auxiliary loss: reconstruct the encoded inputs from the first hidden layer."""
    learning_rate: float = Field(default=1e-3, gt=0.0)
    batch_size: int = Field(default=128, ge=1)
    train_steps: int = Field(default=1000, ge=1)
    eval_steps: int = Field(default=50, ge=1)
    loss: Literal["huber", "log_cosh", "quantile", "mse", "mae", "binary_crossentropy", "focal"]
    huber_delta: float = Field(default=1.0, gt=0.0)
    quantile: float = Field(default=0.5, gt=0.0, lt=1.0)
    """The quantile ``loss: quantile`` fits (0.5 = median)."""
    focal_gamma: float = Field(default=2.0, ge=0.0)
    focal_alpha: float = Field(default=0.25, gt=0.0, lt=1.0)
    seed: int = 42

    @field_validator("hidden_units")
    @classmethod
    def _positive_units(cls, v: List[int]) -> List[int]:
        if any(u < 1 for u in v):
            raise ValueError("every hidden layer needs at least 1 unit")
        return v


class InputConfig(_Strict):
    """The Trainer's tf.data input (components/trainer/data.py)."""

    shuffle_buffer: int = Field(default=10_000, ge=1)
    """Examples in the shuffle buffer (before batching)."""
    cache: bool = True
    """Keep the parsed training batches in memory after the first pass (set false when a split won't fit)."""
    reader_threads: int = Field(default=4, ge=1)
    """Parallel file reads / parses."""
    deterministic: bool = False
    """Reproducible runs: fixed order, seeded shuffles and TensorFlow op determinism (slower)."""


class TransformConfig(_Strict):
    """TF Transform settings."""

    reuse_analyzer_cache: bool = False
    """Feed the newest TransformCache back into Transform. Analyzers whose (data, computation) is unchanged
    are then not recomputed when Transform re-runs — e.g. one feature's preprocessing changed, same data.
    Off by default: the cache is a new artifact after every executed Transform, so with it on an unchanged
    re-run executes Transform (and everything after it) again instead of being served from TFX's cache."""


class TrainingConfig(_Strict):
    """How the model is trained (components/trainer/loops.py, strategies.py, launcher.py)."""

    strategy: Literal["default", "mirrored", "multi_worker"] = "default"
    """``mirrored``: MirroredStrategy over all local GPUs, or ``cpu_devices`` logical CPUs when there are
    none; ``multi_worker``: MultiWorkerMirroredStrategy over ``workers`` local processes (or the cluster in
    TF_CONFIG when it is set)."""
    cpu_devices: int = Field(default=2, ge=1)
    workers: int = Field(default=2, ge=2)
    loop: Literal["fit", "custom"] = "fit"
    """``fit``: model.fit with callbacks; ``custom``: GradientTape in tf.function under strategy.run."""
    rounds: int = Field(default=10, ge=1)
    """Evaluation rounds per run (an "epoch" of train_steps / rounds steps): curves, callbacks, checkpoints."""
    clip_value: Optional[float] = Field(default=None, gt=0.0)
    clip_norm: Optional[float] = Field(default=None, gt=0.0)
    """Clip each gradient tensor to this L2 norm."""
    clip_global_norm: Optional[float] = Field(default=None, gt=0.0)
    """Clip all gradients together to this global L2 norm."""
    lr_schedule: Literal["constant", "exponential", "cosine"] = "constant"
    lr_decay_rate: float = Field(default=0.5, gt=0.0, le=1.0)
    """exponential: the rate is multiplied by this every ``train_steps / rounds`` steps."""
    wide_learning_rate: Optional[float] = Field(default=None, gt=0.0)
    """A second optimizer for the wide part of ``wide_deep`` (custom loop), at this rate."""
    early_stopping_patience: Optional[int] = Field(default=None, ge=1)
    """Stop after this many rounds without a better val_loss (restores the best weights)."""
    reduce_lr_patience: Optional[int] = Field(default=None, ge=1)
    reduce_lr_factor: float = Field(default=0.5, gt=0.0, lt=1.0)
    checkpoint: bool = True
    """Checkpoint every round; a re-run of an interrupted Trainer resumes from the last checkpoint."""

    @model_validator(mode="after")
    def _compatible(self) -> "TrainingConfig":
        if self.strategy == "multi_worker" and self.loop == "fit":
            raise ValueError(
                "loop: 'fit' does not run under strategy 'multi_worker' with Keras 3.6 (model.fit fails to "
                "convert PerReplica values across workers); use loop: custom"
            )
        clips = [k for k in ("clip_value", "clip_norm", "clip_global_norm") if getattr(self, k) is not None]
        if len(clips) > 1:
            raise ValueError(f"{clips[1]}: set one of clip_value, clip_norm, clip_global_norm (Keras applies one)")
        if self.reduce_lr_patience is not None and self.lr_schedule != "constant":
            raise ValueError("reduce_lr_patience: needs lr_schedule: constant (a schedule already sets the rate)")
        if self.wide_learning_rate is not None and self.loop != "custom":
            raise ValueError("wide_learning_rate: a second optimizer needs loop: custom")
        return self


class TunerConfig(_Strict):
    """KerasTuner search run by TFX's Tuner component before the Trainer (components/trainer/tuning.py)."""

    enabled: bool = False
    algorithm: Literal["random", "bayesian"] = "random"
    max_trials: int = Field(default=4, ge=1)
    steps_per_trial: int = Field(default=200, ge=1)
    search_space: Dict[str, List[Any]] = Field(default_factory=dict)
    """``model`` key -> candidate values, e.g. ``learning_rate: [0.001, 0.003]``,
    ``hidden_units: [[64, 32], [128, 64]]``. The best values replace the ``model`` settings."""

    @field_validator("search_space")
    @classmethod
    def _known_keys(cls, v: Dict[str, List[Any]]) -> Dict[str, List[Any]]:
        for key, values in v.items():
            if key not in TUNABLE:
                raise ValueError(_not_allowed("search_space", key, TUNABLE))
            if not values:
                raise ValueError(f"search_space.{key}: give at least one candidate value")
        return v


TUNABLE = ("learning_rate", "hidden_units", "dropout", "l2", "noise_stddev", "huber_delta", "activation")


# ------------------------------------------------------------------------------------------- evaluation
class ChangeThreshold(_Strict):
    """The candidate may be worse than the baseline (latest blessed model) by at most ``absolute``."""

    absolute: float = Field(ge=0.0)


class Threshold(_Strict):
    metric: str
    lower_bound: Optional[float] = None
    upper_bound: Optional[float] = None
    change: Optional[ChangeThreshold] = None
    slices: bool = False
    """false: gate the overall slice; true: gate every feature slice (``evaluation.slices``) that has at least
    ``evaluation.min_slice_size`` eval examples — smaller slices are reported, not gated."""

    @model_validator(mode="after")
    def _has_a_bound(self) -> "Threshold":
        if self.lower_bound is None and self.upper_bound is None and self.change is None:
            raise ValueError("a threshold needs lower_bound, upper_bound or change")
        return self


class EvaluationConfig(_Strict):
    metrics: List[str] = Field(default_factory=list)
    """Metric names to compute (empty: the task's defaults). ``example_count`` is always computed."""
    slices: List[List[str]] = Field(default_factory=list)
    """Feature slices (each a list of columns to cross) evaluated besides the overall slice."""
    thresholds: List[Threshold] = Field(min_length=1)
    min_slice_size: int = Field(default=50, ge=1)
    """Feature slices with fewer eval examples are reported but never block the push."""
    confusion_thresholds: List[float] = Field(default_factory=lambda: [0.25, 0.5, 0.75])
    """Classification: decision thresholds for the confusion matrices in the report."""
    plot_range: Optional[List[float]] = Field(default=None, min_length=2, max_length=2)
    """Regression: ``[low, high]`` of the prediction axis for the calibration plot (none: no plot).
    Classification always plots probabilities over [0, 1]."""
    report_top_k: int = Field(default=12, ge=1)
    """Rows per slicing spec in the report table and plots (largest slices first)."""

    @field_validator("confusion_thresholds")
    @classmethod
    def _probabilities(cls, v: List[float]) -> List[float]:
        if any(not 0.0 < t < 1.0 for t in v):
            raise ValueError("confusion_thresholds must lie strictly between 0 and 1")
        return v


# ------------------------------------------------------------------------------------------ validation
class AllowedAnomaly(_Strict):
    """An anomaly the DataGate tolerates: TFDV's anomaly type (e.g. ENUM_TYPE_UNEXPECTED_STRING_VALUES)."""

    feature: str
    anomaly: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    why: str = ""


class Comparator(_Strict):
    """Distribution distance thresholds: L-infinity for categorical columns, Jensen-Shannon for numeric."""

    categorical_linf: Optional[float] = Field(default=None, gt=0.0, le=1.0)
    numeric_jsd: Optional[float] = Field(default=None, gt=0.0, le=1.0)


class FeatureComparators(_Strict):
    """Per-column override of ``skew`` / ``drift`` thresholds (the kind-appropriate one is used)."""

    skew: Optional[float] = Field(default=None, gt=0.0, le=1.0)
    drift: Optional[float] = Field(default=None, gt=0.0, le=1.0)


class ValidationConfig(_Strict):
    """What the DataGate stops a run for (after ExampleValidator, before Transform)."""

    fail_on: Literal["error", "warning"] = "error"
    """Lowest TFDV anomaly severity that stops the run."""
    allow: List[AllowedAnomaly] = Field(default_factory=list)
    skew: Comparator = Field(default_factory=lambda: Comparator(categorical_linf=0.1, numeric_jsd=0.1))
    """train vs eval split of this run (numeric JSD is measured on deciles: components/data_gate.py)."""
    drift: Comparator = Field(default_factory=lambda: Comparator(categorical_linf=0.2, numeric_jsd=0.1))
    """this run's train split vs the last run whose data passed the gate (found through MLMD)."""
    comparators: Dict[str, FeatureComparators] = Field(default_factory=dict)
    """Per-column thresholds, overriding the defaults above."""


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
        return [
            "--runner=DirectRunner",
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


class ParityBudget(_Strict):
    """How close a TFLite variant must answer to the SavedModel (``components/export/parity.py``)."""

    rtol: float = Field(default=1e-4, gt=0)
    """float32: every eval row within ``atol + rtol * |SavedModel output|``."""
    atol: float = Field(default=1e-5, gt=0)
    metric_budget: float = Field(default=0.01, ge=0)
    """Quantized variants: the task metric (MAE / AUC) may be at most this much worse, relative (0.01 = 1 %)."""


class ExportConfig(_Strict):
    targets: List[Literal["saved_model", "tflite"]] = Field(default_factory=lambda: ["saved_model"], min_length=1)
    model_name: Optional[str] = None
    """Directory name under ``<output>/serving/`` (default: the pipeline name); TFLite goes to ``<name>_tflite``."""
    tflite_variants: List[Literal["float32", "dynamic_range", "float16", "int8"]] = Field(
        default_factory=lambda: ["float32", "dynamic_range", "int8"], min_length=1)
    """float16 stores Transform's constants in fp16 too (see components/export/tflite.py): opt in, and let the
    parity gate judge it on your data."""
    parity: ParityBudget = Field(default_factory=ParityBudget)
    eval_rows: int = Field(default=5000, ge=10)
    """Eval rows the parity gate compares on (and warmup requests are drawn from)."""
    calibration_rows: int = Field(default=200, ge=10)
    """Train rows that calibrate the int8 variant's activation ranges."""

    @field_validator("targets")
    @classmethod
    def _saved_model_first(cls, v: List[str]) -> List[str]:
        if "saved_model" not in v:
            raise ValueError("targets must include saved_model (TF Serving, the Evaluator and parity need it)")
        return v

    @field_validator("tflite_variants")
    @classmethod
    def _float32_reference(cls, v: List[str]) -> List[str]:
        if "float32" not in v:
            raise ValueError("tflite_variants must include float32 (the variant mobile apps fall back to)")
        return list(dict.fromkeys(v))


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


class DataConfig(_Strict):
    path: str
    """A CSV file, a directory of CSV files, or a glob; relative paths are relative to the config file."""
    splits: Dict[str, int] = Field(default_factory=lambda: {"train": 4, "eval": 1})
    """Split name -> hash buckets (CsvExampleGen). ``train`` and ``eval`` are required."""

    @field_validator("splits")
    @classmethod
    def _train_and_eval(cls, v: Dict[str, int]) -> Dict[str, int]:
        missing = {"train", "eval"} - set(v)
        if missing:
            raise ValueError(f"splits must include train and eval (missing: {', '.join(sorted(missing))})")
        if any(b < 1 for b in v.values()):
            raise ValueError("every split needs at least 1 hash bucket")
        return v


class PipelineConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*$")
    data: DataConfig
    schema_path: str = Field(alias="schema")
    task: Task
    features: List[Feature] = Field(min_length=1)
    model: ModelConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tuner: TunerConfig = Field(default_factory=TunerConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    transform: TransformConfig = Field(default_factory=TransformConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    evaluation: EvaluationConfig
    export: ExportConfig = Field(default_factory=ExportConfig)
    beam: BeamConfig = Field(default_factory=BeamConfig)
    kubeflow: KubeflowConfig = Field(default_factory=KubeflowConfig)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # Set by load_config: the directory relative paths are resolved against. Not a YAML key.
    _base_dir: str = PrivateAttr(default=".")

    @model_validator(mode="after")
    def _consistent(self) -> "PipelineConfig":
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"features: duplicate feature names {dupes}")
        if self.task.derive is None and self.task.label in names:
            raise ValueError(f"task.label: {self.task.label!r} is also listed under features (label leakage)")
        if self.model.loss not in LOSSES[self.task.type]:
            raise ValueError(
                f"model.loss: {self.model.loss!r} does not fit task.type {self.task.type!r} "
                f"(allowed: {', '.join(LOSSES[self.task.type])})"
            )
        if self.model.architecture != "wide_deep" and self.training.wide_learning_rate is not None:
            raise ValueError("training.wide_learning_rate: needs model.architecture: wide_deep")
        if self.tuner.enabled and not self.tuner.search_space:
            raise ValueError("tuner.search_space: give at least one model setting to search when enabled")
        for key, values in self.tuner.search_space.items():
            for value in values:
                try:
                    ModelConfig.model_validate({**self.model.model_dump(), key: value})
                except ValidationError as e:
                    raise ValueError(f"tuner.search_space.{key}: candidate {value!r} is invalid: "
                                     f"{e.errors()[0]['msg'].removeprefix('Value error, ')}")
        known = self.metric_names()
        gated = [(t.metric, t.slices) for t in self.evaluation.thresholds]
        for pair in gated:
            if gated.count(pair) > 1:
                raise ValueError(f"evaluation.thresholds: two thresholds for {pair[0]} on "
                                 f"{'feature slices' if pair[1] else 'the overall slice'}; merge them into one")
        if any(t.slices for t in self.evaluation.thresholds) and not self.evaluation.slices:
            raise ValueError("evaluation.thresholds.slices: true needs evaluation.slices to gate")
        for m in self.evaluation.metrics:
            if m not in self.task_metrics():
                raise ValueError(_not_allowed("evaluation.metrics", m, self.task_metrics()))
        for t in self.evaluation.thresholds:
            if t.metric not in known:
                raise ValueError(_not_allowed("evaluation.thresholds.metric", t.metric, known))
        for col in list(self.validation.comparators) + [a.feature for a in self.validation.allow]:
            if col not in self.raw_columns():
                raise ValueError(_not_allowed("validation (feature)", col, self.raw_columns()))
        for s in self.evaluation.slices:
            for col in s:
                if col not in names:
                    raise ValueError(_not_allowed("evaluation.slices", col, names))
        if "tflite" in self.export.targets:
            for f in self.features:
                if isinstance(f, CategoricalStringFeature) and (f.hash_buckets or f.oov_buckets > 1):
                    raise ValueError(
                        f"features ({f.name}): hash_buckets / oov_buckets > 1 hash strings, which TFLite's builtin "
                        "ops cannot do; use a vocabulary with oov_buckets: 1, or drop tflite from export.targets")
        self._kubeflow_consistent()
        for f in self.features:
            if isinstance(f, CategoricalStringFeature) and f.default is not None and not isinstance(f.default, str):
                raise ValueError(f"features ({f.name}).default: must be a string for a categorical_string feature")
            if not isinstance(f, CategoricalStringFeature) and isinstance(f.default, str):
                raise ValueError(f"features ({f.name}).default: must be a number for a {f.kind} feature")
        return self

    def _kubeflow_consistent(self) -> None:
        """``kubeflow`` settings that contradict the rest of the config (checked here, not at compile time)."""
        kf = self.kubeflow
        if "Tuner" in kf.resources and not self.tuner.enabled:
            raise ValueError("kubeflow.resources.Tuner: the pipeline has no Tuner (tuner.enabled is false)")
        vertex = kf.vertex_training
        if vertex is None:
            return
        if "Trainer" in kf.resources:
            raise ValueError("kubeflow.resources.Trainer: with kubeflow.vertex_training the Trainer task only "
                             "submits the training job; set machine_type/accelerator under vertex_training")
        replicas = self.vertex_replicas()
        if replicas > 1 and self.training.strategy != "multi_worker":
            raise ValueError(f"kubeflow.vertex_training.replicas: {replicas} machines need training.strategy: "
                             f"multi_worker (with {self.training.strategy!r} each replica would train alone)")

    def vertex_replicas(self) -> int:
        """Machines of the Vertex training job: the configured count, else one per multi_worker worker."""
        vertex = self.kubeflow.vertex_training
        if vertex is None:
            return 0
        if vertex.replicas is not None:
            return vertex.replicas
        return self.training.workers if self.training.strategy == "multi_worker" else 1

    # ---------------------------------------------------------------------------------- derived values
    def task_metrics(self) -> Dict[str, str]:
        return REGRESSION_METRICS if self.task.type == REGRESSION else BINARY_METRICS

    def metric_names(self) -> List[str]:
        """Metrics the Evaluator computes: configured ones, the defaults, and any with a threshold."""
        chosen = list(self.evaluation.metrics) if self.evaluation.metrics else list(self.task_metrics())
        if "example_count" not in chosen:
            chosen.append("example_count")  # slice sizes: the min_slice_size rule and the report need it
        return chosen

    @property
    def model_name(self) -> str:
        return self.export.model_name or self.name

    @property
    def config_dir(self) -> Path:
        """The directory of the config file (relative paths in it are relative to this)."""
        return Path(self._base_dir)

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config file's directory."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (Path(self._base_dir) / p).resolve()

    @property
    def data_path(self) -> Path:
        """The data on this machine. A URI (gs://…) is for ``sluice compile``; local runs cannot read it."""
        if is_uri(self.data.path):
            raise ConfigError("data.path", f"{self.data.path} is a URI; local runs read files on this machine",
                              "pass --data PATH (a local CSV file or directory) to run here; "
                              "`sluice compile` uses the URI as it is")
        return self.resolve(self.data.path)

    @property
    def schema_file(self) -> Path:
        """The curated schema on this machine. A URI (gs://…) is for ``sluice compile`` only."""
        if is_uri(self.schema_path):
            raise ConfigError("schema", f"{self.schema_path} is a URI; local runs and checks read the curated "
                              "schema from this machine", "point schema: at a local copy to run here; "
                              "`sluice compile` uses the URI as it is")
        return self.resolve(self.schema_path)

    def raw_columns(self) -> List[str]:
        """Every raw CSV column the pipeline reads: features plus the label's source columns."""
        cols = [f.name for f in self.features]
        for c in self.task.raw_label_columns():
            if c not in cols:
                cols.append(c)
        return cols

    def gate_payload(self) -> Dict[str, Any]:
        """What the DataGate needs: the validation settings and the kind of every raw column it compares."""
        # String columns have value counts (L-infinity); numeric and integer-id columns have histograms (JSD).
        kinds = {f.name: ("categorical" if f.kind == "categorical_string" else "numeric") for f in self.features}
        for col in self.task.raw_label_columns():
            kinds.setdefault(col, "numeric")
        return {"validation": self.validation.model_dump(mode="json"), "columns": kinds}

    def component_payload(self) -> Dict[str, Any]:
        """The JSON-serializable part of the config that Transform and Trainer need (``custom_config``).

        It travels through TFX exec properties, so Kubeflow/Vertex runs see exactly the same values, and it
        is part of TFX's cache key: changing a feature or hyperparameter re-runs the affected components.
        """
        payload = self.model_dump(
            mode="json", include={"name", "task", "features", "model", "training", "input", "tuner"}, by_alias=True
        )
        payload["code_version"] = code_fingerprint()
        return payload

    def export_settings(self) -> Dict[str, Any]:
        """What the ModelExport component needs (warmup, TFLite variants, the parity budget)."""
        export = self.export
        return {
            "payload": self.model_dump(mode="json", include={"name", "task", "features"}, by_alias=True),
            "model_name": self.model_name,
            "variants": list(export.tflite_variants) if "tflite" in export.targets else [],
            "budget": export.parity.model_dump(mode="json"),
            "eval_rows": export.eval_rows,
            "calibration_rows": export.calibration_rows,
        }

    def fingerprint(self) -> str:
        """Hash of what the pipeline computes. ``kubeflow`` (where and on what it runs) is left out, so
        editing platform settings neither changes a pushed model's ``config_hash`` nor a local cache key."""
        body = json.dumps(self.model_dump(mode="json", by_alias=True, exclude={"kubeflow"}), sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:12]

    def with_data_path(self, path: str) -> "PipelineConfig":
        """A copy whose data source is ``path`` (the CLI's ``--data``), resolved against the current dir."""
        resolved = path if is_uri(path) else str(Path(path).expanduser().resolve())
        data = self.data.model_copy(update={"path": resolved})
        return self.model_copy(update={"data": data})


def is_uri(value: str) -> bool:
    """``scheme://…`` (gs://, s3://, file://): a location the config passes on instead of resolving."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value) is not None


def code_fingerprint() -> str:
    """Hash of sluice's component code.

    Transform and Trainer reference their code by import path (so Kubeflow images need no user-module wheel),
    which means TFX cannot see code changes; putting this hash into ``custom_config`` makes a code change
    invalidate the cache, as TFX's ``module_file`` fingerprint would.
    """
    root = Path(__file__).resolve().parent.parent / "components"
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


# ------------------------------------------------------------------------------------------- loading
def _not_allowed(key: str, value: Any, allowed: Any) -> str:
    return f"{key}: {_not_in(value, allowed)}"


def _not_in(value: Any, allowed: Any, also: str = "") -> str:
    """"'x' is not allowed (allowed: …); did you mean 'y'?" — the message body without a key path."""
    allowed = sorted(allowed)
    hint = difflib.get_close_matches(str(value), allowed, n=1)
    msg = f"{value!r} is not allowed (allowed: {', '.join(map(str, allowed))}{'; ' + also if also else ''})"
    if hint:
        msg += f"; did you mean {hint[0]!r}?"
    return msg


def _fields_at(model: type, loc: tuple) -> List[str]:
    """The keys a pydantic model accepts at ``loc`` (used for "did you mean" on unknown keys)."""
    current: Any = model
    dict_key = False  # the previous part was a Dict[str, Model] field: this part is a user's key, not a field
    for part in loc:
        if isinstance(part, int):
            continue
        if dict_key:
            dict_key = False
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {**{f.alias: f for f in current.model_fields.values() if f.alias}, **current.model_fields}
            if part in fields:
                ann = fields[part].annotation
                current = _unwrap(ann)
                dict_key = _is_mapping(ann)
                continue
            kinds = {"numeric": NumericFeature, "categorical_string": CategoricalStringFeature,
                     "categorical_int": CategoricalIntFeature, "bucketized": BucketizedFeature}
            if part in kinds:
                current = kinds[part]
                continue
        return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _is_mapping(ann: Any) -> bool:
    """Dict[str, X] or Optional[Dict[str, X]]: the next part of an error's location is a user's key."""
    if get_origin(ann) is dict:
        return True
    return get_origin(ann) is Union and any(_is_mapping(a) for a in get_args(ann))


def _unwrap(ann: Any) -> Any:
    """Optional[List[X]] -> X, for walking the model tree."""
    for _ in range(4):
        args = getattr(ann, "__args__", None)
        if not args:
            break
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if models:
            return models[0]
        ann = args[0]
    return ann


def _key_path(loc: tuple, raw: Any) -> str:
    """('features', 2, 'numeric', 'top_k') -> 'features[2] (trip_miles).top_k'."""
    out = ""
    node = raw
    for part in loc:
        if isinstance(part, int):
            label = ""
            if isinstance(node, list) and part < len(node) and isinstance(node[part], dict):
                item = node[part]
                if "name" in item:
                    label = f" ({item['name']})"
                node = item
            out += f"[{part}]{label}"
            continue
        if part in FEATURE_KINDS and isinstance(node, dict) and node.get("kind") == part:
            continue  # pydantic's discriminator tag, not a key the user wrote
        out += ("." if out else "") + str(part)
        node = node.get(part) if isinstance(node, dict) else None
    return out or "<top level>"


def _format_error(err: Dict[str, Any], raw: Any) -> str:
    loc = tuple(err.get("loc", ()))
    etype = err.get("type", "")
    if etype == "extra_forbidden":
        key = str(loc[-1])
        parent = _key_path(loc[:-1], raw)
        allowed = _fields_at(PipelineConfig, loc[:-1])
        hint = difflib.get_close_matches(key, allowed, n=1)
        where = f"{parent}.{key}" if parent != "<top level>" else key
        msg = f"{where}: unknown key"
        if hint:
            msg += f"; did you mean {hint[0]!r}?"
        elif allowed:
            msg += f" (allowed: {', '.join(sorted(allowed))})"
        return msg
    where = _key_path(loc, raw)
    value = err.get("input")
    text = err.get("msg", "invalid").removeprefix("Value error, ")
    if etype == "missing":
        return f"{where}: required key is missing"
    if etype == "union_tag_invalid":
        got = value.get("kind") if isinstance(value, dict) else value
        return _not_allowed(f"{where}.kind", got, FEATURE_KINDS)
    if etype == "union_tag_not_found":
        return f"{where}.kind: required key is missing (allowed: {', '.join(FEATURE_KINDS)})"
    if etype == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        allowed = [a.strip().strip("'") for a in expected.replace(" or ", ",").split(",") if a.strip()]
        return _not_allowed(where, value, allowed)
    if etype == "value_error":
        if where == "<top level>":
            return text
        # A model validator's message that starts with its own key ("derive: …") extends the path.
        return f"{where}.{text}" if re.match(r"^[\w.\[\]() ]+: ", text) else f"{where}: {text}"
    if isinstance(value, (dict, list)) or value is None:
        return f"{where}: {text}" if where != "<top level>" else text
    return f"{where}: {value!r} is invalid: {text}"


def parse_config(raw: Any, base_dir: str = ".") -> PipelineConfig:
    """Validate a parsed YAML document. Raises ConfigError with one line per problem (first problem first)."""
    if not isinstance(raw, dict):
        raise ConfigError("config", "the file must be a YAML mapping of keys to values", "see configs/taxi_fare.yaml")
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as e:
        lines = []
        # Unknown keys first: a misspelt key also shows up as "required key missing" for the right name.
        errors = sorted(e.errors(), key=lambda err: err.get("type") != "extra_forbidden")
        for err in errors:
            line = _format_error(err, raw)
            if line not in lines:
                lines.append(line)
        first, _, _ = lines[0].partition(": ")
        raise ConfigError(first, lines[0].partition(": ")[2] + ("" if len(lines) == 1 else
                          f" (+{len(lines) - 1} more: " + "; ".join(lines[1:4]) + ")"))
    cfg._base_dir = base_dir
    return cfg


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a YAML config file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(str(path), "config file not found", "pass --config PATH to an existing YAML file")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(where, f"not valid YAML: {getattr(e, 'problem', e)}", "fix the syntax at that line")
    cfg = parse_config(raw, base_dir=str(p.resolve().parent))
    return cfg
