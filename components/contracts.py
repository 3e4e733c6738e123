"""Per-component contracts: exactly what each component uses, typed, and nothing else.

``PipelineConfig`` (sluice.pipeline.config) composes these from the YAML file; ``create_pipeline`` hands each
component only its own contract, as an execution property (JSON) or as Transform's / the Trainer's
``custom_config``. Two things follow:

- **Precise caching.** TFX's cache key of a component holds its execution properties, so a component re-runs
  when, and only when, something it uses changed: a learning-rate change reaches the Trainer's contract but
  not Transform's. Each contract also carries ``code_version``, the fingerprint of the code the component
  imports (``sluice.pipeline.code_version``), so editing the Pusher re-runs the Pusher and nothing else.
- **One representation.** An executor, ``run_fn`` or ``preprocessing_fn`` validates its contract once at entry
  (``Contract.parse``) and uses attributes from there on; worker processes receive the same model as JSON. A
  setting keeps its one definition and default (``settings.py``) from the YAML file to the Keras object.

No TensorFlow import: the CLI and unit tests load this.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Literal, Mapping, Optional, Type, TypeVar, Union

from pydantic import Field

from sluice.components.settings import (
    BulkInferenceConfig,
    Threshold,
    Feature,
    InputConfig,
    ModelCode,
    ModelConfig,
    ParityBudget,
    Task,
    TrainingConfig,
    TunerConfig,
    ValidationConfig,
    _Strict,
)

C = TypeVar("C", bound="Contract")
# custom_config keys that are not sluice's: TFX's Google Cloud Trainer passes its own (``ai_platform_*``)
# beside the contract to every replica of a Vertex AI training job.
FOREIGN_PREFIXES = ("ai_platform_",)


class Contract(_Strict):
    """Base of every contract: strict (unknown keys are errors), frozen, JSON in and out."""

    code_version: str = ""
    """Fingerprint of the component's code (its module closure); set by the pipeline, part of the cache key."""

    @classmethod
    def parse(cls: Type[C], value: Union[str, Mapping[str, Any]]) -> C:
        """The contract from an execution property: JSON text or a ``custom_config`` dict (foreign keys, which
        TFX's cloud executors add, are dropped; any other unknown key is an error)."""
        data = json.loads(value) if isinstance(value, str) else dict(value)
        return cls.model_validate({k: v for k, v in data.items() if not k.startswith(FOREIGN_PREFIXES)})

    def to_json(self) -> str:
        """Deterministic JSON (field order is the class's): equal contracts give equal cache keys."""
        return self.model_dump_json(by_alias=True)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-compatible dict, for ``custom_config``."""
        return self.model_dump(mode="json", by_alias=True)


# Feature settings only the model uses (its embedding tables): Transform and the export never read them, so
# they are left out of those two contracts (``data_features``) and changing them re-runs neither.
MODEL_ONLY_FEATURE_SETTINGS = frozenset({"embedding_dim"})


def data_features(features: List[Any]) -> List[Any]:
    """The features as Transform and the export see them: model-only settings reset to their defaults."""
    return [type(f).model_validate(f.model_dump(exclude=MODEL_ONLY_FEATURE_SETTINGS)) for f in features]


class TransformContract(Contract):
    """``preprocessing_fn``: how each raw column becomes a model input, and how the label is read/derived.
    ``features`` are the data's (``data_features``)."""

    task: Task
    features: List[Feature] = Field(min_length=1)
    preprocessing_fn: Optional[str] = None
    """Your ``preprocessing_fn`` (``code.preprocessing_fn``) instead of sluice's feature encoding."""


class TrainerContract(Contract):
    """``run_fn`` and every training worker: the model, its loss, how it is trained and fed."""

    name: str
    task: Task
    features: List[Feature] = Field(min_length=1)
    model: ModelConfig
    training: TrainingConfig
    input: InputConfig
    code: ModelCode = Field(default_factory=ModelCode)

    def with_hyperparameters(self, values: Mapping[str, Any]) -> "TrainerContract":
        """The contract with the Tuner's best ``model`` values applied (validated like the YAML would be)."""
        if not values:
            return self
        model = ModelConfig.model_validate({**self.model.model_dump(), **values})
        return self.model_copy(update={"model": model})


class TunerContract(TrainerContract):
    """``tuner_fn``: the Trainer's contract plus the search (algorithm, trials, space)."""

    tuner: TunerConfig

    def trainer(self) -> TrainerContract:
        """What a trial trains with: the Trainer's contract (the search settings left out)."""
        return TrainerContract.model_validate(self.model_dump(exclude={"tuner"}))


class GateContract(Contract):
    """DataGate: the validation settings and the kind of every raw column it compares."""

    validation: ValidationConfig
    columns: Dict[str, Literal["categorical", "numeric"]]
    """String columns have value counts (L-infinity); numeric and integer-id columns have histograms (JSD)."""
    label: Optional[str] = None
    """The raw label column (None for a derived label, whose raw columns are judged as features)."""
    label_classes: Optional[List[str]] = None
    """Multi-class: ``task.classes``, the only label values the gate lets through."""
    spans: bool = False
    """The data comes in spans (``data.path`` has ``{SPAN}``): drift is measured against the previous span."""
    data_source: str = ""
    """``<input_base>/<pattern>`` CsvExampleGen reads (set by the pipeline): a passed verdict names it, and the
    span window counts only this source's verdicts."""
    span_ledger: str = ""
    """A compiled pipeline with spans: the span ledger's folder (``span_ledger``), where a passed verdict is
    recorded and the drift baseline (the previous span) is read, since Vertex's resolvers cannot find it."""


class WindowContract(Contract):
    """SpanWindow (compiled pipelines): the rolling window, read from the span ledger."""

    num_spans: int = Field(ge=2)
    ledger: str = Field(min_length=1)
    data_source: str
    """``<input_base>/<pattern>`` CsvExampleGen reads: whose spans the window holds; a span whose files are gone
    from it leaves the window."""


class EvaluationContract(Contract):
    """What the Evaluator's ``EvalConfig`` is built from (``evaluation.build_eval_config``). The Evaluator
    itself receives that EvalConfig proto (TFX's own typed contract) and ``min_slice_size``; report-only
    settings (``report_top_k``) are not here, so changing them re-runs no component."""

    task: Task
    metrics: Dict[str, str]
    """Metric name -> TFMA class name: the configured metrics, the task's defaults and ``example_count``."""
    thresholds: List[Threshold] = Field(min_length=1)
    slices: List[List[str]]
    min_slice_size: int = Field(ge=1)
    confusion_thresholds: List[float]
    plot_range: Optional[List[float]]
    huber_delta: float
    beat_mean: bool
    """Regression: the model must beat the mean predictor's MSE. Off for a quantile loss away from the median
    (its target is not the mean; the constant-prediction and NaN guards still apply)."""
    # No defaults here: the values always come from the config sections (settings.py), defaults applied.


class ExportContract(Contract):
    """ModelExport: warmup requests, the TFLite variants, and the parity gate's budget. ``features`` are the
    data's (``data_features``): how a column is encoded for the model is not the export's business."""

    task: Task
    features: List[Feature] = Field(min_length=1)
    model_name: str
    variants: List[Literal["float32", "dynamic_range", "float16", "int8"]]
    """Empty: no TFLite target (warmup requests only)."""
    budget: ParityBudget
    eval_rows: int = Field(ge=10)
    calibration_rows: int = Field(ge=10)
    slices: List[List[str]]
    """The evaluation's gated feature slices (thresholds with ``slices: true``), judged per variant too."""
    min_slice_size: int = Field(ge=1)
    code: ModelCode = Field(default_factory=ModelCode)
    """Needed to load your Keras model again (custom objects) for the TFLite conversion."""
    custom_preprocessing: bool = False
    """Your ``preprocessing_fn``: sluice's vocabulary tables are not rebuilt for TFLite (parity judges it)."""


class InfraCheckContract(Contract):
    """InfraCheck: the model name the candidate is served under and how many warmup requests it replays."""

    model_name: str
    max_requests: int = Field(default=32, ge=1)


class PushContract(Contract):
    """Pusher: provenance written into ``sluice_push.json`` (which pipeline and config made this version)."""

    pipeline: str = ""
    config_hash: str = ""


class BulkContract(Contract):
    """BulkScore: which files to score with the pushed version, and how (``input`` resolved: a path or URI)."""

    model_name: str
    bulk: BulkInferenceConfig
    input_fingerprint: str = ""
    """Local runs: a hash of the table's file names and contents, so that a changed table is scored again
    when the model is not new (TFX's cache key holds the contract). Empty in a compiled pipeline."""
