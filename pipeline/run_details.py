"""What the run page and ``sluice show`` say about a run beyond the summary, gathered from the run's
artifacts (found through MLMD): data fingerprint and DataGate verdict, training curves from the TensorBoard
logs, the exported signatures, the lineage. Every reader tolerates a missing artifact (a run that stopped
early has fewer), so a failed run still gets its page."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from sluice.pipeline.mlmd import RunRecord

LINEAGE = [
    ("data", "CsvExampleGen", "Examples"),
    ("schema", "ImportSchemaGen", "Schema"),
    ("data verdict", "DataGate", "sluice.DataVerdict"),
    ("transform", "Transform", "TransformGraph"),
    ("model", "Trainer", "Model"),
    ("evaluation", "Evaluator", "ModelEvaluation"),
    ("blessing", "Evaluator", "ModelBlessing"),
    ("push", "Pusher", "PushedModel"),
]


def lineage(record: RunRecord) -> List[Tuple[str, Optional[str]]]:
    """(step, artifact URI or None) from data to push."""
    return [(step, record.outputs.get(node, {}).get(kind)) for step, node, kind in LINEAGE]


def data_verdict(record: RunRecord, pipeline_root: Path) -> Optional[Dict[str, Any]]:
    """The DataGate's verdict.json — from its artifact, or (failed gate: no artifact) from ``_data_reports``."""
    from sluice.components import verdicts

    uri = record.outputs.get("DataGate", {}).get("sluice.DataVerdict")
    candidates = [uri] if uri else []
    gate = record.executions.get("DataGate")
    if gate is not None:
        candidates.append(str(pipeline_root / "_data_reports" / str(gate.execution_id)))
    for directory in candidates:
        verdict = verdicts.read(directory, "data")
        if verdict is not None:
            return verdict
    return None


def training_curves(model_run_uri: Optional[str]) -> Dict[str, Dict[str, List[Tuple[float, float]]]]:
    """``{metric: {"train": [(round, value)], "validation": [...]}}`` from the TensorBoard event files."""
    curves: Dict[str, Dict[str, List[Tuple[float, float]]]] = {}
    if not model_run_uri or not os.path.isdir(model_run_uri):
        return curves
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for split in ("train", "validation"):
        directory = os.path.join(model_run_uri, split)
        if not os.path.isdir(directory):
            continue
        acc = EventAccumulator(directory, size_guidance={"tensors": 0, "scalars": 0})
        acc.Reload()
        tags = acc.Tags()
        for tag in tags.get("tensors", []):
            if not tag.startswith("epoch_") or tag == "epoch_learning_rate":
                continue
            values = []
            for event in acc.Tensors(tag):
                import tensorflow as tf

                values.append((float(event.step + 1), float(tf.make_ndarray(event.tensor_proto))))
            curves.setdefault(tag[len("epoch_"):], {})[split] = values
        for tag in tags.get("scalars", []):
            if tag.startswith("epoch_"):
                curves.setdefault(tag[len("epoch_"):], {})[split] = [(float(e.step + 1), float(e.value))
                                                                    for e in acc.Scalars(tag)]
    return curves


def signatures(model_uri: Optional[str]) -> Dict[str, Dict[str, List[str]]]:
    """Signature name -> {"inputs": [...], "outputs": [...]} of the exported SavedModel."""
    if not model_uri:
        return {}
    from tfx.utils import path_utils

    path = Path(path_utils.serving_model_path(model_uri)) / "saved_model.pb"
    if not path.is_file():
        return {}
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    out: Dict[str, Dict[str, List[str]]] = {}
    for name, sig in proto.meta_graphs[0].signature_def.items():
        if name.startswith("__"):
            continue
        out[name] = {"inputs": sorted(sig.inputs), "outputs": sorted(sig.outputs)}
    return out


def gather(record: Optional[RunRecord], pipeline_root: Path, training: Dict[str, Any]) -> Dict[str, Any]:
    """Everything the run page shows besides the summary (JSON-serializable; goes into summary.json)."""
    if record is None:
        return {}
    model_run = record.outputs.get("Trainer", {}).get("ModelRun")
    history = {}
    if model_run and (Path(model_run) / "history.json").is_file():
        history = json.loads((Path(model_run) / "history.json").read_text())
    return {
        "data_fingerprint": record.data_fingerprint,
        "spans": record.spans,
        "data_verdict": data_verdict(record, pipeline_root),
        "training": {
            "strategy": training.get("strategy"),
            "loop": training.get("loop"),
            "curves": training_curves(model_run),
            "final": {k: v[-1] for k, v in history.items() if v and not k.startswith("_")},
            "replicas": (history.get("_replicas") or [None])[0],
            "resumed_from_round": (history.get("_start_round") or [None])[0],
            "log_dir": model_run,
        },
        "signatures": signatures(record.model_uri),
        "lineage": lineage(record),
    }
