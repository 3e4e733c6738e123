"""``sluice serve --log-requests``: answered requests written as TF Serving ``PredictionLog`` records, REST and
gRPC alike, rotated by size, sampled, and never in the way of an answer (a full queue drops and counts, a
failing writer stops logging while serving goes on). Same small model as the hostile-traffic tests."""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np
import pytest

from sluice.serving import request_log
from sluice.serving.errors import SettingError
from sluice.serving.request_log import RequestLogger, read_logs
from sluice.serving.server import LocalServer, add_arguments, request_logger
from tests.helpers import post_json, run_cli
from tests.serving.test_hostile_traffic import _grpc_call, _model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("logged")
    _model(root / "m" / "1")
    return root


def _post(port: int, body: dict):
    return post_json(f"http://127.0.0.1:{port}/v1/models/m:predict", body)


def _array(proto):
    import tensorflow as tf

    return tf.make_ndarray(proto)


def test_rest_and_grpc_answers_are_logged_as_prediction_logs_rotated_by_size(model_dir, tmp_path):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    logs = tmp_path / "logs"
    logger = RequestLogger(str(logs), max_file_bytes=1500)
    server = LocalServer(model_dir, rest_port=0, grpc_port=0, logger=logger).start()
    sent_rest, sent_grpc = [], []
    try:
        for i in range(12):
            row = {"x": float(i), "n": i, "s": "Cash" if i % 2 else "Card"}
            status, answer = _post(server.rest_port, {"signature_name": "serving_raw", "instances": [row]})
            assert status == 200
            sent_rest.append((row, answer["predictions"][0]))
        assert _post(server.rest_port, {"signature_name": "serving_raw", "instances": [{"x": "no"}]})[0] == 400
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
        for i in range(8):
            inputs = {"x": np.array([i, i + 0.5], np.float32), "n": np.array([i, 1], np.int64),
                      "s": np.array([b"Cash", b"Dispute"])}
            code, y = _grpc_call(stub, inputs)
            assert code == "OK"
            sent_grpc.append((inputs, y))
        assert _grpc_call(stub, {"x": np.array([1.0], np.float32)})[0] == "INVALID_ARGUMENT"
    finally:
        server.stop()
    stats = logger.stats
    assert stats.logged == 20 and stats.dropped == 0 and stats.error is None
    assert stats.files > 1 and not list(logs.glob(f"*{request_log.PART}"))  # rotated, and every file finished
    assert all(p.stat().st_size <= 1500 for p in logs.glob("*.tfrecord"))
    records = read_logs(str(logs))
    assert len(records) == 20  # the two refused requests are not logged
    for record in records:
        meta = record.log_metadata
        assert (meta.model_spec.name, meta.model_spec.version.value) == ("m", 1)
        assert meta.model_spec.signature_name == "serving_raw" and meta.sampling_config.sampling_rate == 1.0
        assert meta.timestamp_secs > 0
    rest = [r.predict_log for r in records if len(_array(r.predict_log.request.inputs["x"])) == 1]
    grpc_logged = [r.predict_log for r in records if len(_array(r.predict_log.request.inputs["x"])) == 2]
    assert len(rest) == 12 and len(grpc_logged) == 8
    for (row, prediction), log in zip(sent_rest, rest):  # in arrival order
        assert _array(log.request.inputs["x"]).tolist() == [row["x"]]
        assert _array(log.request.inputs["n"]).tolist() == [row["n"]]
        assert _array(log.request.inputs["s"]).tolist() == [row["s"].encode()]
        assert _array(log.response.outputs["y"]).tolist() == pytest.approx([prediction])
    for (inputs, y), log in zip(sent_grpc, grpc_logged):
        for key, value in inputs.items():
            assert _array(log.request.inputs[key]).tolist() == value.tolist()
        assert _array(log.response.outputs["y"]).tolist() == pytest.approx(y.tolist())


def test_the_sample_rate_is_the_share_logged(tmp_path):
    logger = RequestLogger(str(tmp_path), sample_rate=0.25, seed=7)
    inputs, outputs = {"x": np.array([1.0], np.float32)}, {"y": np.array([2.0], np.float32)}
    for _ in range(2000):
        logger.log_arrays("m", 1, "serving_raw", inputs, outputs)
    stats = logger.close()
    assert 400 <= stats.logged <= 600  # mean 500, five standard deviations (19.4) either side
    assert len(read_logs(str(tmp_path))) == stats.logged
    assert read_logs(str(tmp_path))[0].log_metadata.sampling_config.sampling_rate == 0.25


def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path, monkeypatch):
    """The writer stuck on the first record: 5 more fill the queue, the other 94 are dropped at once."""
    entered, release = threading.Event(), threading.Event()
    original = RequestLogger._record

    def slow(self, item):
        entered.set()
        assert release.wait(60)
        return original(self, item)

    monkeypatch.setattr(RequestLogger, "_record", slow)
    logger = RequestLogger(str(tmp_path), queue_size=5)
    inputs, outputs = {"x": np.array([1.0], np.float32)}, {"y": np.array([2.0], np.float32)}
    logger.log_arrays("m", 1, "serving_raw", inputs, outputs)
    assert entered.wait(30)
    for _ in range(99):
        logger.log_arrays("m", 1, "serving_raw", inputs, outputs)  # returns although nothing is written
    assert logger.stats.dropped == 94
    release.set()
    stats = logger.close()
    assert (stats.logged, stats.dropped) == (6, 94) and len(read_logs(str(tmp_path))) == 6
    assert "94 dropped" in logger.summary()


def test_a_failing_writer_stops_logging_and_the_server_keeps_answering(model_dir, tmp_path, monkeypatch, capfd):
    """The disk fills after two records: requests go on being answered, logging stops with one message, the
    two written records are readable and the three after them are counted as dropped."""
    import tensorflow as tf

    real = tf.io.TFRecordWriter

    class FillingDisk:
        def __init__(self, path):
            self._writer, self._written = real(path), 0

        def write(self, record):
            if self._written == 2:
                raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
            self._writer.write(record)
            self._written += 1

        def flush(self):
            self._writer.flush()

        def close(self):
            self._writer.close()

    monkeypatch.setattr(tf.io, "TFRecordWriter", FillingDisk)
    logger = RequestLogger(str(tmp_path / "logs"))
    server = LocalServer(model_dir, rest_port=0, grpc_port=0, logger=logger).start()
    try:
        for i in range(5):
            status, _ = _post(server.rest_port, {"signature_name": "serving_raw",
                                                 "instances": [{"x": 1.0, "n": i, "s": "a"}]})
            assert status == 200
    finally:
        server.stop()
    stats = logger.stats
    assert (stats.logged, stats.dropped) == (2, 3) and "No space left on device" in stats.error
    assert len(read_logs(str(tmp_path / "logs"))) == 2
    assert capfd.readouterr().err.count("request logging stopped") == 1
    assert "3 dropped" in logger.summary() and "stopped: ResourceExhaustedError" in logger.summary()


def test_a_request_answered_after_close_is_counted_not_lost(tmp_path):
    logger = RequestLogger(str(tmp_path))
    logger.close()
    logger.log_arrays("m", 1, "serving_raw", {"x": np.array([1.0], np.float32)}, {"y": np.array([2.0], np.float32)})
    assert (logger.stats.logged, logger.stats.dropped) == (0, 1)


def test_sparse_traffic_becomes_readable_without_a_stop(tmp_path):
    """One request, then nothing: the file is finished once ``rotate_seconds`` old, not at 64 MB or at exit."""
    logger = RequestLogger(str(tmp_path), rotate_seconds=0.2)
    logger.log_arrays("m", 1, "serving_raw", {"x": np.array([1.0], np.float32)}, {"y": np.array([2.0], np.float32)})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not list(tmp_path.glob("*.tfrecord")):
        time.sleep(0.05)
    assert len(read_logs(str(tmp_path))) == 1 and not list(tmp_path.glob(f"*{request_log.PART}"))
    logger.close()


def test_a_killed_servers_part_file_is_finished_by_the_next_and_read_up_to_the_cut(tmp_path):
    """A ``.part`` file nobody holds (its server was killed; same PID or not, as after a container restart) is
    finished by the next logger, up to the record cut off mid-write; one a running logger writes is left."""
    import tensorflow as tf

    source = RequestLogger(str(tmp_path / "source"))
    for i in range(3):
        source.log_arrays("m", 1, "serving_raw", {"x": np.array([float(i)], np.float32)},
                          {"y": np.array([2.0], np.float32)})
    source.close()
    [whole] = list((tmp_path / "source").glob("*.tfrecord"))
    logs = tmp_path / "logs"
    running = RequestLogger(str(logs), rotate_seconds=3600)  # holds its open .part while it runs
    running.log_arrays("m", 1, "serving_raw", {"x": np.array([9.0], np.float32)}, {"y": np.array([2.0], np.float32)})
    deadline = time.monotonic() + 20
    while not list(logs.glob(f"*{request_log.PART}")) and time.monotonic() < deadline:
        time.sleep(0.05)
    [held] = list(logs.glob(f"*{request_log.PART}"))
    killed = logs / f"requests-20260101T000000Z-{os.getpid()}-00000.tfrecord{request_log.PART}"  # our own PID
    killed.write_bytes(whole.read_bytes()[:-7])  # the third record cut off mid-write
    recovering = RequestLogger(str(logs))
    assert [p.rsplit("/", 1)[-1] for p in recovering.recovered] == [killed.name[: -len(request_log.PART)]]
    assert held.exists()  # a running writer's file stays as it is
    xs = [float(tf.make_ndarray(r.predict_log.request.inputs["x"])[0]) for r in read_logs(str(logs))]
    assert xs == [0.0, 1.0]
    running.close()
    recovering.close()


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_impossible_logging_flags_are_refused_naming_the_flag(tmp_path):
    for flag, value in (("--sample-rate", "1.5"), ("--sample-rate", "nan"), ("--log-file-mb", "0"),
                        ("--log-file-mb", "1e-9"), ("--log-file-mb", "inf"), ("--log-rotate-seconds", "-1")):
        with pytest.raises(SettingError) as refused:
            request_logger(_args("--log-requests", str(tmp_path), flag, value))
        assert refused.value.where == flag, (flag, value)
    with pytest.raises(SettingError) as alone:
        request_logger(_args("--sample-rate", "0.5"))  # without --log-requests it would do nothing
    assert alone.value.where == "--sample-rate" and "--log-requests" in alone.value.problem
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SettingError) as where:
        request_logger(_args("--log-requests", str(blocker / "logs")))
    assert where.value.where.startswith("--log-requests")
    assert request_logger(_args()) is None


def test_the_cli_shows_one_screen_for_a_bad_sample_rate(model_dir, tmp_path):
    proc = run_cli("serve", "--model-dir", str(model_dir), "--log-requests", str(tmp_path), "--sample-rate", "0",
                   "--rest-port", "0", "--grpc-port", "0", timeout=120)
    assert proc.returncode == 1
    assert "--sample-rate" in proc.stderr and "Traceback" not in proc.stderr


def test_with_logging_grpc_answers_bytes_that_do_not_parse_as_without(model_dir, tmp_path):
    """The logging path takes the request's bytes itself: garbage gets the code gRPC's own deserializer gives,
    the server goes on answering, and nothing is logged for it."""
    import grpc

    def call(server, raw: bytes):
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            method = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
            try:
                method(raw, timeout=30)
                return "OK"
            except grpc.RpcError as e:
                return e.code().name

    logger = RequestLogger(str(tmp_path / "logs"))
    codes = []
    for with_log in (logger, None):
        server = LocalServer(model_dir, rest_port=0, grpc_port=0, logger=with_log).start()
        try:
            codes.append(call(server, b"\xff\xff\xff garbage"))
        finally:
            server.stop()
    assert codes[0] == codes[1] != "OK"
    assert logger.stats.logged == 0 and logger.stats.dropped == 0
