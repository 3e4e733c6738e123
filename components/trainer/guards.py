"""Small-data guards of the Trainer: a model that could not train is refused, never exported as if it had.

Two ways a run used to "train" without learning anything, both silent (a Keras warning in the log at most):
- ``model.batch_size`` larger than the train split: the cached input drops its only, partial batch, so no
  training step runs and every validation round is the same;
- no weight moved (zero steps, a zero learning rate, every gradient clipped or masked away).
Either stops the Trainer with a ``Refused`` naming the setting, the numbers and the fix; nothing downstream
(Evaluator, blessing, push) runs.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np
import tensorflow as tf

from sluice.components.refusal import Refused
from sluice.components.trainer.data import matching_files


def count_rows(patterns: Sequence[str], limit: int) -> int:
    """Records in Transform's gzipped TFRecord files (``patterns``: the Trainer's file patterns), counting at
    most ``limit`` (milliseconds at batch size)."""
    files = matching_files(list(patterns))
    if not files:
        return 0
    dataset = tf.data.TFRecordDataset(list(files), compression_type="GZIP").take(limit)
    return int(dataset.reduce(np.int64(0), lambda count, _: count + 1).numpy())


def check_batch_fits(train_patterns: Sequence[str], batch_size: int, cached: bool = True) -> None:
    """Refuse a batch size larger than the train split: no full batch, so no training step would run.

    Only the cached input (``input.cache``, the default) batches each pass over the rows on its own; without a
    cache TFXIO repeats the files before batching, so a batch may span passes and training does run."""
    if not cached:
        return
    rows = count_rows(train_patterns, batch_size)
    if rows < batch_size:
        suggestion = max(1, rows // 4)
        raise Refused("model.batch_size",
                      f"{batch_size} is larger than the train split ({rows} rows): not one full batch, so no "
                      "training step could run",
                      f"set model.batch_size to at most {rows} (e.g. {suggestion}), or give the pipeline more rows")


def snapshot(model: tf.keras.Model) -> List[np.ndarray]:
    return [np.array(v.numpy(), copy=True) for v in model.trainable_variables]


def check_weights_moved(before: List[np.ndarray], model: tf.keras.Model, learning_rate: float,
                        steps: int) -> None:
    """Refuse a model whose trainable weights are exactly what they were before training."""
    after = snapshot(model)
    if len(after) != len(before) or any(not np.array_equal(a, b) for a, b in zip(after, before)):
        return
    raise Refused("model",
                  f"training changed no weight ({steps} steps planned at learning rate {learning_rate:g}): the "
                  "model would answer as initialized",
                  "check model.learning_rate, model.train_steps and the gradient clipping settings; the Trainer "
                  "log shows each round's loss")
