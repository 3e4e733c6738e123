"""The TFX pipeline graph: ``create_pipeline(config, paths) -> tfx Pipeline``.

Thin glue only: every component's behaviour comes from ``components/`` (referenced by import path, so the
same graph runs locally and in a Kubeflow image) and every value from the validated config.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from sluice.pipeline.code_version import component_code_version, user_code_version
from sluice.pipeline.config import SPAN_SPEC, PipelineConfig
from sluice.pipeline.data_source import DataSource

PREPROCESSING_FN = "sluice.components.transform.preprocessing_fn"
RUN_FN = "sluice.components.trainer.run_fn.run_fn"
TUNER_FN = "sluice.components.trainer.tuning.tuner_fn"
SPAN_LEDGER = "_span_ledger"
"""The span ledger's folder under the pipeline root (compiled pipelines with spans)."""


@dataclass(frozen=True)
class Locations:
    """Where a pipeline reads and writes, as strings (local paths or gs:// URIs)."""

    pipeline_root: str
    serving_base: str
    """``<serving_base>/<model>/<version>/`` is what the Pusher writes."""
    schema_uri: str
    metadata_path: Optional[str] = None
    """SQLite MLMD for local runs; None on Kubeflow/Vertex (the orchestrator owns MLMD)."""


@dataclass(frozen=True)
class OutputPaths:
    """Everything of a run lives under one output directory."""

    root: Path

    def locations(self, config: PipelineConfig) -> Locations:
        return Locations(
            pipeline_root=str(self.pipeline_root),
            serving_base=str(self.root / "serving"),
            schema_uri=str(pinned_schema(config.schema_file, self.pipeline_root)),
            metadata_path=str(self.metadata),
        )

    @property
    def pipeline_root(self) -> Path:
        return self.root / "pipeline_root"

    @property
    def metadata(self) -> Path:
        return self.root / "metadata.sqlite"

    def serving(self, model_name: str) -> Path:
        return self.root / "serving" / model_name

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def pinned_schema(schema_file: Path, pipeline_root: Path) -> Path:
    """A content-addressed copy of the curated schema under the pipeline root.

    ImportSchemaGen's cache key is the schema file's *path*; editing the curated schema in place would
    otherwise be served from the cache with the old schema. A path that changes with the content fixes that.
    """
    data = Path(schema_file).read_bytes()
    target = Path(pipeline_root) / "_schemas" / hashlib.sha256(data).hexdigest()[:16] / "schema.pbtxt"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.rename(target)
    return target


def remote_fingerprint(spec: str) -> str:
    """A table at a URI, by its files' names, sizes and modification times (``tf.io.gfile``: a new upload of
    the same name changes the time); "" when it cannot be listed (BulkScore then says why)."""
    import tensorflow as tf

    from sluice.serving.batch import input_files
    from sluice.serving.errors import SettingError

    try:
        stats = [(f, tf.io.gfile.stat(f)) for f in input_files(spec)]
    except (SettingError, tf.errors.OpError):
        return ""
    body = "\n".join(f"{f}\t{s.length}\t{s.mtime_nsec}" for f, s in stats)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def create_pipeline(
    config: PipelineConfig,
    source: DataSource,
    paths: "OutputPaths | Locations",
    enable_cache: bool = True,
    metadata_connection_config: Optional[object] = None,
    pipeline_name: Optional[str] = None,
    vertex_training: Optional[Dict[str, Any]] = None,
    config_hash: Optional[str] = None,
):
    """Build the TFX pipeline for ``config`` reading ``source`` and writing to ``paths`` (a local output
    directory, or explicit ``Locations`` — the Kubeflow compile).

    ``vertex_training``: the Kubeflow compile's ``ai_platform_*`` custom_config keys
    (``kubeflow.vertex_training``); with them the Trainer is TFX's Google Cloud Trainer, which runs the same
    run_fn as a Vertex AI training job. Local runs never pass them. ``config_hash``: what the push record
    names as the config (default ``config``'s fingerprint; the compile passes the user's config's, before it
    fills in the image and the bulk table's location, so that ``sluice monitor`` recognises the config)."""
    where = paths.locations(config) if isinstance(paths, OutputPaths) else paths
    pipeline_root = where.pipeline_root.rstrip("/")
    from tfx import v1 as tfx
    from tfx.proto import example_gen_pb2, range_config_pb2

    from sluice.components import pusher as sluice_pusher
    from sluice.components.data_gate import DataGate, DataVerdict
    from sluice.components.evaluation import build_eval_config
    from sluice.components.evaluator import Evaluator
    from sluice.components.export.component import ModelExport
    from sluice.components.infra_check import InfraCheck
    from sluice.components.span_window import source_key

    # Each component gets only its contract (components/contracts.py) plus the fingerprint of the code it
    # runs: TFX's cache then re-runs a component exactly when something it uses changed.
    user = {"Transform": [config.code.preprocessing_fn],
            **{n: [config.code.model_fn, *config.code.custom_objects] for n in ("Tuner", "Trainer", "ModelExport")}}

    def contract(node_id: str, built):
        version = component_code_version(node_id)
        if any(user.get(node_id, [])):  # your code (config `code:`) is part of the component's code too
            version += "+" + user_code_version(user[node_id])
        return built.model_copy(update={"code_version": version})

    # A span pattern is pinned to the span the pre-flight checked (a span landing meanwhile waits for the next
    # run); the Kubeflow compile leaves it open, so each run on Vertex ingests the newest span (TFX's rule).
    pinned = None if source.span is None else range_config_pb2.RangeConfig(
        static_range=range_config_pb2.StaticRange(start_span_number=source.span, end_span_number=source.span))
    example_gen = tfx.components.CsvExampleGen(
        input_base=source.input_base,
        input_config=example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="single_split", pattern=source.pattern)]
        ),
        range_config=pinned,
        output_config=example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(
                splits=[
                    example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
                    for name, buckets in config.data.splits.items()
                ]
            )
        ),
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_importer = tfx.components.ImportSchemaGen(
        schema_file=where.schema_uri
    )
    inferred_schema = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
    ).with_id("InferredSchemaGen")
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_importer.outputs["schema"]
    )
    local = isinstance(paths, OutputPaths)
    spans = source.span is not None or re.search(SPAN_SPEC, source.pattern) is not None
    # A compiled pipeline with spans keeps its passed verdicts in a ledger under the pipeline root: Vertex's
    # resolvers can find neither the previous span (drift) nor the window (components/span_ledger.py).
    name = pipeline_name or config.name
    ledger = f"{pipeline_root}/{SPAN_LEDGER}/{name}" if spans and not local else ""
    if config.data.window > 1 and not spans:
        raise ValueError(f"data.window {config.data.window} needs data in spans; {source.description} has none")
    if spans and local:  # the span before this one, from MLMD
        from sluice.components.span_window import PreviousSpanVerdict

        baseline_strategy = dict(strategy_class=PreviousSpanVerdict, config={
            "input_base": source.input_base, "pattern": source.pattern, "span": source.span})
    else:
        baseline_strategy = dict(strategy_class=tfx.dsl.experimental.LatestArtifactStrategy)
    last_passed_data = tfx.dsl.Resolver(
        **baseline_strategy, verdict=tfx.dsl.Channel(type=DataVerdict),
    ).with_id("LastPassedDataResolver")
    data_gate = DataGate(
        statistics=statistics_gen.outputs["statistics"],
        anomalies=example_validator.outputs["anomalies"],
        schema=schema_importer.outputs["schema"],
        baseline=None if ledger else last_passed_data.outputs["verdict"],  # with a ledger, the gate reads that
        # A passed verdict names its data source: the span window counts only its own.
        gate=contract("DataGate", config.gate_contract().model_copy(update={
            "data_source": source_key(source.input_base, source.pattern), "spans": spans,
            "span_ledger": ledger})).to_json(),
        report_root=f"{pipeline_root}/_data_reports",
        examples=example_gen.outputs["examples"],
    )
    # What the model side reads: this run's span, or the rolling window of spans that passed the gate.
    span_window = None
    model_examples = example_gen.outputs["examples"]
    if config.data.window > 1 and not local:  # compiled: the window from the ledger, as one Examples artifact
        from sluice.components.contracts import WindowContract
        from sluice.components.span_window_step import SpanWindow

        span_window = SpanWindow(examples=example_gen.outputs["examples"], verdict=data_gate.outputs["verdict"],
                                 contract=contract("SpanWindow", WindowContract(
                                     num_spans=config.data.window, ledger=ledger,
                                     data_source=source_key(source.input_base, source.pattern))).to_json())
        model_examples = span_window.outputs["window"]
    elif config.data.window > 1:
        from sluice.components.span_window import PassedSpanWindow

        span_window = tfx.dsl.Resolver(
            strategy_class=PassedSpanWindow,
            config={"num_spans": config.data.window, "input_base": source.input_base, "pattern": source.pattern},
            examples=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples,
                                     producer_component_id=example_gen.id, output_key="examples"),
            verdicts=tfx.dsl.Channel(type=DataVerdict),
        ).with_id("SpanWindowResolver")
        span_window.add_upstream_node(data_gate)  # resolved once this run's span has passed
        model_examples = span_window.outputs["examples"]
    analyzer_cache = None
    if config.transform.reuse_analyzer_cache:
        analyzer_cache = tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
            cache=tfx.dsl.Channel(type=tfx.types.standard_artifacts.TransformCache),
        ).with_id("LatestTransformCacheResolver")
    transform = tfx.components.Transform(
        analyzer_cache=analyzer_cache.outputs["cache"] if analyzer_cache else None,
        examples=model_examples,
        schema=schema_importer.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=["train", "eval"]),
        custom_config=contract("Transform", config.transform_contract()).to_dict(),
        # StatisticsGen + the DataGate already describe the raw data; TFT's own pre/post-transform TFDV passes
        # would read all of it twice more (about a third of Transform's time on the bundled data).
        disable_statistics=True,
    )
    transform.add_upstream_node(data_gate)  # bad data stops the run before Transform spends anything
    # Tuner and Trainer read the same transformed data; the Tuner's contract adds the search settings.
    training_inputs = dict(
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_importer.outputs["schema"],
        eval_args=tfx.proto.EvalArgs(splits=["eval"], num_steps=config.model.eval_steps),
    )
    tuner = None
    if config.tuner.enabled:
        tuner = tfx.components.Tuner(
            tuner_fn=TUNER_FN,
            train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=config.tuner.steps_per_trial),
            custom_config=contract("Tuner", config.tuner_contract()).to_dict(),
            **training_inputs,
        )
    # On Vertex the job's replicas run TFX's Trainer executor with this same custom_config: run_fn reads the
    # contract (TrainerContract.parse drops the ai_platform_* keys), the cloud executor the ai_platform_* ones.
    trainer_class = tfx.extensions.google_cloud_ai_platform.Trainer if vertex_training else tfx.components.Trainer
    trainer = trainer_class(
        run_fn=RUN_FN,
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
        train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=config.model.train_steps),
        custom_config={**contract("Trainer", config.trainer_contract()).to_dict(), **(vertex_training or {})},
        **training_inputs,
    )
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("LatestBlessedModelResolver")
    evaluation = config.evaluation_contract()
    evaluator = Evaluator(
        examples=model_examples,
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=build_eval_config(evaluation),
        example_splits=["eval"],
        schema=schema_importer.outputs["schema"],
        min_slice_size=evaluation.min_slice_size,
        code_version=component_code_version("Evaluator"),
    )
    # Warmup requests always; TFLite variants and their parity gate when export.targets has tflite.
    export = ModelExport(
        model=trainer.outputs["model"],
        transform_graph=transform.outputs["transform_graph"],
        examples=model_examples,
        contract=contract("ModelExport", config.export_contract()).to_json(),
    ).with_id("ModelExport")
    infra_check = InfraCheck(model=trainer.outputs["model"], export=export.outputs["exported"],
                             contract=contract("InfraCheck", config.infra_check_contract()).to_json())
    pusher = sluice_pusher.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=infra_check.outputs["blessing"],
        export=export.outputs["exported"],
        evaluation=evaluator.outputs["evaluation"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=f"{where.serving_base.rstrip('/')}/{config.model_name}")
        ),
        contract=contract("Pusher", config.push_contract().model_copy(
            update={"config_hash": config_hash or config.fingerprint()})),
        statistics=statistics_gen.outputs["statistics"],
        examples=model_examples,
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_importer.outputs["schema"],
    )
    bulk_score = None
    if config.bulk_inference is not None:  # the pushed version scores a table (Dataflow when compiled)
        from sluice.components.bulk_score import BulkScore

        bulk = config.bulk_contract()
        if local:  # a local run: the table's content joins the cache key
            from sluice.pipeline.shortcut import bulk_fingerprint

            fingerprint = bulk_fingerprint(config)
            if fingerprint is None:
                fingerprint = remote_fingerprint(bulk.bulk.input)
            bulk = bulk.model_copy(update={"input_fingerprint": fingerprint})
        bulk_score = BulkScore(pushed_model=pusher.outputs["pushed_model"],
                               contract=contract("BulkScore", bulk).to_json())
    components: List = [
        example_gen,
        statistics_gen,
        schema_importer,
        inferred_schema,
        example_validator,
        data_gate,
        transform,
        trainer,
        baseline,
        evaluator,
        export,
        infra_check,
        pusher,
    ]
    if bulk_score is not None:
        components.append(bulk_score)
    if not ledger:
        components.insert(components.index(data_gate), last_passed_data)
    if span_window is not None:
        components.insert(components.index(transform), span_window)
    if analyzer_cache is not None:
        components.insert(components.index(transform), analyzer_cache)
    if tuner is not None:
        components.insert(components.index(trainer), tuner)
    if metadata_connection_config is None and where.metadata_path:
        metadata_connection_config = tfx.orchestration.metadata.sqlite_metadata_connection_config(where.metadata_path)
    return tfx.dsl.Pipeline(
        pipeline_name=name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=config.beam.args(),
    )
