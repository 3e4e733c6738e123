"""The local server under hostile traffic (issue 17): a corpus of malformed, oversized and protocol-abusing
requests (REST and gRPC) sent over reused keep-alive connections while valid clients keep predicting.
0 valid requests may fail, and every invalid one gets its 4xx / gRPC code with a readable JSON message.

The model is a small SavedModel with the shapes of a sluice export (``serving_raw``: float32, int64 and
string columns; ``serving_default``: serialized tf.Examples), so this needs no pipeline run.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest

from sluice.serving.rest import Limits
from sluice.serving.server import LocalServer

ROW = {"x": 1.5, "n": 3, "s": "Cash"}
MAX_BODY = 8_000_000  # above gRPC's default 4 MB receive limit, so a valid wide batch can exceed that


def _model(path: Path) -> None:
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x"),
                                      tf.TensorSpec([None], tf.int64, name="n"),
                                      tf.TensorSpec([None], tf.string, name="s")])
        def raw(self, x, n, s):
            return {"y": x * 2.0 + tf.cast(n, tf.float32) + tf.cast(tf.strings.length(s), tf.float32)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def examples(self, examples):
            parsed = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([], tf.float32)})
            return {"y": parsed["x"] * 2.0}

    model = Model()
    tf.saved_model.save(model, str(path), signatures={"serving_raw": model.raw, "serving_default": model.examples})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    _model(root / "m" / "1")
    srv = LocalServer(root, rest_port=0, grpc_port=0, poll_seconds=0.2,
                      limits=Limits(max_body_bytes=MAX_BODY, header_timeout_s=5, body_timeout_s=5)).start()
    yield srv
    srv.stop()


# ------------------------------------------------------------------------------------------- raw HTTP
def _request(method: str, path: str, body: bytes = b"", headers: Optional[Dict[str, str]] = None) -> bytes:
    head = {"Host": "x", "Content-Length": str(len(body)), **(headers or {})}
    head = {k: v for k, v in head.items() if v is not None}
    return (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n").encode() + body


def _chunked(body: bytes, size: int = 7) -> Dict[str, object]:
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size))
    return {"body": chunks + b"0\r\n\r\n", "headers": {"Transfer-Encoding": "chunked", "Content-Length": None}}


class Conn:
    """One keep-alive connection read response by response (Content-Length framed, as the server answers)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: Optional[socket.socket] = None
        self.buf = b""

    def _connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        self.buf = b""

    def send(self, raw: bytes) -> Tuple[int, Dict[str, str], bytes]:
        if self.sock is None:
            self._connect()
        self.sock.sendall(raw)
        return self.read(head=raw.startswith(b"HEAD "))

    def read(self, head: bool = False) -> Tuple[int, Dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed before a response")
            self.buf += data
        header_bytes, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = header_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = 0 if head else int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed inside a response body")
            self.buf += data
        body, self.buf = self.buf[:length], self.buf[length:]
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


PREDICT = "/v1/models/m:predict"


def _raw_body(**override) -> bytes:
    return json.dumps({"signature_name": "serving_raw", "instances": [{**ROW, **override}]}).encode()


def _expected_y(row=ROW) -> float:
    return row["x"] * 2 + row["n"] + len(row["s"])


# (name, request bytes, expected status, a word the error must contain)
def corpus() -> List[Tuple[str, bytes, int, str]]:
    good = _raw_body()
    cases = [
        ("bad version with a body", _request("POST", "/v1/models/m/versions/abc:predict", good), 400, "version"),
        ("unicode digit version", _request("POST", "/v1/models/m/versions/²:predict", good), 400, "version"),
        ("GET with a body", _request("GET", "/v1/models/m", good), 200, ""),
        ("chunked invalid JSON", _request("POST", PREDICT, **_chunked(b'{"instances": [')), 400, "JSON"),
        ("Content-Length abc", _request("POST", PREDICT, headers={"Content-Length": "abc"}), 400, "Content-Length"),
        ("Content-Length 10**12", _request("POST", PREDICT, headers={"Content-Length": str(10**12)}), 413, "limit"),
        ("Content-Length unequal pair", _request("POST", PREDICT, good, headers={"Content-Length": f"{len(good)}, 3"}),
         400, "Content-Length"),
        ("HEAD", _request("HEAD", "/v1/models/m"), 405, ""),
        ("OPTIONS", _request("OPTIONS", PREDICT), 405, "not supported"),
        ("PUT with a body", _request("PUT", PREDICT, good), 405, "not supported"),
        ("DELETE", _request("DELETE", "/v1/models/m"), 405, "not supported"),
        ("PATCH chunked", _request("PATCH", PREDICT, **_chunked(good)), 405, "not supported"),
        ("int64 overflow", _request("POST", PREDICT, _raw_body(n=10**20)), 400, "out of range"),
        ("float from a 400-digit integer", _request("POST", PREDICT, _raw_body(x=10**400)), 400, "out of range"),
        ("float32 overflow", _request("POST", PREDICT, _raw_body(x=1e39)), 400, "out of range"),
        ("lone surrogate", _request("POST", PREDICT, _raw_body(s="\ud800")), 400, "surrogate"),
        ("10,000 nested lists", _request("POST", PREDICT, b'{"instances": ' + b"[" * 10000 + b"]" * 10000 + b"}"),
         400, "nested"),
        ("not JSON", _request("POST", PREDICT, b"instances=1"), 400, "JSON"),
        ("JSON array", _request("POST", PREDICT, b"[1, 2]"), 400, "object"),
        ("instances not a list", _request("POST", PREDICT, b'{"instances": 3}'), 400, "list"),
        ("empty instances", _request("POST", PREDICT, b'{"instances": []}'), 400, "empty"),
        ("unknown input", _request("POST", PREDICT, _raw_body(z=1)), 400, "does not have named input"),
        ("missing input", _request("POST", PREDICT, json.dumps({"signature_name": "serving_raw", "instances": [{"x": 1.0, "n": 1}]}).encode()),
         400, "missing"),
        ("string for a float", _request("POST", PREDICT, _raw_body(x="1.5")), 400, "expected type"),
        ("bool for an int", _request("POST", PREDICT, _raw_body(n=True)), 400, "expected type"),
        ("float for an int", _request("POST", PREDICT, _raw_body(n=2.5)), 400, "expected type"),
        ("b64 for a number", _request("POST", PREDICT, _raw_body(x={"b64": "AAAA"})), 400, "b64"),
        ("bad base64", _request("POST", PREDICT, _raw_body(s={"b64": "!!!"})), 400, "base64"),
        ("list for a scalar", _request("POST", PREDICT, _raw_body(x=[1.0, 2.0])), 400, "scalar"),
        ("batch over the maximum", _request("POST", PREDICT, json.dumps(
            {"signature_name": "serving_raw", "instances": [ROW] * 1025}).encode()), 400, "Batch size"),
        ("ragged columns", _request("POST", PREDICT, json.dumps(
            {"signature_name": "serving_raw", "inputs": {"x": [1.0, 2.0], "n": [1], "s": ["a"]}}).encode()), 400, "batch size"),
        ("instances and inputs", _request("POST", PREDICT, b'{"instances": [1], "inputs": [1]}'), 400, "both"),
        ("signature_name not a string", _request("POST", PREDICT, b'{"signature_name": 3, "instances": [1]}'), 400,
         "signature_name"),
        ("unknown signature", _request("POST", PREDICT, b'{"signature_name": "nope", "instances": [1]}'), 400,
         "nope"),
        ("unknown model", _request("POST", "/v1/models/nope:predict", good), 404, "nope"),
        ("unknown version", _request("POST", "/v1/models/m/versions/7:predict", good), 404, "7"),
        ("unknown label", _request("GET", "/v1/models/m/labels/canary"), 400, "canary"),
        ("classify", _request("POST", "/v1/models/m:classify", good), 501, "classify"),
        ("GET predict", _request("GET", PREDICT), 400, "POST"),
        ("no model in the path", _request("GET", "/v1/models/"), 404, "Malformed"),
        ("an HTTP request inside a body", _request("POST", "/v1/models/m/versions/x:predict",
                                                    _request("GET", "/v1/models/m")), 400, "version"),
        ("invalid UTF-8 body", _request("POST", PREDICT, b'{"instances": ["\xff\xfe"]}'), 400, "JSON"),
        ("tf.Example garbage", _request("POST", PREDICT, b'{"instances": [{"b64": "AAAA"}]}'), 400, "parse"),
        ("body over the limit", _request("POST", PREDICT, b" " * (MAX_BODY + 1)), 413, "limit"),
        ("chunked body over the limit", _request("POST", PREDICT, **_chunked(b" " * (MAX_BODY + 12345), size=65536)),
         413, "limit"),
        ("one chunk larger than the limit", _request("POST", PREDICT, **_chunked(b" " * (MAX_BODY + 7), size=MAX_BODY + 7)),
         413, "limit"),
    ]
    return cases


def test_every_hostile_request_gets_its_4xx_with_a_readable_json_error(server):
    conn = Conn(server.rest_port)
    for name, raw, status, word in corpus():
        got, headers, body = conn.send(raw)
        assert got == status, (name, got, body[:300])
        if raw.startswith(b"HEAD"):
            continue
        if status >= 400:
            error = json.loads(body)["error"]
            assert word.lower() in error.lower() and "Graph execution error" not in error, (name, error)
        # the connection either goes on with a valid request or was closed by the server (never desynced)
        got, _, body = conn.send(_request("POST", PREDICT, _raw_body()))
        assert got == 200 and json.loads(body)["predictions"] == [_expected_y()], (name, body[:300])
    conn.close()


def test_405_names_the_allowed_methods_and_nothing_is_cached(server):
    conn = Conn(server.rest_port)
    status, headers, _ = conn.send(_request("PUT", PREDICT, _raw_body()))
    assert status == 405 and headers["allow"] == "GET, POST"
    status, headers, _ = conn.send(_request("GET", "/v1/models/m", headers={"If-None-Match": "*"}))
    assert status == 200 and "etag" not in headers and "server" not in headers  # TF Serving sends no 304


def test_overload_is_an_immediate_503_not_a_queue():
    from sluice.serving.rest import Api, RestServer

    srv = RestServer(Api(get=lambda path: {}, post=lambda path, body: {}), "127.0.0.1", 0,
                     Limits(max_pending=0)).start()
    try:
        status, _, body = Conn(srv.port).send(_request("GET", "/v1/models/m"))
        assert status == 503 and "overloaded" in json.loads(body)["error"]
    finally:
        srv.stop()
    tiny = RestServer(Api(get=lambda path: {}, post=lambda path, body: {"ok": True}), "127.0.0.1", 0,
                      Limits(max_body_bytes=1000, max_buffered_bytes=1500)).start()
    try:  # bodies held at once are bounded across connections: the second large body waits for nothing
        first, second = Conn(tiny.port), Conn(tiny.port)
        first.sock = socket.create_connection(("127.0.0.1", tiny.port))
        first.sock.sendall(_request("POST", PREDICT, b"x" * 900)[:-100])  # 800 of 900 bytes sent, held
        time.sleep(0.3)
        status, _, body = second.send(_request("POST", PREDICT, b"y" * 900))
        assert status == 503 and "in flight" in json.loads(body)["error"]
        first.sock.sendall(b"x" * 100)
        assert first.read()[0] == 200
    finally:
        tiny.stop()


def test_chunked_valid_body_is_read_like_tf_serving(server):
    conn = Conn(server.rest_port)
    req = _chunked(_raw_body())
    for _ in range(3):
        status, _, body = conn.send(_request("POST", PREDICT, **req))
        assert status == 200 and json.loads(body)["predictions"] == [_expected_y()]


def test_idle_and_slow_connections_are_closed_and_cost_no_thread(server):
    before = threading.active_count()
    socks = [socket.create_connection(("127.0.0.1", server.rest_port)) for _ in range(300)]
    try:
        for s in socks[:50]:
            s.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        time.sleep(0.5)
        assert threading.active_count() - before < 5  # one event loop, not a thread per connection
        conn = Conn(server.rest_port)
        status, _, _ = conn.send(_request("POST", PREDICT, _raw_body()))
        assert status == 200
        socks[0].settimeout(15)
        assert socks[0].recv(1024) == b""  # the header timeout (5 s here) closed the slow one
    finally:
        for s in socks:
            s.close()


# ------------------------------------------------------------------------------------------------ gRPC
def _declared(rows: int):
    """A TensorProto of one float that declares ``rows`` rows (make_ndarray would repeat it to fill them)."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0],
                                  tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[{"size": rows}]))


def _unknown_rank():
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0],
                                  tensor_shape=tensor_shape_pb2.TensorShapeProto(unknown_rank=True))


def _grpc_cases():
    import tensorflow as tf

    good = {"x": np.float32([1.5]), "n": np.int64([3]), "s": np.array([b"Cash"], object)}
    bad_proto = tf.make_tensor_proto(np.float32([1, 2, 3]))
    bad_proto.tensor_shape.dim[0].size = 5
    return good, [
        ("float32 for int64 (truncation)", {"n": np.float32([600.7])}, "INVALID_ARGUMENT", "int64"),
        ("bytes for a float", {"x": np.array([b"2.5"], object)}, "INVALID_ARGUMENT", "float"),
        ("int64 for a float", {"x": np.int64([2])}, "INVALID_ARGUMENT", "float"),
        ("float64 for a float32", {"x": np.float64([2.0])}, "INVALID_ARGUMENT", "float"),
        ("shape [1, 1] for [None]", {"x": np.float32([[1.5]])}, "INVALID_ARGUMENT", "shape"),
        ("a scalar for [None]", {"x": np.float32(1.5)}, "INVALID_ARGUMENT", "shape"),
        ("malformed TensorProto", {"x": bad_proto}, "INVALID_ARGUMENT", "TensorProto"),
        ("ragged batch", {"x": np.float32([1.0, 2.0])}, "INVALID_ARGUMENT", "same batch size"),
        ("missing input", {"s": None}, "INVALID_ARGUMENT", "input keys"),
        ("unknown input", {"z": np.float32([1.0])}, "INVALID_ARGUMENT", "input keys"),
        ("batch over the maximum", {k: np.repeat(v, 1025) for k, v in good.items()}, "INVALID_ARGUMENT", "Batch"),
        ("17 bytes declaring 2**31 rows", {"x": _declared(2**31)}, "INVALID_ARGUMENT", "Batch"),
        ("unknown rank", {"x": _unknown_rank()}, "INVALID_ARGUMENT", "fully defined"),
    ]


def _grpc_call(stub, inputs, model="m", signature="serving_raw"):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = model, signature
    for k, v in inputs.items():
        if v is not None:
            request.inputs[k].CopyFrom(v if not isinstance(v, np.ndarray) and not np.isscalar(v)
                                       and hasattr(v, "tensor_shape") else tf.make_tensor_proto(v))
    try:
        response = stub.Predict(request, timeout=30)
        return "OK", tf.make_ndarray(response.outputs["y"])
    except grpc.RpcError as e:
        return e.code().name, e.details()


def test_grpc_enforces_the_signature_like_tf_serving(server):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    good, cases = _grpc_cases()
    assert _grpc_call(stub, good)[0] == "OK"
    for name, override, code, word in cases:
        got, detail = _grpc_call(stub, {**good, **override})
        assert got == code and word in str(detail), (name, got, detail)
    assert _grpc_call(stub, good, model="nope")[0] == "NOT_FOUND"
    assert _grpc_call(stub, good, signature="nope")[0] == "INVALID_ARGUMENT"
    # a valid 1,024-row batch above gRPC's default 4 MB receive limit is served
    wide = {"x": np.float32(np.arange(1024)), "n": np.int64(np.arange(1024)),
            "s": np.array([b"a" * 5000] * 1024, object)}
    status, y = _grpc_call(stub, wide)
    assert status == "OK" and y.shape == (1024,) and float(y[3]) == 3 * 2 + 3 + 5000


# ------------------------------------------------------------------------------- mixed concurrent load
def test_mixed_keep_alive_load_loses_no_valid_request(server):
    """Valid clients and hostile clients at once on reused connections: every valid request answers the
    right number; every hostile one its status. Prints the figures for the closing note."""
    cases = [c for c in corpus() if "limit" not in c[0]]
    valid_latencies: List[float] = []
    failures: List[str] = []
    counts = {"valid": 0, "invalid": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + 8.0

    def valid_client(seed: int) -> None:
        conn = Conn(server.rest_port)
        rng = np.random.default_rng(seed)
        while time.monotonic() < deadline:
            row = {"x": float(rng.integers(0, 100)) / 4, "n": int(rng.integers(0, 50)), "s": "ab" * int(rng.integers(0, 4))}
            started = time.perf_counter()
            try:
                status, _, body = conn.send(_request("POST", PREDICT, json.dumps(
                    {"signature_name": "serving_raw", "instances": [row]}).encode()))
                ok = status == 200 and json.loads(body)["predictions"] == [_expected_y(row)]
            except (OSError, ValueError) as e:
                ok, body = False, repr(e).encode()
                conn.close()
            with lock:
                counts["valid"] += 1
                valid_latencies.append(time.perf_counter() - started)
                if not ok:
                    failures.append(f"valid: {body[:200]!r}")

    def hostile_client(offset: int) -> None:
        conn = Conn(server.rest_port)
        i = offset
        while time.monotonic() < deadline:
            name, raw, status, _ = cases[i % len(cases)]
            i += 1
            try:
                got, _, _ = conn.send(raw)
            except (OSError, ValueError) as e:
                got = repr(e)
                conn.close()
            with lock:
                counts["invalid"] += 1
                if got != status:
                    failures.append(f"{name}: {got} != {status}")

    threads = ([threading.Thread(target=valid_client, args=(i,)) for i in range(6)]
               + [threading.Thread(target=hostile_client, args=(i * 7,)) for i in range(4)])
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [], failures[:10]
    assert counts["valid"] > 100 and counts["invalid"] > 100, counts
    q = statistics.quantiles(valid_latencies, n=100)
    print(f"\nmixed keep-alive load: {counts['valid']} valid (0 failed), {counts['invalid']} hostile; "
          f"valid p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms")


def test_half_copied_versions_never_interrupt_answers(server, tmp_path):
    """Issue 17's sequences over HTTP: a version whose saved_model.pb is still being copied, then whose
    variables/ arrive seconds later, then complete — every request in between answers 200 (from the old
    version) and the new version serves once whole. (Runs last: it adds versions to the shared tree.)"""
    import shutil

    base = next(iter(server.repo.entries.values())).base_path
    source = base / "1"
    conn, answers = Conn(server.rest_port), []

    def hammer(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            status, _, body = conn.send(_request("POST", PREDICT, _raw_body()))
            answers.append(status)
            assert status == 200 and json.loads(body)["predictions"] == [_expected_y()], body[:300]

    def versions() -> list:
        status, _, body = conn.send(_request("GET", "/v1/models/m"))
        return [(r["version"], r["state"]) for r in json.loads(body)["model_version_status"]]

    new = base / "2"
    new.mkdir()
    whole = (source / "saved_model.pb").read_bytes()
    (new / "saved_model.pb").write_bytes(whole[: len(whole) // 2])  # truncated: the copy is running
    hammer(1.5)
    (new / "saved_model.pb").write_bytes(whole)  # complete .pb, variables/ not there yet
    hammer(1.5)
    assert ("1", "AVAILABLE") in versions()
    shutil.copytree(source / "variables", new / "variables")  # 3 s late
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and ("2", "AVAILABLE") not in versions():
        hammer(0.2)
    assert versions() == [("2", "AVAILABLE")] and len(answers) > 50 and set(answers) == {200}
