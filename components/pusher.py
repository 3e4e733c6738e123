"""Pusher executor: TFX's Pusher, made atomic and idempotent for filesystem destinations.

TFX's stock executor copies file by file into ``<base>/<unix time>/`` (a reader can see a half-written
version if the copy dies), and pushes the same model again as a new version whenever the Evaluator re-blesses
it (e.g. the second run of an unchanged pipeline, which now has a baseline to compare with). Here:

- the version is written to ``<base>/.incoming-<version>/`` and renamed into place, so TF Serving's version
  watcher only ever sees complete versions;
- a model (identified by its MLMD artifact URI) already present in ``<base>`` is not pushed twice: the
  existing version is reported instead;
- each version carries ``sluice_push.json`` (model URI, time) so the serving tree explains itself.

Blessing semantics and the output artifact's properties are TFX's own.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

PUSH_RECORD = "sluice_push.json"


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


def push_atomically(model_dir: Path, base: Path, model_uri: str) -> str:
    """Copy ``model_dir`` to a new version under ``base`` via a temporary directory and a rename."""
    base.mkdir(parents=True, exist_ok=True)
    version = next_version(base)
    staging = base / f".incoming-{version}"
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(model_dir, staging)
    (staging / PUSH_RECORD).write_text(json.dumps({"model_uri": model_uri, "pushed_at": int(time.time())}))
    os.rename(staging, base / version)
    return version


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
        if destination.WhichOneof("destination") != "filesystem" or "://" in base_directory:
            # Remote filesystems (gs://…) have no atomic rename: TFX's own executor handles them.
            return super().Do(input_dict, output_dict, exec_properties)

        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = Path(self.GetModelPath(input_dict))
        model_uri = artifact_utils.get_single_uri(input_dict[standard_component_specs.MODEL_KEY])
        base = Path(base_directory)
        version = existing_version_of(base, model_uri)
        if version is not None:
            logging.info("Model %s is already served as version %s; not pushing it again.", model_uri, version)
        else:
            version = push_atomically(model_path, base, model_uri)
            logging.info("Model written to serving path %s.", base / version)
        self._MarkPushed(model_push, pushed_destination=str(base / version), pushed_version=version)
