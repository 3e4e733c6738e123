"""Pusher executor: TFX's Pusher, made atomic and idempotent for filesystem destinations (any filesystem
TFX supports: local disk, gs://, s3://, …).

TFX's stock executor copies file by file into ``<base>/<unix time>/`` (a reader can see a half-written
version if the copy dies), and pushes the same model again as a new version whenever the Evaluator re-blesses
it (e.g. the second run of an unchanged pipeline, which now has a baseline to compare with). Here:

- TF Serving's version watcher never takes a partial version for a complete one: on local disk the version
  is staged in ``<base>/.incoming-<version>/`` and renamed into place; elsewhere (no atomic directory
  rename) it is copied with ``saved_model.pb`` and then the push record last (``write_version``);
- a model (identified by its MLMD artifact URI) already present in ``<base>`` is not pushed twice: the
  existing version is reported instead;
- each version carries ``sluice_push.json`` (model URI, time, lineage artifact ids and the URIs of its data's
  statistics, examples, transform graph and schema, data fingerprint, config hash, eval metrics, TFLite
  parity, package versions) so the serving tree explains itself, without ML Metadata too;
- with a ``ModelExport`` input, the push also needs its parity verdict to have passed, the SavedModel gets
  ``assets.extra/tf_serving_warmup_requests``, and the TFLite variants go to ``<base>_tflite/<version>/``
  (``model.tflite`` = float32, ``model_<variant>.tflite``, ``io_spec.json``, ``parity.json``), same version.

Blessing semantics (model and infra blessing) and the output artifact's properties are TFX's own.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import proto_utils

from sluice.components import artifact_io as aio
from sluice.components.contracts import PushContract
from sluice.components.versions import package_versions
from sluice.components.export.component import ExportedModel

PUSH_RECORD = "sluice_push.json"
LINEAGE_INPUTS = ("statistics", "examples", "transform_graph", "schema")
"""Inputs the push record names by URI (``lineage_uris``): the run's train statistics, the examples the model
was evaluated on, its transform graph and schema."""
SAVED_MODEL_FILE = "saved_model.pb"
WARMUP_IN_MODEL = aio.join("assets.extra", "tf_serving_warmup_requests")
PACKAGES = ("tfx", "tensorflow", "keras", "tensorflow-transform", "tensorflow-model-analysis", "sluice")


def _versions(base: str) -> List[str]:
    """The numeric version directories under ``base`` (what TF Serving serves), oldest first."""
    if not fileio.isdir(base):
        return []
    names = [name.rstrip("/") for name in fileio.listdir(base)]
    return sorted((n for n in names if n.isdigit()), key=int)


def existing_version_of(base: str, model_uri: str) -> Optional[str]:
    """The version directory under ``base`` that already holds the model ``model_uri``, if any.

    Only complete versions count: the push record is the last file a push writes."""
    for version in _versions(str(base)):
        record = aio.join(str(base), version, PUSH_RECORD)
        if fileio.exists(record):
            try:
                if aio.read_json(record).get("model_uri") == model_uri:
                    return version
            except ValueError:
                continue
    return None


def next_version(base: str, now: Optional[int] = None) -> str:
    """A Unix-time version, strictly greater than every version already in ``base``."""
    version = int(time.time()) if now is None else now
    existing = _versions(str(base))
    return str(max(version, int(existing[-1]) + 1) if existing else version)


def write_version(base: str, version: str, fill: Callable[[str], None], last: Sequence[str] = ()) -> str:
    """Create ``base/version`` so that a reader (TF Serving's version poller, a phone fetching TFLite) never
    takes a partial version for a complete one. ``fill(staging)`` writes the version's files into a staging
    directory whose name is not a number (TF Serving ignores it).

    - Local disk: ``base/.incoming-<version>``, then one ``rename`` — atomic; readers see nothing or all.
    - Any other filesystem (gs://, s3://, ram://: no atomic directory rename; GCS renames object by object):
      staged in a local temp dir, then copied into ``base/version`` with the files in ``last`` copied last, in
      that order. The SavedModel's ``saved_model.pb`` comes after everything it refers to and the push record
      after it: TF Serving finds no ``saved_model.pb`` in an incomplete version (its load fails and is retried;
      the served version stays), and sluice counts a version as pushed only once its record exists.
    """
    base = str(base)
    target = aio.join(base, version)
    if aio.is_local(base):
        fileio.makedirs(base)
        staging = aio.join(base, f".incoming-{version}")
        if fileio.exists(staging):  # left by a push that died
            fileio.rmtree(staging)
        fill(staging)
        fileio.rename(staging, target)
        return target
    with tempfile.TemporaryDirectory(prefix="sluice-push-") as tmp:
        staging = os.path.join(tmp, version)
        fill(staging)
        aio.copy_tree(staging, target, last=last)
    return target


def push_atomically(model_dir: str, base: str, model_uri: str, extras: Optional[Mapping[str, str]] = None,
                    record: Optional[Mapping[str, Any]] = None, version: Optional[str] = None) -> str:
    """Copy ``model_dir`` (plus ``extras``: relative path -> source file) to a new version under ``base``."""
    version = version or next_version(base)

    def fill(staging: str) -> None:
        aio.copy_tree(str(model_dir), staging)
        _copy_files(extras or {}, staging)
        body = {"model_uri": model_uri, "pushed_at": int(time.time()), "version": version, **(record or {})}
        aio.write_json(aio.join(staging, PUSH_RECORD), body)

    write_version(base, version, fill, last=(SAVED_MODEL_FILE, PUSH_RECORD))
    return version


def tflite_files(export_uri: str) -> Dict[str, str]:
    """The files of a passed ModelExport that the TFLite tree gets: relative name -> source path."""
    from sluice.components.export.component import PARITY_FILE, read_parity, tflite_dir
    from sluice.components.export.tflite import IO_SPEC_FILE, MODEL_FILE

    files: Dict[str, str] = {}
    for result in read_parity(export_uri)["variants"]:
        variant = result["variant"]
        if not result.get("passed"):  # a failed quantized variant is not shipped (component.shipping_verdict)
            continue
        name = MODEL_FILE if variant == "float32" else f"model_{variant}.tflite"
        files[name] = aio.join(tflite_dir(export_uri, variant), MODEL_FILE)
        if variant == "float32":
            files[IO_SPEC_FILE] = aio.join(tflite_dir(export_uri, variant), IO_SPEC_FILE)
    if files:
        files[PARITY_FILE] = aio.join(export_uri, PARITY_FILE)
    return files


class Executor(tfx_pusher.Executor):
    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base_directory = destination.filesystem.base_directory
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        export = (input_dict.get("export") or [None])[0]
        if export is not None and not export.get_int_custom_property("passed"):
            logging.error("TFLite parity failed (%s): model not pushed.", export.uri)
            self._MarkNotPushed(model_push)
            return
        if destination.WhichOneof("destination") != "filesystem":
            return super().Do(input_dict, output_dict, exec_properties)

        self._log_startup(input_dict, output_dict, exec_properties)
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        base = base_directory.rstrip("/")
        version = existing_version_of(base, model.uri)
        if version is not None:
            logging.info("Model %s is already served as version %s; not pushing it again.", model.uri, version)
        else:
            version = next_version(base)
            extras: Dict[str, str] = {}
            if export is not None:
                extras[WARMUP_IN_MODEL] = aio.join(export.uri, "warmup", "tf_serving_warmup_requests")
                files = tflite_files(export.uri)
                if files:  # the TFLite tree first: a SavedModel version never appears without its TFLite twin
                    from sluice.components.export.component import PARITY_FILE

                    write_version(f"{base}_tflite", version, lambda staging: _copy_files(files, staging),
                                  last=(PARITY_FILE,))
            record = self._record(input_dict, exec_properties, export)
            push_atomically(model_path, base, model.uri, extras, record, version)
            logging.info("Model written to serving path %s.", aio.join(base, version))
        self._MarkPushed(model_push, pushed_destination=aio.join(base, version), pushed_version=version)

    def _record(self, input_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any],
                export: Optional[types.Artifact]) -> Dict[str, Any]:
        """What ``sluice_push.json`` says besides the model URI: where the model came from and how it did."""
        lineage = {key: artifacts[0].id for key, artifacts in input_dict.items() if artifacts}
        record: Dict[str, Any] = {"lineage_artifact_ids": lineage, "packages": package_versions(PACKAGES)}
        # Where the model's data lives, by URI: `sluice monitor --serving` reads it from here where no ML
        # Metadata is at hand (Vertex's), for the train statistics, the eval split and the schema.
        record["lineage_uris"] = {key: input_dict[key][0].uri for key in LINEAGE_INPUTS if input_dict.get(key)}
        contract = PushContract.parse(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}")
        record.update(contract.model_dump(include={"pipeline", "config_hash"}))
        evaluation = (input_dict.get("evaluation") or [None])[0]
        if evaluation is not None:
            from sluice.components.evaluation import read_verdict

            try:
                record["metrics"] = read_verdict(evaluation.uri).get("overall", {})
            except Exception as e:  # metadata only: a push does not fail on it
                logging.warning("could not read the evaluation for the push record: %s", e)
        if export is not None:
            from sluice.components.export.component import read_parity

            verdict = read_parity(export.uri)
            record["data_fingerprint"] = verdict.get("data_fingerprint")
            record["tflite_parity"] = {r["variant"]: {k: r.get(k) for k in ("passed", "max_abs_diff", "metric",
                                                                          "metric_tflite", "size_bytes")}
                                       for r in verdict["variants"]}
        return record


def _copy_files(files: Mapping[str, str], target: str) -> None:
    """Copy ``files`` (relative name -> source path) into the directory ``target``."""
    for relative, source in files.items():
        aio.copy_file(source, aio.join(target, relative))


class PusherSpec(standard_component_specs.PusherSpec):
    """TFX's Pusher spec plus the sluice gates' artifacts: the export (parity verdict, warmup, TFLite files)
    and the evaluation (metrics for the push record)."""

    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        "export": ChannelParameter(type=ExportedModel, optional=True),
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
        # read for their URIs only (the push record's ``lineage_uris``)
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True),
        "examples": ChannelParameter(type=standard_artifacts.Examples, optional=True),
        "transform_graph": ChannelParameter(type=standard_artifacts.TransformGraph, optional=True),
        "schema": ChannelParameter(type=standard_artifacts.Schema, optional=True),
    }


class Pusher(base_component.BaseComponent):
    """TFX's Pusher with this executor and two more inputs (``export``, ``evaluation``); ``contract`` travels
    as TFX's ``custom_config`` (its cache key: the push record's provenance and the Pusher's code version)."""

    SPEC_CLASS = PusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model, model_blessing, push_destination: pusher_pb2.PushDestination, export=None,
                 evaluation=None, infra_blessing=None, contract: Optional[PushContract] = None,
                 statistics=None, examples=None, transform_graph=None, schema=None):
        super().__init__(spec=PusherSpec(
            model=model, model_blessing=model_blessing, infra_blessing=infra_blessing, export=export,
            evaluation=evaluation, push_destination=push_destination, statistics=statistics,
            examples=examples, transform_graph=transform_graph, schema=schema,
            custom_config=(contract or PushContract()).to_json(),
            pushed_model=types.Channel(type=standard_artifacts.PushedModel)))
