"""Small-data guards of the Trainer: a model that could not train is refused, never exported as if it had.

Two ways a run used to "train" without learning anything, both silent (a Keras warning in the log at most),
and one way validation read rows twice:
- ``model.batch_size`` larger than the train split: the cached input drops its only, partial batch, so no
  training step runs and every validation round is the same;
- no weight moved (zero steps, a zero learning rate, every gradient clipped or masked away).
- ``model.eval_steps`` batches of ``batch_size`` rows beyond the eval split: the endless eval input wraps
  around and each validation round weighs some rows twice. The Trainer validates on one pass instead
  (``eval_steps_for``; the run's console notes it, ``runner.evidence_notes``).
The first two stop the Trainer with a ``Refused`` naming the setting, the numbers and the fix; nothing
downstream (Evaluator, blessing, push) runs.
"""

from __future__ import annotations

import logging
import math
from typing import List, Sequence

import numpy as np
import tensorflow as tf

from sluice.components.refusal import Refused
from sluice.components.trainer.data import label_values, matching_files


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


def eval_steps_for(eval_patterns: Sequence[str], batch_size: int, eval_steps: int) -> int:
    """The validation steps to run: ``eval_steps``, or one pass over a smaller eval split (its last batch
    partial); an empty eval split is refused."""
    wanted = batch_size * eval_steps
    rows = count_rows(eval_patterns, wanted)
    if rows == 0:
        raise Refused("data.splits", "the eval split has no rows: there is nothing to validate or evaluate on",
                      "give the eval split a larger share in data.splits, or the pipeline more rows")
    if rows >= wanted:
        return eval_steps
    steps = max(1, math.ceil(rows / batch_size))
    logging.warning("model.eval_steps %d x batch %d = %d rows > the eval split's %d: validating on %d step(s), "
                    "one pass", eval_steps, batch_size, wanted, rows, steps)
    return steps


def check_class_ids(patterns_by_split: dict, label_key: str, classes: Sequence[str], limit: int = 2_000_000) -> None:
    """Refuse multi-class data whose Transform label is -1 (a value outside ``task.classes``, or no label) in
    any of the first ``limit`` rows of each split: the DataGate sees TFDV's statistics, which list every
    string value but only min/max of numbers (a stray 2 between classes 1 and 3), and a -1 would stop the
    loss with a cryptic error or, under a focal loss, train on log(0)."""
    for split, patterns in patterns_by_split.items():
        bad = rows = 0
        for ids in label_values(patterns, label_key, tf.int64, limit):
            rows += len(ids)
            bad += int(np.sum((ids < 0) | (ids >= len(classes))))
        if bad:
            raise Refused("task.classes", f"{bad} of {rows} {split} rows have a label that is none of the classes "
                          f"({', '.join(classes[:10])}), or no label",
                          "fix or drop those rows, or add their value to task.classes (and retrain)")


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
