"""Warmup requests: TF Serving's PredictionLog TFRecord, both signatures, batch 1 and 64, different rows."""

from __future__ import annotations

import numpy as np

from sluice.components.export import warmup
from sluice.components.export.rows import Rows


def test_requests_cover_both_signatures_and_batch_sizes_and_round_trip(tmp_path):
    import tensorflow as tf

    rows = Rows([b"ex%d" % i for i in range(100)],
                {"miles": np.arange(100, dtype=np.float32), "payment": np.array([b"Cash"] * 100, dtype=object)})
    path = tmp_path / "assets.extra" / warmup.WARMUP_FILE
    warmup.write(str(path), warmup.requests("taxi_fare", rows))
    requests = warmup.read(str(path))
    assert 0 < len(requests) <= warmup.MAX_RECORDS
    assert {r.model_spec.name for r in requests} == {"taxi_fare"}
    shapes = {(r.model_spec.signature_name, tf.make_ndarray(next(iter(r.inputs.values()))).shape[0]) for r in requests}
    assert shapes == {("serving_default", 1), ("serving_default", 64), ("serving_raw", 1), ("serving_raw", 64)}
    singles = [tf.make_ndarray(r.inputs["examples"])[0] for r in requests
               if r.model_spec.signature_name == "serving_default" and r.inputs["examples"].tensor_shape.dim[0].size == 1]
    assert len(set(singles)) == len(singles)  # each warmup request uses other rows
    raw = next(r for r in requests if r.model_spec.signature_name == "serving_raw")
    assert set(raw.inputs) == {"miles", "payment"}
