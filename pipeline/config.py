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
from typing import Annotated, Any, Dict, List, Literal, Optional, Union

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
class DataflowProfile(_Strict):
    """Google Cloud Dataflow (``beam.profile: dataflow``)."""

    project: str = Field(min_length=1)
    region: str = Field(min_length=1)
    temp_location: str = Field(pattern=r"^gs://")
    """A gs:// path Dataflow stages and writes temporary files to."""
    machine_type: str = "n1-standard-4"
    max_num_workers: int = Field(default=10, ge=1)
    sdk_container_image: Optional[str] = None
    """Workers' image; the pipeline image (root Dockerfile) carries sluice, so module paths resolve."""
    service_account_email: Optional[str] = None


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
            d = self.dataflow
            assert d is not None
            args = ["--runner=DataflowRunner", f"--project={d.project}", f"--region={d.region}",
                    f"--temp_location={d.temp_location}", f"--machine_type={d.machine_type}",
                    f"--max_num_workers={d.max_num_workers}", "--experiments=use_runner_v2"]
            if d.sdk_container_image:
                args.append(f"--sdk_container_image={d.sdk_container_image}")
            if d.service_account_email:
                args.append(f"--service_account_email={d.service_account_email}")
            return args
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
        for f in self.features:
            if isinstance(f, CategoricalStringFeature) and f.default is not None and not isinstance(f.default, str):
                raise ValueError(f"features ({f.name}).default: must be a string for a categorical_string feature")
            if not isinstance(f, CategoricalStringFeature) and isinstance(f.default, str):
                raise ValueError(f"features ({f.name}).default: must be a number for a {f.kind} feature")
        return self

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

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config file's directory."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (Path(self._base_dir) / p).resolve()

    @property
    def data_path(self) -> Path:
        return self.resolve(self.data.path)

    @property
    def schema_file(self) -> Path:
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
        body = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:12]

    def with_data_path(self, path: str) -> "PipelineConfig":
        """A copy whose data source is ``path`` (the CLI's ``--data``), resolved against the current dir."""
        data = self.data.model_copy(update={"path": str(Path(path).expanduser().resolve())})
        return self.model_copy(update={"data": data})


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
    allowed = sorted(allowed)
    hint = difflib.get_close_matches(str(value), allowed, n=1)
    msg = f"{key}: {value!r} is not allowed (allowed: {', '.join(map(str, allowed))})"
    if hint:
        msg += f"; did you mean {hint[0]!r}?"
    return msg


def _fields_at(model: type, loc: tuple) -> List[str]:
    """The keys a pydantic model accepts at ``loc`` (used for "did you mean" on unknown keys)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            if part in current.model_fields:
                ann = current.model_fields[part].annotation
                current = _unwrap(ann)
                continue
            by_alias = {f.alias: f for f in current.model_fields.values() if f.alias}
            if part in by_alias:
                current = _unwrap(by_alias[part].annotation)
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
