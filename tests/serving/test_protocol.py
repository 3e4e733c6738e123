"""The REST request/response rules as pure functions (TF Serving's formats and error wording)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sluice.serving import protocol
from sluice.serving.errors import ServingError


@pytest.fixture(scope="module")
def specs():
    import tensorflow as tf

    return {"miles": tf.TensorSpec([None], tf.float32), "hour": tf.TensorSpec([None], tf.int64),
            "payment": tf.TensorSpec([None], tf.string)}


def _inputs(body, specs, max_batch=protocol.MAX_BATCH):
    return protocol.to_inputs(protocol.parse_body(json.dumps(body).encode()), specs, max_batch)


def test_row_and_columnar_formats_give_the_same_columns(specs):
    fmt, rows = _inputs({"instances": [{"miles": 1.5, "hour": 3, "payment": "Cash"},
                                       {"miles": 2, "hour": 4, "payment": {"b64": "Q2FyZA=="}}]}, specs)
    fmt2, cols = _inputs({"inputs": {"miles": [1.5, 2], "hour": [3, 4], "payment": ["Cash", "Card"]}}, specs)
    assert (fmt, fmt2) == ("row", "columnar")
    for name in specs:
        assert rows[name].tolist() == cols[name].tolist()
    assert rows["payment"].tolist() == [b"Cash", b"Card"] and rows["miles"].dtype == np.float32


def test_one_input_signatures_take_bare_values():
    import tensorflow as tf

    specs = {"examples": tf.TensorSpec([None], tf.string)}
    _, rows = _inputs({"instances": [{"b64": "YWJj"}, "plain"]}, specs)
    assert rows["examples"].tolist() == [b"abc", b"plain"]
    _, cols = _inputs({"inputs": [{"b64": "YWJj"}]}, specs)
    assert cols["examples"].tolist() == [b"abc"]


def test_responses_follow_tf_serving():
    out = {"outputs": np.array([[1.0], [2.0]], np.float32)}
    assert protocol.to_response("row", out) == {"predictions": [[1.0], [2.0]]}
    assert protocol.to_response("columnar", out) == {"outputs": [[1.0], [2.0]]}
    two = {"a": np.array([1, 2]), "b": np.array([3, 4])}
    assert protocol.to_response("row", two) == {"predictions": [{"a": 1, "b": 3}, {"a": 2, "b": 4}]}


def test_string_outputs_are_text_as_tf_serving_writes_them_b64_only_for_bytes_names():
    answer = {"outputs": np.array([[0.1, 0.9]]), "classes": np.array([b"caf\xc3\xa9"], dtype=object)}
    assert protocol.to_response("row", answer) == {"predictions": [{"outputs": [0.1, 0.9], "classes": "café"}]}
    assert protocol.to_response("columnar", answer)["outputs"]["classes"] == ["café"]
    raw = {"image_bytes": np.array([b"\x00\xff"], dtype=object), "blob": np.array([b"\xff"], dtype=object)}
    assert protocol.to_response("columnar", raw)["outputs"] == {"image_bytes": [{"b64": "AP8="}], "blob": [{"b64": "/w=="}]}


@pytest.mark.parametrize("body,words", [
    (b"{not json", ["JSON Parse error"]),
    (b"[1, 2]", ["JSON object"]),
    (b'{"signature_name": "x"}', ["Missing 'inputs' or 'instances' key"]),
    (b'{"instances": [], "inputs": {}}', ["Not both 'instances' and 'inputs'"]),
    (b'{"instances": []}', ["empty list"]),
    (b'{"instances": [{"miles": 1.0, "hour": 1, "payment": "a", "tips": 1}]}', ["element: 0 key: tips", "does not have named input"]),
    (b'{"instances": [{"miles": 1.0, "payment": "a"}]}', ["missing named input: hour"]),
    (b'{"instances": [{"miles": "far", "hour": 1, "payment": "a"}]}', ["key: miles", "is not of expected type: float"]),
    (b'{"instances": [{"miles": 1.0, "hour": 1.5, "payment": "a"}]}', ["key: hour", "expected type: int"]),
    (b'{"instances": [{"miles": [1.0, 2.0], "hour": 1, "payment": "a"}]}', ["Expecting a scalar"]),
    (b'{"inputs": {"miles": [1.0, 2.0], "hour": [1], "payment": ["a", "b"]}}', ["ragged batch"]),
    (b'{"instances": [{"miles": 1.0, "hour": 1, "payment": {"b64": "%%%"}}]}', ["Unable to base64 decode"]),
    (b'{"instances": [{"miles": {"b64": "AA=="}, "hour": 1, "payment": "a"}]}', ["only valid for a string input"]),
])
def test_malformed_requests_are_invalid_argument_with_a_precise_message(specs, body, words):
    with pytest.raises(ServingError) as e:
        protocol.to_inputs(protocol.parse_body(body), specs)
    assert e.value.code == "INVALID_ARGUMENT" and e.value.http_status == 400
    for w in words:
        assert w in e.value.message


def test_batch_over_the_limit_is_refused(specs):
    row = {"miles": 1.0, "hour": 1, "payment": "a"}
    with pytest.raises(ServingError, match="Batch size 5 exceeds the maximum allowed \\(4\\)"):
        _inputs({"instances": [row] * 5}, specs, max_batch=4)
