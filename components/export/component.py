"""``ModelExport``: the custom TFX component between the Evaluator and the Pusher that prepares everything
the serving side gets besides the SavedModel, and gates on TFLite parity.

For the Trainer's model it writes, into its ``sluice.ExportedModel`` artifact:

- ``warmup/tf_serving_warmup_requests``: real eval rows as TF Serving warmup requests (``warmup.py``);
- ``tflite/<variant>/model.tflite`` + ``io_spec.json`` for each configured variant (``tflite.py``; the
  conversions in one subprocess, each one in its own only when that one dies);
- ``parity.json``: every variant's answers vs the SavedModel's ``serving_raw`` on the eval split, under the
  configured budget (``parity.py``). The artifact's ``passed`` property is what the Pusher checks: float32
  failing (a wrong answer, a converter crash, a corrupt file) means nothing is pushed; a quantized variant
  failing is left out of the push and named in the verdict (``shipping_verdict``).

It does not wait for the blessing (so an unchanged re-run is a cache hit even when the Evaluator re-runs
against a new baseline); the Pusher needs both verdicts.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Dict, List

import numpy as np
from absl import logging
from tensorflow.python.framework import errors as tf_errors
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, path_utils

from sluice.components import artifact_io as aio, verdicts
from sluice.components.contracts import ExportContract
from sluice.components.export import parity, rows as rows_lib, tflite, warmup
from sluice.components.span_window import span_of

PARITY_FILE = verdicts.FILES["parity"]
WARMUP_PATH = aio.join("warmup", warmup.WARMUP_FILE)
LOGS_DIR = "_logs"
"""Converter step logs (``archive.log``, ``<variant>.log``) inside the export artifact."""


class ExportedModel(types.Artifact):
    """What ``ModelExport`` wrote: warmup requests, TFLite variants, parity verdict (``passed`` property)."""

    TYPE_NAME = "sluice.ExportedModel"


def data_fingerprint(input_fingerprint: str) -> str:
    """A short hash of CsvExampleGen's input fingerprint (file sizes and checksums): same data, same value."""
    import hashlib

    return hashlib.sha256(input_fingerprint.encode()).hexdigest()[:12]


def tflite_dir(export_uri: str, variant: str) -> str:
    return aio.join(export_uri, "tflite", variant)


def read_parity(export_uri: str) -> Dict[str, Any]:
    verdict = verdicts.read(export_uri, "parity")
    if verdict is None:
        raise FileNotFoundError(f"no {PARITY_FILE} in {export_uri}")
    return verdict


def _saved_model_outputs(saved_model_dir: str, rows: rows_lib.Rows, label: str, batch: int = 512):
    """``serving_raw`` predictions on the dense rows (what TFLite gets), ``serving_default`` predictions on
    the same rows' tf.Examples (what the Evaluator/TFMA uses: an empty cell stays missing and Transform
    imputes it, where the dense row carries the fill value) and Transform's label, for ``rows``."""
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_model_dir)
    raw, features = loaded.signatures["serving_raw"], loaded.signatures["transform_features"]
    default = loaded.signatures["serving_default"]
    predictions, from_examples, labels = [], [], []
    for start in range(0, len(rows), batch):
        part = {k: tf.constant(v) for k, v in rows.inputs(start, start + batch).items()}
        examples = tf.constant(rows.serialized[start:start + batch])
        predictions.append(raw(**part)["outputs"].numpy())
        from_examples.append(default(examples=examples)["outputs"].numpy())
        labels.append(features(examples=examples)[label].numpy())
    return np.concatenate(predictions), np.concatenate(from_examples), np.concatenate(labels).reshape(-1)


def _refuse_user_vocabularies(transform_dir: str) -> None:
    """Your ``preprocessing_fn`` with vocabulary lookups cannot become a TFLite model that answers like the
    SavedModel: the converter drops file-initialized tables (every string "not found"), and sluice rebuilds
    only its own vocabularies. Say so before training time is spent converting a model parity must refuse."""
    from tfx.dsl.io import fileio

    from sluice.components.refusal import Refused

    assets = aio.join(transform_dir, "transform_fn", "assets")
    files = sorted(fileio.listdir(assets)) if fileio.exists(assets) else []
    if files:
        raise Refused("export.targets", f"your preprocessing_fn writes vocabularies ({', '.join(files[:4])}), whose "
                      "lookups TFLite's converter drops: no TFLite model could answer like the SavedModel",
                      "drop tflite from export.targets, or encode strings without a vocabulary file")


def export_variants(contract: ExportContract, model_uri: str, transform_dir: str, train: rows_lib.Rows,
                    evaluation: rows_lib.Rows, out_uri: str, work: str) -> Dict[str, Any]:
    """Convert every variant and check it against the SavedModel; the parity verdict as a dict.

    The converter runs in subprocesses, which read and write local files only: ``work`` is a local scratch
    directory holding copies of the Keras model and the Transform graph; each variant's files are uploaded to
    ``out_uri`` (any filesystem) once checked, and the step logs to ``out_uri/_logs/``.

    Every Python process that converts pays TensorFlow's import (about 5 s here), so the archive and all
    variants first run in one process. Only when that process fails does each missing step run again in a
    process of its own: a converter that aborts then fails only its own variant, with its own log and cause."""
    from sluice.components.features import label_key
    from sluice.components.trainer.signatures import keras_model_path

    logs = aio.join(out_uri, LOGS_DIR)
    budget = contract.budget
    results: List[Dict[str, Any]] = []
    timings: Dict[str, float] = {}
    started = time.perf_counter()
    archive = os.path.join(work, "archive")
    representative = os.path.join(work, "representative.npz")
    converts = {v: {"step": "convert", "archive_dir": archive, "variant": v, "representative": representative,
                    "out_path": os.path.join(work, "tflite", v, tflite.MODEL_FILE)} for v in contract.variants}
    try:
        try:
            keras_model = os.path.join(work, "model.keras")
            aio.copy_file(keras_model_path(model_uri), keras_model)
            transform_local = os.path.join(work, "transform_graph")
            io_utils.copy_dir(transform_dir, transform_local)
            np.savez(representative, **train.inputs())
            build = {"step": "archive", "keras_model": keras_model, "transform_dir": transform_local,
                     "contract": contract.to_json(), "out_dir": archive}
            try:
                steps = [build, *converts.values()]
                tflite.run_step({"step": "all", "steps": steps}, work, "export", logs, timeout=900 * len(steps))
            except tflite.ExportFailed as e:  # find the culprit: the missing steps, each in its own process
                logging.warning("TFLite export in one process failed (%s); retrying each step apart", e)
            if not tflite.archive_done(archive):
                tflite.run_step(build, work, "archive", logs)
        except (tflite.ExportFailed, OSError, tf_errors.OpError) as e:  # nothing to convert: every variant fails
            results = [{"variant": v, "rows": 0, "passed": False, "error": f"{type(e).__name__}: {e}"[:600]}
                       for v in contract.variants]
            return shipping_verdict(results, len(evaluation), budget, {})
        timings["convert"] = time.perf_counter() - started
        saved, from_examples, labels = _saved_model_outputs(path_utils.serving_model_path(model_uri), evaluation,
                                                            label_key(contract.task))
        slices = parity.slice_masks(evaluation.columns, contract.slices, contract.min_slice_size)
        reference = {"metric": parity.TASK_METRICS[contract.task.type][0],
                     "dense_rows": parity.task_metric(contract.task.type, labels, saved),
                     "examples": parity.task_metric(contract.task.type, labels, from_examples),
                     "rows_with_empty_cells": rows_lib.rows_with_empty_cells(evaluation, contract.features)}
        for variant in contract.variants:
            model_file = converts[variant]["out_path"]
            local = os.path.dirname(model_file)
            try:
                if not os.path.isfile(model_file):
                    started = time.perf_counter()
                    tflite.run_step(converts[variant], work, variant, logs)
                    timings[variant] = time.perf_counter() - started
                predictions = tflite.predict(model_file, evaluation.inputs())
                result = parity.compare(variant, contract.task.type, labels, saved, predictions,
                                        os.path.getsize(model_file), budget, slices).to_dict()
                aio.write_json(os.path.join(local, tflite.IO_SPEC_FILE),
                               tflite.io_spec(model_file, contract.task.classes or ()))
                aio.copy_tree(local, tflite_dir(out_uri, variant))
            except Exception as e:  # a converter crash or an unreadable model fails this variant, with the cause
                logging.exception("TFLite variant %s failed", variant)
                result = {"variant": variant, "rows": 0, "passed": False, "error": f"{type(e).__name__}: {e}"[:600]}
            results.append(result)
    finally:
        aio.keep_logs(work, logs)
    return {**shipping_verdict(results, len(evaluation), budget, timings), "saved_model_metric": reference}


def shipping_verdict(results: List[Dict[str, Any]], rows: int, budget: Any, timings: Dict[str, float]) -> Dict[str, Any]:
    """What ships: every variant that passed. The gate (``passed``, which the Pusher checks) is float32's
    verdict — the reference conversion every other variant starts from; when it fails something is wrong
    with the model's conversion itself and nothing is pushed. A quantized variant that fails is left out of
    the push (``dropped``) and the run says so; the SavedModel and the other variants still ship."""
    by = {r["variant"]: r for r in results}
    shipped = [r["variant"] for r in results if r["passed"]]
    gate = by["float32"]["passed"] if "float32" in by else bool(results) and all(r["passed"] for r in results)
    return {"passed": bool(gate), "variants": results, "rows": rows, "budget": budget.model_dump(),
            "convert_seconds": timings, "shipped": shipped if gate else [],
            "dropped": [r["variant"] for r in results if not r["passed"]],
            "failures": parity.failure_lines(results)}


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        import tensorflow_transform as tft

        from sluice.components.trainer.signatures import serving_columns

        contract = ExportContract.parse(exec_properties["export"])
        model_uri = artifact_utils.get_single_uri(input_dict["model"])
        transform_dir = artifact_utils.get_single_uri(input_dict["transform_graph"])
        # A span window gives several Examples: warmup and parity rows come from the newest span, the data the
        # served model meets next.
        examples = max(input_dict["examples"], key=lambda a: (span_of(a), a.id or 0))
        exported = artifact_utils.get_single_instance(output_dict["exported"])
        out_uri = exported.uri
        fileio.makedirs(out_uri)

        spec = serving_columns(tft.TFTransformOutput(transform_dir), contract)
        evaluation = rows_lib.read_rows(examples.uri, "eval", contract.features, spec, contract.eval_rows)
        warmup.write(aio.join(out_uri, WARMUP_PATH), warmup.requests(contract.model_name, evaluation))

        verdict: Dict[str, Any] = {"passed": True, "variants": [], "rows": 0, "failures": []}
        if contract.variants and contract.custom_preprocessing:
            _refuse_user_vocabularies(transform_dir)
        if contract.variants:
            train = rows_lib.read_rows(examples.uri, "train", contract.features, spec, contract.calibration_rows)
            with tempfile.TemporaryDirectory(prefix="sluice-export-") as work:
                verdict = export_variants(contract, model_uri, transform_dir, train, evaluation, out_uri, work)
        verdict["data_fingerprint"] = data_fingerprint(examples.get_string_custom_property("input_fingerprint"))
        verdicts.write(out_uri, "parity", verdict, passed=verdict["passed"])
        exported.set_int_custom_property("passed", int(verdict["passed"]))
        exported.set_string_custom_property("variants", ",".join(contract.variants))
        for line in verdict["failures"]:
            logging.error("TFLite parity: %s", line)


class ModelExportSpec(types.ComponentSpec):
    PARAMETERS = {"export": ExecutionParameter(type=str)}
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "transform_graph": ChannelParameter(type=standard_artifacts.TransformGraph),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {"exported": ChannelParameter(type=ExportedModel)}


class ModelExport(base_component.BaseComponent):
    """``ModelExport(model, transform_graph, examples, contract=ExportContract JSON)`` -> ``exported``."""

    SPEC_CLASS = ModelExportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model, transform_graph, examples, contract: str):
        super().__init__(spec=ModelExportSpec(model=model, transform_graph=transform_graph, examples=examples,
                                              export=contract,
                                              exported=types.Channel(type=ExportedModel)))
