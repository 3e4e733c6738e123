"""Pusher executor: TFX's Pusher, made atomic and idempotent for filesystem destinations.

TFX's stock executor copies file by file into ``<base>/<unix time>/`` (a reader can see a half-written
version if the copy dies), and pushes the same model again as a new version whenever the Evaluator re-blesses
it (e.g. the second run of an unchanged pipeline, which now has a baseline to compare with). Here:

- the version is written to ``<base>/.incoming-<version>/`` and renamed into place, so TF Serving's version
  watcher only ever sees complete versions;
- a model (identified by its MLMD artifact URI) already present in ``<base>`` is not pushed twice: the
  existing version is reported instead;
- each version carries ``sluice_push.json`` (model URI, time, lineage artifact ids, data fingerprint, config
  hash, eval metrics, TFLite parity, package versions) so the serving tree explains itself;
- with a ``ModelExport`` input, the push also needs its parity verdict to have passed, the SavedModel gets
  ``assets.extra/tf_serving_warmup_requests``, and the TFLite variants go to ``<base>_tflite/<version>/``
  (``model.tflite`` = float32, ``model_<variant>.tflite``, ``io_spec.json``, ``parity.json``), same version.

Blessing semantics (model and infra blessing) and the output artifact's properties are TFX's own.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import proto_utils

from sluice.components.export.component import ExportedModel

PUSH_RECORD = "sluice_push.json"
WARMUP_IN_MODEL = os.path.join("assets.extra", "tf_serving_warmup_requests")
PACKAGES = ("tfx", "tensorflow", "keras", "tensorflow-transform", "tensorflow-model-analysis", "sluice")


def existing_version_of(base: Path, model_uri: str) -> Optional[str]:
    """The version directory under ``base`` that already holds the model ``model_uri``, if any."""
    if not base.is_dir():
        return None
    for version in sorted((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        record = version / PUSH_RECORD
        if record.is_file():
            try:
                if json.loads(record.read_text()).get("model_uri") == model_uri:
                    return version.name
            except ValueError:
                continue
    return None


def next_version(base: Path, now: Optional[int] = None) -> str:
    """A Unix-time version, strictly greater than every version already in ``base``."""
    version = int(time.time()) if now is None else now
    if base.is_dir():
        existing = [int(p.name) for p in base.iterdir() if p.name.isdigit()]
        if existing:
            version = max(version, max(existing) + 1)
    return str(version)


def write_version(base: Path, version: str, fill: Callable[[Path], None]) -> Path:
    """Create ``base/version`` atomically: ``fill`` writes into ``base/.incoming-<version>``, then a rename."""
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".incoming-{version}"
    if staging.exists():
        shutil.rmtree(staging)
    fill(staging)
    os.rename(staging, base / version)
    return base / version


def push_atomically(model_dir: Path, base: Path, model_uri: str, extras: Optional[Mapping[str, str]] = None,
                    record: Optional[Mapping[str, Any]] = None, version: Optional[str] = None) -> str:
    """Copy ``model_dir`` (plus ``extras``: relative path -> source file) to a new version under ``base``."""
    version = version or next_version(base)

    def fill(staging: Path) -> None:
        shutil.copytree(model_dir, staging)
        _copy_files(extras or {}, staging)
        body = {"model_uri": model_uri, "pushed_at": int(time.time()), "version": version, **(record or {})}
        (staging / PUSH_RECORD).write_text(json.dumps(body, indent=1, sort_keys=True))

    write_version(base, version, fill)
    return version


def tflite_files(export_uri: str) -> Dict[str, str]:
    """The files of a passed ModelExport that the TFLite tree gets: relative name -> source path."""
    from sluice.components.export.component import PARITY_FILE, tflite_dir
    from sluice.components.export.tflite import IO_SPEC_FILE, MODEL_FILE

    verdict = json.loads(Path(export_uri, PARITY_FILE).read_text())
    files: Dict[str, str] = {}
    for result in verdict["variants"]:
        variant = result["variant"]
        name = MODEL_FILE if variant == "float32" else f"model_{variant}.tflite"
        files[name] = os.path.join(tflite_dir(export_uri, variant), MODEL_FILE)
        if variant == "float32":
            files[IO_SPEC_FILE] = os.path.join(tflite_dir(export_uri, variant), IO_SPEC_FILE)
    if files:
        files[PARITY_FILE] = os.path.join(export_uri, PARITY_FILE)
    return files


def package_versions() -> Dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


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
        if destination.WhichOneof("destination") != "filesystem" or "://" in base_directory:
            # Remote filesystems (gs://…) have no atomic rename: TFX's own executor handles them.
            return super().Do(input_dict, output_dict, exec_properties)

        self._log_startup(input_dict, output_dict, exec_properties)
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = Path(self.GetModelPath(input_dict))
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        base = Path(base_directory)
        version = existing_version_of(base, model.uri)
        if version is not None:
            logging.info("Model %s is already served as version %s; not pushing it again.", model.uri, version)
        else:
            version = next_version(base)
            extras: Dict[str, str] = {}
            if export is not None:
                extras[WARMUP_IN_MODEL] = os.path.join(export.uri, "warmup", "tf_serving_warmup_requests")
                files = tflite_files(export.uri)
                if files:  # the TFLite tree first: a SavedModel version never appears without its TFLite twin
                    write_version(Path(f"{base}_tflite"), version, lambda staging: _copy_files(files, staging))
            record = self._record(input_dict, exec_properties, export)
            push_atomically(model_path, base, model.uri, extras, record, version)
            logging.info("Model written to serving path %s.", base / version)
        self._MarkPushed(model_push, pushed_destination=str(base / version), pushed_version=version)

    def _record(self, input_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any],
                export: Optional[types.Artifact]) -> Dict[str, Any]:
        """What ``sluice_push.json`` says besides the model URI: where the model came from and how it did."""
        lineage = {key: artifacts[0].id for key, artifacts in input_dict.items() if artifacts}
        record: Dict[str, Any] = {"lineage_artifact_ids": lineage, "packages": package_versions()}
        custom = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null") or {}
        record.update(custom)
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


def _copy_files(files: Mapping[str, str], target: Path) -> None:
    """Copy ``files`` (relative name -> source path) into the directory ``target``."""
    for relative, source in files.items():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target / relative)


class PusherSpec(standard_component_specs.PusherSpec):
    """TFX's Pusher spec plus the sluice gates' artifacts: the export (parity verdict, warmup, TFLite files)
    and the evaluation (metrics for the push record)."""

    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        "export": ChannelParameter(type=ExportedModel, optional=True),
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
    }


class Pusher(base_component.BaseComponent):
    """TFX's Pusher with this executor and two more inputs (``export``, ``evaluation``)."""

    SPEC_CLASS = PusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model, model_blessing, push_destination: pusher_pb2.PushDestination, export=None,
                 evaluation=None, infra_blessing=None, custom_config: Optional[Dict[str, Any]] = None):
        super().__init__(spec=PusherSpec(
            model=model, model_blessing=model_blessing, infra_blessing=infra_blessing, export=export,
            evaluation=evaluation, push_destination=push_destination,
            custom_config=json.dumps(custom_config or {}, sort_keys=True),
            pushed_model=types.Channel(type=standard_artifacts.PushedModel)))
