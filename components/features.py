"""Names and sizes shared by Transform and the Trainer.

Both sides read the same ``custom_config`` payload (``PipelineConfig.component_payload``); these pure
functions are the one place that says what Transform calls a feature and how many ids a categorical feature
can take, so the model's inputs always match what Transform wrote.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

CATEGORICAL_KINDS = ("categorical_string", "categorical_int", "bucketized")


def transformed_name(name: str) -> str:
    """Transform's output name for a raw feature (kept distinct so raw and transformed never collide)."""
    return f"{name}_xf"


def missing_indicator_name(name: str) -> str:
    """Transform's 0/1 output saying an optional feature was empty (``missing_indicator: true``)."""
    return transformed_name(f"{name}_is_missing")


def vocabulary_name(name: str) -> str:
    """The vocabulary file Transform writes for a ``categorical_string`` feature."""
    return f"{name}_vocab"


def label_key(payload: Mapping[str, Any]) -> str:
    """The transformed label's name (what the Trainer fits and the Evaluator reads)."""
    return transformed_name(payload["task"]["label"])


def raw_label_columns(task: Mapping[str, Any]) -> List[str]:
    """The raw CSV columns a task's label is read or derived from (absent at serving time)."""
    derive = task.get("derive")
    if derive is None:
        return [task["label"]]
    return [derive["left"]] + ([derive["right"]] if isinstance(derive["right"], str) else [])


def model_inputs(payload: Mapping[str, Any]) -> List[Tuple[str, bool, Dict[str, Any]]]:
    """Every transformed tensor the model takes: ``(name, is_categorical, feature config)``.

    One per feature, plus a numeric 0/1 input for each feature with ``missing_indicator``.
    """
    inputs = []
    for feature in payload["features"]:
        inputs.append((transformed_name(feature["name"]), feature["kind"] in CATEGORICAL_KINDS, feature))
        if feature.get("missing_indicator"):
            inputs.append((missing_indicator_name(feature["name"]), False, feature))
    return inputs


def cardinality(feature: Mapping[str, Any], vocabulary_size: int | None = None) -> int:
    """How many distinct ids Transform can emit for a categorical feature (its embedding table's size).

    ``vocabulary_size`` is the size of the vocabulary Transform actually computed (string features); the
    OOV buckets come after it.
    """
    kind = feature["kind"]
    if kind == "categorical_string":
        if feature.get("hash_buckets"):
            return int(feature["hash_buckets"])
        if vocabulary_size is None:
            raise ValueError(f"{feature['name']}: vocabulary size is needed for a vocabulary feature")
        return int(vocabulary_size) + int(feature["oov_buckets"])
    if kind == "categorical_int":
        return int(feature["num_buckets"]) + 1  # the last id is the out-of-range bucket
    if kind == "bucketized":
        return int(feature["buckets"]) + 1
    raise ValueError(f"{feature['name']}: {kind} is not categorical")
