"""The Trainer's tf.data input over several files, as a window of spans gives it (one file per span)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest


@pytest.mark.parametrize("many", [False, True])
def test_more_files_than_cores_with_many_readers_reads_every_row(tmp_path, many):
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import schema_pb2

    from sluice.components.trainer.data import InputOptions, input_fn, reader_threads as threads

    cores = len(os.sched_getaffinity(0))
    reader_threads = cores + 1 if many else 1  # one reader per file, each more than tf.data's cycle length
    files = []
    for i in range(cores + 1):  # the case that failed: readers = files > tf.data's cycle length (the cores)
        path = str(tmp_path / f"part-{i}.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for j in range(5):
                example = tf.train.Example(features=tf.train.Features(feature={
                    "x": tf.train.Feature(float_list=tf.train.FloatList(value=[i * 10 + j])),
                    "y": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0]))}))
                writer.write(example.SerializeToString())
        files.append(path)
    schema = schema_pb2.Schema()
    for name in ("x", "y"):
        feature = schema.feature.add(name=name, type=schema_pb2.FLOAT)
        feature.shape.dim.add(size=1)
        feature.presence.min_fraction = 1.0
    options = InputOptions(batch_size=5, seed=1, shuffle_buffer=10, cache=True, reader_threads=reader_threads,
                           deterministic=True, shuffle=False)
    tft_output = SimpleNamespace(transformed_metadata=SimpleNamespace(schema=schema))
    batches = input_fn(files, tft_output, "y", options).take(len(files))
    seen = sorted(float(v) for features, _ in batches for v in features["x"].numpy().reshape(-1))
    assert seen == sorted(float(i * 10 + j) for i in range(len(files)) for j in range(5))
    assert threads(reader_threads, len(files)) <= cores
