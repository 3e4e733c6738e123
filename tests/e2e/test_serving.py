"""The local TF Serving–compatible server on the session's pushed fare model: REST and gRPC answers equal the
SavedModel called in process, malformed requests get TF Serving's 4xx and leave the server healthy, a bounded
concurrent load has no errors, a version pushed during the load is picked up, the InfraCheck ran in the
pipeline, and `sluice serve` / `sluice predict` work from the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_export import _eval_rows
from tests.helpers import ROOT, post_json

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(fare, tmp_path_factory):
    from sluice.serving.server import LocalServer

    tree = tmp_path_factory.mktemp("serving")
    shutil.copytree(fare["out"] / "serving" / "taxi_fare", tree / "taxi_fare")
    server = LocalServer(tree, rest_port=0, grpc_port=0, poll_seconds=0.5).start()
    yield {"server": server, "tree": tree, "url": f"http://127.0.0.1:{server.rest_port}",
           "grpc": f"127.0.0.1:{server.grpc_port}", "version": fare["runs"][0]["version"]}
    server.stop()


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _rows(fare, n=8):
    rows = _eval_rows(fare, n)
    instances = [{k: (v[i].decode() if isinstance(v[i], bytes) else v[i].item()) for k, v in rows.columns.items()}
                 for i in range(n)]
    return rows, instances


def _expected(fare, rows):
    import tensorflow as tf

    model = tf.saved_model.load(fare["runs"][0]["saved_model_path"])
    return model.signatures["serving_raw"](**{k: tf.constant(v) for k, v in rows.columns.items()})["outputs"].numpy()


def test_status_metadata_and_both_rest_formats_answer_like_the_saved_model(fare, served):
    url = served["url"] + "/v1/models/taxi_fare"
    assert _get(url) == (200, {"model_version_status": [
        {"version": served["version"], "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    status, meta = _get(url + "/metadata")
    assert status == 200 and {"serving_default", "serving_raw"} <= set(meta["metadata"]["signature_def"]["signature_def"])
    rows, instances = _rows(fare)
    expected = _expected(fare, rows)
    status, body = post_json(url + ":predict", {"signature_name": "serving_raw", "instances": instances})
    assert status == 200
    np.testing.assert_allclose(np.array(body["predictions"]), expected, rtol=1e-6)
    columns = {k: [r[k] for r in instances] for k in instances[0]}
    status, body = post_json(url + f"/versions/{served['version']}:predict", {"signature_name": "serving_raw", "inputs": columns})
    assert status == 200
    np.testing.assert_allclose(np.array(body["outputs"]), expected, rtol=1e-6)
    import base64

    examples = [{"b64": base64.b64encode(e).decode()} for e in rows.serialized]
    status, body = post_json(url + ":predict", {"instances": examples})  # serving_default: serialized tf.Examples
    assert status == 200 and np.isfinite(np.array(body["predictions"])).all()


def test_grpc_predict_metadata_and_status(fare, served):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                         predict_pb2, prediction_service_pb2_grpc)

    from sluice.serving.client import GrpcClient

    rows, _ = _rows(fare)
    client = GrpcClient(served["grpc"], "taxi_fare")
    np.testing.assert_allclose(client.predict_columns(rows.columns), _expected(fare, rows), rtol=1e-6)
    channel = grpc.insecure_channel(served["grpc"])
    meta = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": "taxi_fare"}, metadata_field=["signature_def"]))
    defs = get_model_metadata_pb2.SignatureDefMap()
    meta.metadata["signature_def"].Unpack(defs)
    assert "serving_raw" in defs.signature_def and meta.model_spec.version.value == int(served["version"])
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "taxi_fare"}))
    assert status.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    bad = predict_pb2.PredictRequest(model_spec={"name": "nope"})
    with pytest.raises(grpc.RpcError) as e:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(bad)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    wrong = predict_pb2.PredictRequest(model_spec={"name": "taxi_fare", "signature_name": "serving_raw"})
    wrong.inputs["trip_miles"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    with pytest.raises(grpc.RpcError) as e:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(wrong)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()
    client.close()


def test_malformed_requests_get_tf_serving_errors_and_the_server_stays_healthy(fare, served):
    base = served["url"] + "/v1/models/taxi_fare"
    _, instances = _rows(fare, 2)
    good = {"signature_name": "serving_raw", "instances": instances}
    extra = dict(instances[0], tips=1.0)
    wrong_type = dict(instances[0], trip_miles="far")
    cases = [
        (base + ":predict", b"{oops", 400, "JSON Parse error"),
        (base + ":predict", {"signature_name": "serving_raw"}, 400, "Missing 'inputs' or 'instances'"),
        (base + ":predict", {"instances": instances, "inputs": {}}, 400, "Not both"),
        (base + ":predict", {"signature_name": "serving_raw", "instances": [extra]}, 400, "does not have named input: tips"),
        (base + ":predict", {"signature_name": "serving_raw", "instances": [wrong_type]}, 400, "not of expected type: float"),
        (base + ":predict", {"signature_name": "serving_raw", "inputs": {**{k: [v, v] for k, v in instances[0].items()},
                                                                      "trip_miles": [1.0]}}, 400, "ragged"),
        (base + ":predict", {"signature_name": "serving_raw", "instances": []}, 400, "empty"),
        (base + ":predict", {"signature_name": "serving_raw", "instances": instances[:1] * 1025}, 400, "exceeds the maximum"),
        (served["url"] + "/v1/models/nope:predict", good, 404, "Servable not found"),
        (base + "/versions/1:predict", good, 404, "Specific(taxi_fare, 1)"),
        (base + "/labels/canary:predict", good, 400, "Unrecognized servable version label"),
        (base + ":predict", {"signature_name": "serving_rawz", "instances": instances}, 400, "not found in signature def"),
        (base + ":predict", {"signature_name": "serving_raw", "instances": [dict(instances[0], payment_type={"b64": "%%"})]},
         400, "Unable to base64 decode"),
        (base + ":classify", good, 501, "implements :predict"),
    ]
    for url, body, code, words in cases:
        status, answer = post_json(url, body, raw=isinstance(body, bytes))
        assert (status, set(answer)) == (code, {"error"}), (url, body if isinstance(body, bytes) else "", answer)
        assert words in answer["error"], answer
        assert post_json(base + ":predict", good)[0] == 200  # still answering correctly after each


def test_concurrent_load_and_a_version_pushed_during_it(fare, served):
    """16 clients x 500 requests, no errors; a new version appears mid-load and is served, no request fails."""
    from sluice.components.pusher import write_version

    clients, per_client = int(os.environ.get("SLUICE_LOAD_CLIENTS", "16")), int(os.environ.get("SLUICE_LOAD_REQUESTS", "500"))
    _, instances = _rows(fare, 1)
    body = json.dumps({"signature_name": "serving_raw", "instances": instances}).encode()
    url = served["url"] + "/v1/models/taxi_fare:predict"
    errors, done = [], [0]
    lock = threading.Lock()

    def client():
        for _ in range(per_client):
            status, answer = post_json(url, body, raw=True)
            with lock:
                done[0] += 1
                if status != 200 or not np.isfinite(np.array(answer.get("predictions", [np.nan]))).all():
                    errors.append((status, answer))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    while done[0] < clients * per_client // 3:
        time.sleep(0.05)
    base = served["tree"] / "taxi_fare"
    new_version = str(int(served["version"]) + 1)
    write_version(base, new_version, lambda staging: shutil.copytree(base / served["version"], staging))
    for t in threads:
        t.join()
    seconds = time.monotonic() - start
    assert errors == [] and done[0] == clients * per_client
    status = _get(served["url"] + "/v1/models/taxi_fare")[1]["model_version_status"]
    assert [s["version"] for s in status] == [new_version]  # latest policy: the new version replaced the old
    print(f"load: {done[0]} requests in {seconds:.1f} s ({done[0] / seconds:.0f}/s)")


def test_version_policy_and_labels_from_a_models_config(fare, tmp_path):
    from sluice.serving.server import LocalServer

    base = tmp_path / "taxi_fare"
    version = fare["runs"][0]["version"]
    for v in (version, str(int(version) + 10)):
        shutil.copytree(fare["out"] / "serving" / "taxi_fare" / version, base / v)
    newer = str(int(version) + 10)
    (tmp_path / "models.config").write_text(f"""model_config_list {{ config {{
      name: "taxi_fare" base_path: "/models/taxi_fare" model_platform: "tensorflow"
      model_version_policy {{ specific {{ versions: {version} versions: {newer} }} }}
      version_labels {{ key: "stable" value: {version} }} version_labels {{ key: "canary" value: {newer} }} }} }}""")
    server = LocalServer(tmp_path, 0, 0, model_config_file=tmp_path / "models.config").start()
    try:
        url = f"http://127.0.0.1:{server.rest_port}/v1/models/taxi_fare"
        assert {s["version"] for s in _get(url)[1]["model_version_status"]} == {version, newer}
        assert _get(url + "/labels/stable")[1]["model_version_status"][0]["version"] == version
        assert _get(url + "/labels/canary/metadata")[1]["model_spec"]["version"] == newer
    finally:
        server.stop()


def test_infra_check_replayed_warmup_requests_before_the_push(fare):
    first = fare["runs"][0]
    assert first["infra"]["blessed"] is True and first["infra"]["failures"] == []
    assert first["infra"]["checked"]["grpc"] >= 8 and first["infra"]["checked"]["rest"] >= 8


def test_sluice_serve_and_sluice_predict_from_the_command_line(fare, tmp_path):
    exe = str(Path(sys.executable).parent / "sluice")
    proc = subprocess.Popen([exe, "serve", "--model-dir", str(fare["out"] / "serving"), "--rest-port", "0",
                             "--grpc-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert "taxi_fare" in lines[0], lines
        rest = lines[1].split("http://")[1].split("/")[0]
        grpc_target = lines[2].split()[1]
        rows = [{"trip_miles": 2.5, "trip_start_hour": 9, "trip_start_day": 3, "trip_start_month": 5,
                 "payment_type": "Cash", "trip_seconds": 600}]
        (tmp_path / "rows.json").write_text(json.dumps(rows))
        out = subprocess.run([exe, "predict", "--model", "taxi_fare", "--input", str(tmp_path / "rows.json"), "--endpoint", f"http://{rest}"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        prediction = json.loads(out.stdout.splitlines()[0])["prediction"]
        assert 0 < prediction < 100
        via_grpc = subprocess.run([exe, "predict", "--model", "taxi_fare", "--input", str(tmp_path / "rows.json"), "--endpoint",
                                   f"grpc://{grpc_target}"],
                                  capture_output=True, text=True, timeout=120)
        assert via_grpc.returncode == 0, via_grpc.stderr
        assert json.loads(via_grpc.stdout.splitlines()[0])["prediction"] == pytest.approx(prediction, rel=1e-6)
        import csv

        with open(ROOT / "data" / "taxi" / "data.csv", newline="") as src, open(tmp_path / "rows.csv", "w", newline="") as dst:
            reader = csv.reader(src)
            writer = csv.writer(dst)
            for _, line in zip(range(4), reader):  # header + 3 rows, label columns included (ignored)
                writer.writerow(line)
        from_csv = subprocess.run([exe, "predict", "--model", "taxi_fare", "--input", str(tmp_path / "rows.csv"), "--endpoint", f"http://{rest}"],
                                  capture_output=True, text=True, timeout=120)
        assert from_csv.returncode == 0, from_csv.stderr
        assert len(from_csv.stdout.splitlines()) == 3
        unknown = subprocess.run([exe, "predict", "--model", "taxi_fare", "--input", str(tmp_path / "rows.json"), "--endpoint", f"http://{rest}",
                                  "--model", "nope"], capture_output=True, text=True, timeout=120)
        assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr and "Traceback" not in unknown.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_infra_check_server_dies_with_a_sigkilled_run(served, tmp_path):
    """Issue 17: after ``kill -9`` of a run during InfraCheck its server lived on (722 MB, two ports)."""
    import signal
    import textwrap

    from tests.faults.test_children_die_with_parent import _alive, _wait_dead

    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from sluice.components.infra_check import start_server
        proc, rest, grpc_port = start_server({str(served["tree"])!r}, {str(tmp_path / "server.log")!r})
        print(proc.pid, rest, grpc_port, flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = parent.stdout.readline().split()
    assert len(line) == 3, (tmp_path / "server.log").read_text()[-2000:]
    pid, rest, grpc_port = map(int, line)
    try:
        assert _alive(pid)
        listening = _listening_sockets(_socket_inodes(pid))
        assert {rest, grpc_port} <= set(listening.values()), listening  # the server's own two ports
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_dead(pid), f"server {pid} outlived its parent"
        # Its listening sockets close once its last thread has exited, which can be a moment after the main
        # thread shows as dead (a listening socket still completes handshakes from its backlog meanwhile:
        # connecting to the ports proved nothing). Checked by the sockets' identity, not their port numbers.
        deadline = time.monotonic() + 15
        while _listening_sockets(set(listening)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _listening_sockets(set(listening)) == {}
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _socket_inodes(pid: int) -> set:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _listening_sockets(inodes: set) -> dict:
    """Inode -> port of the sockets among ``inodes`` that listen on TCP (the kernel's own tables)."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.read().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    found[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    return found
