"""The settings each component works with: the typed sections of a pipeline config.

These are the pieces the per-component contracts (``contracts.py``) are made of, and the sections
``sluice.pipeline.config.PipelineConfig`` composes: features, task, model, training, tf.data input, tuner,
evaluation, validation and the TFLite parity budget. They are defined here, below the pipeline, so that the
components depend on nothing of ``sluice.pipeline`` (the dependency points one way) and a setting has one
definition, one default and one validator from the YAML file to the Keras object that uses it.

Pure pydantic: no TensorFlow import (the CLI's fast paths and the no-op check load this).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REGRESSION = "regression"
BINARY = "binary_classification"
MULTICLASS = "multiclass_classification"

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
# Multi-class: the label is a class id (Transform maps ``task.classes`` to 0..K-1), the prediction K
# probabilities. ``accuracy`` and ``log_loss`` are TFMA's wrapped Keras metrics (what TFMA's own multi-class
# defaults use); ``macro_auc`` is TFMA's one-vs-rest AUC per class, macro-averaged by TFMA's aggregation
# (evaluation.build_eval_config); ``macro_precision`` / ``macro_recall`` are sluice's TFMA metrics on the most
# probable class (evaluation_metrics.MacroPrecision), as the confusion matrix counts.
MULTICLASS_METRICS = {
    "accuracy": "SparseCategoricalAccuracy",
    "log_loss": "SparseCategoricalCrossentropy",
    "macro_auc": "AUC",
    "macro_precision": "MacroPrecision",
    "macro_recall": "MacroRecall",
    "example_count": "ExampleCount",
}
MACRO_METRICS = {"macro_auc"}
"""Metrics TFMA macro-averages over the classes (a spec of their own in the EvalConfig)."""
TASK_METRICS = {"regression": REGRESSION_METRICS, BINARY: BINARY_METRICS, MULTICLASS: MULTICLASS_METRICS}
SLUICE_TFMA_METRICS = {"Huber", "RSquared", "MacroPrecision", "MacroRecall"}
# Metrics where a smaller value is better (decides the direction of change thresholds).
LOWER_IS_BETTER = {"mean_absolute_error", "root_mean_squared_error", "mean_squared_error", "huber", "log_loss"}

LOSSES = {
    REGRESSION: ("huber", "log_cosh", "quantile", "mse", "mae"),
    BINARY: ("binary_crossentropy", "focal"),
    MULTICLASS: ("sparse_categorical_crossentropy", "sparse_focal"),
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


# -------------------------------------------------------------------------------------------- your code
_IMPORT_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"


class ModelCode(_Strict):
    """Your model code, by import path (installed, or on ``PYTHONPATH``; the same path in the Kubeflow image).

    ``model_fn(transformed_feature_spec, contract) -> keras.Model`` replaces sluice's model builder: the spec
    maps Transform's output names (label excluded) to their ``tf.io`` specs; the contract is the Trainer's
    (``contract.model`` for your hyperparameters). Everything after it is unchanged: the loss, both
    training loops, strategies, signatures, the Evaluator, TFLite parity, InfraCheck and the Pusher.
    ``custom_objects``: classes/functions the saved Keras model needs when it is loaded again (the TFLite
    export); importing their modules also runs any ``keras.saving.register_keras_serializable``."""

    model_fn: Optional[str] = Field(default=None, pattern=_IMPORT_PATH)
    custom_objects: List[str] = Field(default_factory=list)

    @field_validator("custom_objects")
    @classmethod
    def _paths(cls, v: List[str]) -> List[str]:
        import re

        for path in v:
            if not re.match(_IMPORT_PATH, path):
                raise ValueError(f"{path!r} is not an import path like package.module.Name")
        return v


class UserCode(ModelCode):
    """``code:`` in the config. ``preprocessing_fn(inputs, contract) -> dict`` replaces sluice's feature
    encoding in Transform (the contract is Transform's; the label is added as configured unless your function
    returns it under its transformed name)."""

    preprocessing_fn: Optional[str] = Field(default=None, pattern=_IMPORT_PATH)

    def model_code(self) -> ModelCode:
        return ModelCode(model_fn=self.model_fn, custom_objects=self.custom_objects)


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


def class_number(name: str) -> Optional[float]:
    """A class name as the number a numeric label cell must equal (None for a name that is not a number):
    how Transform, the DataGate and this validator all compare numeric labels with ``task.classes``."""
    try:
        return float(name)
    except ValueError:
        return None


class Task(_Strict):
    type: Literal["regression", "binary_classification", "multiclass_classification"]
    label: str = Field(min_length=1)
    """The raw label column, or the name given to a derived label."""
    derive: Optional[DerivedLabel] = None
    classes: Optional[List[str]] = None
    """Multi-class: the label's values (int or string cells, written as text), in the order of the model's
    outputs; Transform maps them to class ids 0..K-1 and the DataGate refuses any other label value."""

    @field_validator("type", mode="before")
    @classmethod
    def _short_names(cls, v: Any) -> Any:
        return {"multiclass": MULTICLASS, "binary": BINARY}.get(v, v)

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_text(cls, v: Any) -> Any:
        """``[0, 1, 2]`` in YAML means the label values 0, 1, 2; ``[yes, no]`` is YAML for booleans."""
        if not isinstance(v, list):
            return v
        if any(isinstance(c, bool) for c in v):
            raise ValueError("yes/no/true/false are YAML booleans: quote the class names ('yes', 'no')")
        return [str(c) if isinstance(c, int) else c for c in v]

    @model_validator(mode="after")
    def _task_fields(self) -> "Task":
        if self.derive is not None and self.type != BINARY:
            raise ValueError("derive: only supported when task.type is binary_classification")
        if self.type != MULTICLASS:
            if self.classes is not None:
                raise ValueError("classes: only for task.type multiclass_classification")
            return self
        classes = self.classes or []
        if len(classes) < 2:
            raise ValueError("classes: multiclass_classification needs the label's values (at least 2), in the "
                             "order of the model's outputs")
        repeated = sorted({c for c in classes if classes.count(c) > 1})
        if repeated or any(not c for c in classes):
            raise ValueError(f"classes: each value once and non-empty (repeated: {repeated})")
        numbers: Dict[float, str] = {}
        for c in classes:  # a numeric label matches classes numerically: "1" and "01" would be one class
            value = class_number(c)
            if value is None:
                continue
            if value in numbers:
                raise ValueError(f"classes: {numbers[value]!r} and {c!r} are the same number")
            numbers[value] = c
        return self

    def raw_label_columns(self) -> List[str]:
        """The raw CSV columns the label is read or derived from (absent at serving time)."""
        derive = self.derive
        if derive is None:
            return [self.label]
        return [derive.left] + ([derive.right] if isinstance(derive.right, str) else [])


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
    loss: Literal["huber", "log_cosh", "quantile", "mse", "mae", "binary_crossentropy", "focal",
                  "sparse_categorical_crossentropy", "sparse_focal"]
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


class ConstantRate(_Strict):
    """The learning rate as given, all run long."""

    kind: Literal["constant"] = "constant"


class ExponentialDecay(_Strict):
    """The rate multiplied by ``rate`` every round (``train_steps / rounds`` steps)."""

    kind: Literal["exponential"]
    rate: float = Field(default=0.5, gt=0.0, le=1.0)


class CosineDecay(_Strict):
    """Cosine decay over the whole run, down to ``alpha`` times the rate."""

    kind: Literal["cosine"]
    alpha: float = Field(default=0.05, ge=0.0, lt=1.0)


LrSchedule = Annotated[Union[ConstantRate, ExponentialDecay, CosineDecay], Field(discriminator="kind")]
"""``training.lr_schedule``: one of these (``components/trainer/loops.SCHEDULES`` builds each); the bare name
(``lr_schedule: cosine``) takes its defaults."""


class ClipValue(_Strict):
    """Clip each gradient element to ``[-limit, limit]`` (Keras' ``clipvalue``)."""

    kind: Literal["value"]
    limit: float = Field(gt=0.0)


class ClipNorm(_Strict):
    """Clip each gradient tensor to this L2 norm (Keras' ``clipnorm``)."""

    kind: Literal["norm"]
    limit: float = Field(gt=0.0)


class ClipGlobalNorm(_Strict):
    """Clip all gradients together to this global L2 norm (Keras' ``global_clipnorm``)."""

    kind: Literal["global_norm"]
    limit: float = Field(gt=0.0)


Clipping = Annotated[Union[ClipValue, ClipNorm, ClipGlobalNorm], Field(discriminator="kind")]
"""``training.clipping``: one of these, or none (``components/trainer/loops.CLIPPERS`` applies each)."""

_OLD_TRAINING_KEYS = {"clip_value": "value", "clip_norm": "norm", "clip_global_norm": "global_norm"}


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
    clipping: Optional[Clipping] = None
    """Gradient clipping, e.g. ``{kind: global_norm, limit: 5.0}`` (``value``, ``norm``, ``global_norm``)."""
    lr_schedule: LrSchedule = Field(default_factory=ConstantRate)
    """``constant``, ``exponential`` (``{kind: exponential, rate: 0.5}``) or ``cosine`` (``alpha``)."""
    wide_learning_rate: Optional[float] = Field(default=None, gt=0.0)
    """A second optimizer for the wide part of ``wide_deep`` (custom loop), at this rate."""
    early_stopping_patience: Optional[int] = Field(default=None, ge=1)
    """Stop after this many rounds without a better val_loss (restores the best weights)."""
    reduce_lr_patience: Optional[int] = Field(default=None, ge=1)
    reduce_lr_factor: float = Field(default=0.5, gt=0.0, lt=1.0)
    checkpoint: bool = True
    """Checkpoint every round; a re-run of an interrupted Trainer resumes from the last checkpoint."""

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        """Settings that became ``clipping`` / ``lr_schedule`` get one line saying how to write them now."""
        if isinstance(data, dict):
            for key, kind in _OLD_TRAINING_KEYS.items():
                if key in data:
                    raise ValueError(f"{key}: write clipping: {{kind: {kind}, limit: {data[key]}}} (one clipping "
                                     "setting with its kind)")
            if "lr_decay_rate" in data:
                raise ValueError(f"lr_decay_rate: write lr_schedule: {{kind: exponential, rate: "
                                 f"{data['lr_decay_rate']}}}")
        return data

    @field_validator("lr_schedule", mode="before")
    @classmethod
    def _schedule_by_name(cls, v: Any) -> Any:
        return {"kind": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _compatible(self) -> "TrainingConfig":
        if self.strategy == "multi_worker" and self.loop == "fit":
            raise ValueError(
                "loop: 'fit' does not run under strategy 'multi_worker' with Keras 3.6 (model.fit fails to "
                "convert PerReplica values across workers); use loop: custom"
            )
        if self.reduce_lr_patience is not None and self.lr_schedule.kind != "constant":
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
DATASET = "(dataset)"
"""The feature of the DataGate's findings about the data as a whole (``validation.allow`` may name it)."""


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


class ParityBudget(_Strict):
    """How close a TFLite variant must answer to the SavedModel (``components/export/parity.py``)."""

    rtol: float = Field(default=1e-4, gt=0)
    """float32: every eval row within ``atol + rtol * |SavedModel output|``."""
    atol: float = Field(default=1e-5, gt=0)
    metric_budget: float = Field(default=0.01, ge=0)
    """Quantized variants: the task metric (MAE / AUC) may be at most this much worse, relative (0.01 = 1 %)."""
    row_quantile: float = Field(default=0.99, gt=0, le=1)
    row_budget: float = Field(default=0.1, gt=0)
    """Quantized variants, row by row: the ``row_quantile`` of ``|variant - SavedModel|`` at most this many
    standard deviations of the SavedModel's outputs on the eval rows (0.1 = a tenth of their spread)."""
    worst_row_budget: float = Field(default=0.5, gt=0)
    """Quantized variants: no eval row off by more than this many standard deviations of the outputs."""
    slice_metric_budget: float = Field(default=0.05, ge=0)
    """Quantized variants, on every gated evaluation slice with at least ``evaluation.min_slice_size`` eval
    rows: the task metric at most this much worse (relative). Looser than ``metric_budget`` because a slice
    has few rows (taxi: dynamic_range's worst slice moved 0.94 % on 52 rows, int8's 8.2 %)."""



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


class BulkInferenceConfig(_Strict):
    """``bulk_inference:``: once a run has pushed, the pipeline scores these files with the version it pushed
    (``components/bulk_score.py``: ``sluice predict --output``'s Beam job, on the pipeline's Beam profile —
    Dataflow in a compiled pipeline)."""

    input: str
    """CSV file, directory of ``*.csv`` or glob; relative to the config file, or a URI (``gs://…``: needed
    for a compiled pipeline unless the files are in the image's data/)."""
    keys: Optional[List[str]] = None
    """Columns copied to each prediction (default: every column the model does not take)."""
    allow_bad_rows: int = Field(default=0, ge=0)
    """More rows than this in the dead-letter file fail the step (the pushed version stays pushed)."""
    batch_size: int = Field(default=1024, ge=1)
