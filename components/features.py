"""Names and sizes shared by Transform and the Trainer.

Both sides receive the same feature and task settings (``TransformContract`` / ``TrainerContract`` in
``components/contracts.py``); these pure functions are the one place that says what Transform calls a feature
and how many ids a categorical feature can take, so the model's inputs always match what Transform wrote.

They take the typed settings (``settings.Task``, ``settings.Feature``) by attribute and import nothing of
``settings`` at runtime (``settings`` imports this module).

Two kinds of name exist for a CSV column, because TensorFlow and Keras restrict names and a CSV header does
not (``od280/od315 of wine``, ``prix (€)``, ``1st``):

- ``internal_name``: what sluice builds identifiers from (Transform's outputs, vocabulary files, Keras
  inputs, TF name scopes). A header that is already a plain identifier is kept as it is; any other header
  becomes a readable ASCII slug plus a short hash of the header, so two headers that clean to the same slug
  stay apart and the mapping needs no state: every component, worker and client derives the same name.
- the input key (``input_keys``): the name a request uses for the column (``serving_raw``'s inputs, the
  TFLite model's inputs). A signature's inputs must be TensorFlow node names
  (``[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*``) that stay distinct after ``tf.function`` maps every other character
  than a letter or digit to ``_``. So the CSV's own name is kept whenever TensorFlow allows it
  (``od280/od315``, ``x.y``, ``1st``, ``class``); other headers (spaces, unicode, other punctuation, or
  ``a.b`` next to ``a-b``) use their internal name. ``serving_default`` (serialized ``tf.Example``), the
  reports and ``sluice predict`` always take the CSV's names.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from sluice.components.settings import Feature, Task

CATEGORICAL_KINDS = ("categorical_string", "categorical_int", "bucketized")


_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")  # long names would make long file names
_TF_NODE_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*\Z")  # tensorflow/python/framework/ops.py
_SLUG_LENGTH = 40


def internal_name(column: str) -> str:
    """A name safe for identifiers derived from the CSV column ``column`` (see the module docstring)."""
    if _IDENTIFIER.match(column):
        return column
    ascii_text = unicodedata.normalize("NFKD", column).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9]+", "_", ascii_text).strip("_")[:_SLUG_LENGTH].rstrip("_")
    digest = hashlib.sha1(column.encode("utf-8")).hexdigest()[:6]
    if not slug[:1].isalpha():
        slug = f"f_{slug}" if slug else "f"
    return f"{slug}_{digest}"


def _signature_name(name: str) -> bool:
    """TensorFlow takes ``name`` as a signature input (a node name; ``/`` only between two name parts)."""
    return bool(_TF_NODE_NAME.match(name)) and not name.endswith("/") and "//" not in name


def _tf_argument_name(name: str) -> str:
    """``tf.function``'s own cleaning of an input name (``function_type.sanitize_arg_name``)."""
    swapped = "".join(c if c.isalnum() else "_" for c in name)
    return swapped if swapped[:1].isalpha() else f"arg_{swapped}"


def input_keys(columns: Iterable[str]) -> Dict[str, str]:
    """CSV column -> the input name requests use for it (see the module docstring), for a signature taking
    ``columns``. Plain identifiers and headers TensorFlow cannot name get the internal name; any other
    header is kept unless ``tf.function`` would clean it into another input's name."""
    columns = list(columns)
    keys = {c: internal_name(c) for c in columns if _IDENTIFIER.match(c) or not _signature_name(c)}
    rest = [c for c in columns if c not in keys]
    taken = Counter([_tf_argument_name(k) for k in keys.values()] + [_tf_argument_name(c) for c in rest])
    for column in rest:
        keys[column] = column if taken[_tf_argument_name(column)] == 1 else internal_name(column)
    return {c: keys[c] for c in columns}


def request_key(column: str, inputs: Iterable[str]) -> str:
    """The input of a served signature (``inputs``: its input names) that carries the CSV column ``column``."""
    return column if column in set(inputs) else internal_name(column)


def transformed_name(name: str) -> str:
    """Transform's output name for a raw feature (kept distinct so raw and transformed never collide)."""
    return f"{internal_name(name)}_xf"


def missing_indicator_name(name: str) -> str:
    """Transform's 0/1 output saying an optional feature was empty (``missing_indicator: true``)."""
    return f"{internal_name(name)}_is_missing_xf"


def vocabulary_name(name: str) -> str:
    """The vocabulary file Transform writes for a ``categorical_string`` feature."""
    return f"{internal_name(name)}_vocab"


def name_clashes(features: Sequence["Feature"], label: Optional[str] = None) -> List[str]:
    """Pairs of columns whose derived names coincide (``"a" and "b" both become "x_xf"``); empty when none.

    With ``internal_name``'s hash this needs a column literally named like another's derived output
    (``x_is_missing`` next to ``x`` with a missing indicator); the config check refuses it up front.
    """
    owners: Dict[str, str] = {}
    clashes = []
    derived = [(name, f.name) for f in features for name in _derived_names(f)]
    if label is not None:
        derived.append((transformed_name(label), label))
    for name, column in derived:
        if name in owners and owners[name] != column:
            clashes.append(f"{owners[name]!r} and {column!r} both become {name!r}")
        owners.setdefault(name, column)
    keys = input_keys(f.name for f in features)
    for column, key in keys.items():
        if key != column and key in keys:
            clashes.append(f"{column!r} is sent as {key!r}, which is also a column")
    # Vocabulary files share one directory; on a case-insensitive filesystem (a Mac) Trip_vocab is trip_vocab.
    files: Dict[str, str] = {}
    for f in features:
        if f.kind == "categorical_string":
            other = files.setdefault(vocabulary_name(f.name).lower(), f.name)
            if other != f.name:
                clashes.append(f"{other!r} and {f.name!r} differ only in case (their vocabulary files would too)")
    return clashes


def _derived_names(feature: "Feature") -> List[str]:
    names = [transformed_name(feature.name)]
    if feature.missing_indicator:
        names.append(missing_indicator_name(feature.name))
    return names


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
