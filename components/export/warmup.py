"""TF Serving warmup requests: ``assets.extra/tf_serving_warmup_requests``, a TFRecord of ``PredictionLog``.

TF Serving replays these when it loads a version, before the version becomes available, so the first real
requests don't pay for graph initialization and table loading. Built from real eval rows, for both
signatures clients use (``serving_default``: serialized examples; ``serving_raw``: one tensor per column), at
batch sizes 1 and a larger one, at most ``MAX_RECORDS`` (TF Serving reads at most 1000).
"""

from __future__ import annotations

import posixpath
from typing import List, Mapping

import numpy as np

from sluice.components.export.rows import Rows

WARMUP_FILE = "tf_serving_warmup_requests"
MAX_RECORDS = 1000


def requests(model_name: str, rows: Rows, batch_sizes: List[int] = (1, 64), per_size: int = 4) -> List[bytes]:
    """Serialized ``PredictionLog`` records: ``per_size`` requests per signature and batch size."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    records: List[bytes] = []
    for size in batch_sizes:
        for i in range(per_size):
            start = (i * size) % max(len(rows) - size + 1, 1)  # different rows for each request
            end = start + size
            for signature in ("serving_default", "serving_raw"):
                request = predict_pb2.PredictRequest(
                    model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
                if signature == "serving_default":
                    request.inputs["examples"].CopyFrom(tf.make_tensor_proto(rows.serialized[start:end], dtype=tf.string))
                else:
                    for name, values in rows.inputs(start, end).items():
                        request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(values)))
                log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
                records.append(log.SerializeToString())
    return records[:MAX_RECORDS]


def write(path: str, records: List[bytes]) -> None:
    import tensorflow as tf

    tf.io.gfile.makedirs(posixpath.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)


def read(path: str) -> List[Mapping]:
    """The ``PredictRequest``s in a warmup file (tests, the infra check)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    out = []
    for record in tf.data.TFRecordDataset([path]):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        out.append(log.predict_log.request)
    return out
