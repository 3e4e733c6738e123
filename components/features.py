"""Names and sizes shared by Transform and the Trainer.

Both sides receive the same feature and task settings (``TransformContract`` / ``TrainerContract`` in
``components/contracts.py``); these pure functions are the one place that says what Transform calls a feature
and how many ids a categorical feature can take, so the model's inputs always match what Transform wrote.

They take the typed settings (``settings.Task``, ``settings.Feature``) by attribute and import nothing of
``settings`` at runtime (``settings`` imports this module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from sluice.components.settings import Feature, Task

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


def label_key(task: "Task") -> str:
    """The transformed label's name (what the Trainer fits and the Evaluator reads)."""
    return transformed_name(task.label)


def model_inputs(features: Sequence["Feature"]) -> List[Tuple[str, bool, "Feature"]]:
    """Every transformed tensor the model takes: ``(name, is_categorical, feature)``.

    One per feature, plus a numeric 0/1 input for each feature with ``missing_indicator``.
    """
    inputs = []
    for feature in features:
        inputs.append((transformed_name(feature.name), feature.kind in CATEGORICAL_KINDS, feature))
        if feature.missing_indicator:
            inputs.append((missing_indicator_name(feature.name), False, feature))
    return inputs


def cardinality(feature: "Feature", vocabulary_size: Optional[int] = None) -> int:
    """How many distinct ids Transform can emit for a categorical feature (its embedding table's size).

    ``vocabulary_size`` is the size of the vocabulary Transform actually computed (string features); the
    OOV buckets come after it.
    """
    kind = feature.kind
    if kind == "categorical_string":
        if feature.hash_buckets:
            return int(feature.hash_buckets)
        if vocabulary_size is None:
            raise ValueError(f"{feature.name}: vocabulary size is needed for a vocabulary feature")
        return int(vocabulary_size) + int(feature.oov_buckets)
    if kind == "categorical_int":
        return int(feature.num_buckets) + 1  # the last id is the out-of-range bucket
    if kind == "bucketized":
        return int(feature.buckets) + 1
    raise ValueError(f"{feature.name}: {kind} is not categorical")
