"""The Trainer's small-data guards refuse a model that could not train, with the setting and the numbers."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from sluice.components.refusal import Refused
from sluice.components.trainer import guards


def _records(path, n):
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for i in range(n):
            example = tf.train.Example(features=tf.train.Features(feature={
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=[float(i)]))}))
            writer.write(example.SerializeToString())


def test_rows_are_counted_up_to_the_limit_across_files(tmp_path):
    _records(tmp_path / "a.gz", 30)
    _records(tmp_path / "b.gz", 25)
    pattern = [str(tmp_path / "*.gz")]
    assert guards.count_rows(pattern, 1000) == 55
    assert guards.count_rows(pattern, 40) == 40
    assert guards.count_rows([str(tmp_path / "none-*")], 10) == 0


def test_a_batch_larger_than_the_train_split_is_refused_with_the_numbers(tmp_path):
    _records(tmp_path / "train.gz", 90)
    guards.check_batch_fits([str(tmp_path / "*.gz")], 90)  # exactly one batch: trains
    with pytest.raises(Refused) as exc:
        guards.check_batch_fits([str(tmp_path / "*.gz")], 128)
    assert exc.value.where == "model.batch_size"
    assert "128 is larger than the train split (90 rows)" in exc.value.problem
    assert "at most 90" in exc.value.fix
    # Without input.cache, TFXIO repeats the files before batching: a batch spans passes and training runs.
    guards.check_batch_fits([str(tmp_path / "*.gz")], 128, cached=False)


def test_eval_steps_beyond_the_eval_split_become_one_pass_and_an_empty_split_is_refused(tmp_path):
    _records(tmp_path / "eval.gz", 84)
    pattern = [str(tmp_path / "*.gz")]
    assert guards.eval_steps_for(pattern, 16, 5) == 5      # 80 rows of 84: as configured
    assert guards.eval_steps_for(pattern, 16, 50) == 6     # 800 wanted: one pass, the last batch partial
    assert guards.eval_steps_for(pattern, 128, 1) == 1
    with pytest.raises(Refused) as exc:
        guards.eval_steps_for([str(tmp_path / "none-*")], 16, 5)
    assert exc.value.where == "data.splits" and "no rows" in exc.value.problem


def test_the_console_notes_a_small_eval_split_and_steps_beyond_it():
    from sluice.pipeline.runner import evidence_notes

    details = {"data_verdict": {"rows": {"train": 94, "eval": 84}}}
    notes = evidence_notes(details, batch_size=16, eval_steps=50)
    assert len(notes) == 2 and "84 rows (fewer than 200)" in notes[0]
    assert "800 rows, more than the eval split's 84" in notes[1] and "(6 steps)" in notes[1]
    assert evidence_notes({"data_verdict": {"rows": {"eval": 5000}}}, 16, 50) == []


def test_multiclass_labels_outside_the_classes_are_refused_with_the_count(tmp_path):
    def ids(path, values):
        with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
            for v in values:
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "y_xf": tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))})).SerializeToString())

    ids(tmp_path / "train.gz", [0, 1, 2] * 30)
    ids(tmp_path / "eval.gz", [0, 1, -1, 2, -1])
    guards.check_class_ids({"train": [str(tmp_path / "train.gz")]}, "y_xf", ["a", "b", "c"])
    with pytest.raises(Refused) as exc:
        guards.check_class_ids({"train": [str(tmp_path / "train.gz")], "eval": [str(tmp_path / "eval.gz")]},
                               "y_xf", ["a", "b", "c"])
    assert exc.value.where == "task.classes" and "2 of 5 eval rows" in exc.value.problem


def _model():
    inputs = tf.keras.Input(shape=(2,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(inputs))
    return model


@pytest.mark.parametrize("learning_rate, refused", [(0.0, True), (0.1, False)])
def test_a_model_whose_weights_did_not_move_is_refused(learning_rate, refused):
    model = _model()
    model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate), loss="mse")
    before = guards.snapshot(model)
    x, y = np.ones((32, 2), np.float32), np.full((32, 1), 3.0, np.float32)
    model.fit(x, y, epochs=1, verbose=0)
    if not refused:
        guards.check_weights_moved(before, model, learning_rate, 1)
        return
    with pytest.raises(Refused) as exc:
        guards.check_weights_moved(before, model, learning_rate, 1)
    assert "training changed no weight" in exc.value.problem and "learning rate 0" in exc.value.problem
