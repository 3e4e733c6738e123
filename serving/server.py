"""A local server that speaks TF Serving's REST and gRPC APIs for the models sluice pushed.

TF Serving needs Docker or its binary; this needs neither, serves the same ``<model>/<version>/`` tree with
the same ``models.config`` semantics (``repository.py``), and answers the same requests with the same
responses and error contract (``protocol.py``, ``errors.py``), so a client written against it works against
``serving/Dockerfile`` unchanged. Threads serve requests in parallel (TensorFlow releases the GIL while it
computes). ``sluice serve`` runs it; ``python -m sluice.serving.server`` too (the infra check does).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from sluice.serving import protocol
from sluice.serving.errors import ServingError, invalid, not_found
from sluice.serving.repository import Repository, discover, read_model_config

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<rest>/metadata|:predict|:classify|:regress)?/?$")


def _route(path: str) -> Tuple[str, Optional[int], Optional[str], str]:
    match = _PATH.match(path.split("?", 1)[0])
    if not match:
        raise not_found(f"Malformed request: {path}")
    version = match.group("version")
    if version is not None and not version.isdigit():
        raise invalid(f"Invalid version in path: {version}")
    return match.group("name"), int(version) if version else None, match.group("label"), match.group("rest") or ""


def metadata(repo: Repository, name: str, version: Optional[int], label: Optional[str]) -> Dict[str, Any]:
    from google.protobuf import json_format

    servable = repo.resolve(name, version, label)
    defs = {k: json_format.MessageToDict(v) for k, v in servable.signature_defs.items()}
    return {"model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": {"signature_def": defs}}}


def predict_rest(repo: Repository, name: str, version: Optional[int], label: Optional[str], body: bytes,
                 max_batch: int) -> Dict[str, Any]:
    data = protocol.parse_body(body)
    servable = repo.resolve(name, version, label)
    signature_name = data.get("signature_name") or "serving_default"
    if not isinstance(signature_name, str):
        raise invalid("'signature_name' must be a string")
    fmt, inputs = protocol.to_inputs(data, servable.signature(signature_name).inputs, max_batch)
    return protocol.to_response(fmt, servable.predict(signature_name, inputs))


def make_http_handler(repo: Repository, max_batch: int):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Keep-alive clients: without TCP_NODELAY, the header and body writes meet Nagle's algorithm and
            # the client's delayed ACK, and every response waits ~40 ms (measured).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args: Any) -> None:  # quiet: one line per request is noise under load
            pass

        def _send(self, status: int, body: Dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            try:
                name, version, label, rest = _route(self.path)
                if method == "GET":
                    if rest == "/metadata":
                        return self._send(200, metadata(repo, name, version, label))
                    if rest:
                        raise invalid(f"{rest} needs POST")
                    if label is not None:
                        version = repo.resolve(name, None, label).version
                    return self._send(200, {"model_version_status": repo.status(name, version)})
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if rest != ":predict":
                    raise ServingError("UNIMPLEMENTED", f"{rest or 'POST without a method'} is not supported "
                                       "(this server implements :predict)")
                return self._send(200, predict_rest(repo, name, version, label, body, max_batch))
            except ServingError as e:
                return self._send(e.http_status, {"error": e.message})
            except Exception as e:  # never a stack trace to the client; the server keeps answering
                return self._send(500, {"error": f"Internal: {type(e).__name__}: {e}"[:500]})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


def _version_of(spec: Any) -> Tuple[Optional[int], Optional[str]]:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return int(spec.version.value), None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def make_grpc_server(repo: Repository, port: int, max_batch: int, host: str = "127.0.0.1", workers: int = 16):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                         predict_pb2, prediction_service_pb2_grpc)

    def abort(context: Any, e: ServingError) -> None:
        context.abort(getattr(grpc.StatusCode, e.code, grpc.StatusCode.UNKNOWN), e.message)

    class Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            try:
                version, label = _version_of(request.model_spec)
                servable = repo.resolve(request.model_spec.name, version, label)
                signature_name = request.model_spec.signature_name or "serving_default"
                sig = servable.signature(signature_name)
                unknown = sorted(set(request.inputs) - set(sig.inputs))
                missing = sorted(set(sig.inputs) - set(request.inputs))
                if unknown or missing:
                    raise invalid(f"input keys {sorted(request.inputs)} do not match the signature's "
                                  f"{sorted(sig.inputs)}")
                inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
                if any(len(v.shape) and v.shape[0] > max_batch for v in inputs.values()):
                    raise invalid(f"Batch size exceeds the maximum allowed ({max_batch})")
                outputs = servable.predict(signature_name, inputs)
                response = predict_pb2.PredictResponse()
                response.model_spec.name = servable.name
                response.model_spec.version.value = servable.version
                response.model_spec.signature_name = signature_name
                for k, v in outputs.items():
                    if not request.output_filter or k in request.output_filter:
                        response.outputs[k].CopyFrom(tf.make_tensor_proto(v))
                return response
            except ServingError as e:
                abort(context, e)

        def GetModelMetadata(self, request, context):
            try:
                if list(request.metadata_field) != ["signature_def"]:
                    raise invalid("Metadata field signature_def is the only one supported")
                version, label = _version_of(request.model_spec)
                servable = repo.resolve(request.model_spec.name, version, label)
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                response.model_spec.name = servable.name
                response.model_spec.version.value = servable.version
                defs = get_model_metadata_pb2.SignatureDefMap()
                for k, v in servable.signature_defs.items():
                    defs.signature_def[k].CopyFrom(v)
                response.metadata["signature_def"].Pack(defs)
                return response
            except ServingError as e:
                abort(context, e)

    class Models(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):
            try:
                version, label = _version_of(request.model_spec)
                if label is not None:
                    version = repo.resolve(request.model_spec.name, None, label).version
                response = get_model_status_pb2.GetModelStatusResponse()
                for row in repo.status(request.model_spec.name, version):
                    status = response.model_version_status.add()
                    status.version = int(row["version"])
                    status.state = getattr(get_model_status_pb2.ModelVersionStatus, row["state"])
                    status.status.error_message = row["status"]["error_message"]
                return response
            except ServingError as e:
                abort(context, e)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Prediction(), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(Models(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    return server, bound


class _HTTPServer(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 resets connections when dozens of clients connect at once
    daemon_threads = True


class LocalServer:
    """REST + gRPC over one ``Repository``; ``start()`` returns once the current versions are loaded."""

    def __init__(self, model_dir: Path, rest_port: int = 8501, grpc_port: int = 8500,
                 model_config_file: Optional[Path] = None, poll_seconds: float = 1.0,
                 max_batch: int = protocol.MAX_BATCH, host: str = "127.0.0.1") -> None:
        entries = read_model_config(model_config_file, model_dir) if model_config_file else discover(model_dir)
        if not entries:
            raise ServingError("NOT_FOUND", f"no models under {model_dir} (expected <model>/<version>/saved_model.pb;"
                                            " run `sluice run` first, or pass --model-config-file)")
        self.repo = Repository(entries)
        self.poll_seconds = poll_seconds
        self.http = _HTTPServer((host, rest_port), make_http_handler(self.repo, max_batch))
        self.grpc, self.grpc_port = make_grpc_server(self.repo, grpc_port, max_batch, host)
        self.rest_port = self.http.server_address[1]

    def start(self) -> "LocalServer":
        self.repo.start(self.poll_seconds)
        self.grpc.start()
        threading.Thread(target=self.http.serve_forever, name="sluice-rest", daemon=True).start()
        return self

    def stop(self) -> None:
        self.repo.stop()
        self.http.shutdown()
        self.grpc.stop(0)

    def models(self) -> List[str]:
        return sorted(self.repo.entries)


def serve(args: argparse.Namespace) -> int:
    server = LocalServer(Path(args.model_dir), args.rest_port, args.grpc_port,
                         Path(args.model_config_file) if args.model_config_file else None, args.poll_seconds,
                         host=args.host).start()
    for name in server.models():
        try:
            versions = ", ".join(r["version"] for r in server.repo.status(name))
        except ServingError as e:
            versions = e.message
        print(f"sluice serve: {name} (versions {versions})", flush=True)
    print(f"  REST  http://{args.host}:{server.rest_port}/v1/models/<model>[:predict]", flush=True)
    print(f"  gRPC  {args.host}:{server.grpc_port} (tensorflow_serving.apis PredictionService, ModelService)", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", default="output/serving", help="the Pusher's serving directory")
    parser.add_argument("--rest-port", type=int, default=8501)
    parser.add_argument("--grpc-port", type=int, default=8500)
    parser.add_argument("--model-config-file", help="a TF Serving models.config (version policy, labels)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="how often new versions are picked up")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sluice.serving.server")
    add_arguments(parser)
    try:
        return serve(parser.parse_args(argv))
    except ServingError as e:
        print(f"sluice serve: {e.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
