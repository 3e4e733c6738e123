"""tf.data input for the Trainer, read from Transform's output through TFX's data accessor (TFXIO).

TFXIO (``TFExampleRecord``: Transform always writes tf.Examples) reads the gzipped TFRecords with parallel readers, batches *before* parsing (one vectorized
``parse_example`` per batch instead of one per record) and yields ``(features, label)`` with the shapes of
Transform's output schema. On top of it, from ``input:`` in the config:

- ``cache``: the parsed batches of the first pass are kept in memory; later epochs skip reading and parsing
  entirely and only reshuffle the batch order (examples were shuffled once on the first pass);
- ``shuffle_buffer``: examples in TFXIO's shuffle buffer;
- ``reader_threads``: parallel file reads and parses;
- ``deterministic``: same order on every run (no sloppy interleave, seeded shuffles, ordered tf.data).

Training batches are all full (the short last batch of a pass is dropped): the custom loop divides summed
per-example losses by the *global* batch size, and a short batch would weigh its examples less.
The same function serves the TFX Trainer, the local worker processes of distributed training (which have no
TFX ``DataAccessor``) and the benchmarks.

``prefetch(AUTOTUNE)`` overlaps input with the training step. ``benchmarks/input_pipeline.py`` measures what
each option contributes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

if TYPE_CHECKING:
    from sluice.components.contracts import TrainerContract

# Batches held for reshuffling the cached batch order between epochs.
_BATCH_SHUFFLE = 64


@dataclass(frozen=True)
class InputOptions:
    """What ``input_fn`` needs. The settings come from the contract (``model`` and ``input:``, whose defaults
    are ``settings.InputConfig``'s); ``shuffle`` and ``prefetch`` are per dataset (eval data is not shuffled,
    the benchmarks switch prefetch off)."""

    batch_size: int
    seed: int
    shuffle_buffer: int
    cache: bool
    reader_threads: int
    deterministic: bool
    shuffle: bool = True
    prefetch: bool = True

    @classmethod
    def from_contract(cls, contract: "TrainerContract", shuffle: bool = True) -> "InputOptions":
        options = contract.input
        return cls(
            batch_size=contract.model.batch_size,
            seed=contract.model.seed,
            shuffle_buffer=options.shuffle_buffer,
            cache=options.cache,
            reader_threads=options.reader_threads,
            deterministic=options.deterministic,
            shuffle=shuffle,
        )


def matching_files(patterns: List[str]) -> List[str]:
    """The files of the Trainer's file patterns (``fn_args.train_files``/``eval_files``), on any filesystem."""
    return [f for pattern in patterns for f in tf.io.gfile.glob(pattern)]


def label_values(patterns: List[str], label_key: str, dtype: tf.dtypes.DType, limit: int) -> Iterator[np.ndarray]:
    """Transform's label column (``dtype``: its type in Transform's output) from the first ``limit`` records
    of the files of ``patterns``, in sorted file order, as numpy batches; nothing without files."""
    files = sorted(matching_files(list(patterns)))
    if not files:
        return
    spec = {label_key: tf.io.VarLenFeature(dtype)}
    dataset = (tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit).batch(8192)
               .map(lambda records: tf.io.parse_example(records, spec)[label_key].values))
    yield from dataset.as_numpy_iterator()


def label_moments(patterns: List[str], label_key: str, limit: int = 100_000,
                  dtype: tf.dtypes.DType = tf.float32) -> Tuple[float, float]:
    """Mean and standard deviation of Transform's label (``dtype``: its type in Transform's output) over the
    first ``limit`` train records (files in sorted order: every worker and the Tuner get the same numbers);
    ``(0, 1)`` without rows or spread."""
    n = total = squares = 0.0
    for values in label_values(patterns, label_key, dtype, limit):
        values = values.astype(np.float64)
        values = values[np.isfinite(values)]
        n, total, squares = n + len(values), total + float(values.sum()), squares + float((values ** 2).sum())
    if not n:
        return 0.0, 1.0
    mean = total / n
    std = math.sqrt(max(0.0, squares / n - mean * mean))
    return mean, (std if std > 1e-12 * max(1.0, abs(mean)) else 1.0)


def regression_scale(contract: "TrainerContract", train_files: List[str],
                     tft_output: tft.TFTransformOutput) -> Optional[Tuple[float, float]]:
    """The ``(mean, std)`` sluice's regression head works in (``models.LabelScale``); None for
    classification and for your ``code.model_fn`` (your model decides its own output)."""
    from sluice.components.features import label_key
    from sluice.components.settings import REGRESSION

    if contract.task.type != REGRESSION or contract.code.model_fn:
        return None
    key = label_key(contract.task)
    return label_moments(train_files, key, dtype=tft_output.transformed_feature_spec()[key].dtype)


def reader_threads(wanted: int, files: int) -> int:
    """Parallel file reads TFXIO may ask for. TFXIO interleaves the files with tf.data's default
    ``cycle_length``, the machine's CPU count, and tf.data refuses more parallel calls than that cycle (as it
    refuses more than there are files): 3 readers over a 3-span window failed on 2 cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(wanted, files, cores))


def input_fn(
    file_pattern: List[str],
    tft_output: tft.TFTransformOutput,
    label_key: str,
    options: InputOptions,
) -> tf.data.Dataset:
    """An endless dataset of ``(transformed features, label)`` batches."""
    files = matching_files(file_pattern)
    tfxio_options = tfxio.TensorFlowDatasetOptions(
        batch_size=options.batch_size,
        label_key=label_key,
        shuffle=options.shuffle,
        shuffle_buffer_size=options.shuffle_buffer,
        shuffle_seed=options.seed,
        reader_num_threads=reader_threads(options.reader_threads, len(files)),
        parser_num_threads=options.reader_threads,
        sloppy_ordering=not options.deterministic,
        # With a cache, read once and repeat from memory; without, let TFXIO repeat the files.
        num_epochs=1 if options.cache else None,
        drop_final_batch=options.shuffle,
    )
    source = tfxio.TFExampleRecord(file_pattern=files, schema=tft_output.transformed_metadata.schema)
    dataset = source.TensorFlowDataset(tfxio_options)
    if options.cache:
        dataset = dataset.cache()
        if options.shuffle:
            dataset = dataset.shuffle(_BATCH_SHUFFLE, seed=options.seed, reshuffle_each_iteration=True)
        dataset = dataset.repeat()
    if options.deterministic:
        det = tf.data.Options()
        det.deterministic = True
        dataset = dataset.with_options(det)
    if options.prefetch:
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
    return dataset
