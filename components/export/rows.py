"""Raw rows for the export checks, read from an Examples split (CsvExampleGen's gzipped TFRecords).

The parity gate, the int8 calibration set and the warmup requests all need real rows in two forms: the
serialized ``tf.Example`` (what ``serving_default`` and TFMA take) and one dense column per raw feature (what
``serving_raw`` and the TFLite model take, every value present).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np


@dataclass
class Rows:
    serialized: List[bytes]
    columns: Dict[str, np.ndarray]
    """Raw feature column (the CSV's name) -> ``[rows]`` array (float32, int64 or bytes objects)."""

    def __len__(self) -> int:
        return len(self.serialized)

    def inputs(self, start: int = 0, stop: Optional[int] = None) -> Dict[str, np.ndarray]:
        """Rows ``start:stop`` keyed as ``serving_raw`` and the TFLite model take them (``features.input_keys``)."""
        from sluice.components.features import input_keys

        keys = input_keys(self.columns)
        return {keys[name]: values[start:stop] for name, values in self.columns.items()}


def split_files(examples_uri: str, split: str) -> List[str]:
    """The files of one split of an Examples artifact known by its URI (an MLMD record, a test): its split
    directory as TFX names it (``artifact_utils.get_split_uri``), not a hand-written ``Split-…``."""
    from tfx.dsl.io import fileio
    from tfx.types import artifact_utils, standard_artifacts

    artifact = standard_artifacts.Examples()
    artifact.uri = examples_uri
    artifact.split_names = artifact_utils.encode_split_names([split])
    files = sorted(fileio.glob(f"{artifact_utils.get_split_uri([artifact], split).rstrip('/')}/*"))
    if not files:
        raise FileNotFoundError(f"no {split} split under {examples_uri}")
    return files


def fill_value(feature: Any, dtype: Any) -> Any:
    """What a client sends for an empty optional column: the configured default, else 0 / ""."""
    default = feature.default
    if default is not None:
        return default.encode() if isinstance(default, str) else default
    return b"" if dtype == "string" else 0


def read_rows(examples_uri: str, split: str, features: Sequence[Any], spec: Mapping[str, Any],
              limit: int) -> Rows:
    """The first ``limit`` rows of ``split``; ``features`` are the contract's feature settings, ``spec`` the raw
    feature spec (column -> tf parsing spec)."""
    import tensorflow as tf

    serialized: List[bytes] = []
    for record in tf.data.TFRecordDataset(split_files(examples_uri, split), compression_type="GZIP").take(limit):
        serialized.append(record.numpy())
    columns: Dict[str, List[Any]] = {f.name: [] for f in features}
    for data in serialized:
        example = tf.train.Example.FromString(data)
        for feature in features:
            name = feature.name
            kind = spec[name].dtype
            value = example.features.feature[name]
            if kind == tf.string:
                values: List[Any] = list(value.bytes_list.value)
                fill = fill_value(feature, "string")
            elif kind == tf.int64:
                values, fill = list(value.int64_list.value), fill_value(feature, "int")
            else:
                values, fill = list(value.float_list.value), fill_value(feature, "float")
            columns[name].append(values[0] if values else fill)
    arrays = {}
    for feature in features:
        dtype = spec[feature.name].dtype
        arrays[feature.name] = np.array(
            columns[feature.name], dtype=object if dtype == tf.string else dtype.as_numpy_dtype
        )
    return Rows(serialized, arrays)


def rows_with_empty_cells(rows: Rows, features: Sequence[Any]) -> int:
    """How many of ``rows`` have an empty cell in some feature (their dense form carries a fill value)."""
    import tensorflow as tf

    count = 0
    for data in rows.serialized:
        present = tf.train.Example.FromString(data).features.feature
        for feature in features:
            value = present.get(feature.name)
            kind = value.WhichOneof("kind") if value is not None else None
            if kind is None or not len(getattr(value, kind).value):
                count += 1
                break
    return count
