"""Typed pipeline configuration: the only place a config is validated.

One YAML file describes one pipeline (data, features, task, model, gates, runtime). ``load_config`` turns it
into a ``PipelineConfig`` or raises ``ConfigError`` with one line that names the key path, the bad value and
what is allowed. Everything downstream (the TFX graph, Transform, the Trainer, the Evaluator) reads this
object, never the raw YAML, so a value is checked once and means the same thing everywhere — including on
Kubeflow. Each component receives only its own contract (``components/contracts.py``), built here.

This module imports no TensorFlow: it is used by the CLI's fast paths and by unit tests.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional

import yaml
from pydantic import ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from sluice.components.contracts import (
    BulkContract,
    EvaluationContract,
    ExportContract,
    GateContract,
    InfraCheckContract,
    PushContract,
    TrainerContract,
    TransformContract,
    TunerContract,
    data_features,
)
from sluice.components.features import name_clashes
from sluice.components.settings import (
    DATASET,
    BulkInferenceConfig,
    UserCode,
    LOSSES,
    TASK_METRICS,
    CategoricalStringFeature,
    EvaluationConfig,
    Feature,
    InputConfig,
    ModelConfig,
    ParityBudget,
    Task,
    TrainingConfig,
    TransformConfig,
    TunerConfig,
    ValidationConfig,
    _not_allowed,
    _Strict,
)
from sluice.pipeline.config_messages import format_error
from sluice.pipeline.errors import ConfigError
from sluice.pipeline.platform import BeamConfig, KubeflowConfig

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


# TFX's span spec in a data path (``example_gen.utils.SPAN_FULL_REGEX``, the width as digits): ``{SPAN}``, or
# ``{SPAN:3}`` for span numbers zero-padded to three digits.
SPAN_SPEC = r"\{SPAN(?::(?P<width>[1-9][0-9]*))?\}"


class DataConfig(_Strict):
    path: str
    """A CSV file, a directory of CSV files, a glob, or a span pattern (``data/{SPAN}/*.csv``: each run ingests
    the newest span, TFX's input-config semantics); relative paths are relative to the config file."""
    splits: Dict[str, int] = Field(default_factory=lambda: {"train": 4, "eval": 1})
    """Split name -> hash buckets (CsvExampleGen). ``train`` and ``eval`` are required."""
    window: int = Field(default=1, ge=1)
    """Span patterns: Transform, the Trainer, the Evaluator and the export read the newest ``window`` spans
    whose data passed the DataGate (a rolling window); 1 = the new span alone."""

    @property
    def spans(self) -> bool:
        """Whether ``path`` is a span pattern."""
        return re.search(SPAN_SPEC, self.path) is not None

    @field_validator("path")
    @classmethod
    def _one_span_spec(cls, v: str) -> str:
        specs = re.findall(r"\{[^{}]*\}", v)
        if any(not re.fullmatch(SPAN_SPEC, s) for s in specs):
            raise ValueError(f"{v}: the only placeholder sluice reads is {{SPAN}} or {{SPAN:width}} (TFX's span "
                             "spec; {VERSION} and date specs are not supported)")
        if len(specs) > 1:
            raise ValueError(f"{v}: a span pattern holds {{SPAN}} once (TFX reads one span number per file)")
        return v

    @model_validator(mode="after")
    def _window_needs_spans(self) -> "DataConfig":
        if self.window > 1 and not self.spans:
            raise ValueError(f"window: {self.window} needs a span pattern in data.path (e.g. data/{{SPAN}}/*.csv): "
                             "a window is counted in spans")
        return self

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
    code: UserCode = Field(default_factory=UserCode)
    bulk_inference: Optional[BulkInferenceConfig] = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # Set by load_config: the directory relative paths are resolved against. Not a YAML key.
    _base_dir: str = PrivateAttr(default=".")

    @model_validator(mode="after")
    def _consistent(self) -> "PipelineConfig":
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"features: duplicate feature names {dupes}")
        clashes = name_clashes(self.features, self.task.label)
        if clashes:
            raise ValueError(f"features: column names clash inside the model: {'; '.join(clashes)} "
                             "(rename one of the columns in the CSV header)")
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
        for t in self.evaluation.thresholds:
            if t.slices and t.metric == "macro_auc":
                raise ValueError("evaluation.thresholds: macro_auc on feature slices is undefined wherever a slice "
                                 "lacks a class (TFMA's average is NaN); gate slices on accuracy or macro_recall")
        for m in self.evaluation.metrics:
            if m not in self.task_metrics():
                raise ValueError(_not_allowed("evaluation.metrics", m, self.task_metrics()))
        for t in self.evaluation.thresholds:
            if t.metric not in known:
                raise ValueError(_not_allowed("evaluation.thresholds.metric", t.metric, known))
        allowed = [a.feature for a in self.validation.allow if a.feature != DATASET]  # or the data as a whole
        for col in list(self.validation.comparators) + allowed:
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
        if self.code.preprocessing_fn and not self.code.model_fn:
            raise ValueError("code.preprocessing_fn: needs code.model_fn too (sluice's own model reads the inputs "
                             "sluice's encoding writes, <column>_xf; yours decides its own outputs)")
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
        return TASK_METRICS[self.task.type]

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

    # ------------------------------------------------------------------- per-component contracts
    # Each component receives only what it uses (components/contracts.py): its cache key changes exactly when
    # one of these values does. ``code_version`` is added by create_pipeline (pipeline/code_version.py).
    def gate_contract(self) -> GateContract:
        """DataGate: the validation settings and the kind of every raw column it compares."""
        kinds = {f.name: ("categorical" if f.kind == "categorical_string" else "numeric") for f in self.features}
        label_kind = "numeric"
        if self.task.classes and not all(c.lstrip("-").isdigit() for c in self.task.classes):
            label_kind = "categorical"  # string classes: the class frequencies' L-infinity distance
        for col in self.task.raw_label_columns():
            kinds.setdefault(col, label_kind)
        return GateContract(validation=self.validation, columns=kinds,
                            label=None if self.task.derive else self.task.label, label_classes=self.task.classes,
                            spans=self.data.spans)

    def transform_contract(self) -> TransformContract:
        return TransformContract(task=self.task, features=data_features(self.features),
                                 preprocessing_fn=self.code.preprocessing_fn)

    def trainer_contract(self) -> TrainerContract:
        return TrainerContract(name=self.name, task=self.task, features=self.features, model=self.model,
                               training=self.training, input=self.input, code=self.code.model_code())

    def tuner_contract(self) -> TunerContract:
        return TunerContract(**dict(self.trainer_contract()), tuner=self.tuner)

    def evaluation_contract(self) -> EvaluationContract:
        names = self.task_metrics()
        evaluation = self.evaluation
        return EvaluationContract(
            task=self.task, metrics={m: names[m] for m in self.metric_names()}, thresholds=evaluation.thresholds,
            slices=evaluation.slices, min_slice_size=evaluation.min_slice_size,
            confusion_thresholds=evaluation.confusion_thresholds, plot_range=evaluation.plot_range,
            huber_delta=self.model.huber_delta,
            beat_mean=not (self.model.loss == "quantile" and self.model.quantile != 0.5))

    def export_contract(self) -> ExportContract:
        export = self.export
        return ExportContract(
            task=self.task, features=data_features(self.features), model_name=self.model_name,
            variants=list(export.tflite_variants) if "tflite" in export.targets else [],
            budget=export.parity, eval_rows=export.eval_rows, calibration_rows=export.calibration_rows,
            slices=[list(s) for s in self.evaluation.slices] if any(t.slices for t in self.evaluation.thresholds) else [],
            min_slice_size=self.evaluation.min_slice_size, code=self.code.model_code(),
            custom_preprocessing=self.code.preprocessing_fn is not None)

    def infra_check_contract(self) -> InfraCheckContract:
        return InfraCheckContract(model_name=self.model_name)

    def push_contract(self) -> PushContract:
        return PushContract(pipeline=self.name, config_hash=self.fingerprint())

    def bulk_contract(self) -> BulkContract:
        bulk = self.bulk_inference
        where = bulk.input if is_uri(bulk.input) else str(self.resolve(bulk.input))
        return BulkContract(model_name=self.model_name, bulk=bulk.model_copy(update={"input": where}))

    def fingerprint(self) -> str:
        """Hash of what the pipeline computes. ``kubeflow`` (where and on what it runs) is left out, so
        editing platform settings neither changes a pushed model's ``config_hash`` nor a local cache key."""
        body = json.dumps(self.model_dump(mode="json", by_alias=True, exclude={"kubeflow"}), sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:12]

    def with_data_path(self, path: str) -> "PipelineConfig":
        """A copy whose data source is ``path`` (the CLI's ``--data``), resolved against the current dir."""
        resolved = path if is_uri(path) else str(Path(path).expanduser().resolve())
        try:  # validated like data.path (a span pattern's placeholders; a window needs spans)
            data = DataConfig.model_validate({**self.data.model_dump(), "path": resolved})
        except ValidationError as e:
            raise ConfigError("--data", e.errors()[0]["msg"].removeprefix("Value error, "),
                              "pass a CSV file, directory, glob or span pattern that fits the config's data settings")
        return self.model_copy(update={"data": data})


def is_uri(value: str) -> bool:
    """``scheme://…`` (gs://, s3://, file://): a location the config passes on instead of resolving."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value) is not None


def parse_config(raw: Any, base_dir: str = ".") -> PipelineConfig:
    """Validate a parsed YAML document. Raises ConfigError with one line per problem (first problem first)."""
    if not isinstance(raw, dict):
        raise ConfigError("config", "the file must be a YAML mapping of keys to values",
                          "see the configs/ folder for complete examples")
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as e:
        lines = []
        # Unknown keys first: a misspelt key also shows up as "required key missing" for the right name.
        errors = sorted(e.errors(), key=lambda err: err.get("type") != "extra_forbidden")
        for err in errors:
            line = format_error(err, raw, PipelineConfig)
            if line not in lines:
                lines.append(line)
        first, _, _ = lines[0].partition(": ")
        raise ConfigError(first, lines[0].partition(": ")[2] + ("" if len(lines) == 1 else
                          f" (+{len(lines) - 1} more: " + "; ".join(lines[1:4]) + ")"))
    cfg._base_dir = base_dir
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last silently, so
    ``learning_rate`` written twice would train with whichever came second)."""

    def construct_mapping(self, node, deep=False):
        seen: Dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (first on line {seen[key] + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a YAML config file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(str(path), "config file not found", "pass --config PATH to an existing YAML file")
    try:
        raw = yaml.load(p.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(where, f"not valid YAML: {getattr(e, 'problem', e)}", "fix the syntax at that line")
    cfg = parse_config(raw, base_dir=str(p.resolve().parent))
    return cfg
