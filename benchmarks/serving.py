"""Serving: p50/p99 latency and requests/s of the local TF Serving–compatible server (`sluice serve`) over
REST and gRPC, single row and batch 64, at 1, 8 and 32 concurrent clients, against an in-process call of the
same signature (``serving_raw``) on the same rows; and a mixed row: 8 valid REST clients next to 4 clients
sending malformed requests (bodies left unread, chunked bodies, bad versions, out-of-range numbers, unknown
methods), all on keep-alive connections — valid requests must all succeed, hostile ones get their 4xx.

The server runs in its own process (as `sluice serve` does); clients are threads of this process with one
keep-alive connection (REST) or one channel (gRPC) each. Uses the default pipeline's pushed model on the
bundled data (run or reused in ``benchmarks/work/serving``). On a 2-core machine client and server share the
cores: the numbers say what one box does, not what a serving fleet does.
Results: results/serving.json.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import default_pipeline_outputs, ratio, write_result  # noqa: E402

WORK = Path(__file__).resolve().parent / "work" / "deploy"  # shared with export.py: one pipeline run
REQUESTS = int(os.environ.get("SLUICE_BENCH_SERVING_REQUESTS", "150"))  # per client
CONCURRENCY = (1, 8, 32)
BATCHES = {"single": 1, "batch64": 64}


def _percentiles(samples):
    a = np.array(samples) * 1e3
    return round(float(np.percentile(a, 50)), 2), round(float(np.percentile(a, 99)), 2)


def _rest_worker(port, body, n, out, errors):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(n):
        start = time.perf_counter()
        try:
            conn.request("POST", "/v1/models/taxi_fare:predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as e:  # a failed valid request, counted; reconnect
            conn.close()
            status = type(e).__name__
        out.append(time.perf_counter() - start)
        if status != 200:
            errors.append(status)
    conn.close()


def _grpc_worker(target, request, n, out, errors):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for _ in range(n):
        start = time.perf_counter()
        try:
            stub.Predict(request, timeout=60)
        except grpc.RpcError as e:
            errors.append(e.code().name)
        out.append(time.perf_counter() - start)
    channel.close()


HOSTILE = [  # (method, path, body, chunked, expected status)
    ("POST", "/v1/models/taxi_fare/versions/abc:predict", b'{"instances": [1]}', False, 400),
    ("GET", "/v1/models/taxi_fare", b'{"a body": "on a GET"}', False, 200),
    ("POST", "/v1/models/taxi_fare:predict", b'{"instances": [', True, 400),
    ("POST", "/v1/models/taxi_fare:predict", b'{"signature_name": "serving_raw", "instances": [{"trip_miles": '
     + str(10**400).encode() + b'}]}', False, 400),
    ("PUT", "/v1/models/taxi_fare:predict", b'{"instances": [1]}', False, 405),
    ("POST", "/v1/models/nope:predict", b'{"instances": [1]}', True, 404),
    ("POST", "/v1/models/taxi_fare:predict", b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}", False, 400),
]


def _hostile_worker(port, _body, n, out, errors):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(n):
        method, path, body, chunked, expected = HOSTILE[i % len(HOSTILE)]
        try:
            if chunked:
                conn.request(method, path, iter([body[:7], body[7:]]), encode_chunked=True)
            else:
                conn.request(method, path, body)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            conn.close()
            status = -1
        if status != expected:
            errors.append(status)


def _mixed(port, body, valid_clients=8, hostile_clients=4):
    samples, errors, hostile_errors, threads = [], [], [], []
    for _ in range(valid_clients):
        threads.append(threading.Thread(target=_rest_worker, args=(port, body, REQUESTS, samples, errors)))
    for _ in range(hostile_clients):
        threads.append(threading.Thread(target=_hostile_worker, args=(port, body, REQUESTS, [], hostile_errors)))
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    p50, p99 = _percentiles(samples)
    return {"p50_ms": p50, "p99_ms": p99, "rps": round(len(samples) / seconds, 1), "errors": len(errors),
            "requests": len(samples), "hostile_requests": hostile_clients * REQUESTS,
            "hostile_misanswered": len(hostile_errors)}


def _load(worker, args, clients):
    samples, errors, threads = [], [], []
    start = time.perf_counter()
    for _ in range(clients):
        threads.append(threading.Thread(target=worker, args=(*args, REQUESTS, samples, errors)))
        threads[-1].start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    p50, p99 = _percentiles(samples)
    return {"p50_ms": p50, "p99_ms": p99, "rps": round(len(samples) / seconds, 1), "errors": len(errors),
            "requests": len(samples)}


LOGGING_CLIENTS = 8
LOGGING_ROUNDS = 5


def _logging_cost(pushed: str, rest_port: int, grpc_port: int, body: str, request) -> dict:
    """p50 with request logging on (sample rate 1) vs off: a second server with ``--log-requests``, the two
    measured alternately (off, on, off, on, …) so machine noise falls on both; the ratio is the median of the
    rounds' on/off ratios (each pair measured back to back), the p50s the medians of the rounds."""
    import shutil

    from sluice.components.infra_check import start_server
    from sluice.serving.request_log import read_logs

    logs = WORK / "request_logs"
    shutil.rmtree(logs, ignore_errors=True)
    proc, rest_on, grpc_on = start_server(str(Path(pushed).parent.parent), str(WORK / "server_logging.log"),
                                          extra_args=["--log-requests", str(logs)])
    rounds = {key: [] for key in ("rest_off", "rest_on", "grpc_off", "grpc_on")}
    try:
        for _ in range(LOGGING_ROUNDS):
            rounds["rest_off"].append(_load(_rest_worker, (rest_port, body), LOGGING_CLIENTS))
            rounds["rest_on"].append(_load(_rest_worker, (rest_on, body), LOGGING_CLIENTS))
            rounds["grpc_off"].append(_load(_grpc_worker, (f"127.0.0.1:{grpc_port}", request), LOGGING_CLIENTS))
            rounds["grpc_on"].append(_load(_grpc_worker, (f"127.0.0.1:{grpc_on}", request), LOGGING_CLIENTS))
    finally:
        proc.terminate()  # SIGTERM: the server writes what is queued and finishes its last file
        try:
            proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    sent = sum(r["requests"] - r["errors"] for key in ("rest_on", "grpc_on") for r in rounds[key])
    logged = len(read_logs(str(logs)))
    out = {}
    for key, runs in rounds.items():
        protocol, state = key.split("_")
        out[f"logging_{protocol}_{state}"] = {
            "p50_ms": round(float(np.median([r["p50_ms"] for r in runs])), 2),
            "p99_ms": round(float(np.median([r["p99_ms"] for r in runs])), 2),
            "errors": sum(r["errors"] for r in runs), "rounds": len(runs)}
        if state == "on":
            paired = [on["p50_ms"] / off["p50_ms"] for on, off in zip(runs, rounds[f"{protocol}_off"])]
            out[f"logging_{protocol}_on"].update(logged=logged, answered=sent,
                                                 round_ratios=[round(r, 3) for r in paired],
                                                 ratio=round(float(np.median(paired)), 3))
    print("logging", out, flush=True)
    return out


def main() -> None:
    import tensorflow as tf
    import tensorflow_transform as tft
    from tensorflow_serving.apis import predict_pb2

    from sluice.components.export.rows import read_rows
    from sluice.components.infra_check import start_server
    from sluice.components.trainer.signatures import serving_columns

    cfg, record = default_pipeline_outputs(WORK)
    contract = cfg.export_contract()
    spec = serving_columns(tft.TFTransformOutput(record.inputs["Trainer"]["TransformGraph"]), contract)
    rows = read_rows(record.outputs["CsvExampleGen"]["Examples"], "eval", contract.features, spec, 64)
    saved = tf.saved_model.load(record.pushed_destination).signatures["serving_raw"]

    results = {}
    for shape, size in BATCHES.items():
        columns = {k: v[:size] for k, v in rows.columns.items()}
        tensors = {k: tf.constant(v) for k, v in columns.items()}
        saved(**tensors)
        samples = []
        for _ in range(REQUESTS * 2):
            start = time.perf_counter()
            saved(**tensors)
            samples.append(time.perf_counter() - start)
        p50, p99 = _percentiles(samples)
        results[f"in_process_{shape}"] = {"p50_ms": p50, "p99_ms": p99, "rps": round(1 / np.mean(samples), 1)}

    proc, rest_port, grpc_port = start_server(str(Path(record.pushed_destination).parent.parent),
                                              str(WORK / "server.log"))
    try:
        for shape, size in BATCHES.items():
            columns = {k: v[:size] for k, v in rows.columns.items()}
            instances = [{k: (v[i].decode() if isinstance(v[i], bytes) else v[i].item()) for k, v in columns.items()}
                         for i in range(size)]
            body = json.dumps({"signature_name": "serving_raw", "instances": instances})
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "taxi_fare"
            request.model_spec.signature_name = "serving_raw"
            for k, v in columns.items():
                request.inputs[k].CopyFrom(tf.make_tensor_proto(v))
            for clients in CONCURRENCY:
                results[f"rest_{shape}_c{clients}"] = _load(_rest_worker, (rest_port, body), clients)
                results[f"grpc_{shape}_c{clients}"] = _load(_grpc_worker, (f"127.0.0.1:{grpc_port}", request), clients)
                print(shape, clients, results[f"rest_{shape}_c{clients}"], results[f"grpc_{shape}_c{clients}"], flush=True)
            if shape == "single":
                body_single, request_single = body, request
                results["rest_single_mixed"] = _mixed(rest_port, body)
                print("mixed", results["rest_single_mixed"], flush=True)
        results.update(_logging_cost(record.pushed_destination, rest_port, grpc_port, body_single, request_single))
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    table = []
    for shape in BATCHES:
        ref = results[f"in_process_{shape}"]
        for protocol in ("rest", "grpc"):
            for clients in CONCURRENCY:
                r = results[f"{protocol}_{shape}_c{clients}"]
                table.append({"measure": f"{protocol} {shape} c={clients}: p50 latency (p99 {r['p99_ms']} ms, "
                                         f"{r['rps']} req/s, {r['errors']} errors)",
                              "sluice": r["p50_ms"], "reference": ref["p50_ms"], "unit": "ms",
                              "ratio": ratio(r["p50_ms"], ref["p50_ms"]), "goal": "0 errors"})
    mixed, ref = results["rest_single_mixed"], results["in_process_single"]
    table.append({"measure": f"rest single, 8 valid + 4 hostile keep-alive clients: valid p50 (p99 {mixed['p99_ms']} ms, "
                             f"{mixed['errors']} of {mixed['requests']} valid failed, {mixed['hostile_misanswered']} of "
                             f"{mixed['hostile_requests']} hostile mis-answered)",
                  "sluice": mixed["p50_ms"], "reference": ref["p50_ms"], "unit": "ms",
                  "ratio": ratio(mixed["p50_ms"], ref["p50_ms"]), "goal": "0 valid failed, 0 mis-answered"})
    for protocol in ("rest", "grpc"):
        on, off = results[f"logging_{protocol}_on"], results[f"logging_{protocol}_off"]
        table.append({"measure": f"{protocol} single c={LOGGING_CLIENTS}: p50 with --log-requests (sample rate 1; "
                                 f"{on['logged']} of {on['answered']} answered requests of both protocols logged) "
                                 f"vs without; ratio = median of {LOGGING_ROUNDS} back-to-back pairs "
                                 f"{on['round_ratios']}",
                      "sluice": on["p50_ms"], "reference": off["p50_ms"], "unit": "ms",
                      "ratio": on["ratio"], "goal": "<= 1.1"})
    write_result("serving", table, results, notes="reference = in-process serving_raw call, same rows; for the "
                 "logging rows, the same server without --log-requests, measured alternately in the same run")


if __name__ == "__main__":
    main()
