"""A local server that speaks TF Serving's REST and gRPC APIs for the models sluice pushed.

TF Serving needs Docker or its binary; this needs neither, serves the same ``<model>/<version>/`` tree with
the same ``models.config`` semantics (``repository.py``), and answers the same requests with the same
responses and error contract (``protocol.py``, ``errors.py``), so a client written against it works against
``serving/Dockerfile`` unchanged. REST is tornado (``rest.py``: why there), gRPC is grpcio; both compute in
bounded thread pools (TensorFlow releases the GIL while it computes). ``sluice serve`` runs it; ``python -m sluice.serving.server`` too (the infra check does).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from sluice.serving import protocol
from sluice.serving.errors import ServingError, SettingError, invalid
from sluice.serving.repository import Repository, discover, read_model_config
from sluice.serving.request_log import RequestLogger
from sluice.serving.rest import Api, Limits, RestServer, route

def metadata(repo: Repository, name: str, version: Optional[int], label: Optional[str]) -> Dict[str, Any]:
    from google.protobuf import json_format

    servable = repo.resolve(name, version, label)
    defs = {k: json_format.MessageToDict(v) for k, v in servable.signature_defs.items()}
    return {"model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": {"signature_def": defs}}}


def predict_rest(repo: Repository, name: str, version: Optional[int], label: Optional[str], body: bytes,
                 max_batch: int, logger: Optional[RequestLogger] = None) -> Dict[str, Any]:
    data = protocol.parse_body(body)
    servable = repo.route(name, version, label)
    signature_name = data.get("signature_name") or "serving_default"
    if not isinstance(signature_name, str):
        raise invalid("'signature_name' must be a string")
    fmt, inputs = protocol.to_inputs(data, servable.signature(signature_name).inputs, max_batch)
    outputs = servable.predict(signature_name, inputs)
    response = protocol.to_response(fmt, outputs)
    if logger is not None:
        logger.log_arrays(servable.name, servable.version, signature_name, inputs, outputs)
    return response


def make_api(repo: Repository, max_batch: int, logger: Optional[RequestLogger] = None) -> Api:
    """TF Serving's REST API over ``repo`` for the HTTP layer (``rest.py``)."""

    def get(path: str) -> Dict[str, Any]:
        name, version, label, rest = route(path)
        if rest == "/metadata":
            return metadata(repo, name, version, label)
        if rest:
            raise invalid(f"{rest} needs POST")
        if label is not None:
            version = repo.resolve(name, None, label).version
        return {"model_version_status": repo.status(name, version)}

    def post(path: str, body: bytes) -> Dict[str, Any]:
        name, version, label, rest = route(path)
        if rest != ":predict":
            raise ServingError("UNIMPLEMENTED", f"{rest or 'POST without a method'} is not supported "
                               "(this server implements :predict)")
        return predict_rest(repo, name, version, label, body, max_batch, logger)

    return Api(get=get, post=post)


def grpc_input(name: str, proto: Any, spec: Any, max_batch: int = protocol.MAX_BATCH) -> Any:
    """One gRPC input as an array, held to the signature like TF Serving does (INVALID_ARGUMENT): the exact
    dtype (no float -> int truncation, no bytes parsed as numbers), a shape compatible with the signature's
    (rank included: ``[1, 1]`` or a scalar for a ``[None]`` input is refused), at most ``max_batch`` rows, a
    well-formed TensorProto. The shape is judged on the proto *before* it is expanded: ``make_ndarray``
    repeats a single value to fill the declared shape, so 17 bytes declaring 2**31 rows would allocate GBs."""
    import tensorflow as tf

    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(d < 0 for d in dims):
        raise invalid(f"input {name}: the tensor shape must be fully defined (got {dims})")
    if dims and dims[0] > max_batch:
        raise invalid(f"Batch size {dims[0]} exceeds the maximum allowed ({max_batch}) (input {name})")
    if not spec.shape.is_compatible_with(dims):
        raise invalid(f"input {name}: shape {dims} does not match the signature's "
                      f"{spec.shape.as_list() if spec.shape.rank is not None else 'unknown'}")
    per_row = int(np.prod([d for d in spec.shape.as_list()[1:] if d is not None] or [1])) if spec.shape.rank else 1
    if int(np.prod(dims or [1])) > max(1, max_batch) * per_row:
        raise invalid(f"input {name}: {int(np.prod(dims or [1]))} values is more than {max_batch} rows hold")

    if proto.dtype != spec.dtype.as_datatype_enum:
        try:
            given = tf.dtypes.as_dtype(proto.dtype).name
        except TypeError:
            given = f"DataType {proto.dtype}"
        raise invalid(f"input {name}: expects {spec.dtype.name} but {given} is provided")
    try:
        array = tf.make_ndarray(proto)
    except Exception as e:  # a TensorProto whose content does not fit its shape or dtype
        raise invalid(f"input {name}: malformed TensorProto ({type(e).__name__}: {str(e)[:200]})")
    if not spec.shape.is_compatible_with(array.shape):
        raise invalid(f"input {name}: shape {list(array.shape)} does not match the signature's "
                      f"{spec.shape.as_list() if spec.shape.rank is not None else 'unknown'}")
    return array


def _version_of(spec: Any) -> Tuple[Optional[int], Optional[str]]:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return int(spec.version.value), None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def make_grpc_server(repo: Repository, port: int, max_batch: int, host: str = "127.0.0.1", workers: int = 16,
                     limits: Limits = Limits(), logger: Optional[RequestLogger] = None):
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
                servable = repo.route(request.model_spec.name, version, label)
                signature_name = request.model_spec.signature_name or "serving_default"
                sig = servable.signature(signature_name)
                unknown = sorted(set(request.inputs) - set(sig.inputs))
                missing = sorted(set(sig.inputs) - set(request.inputs))
                if unknown or missing:
                    raise invalid(f"input keys {sorted(request.inputs)} do not match the signature's "
                                  f"{sorted(sig.inputs)}")
                inputs = {k: grpc_input(k, v, sig.inputs[k], max_batch) for k, v in sorted(request.inputs.items())}
                sizes = sorted({v.shape[0] for v in inputs.values() if len(v.shape)})
                if len(sizes) > 1:  # as REST: one row per example in every input (TF would broadcast)
                    raise invalid(f"Expecting all inputs to have the same batch size, got {sizes}")
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
            except Exception as e:  # a bug, not the client's: INTERNAL with the cause, and the server goes on
                abort(context, ServingError("INTERNAL", f"{type(e).__name__}: {e}"[:500]))

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
            except Exception as e:
                abort(context, ServingError("INTERNAL", f"{type(e).__name__}: {e}"[:500]))

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
            except Exception as e:
                abort(context, ServingError("INTERNAL", f"{type(e).__name__}: {e}"[:500]))

    # The receive limit fits the largest batch allowed (max_batch rows of a wide signature is a few MB; the
    # default 4 MB refused a valid 1,024-row taxi batch), as REST's body limit; calls beyond
    # ``maximum_concurrent_rpcs`` are refused with RESOURCE_EXHAUSTED instead of queueing without bound.
    limit = limits.max_body_bytes
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), maximum_concurrent_rpcs=limits.max_pending,
                         options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)])
    prediction = Prediction()
    if logger is not None:  # Predict takes the request's bytes: they are what the log records (see request_log)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "tensorflow.serving.PredictionService",
            {"Predict": grpc.unary_unary_rpc_method_handler(
                _logged(prediction.Predict, predict_pb2.PredictRequest, logger),
                response_serializer=predict_pb2.PredictResponse.SerializeToString)}),))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)  # the other methods
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(Models(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    return server, bound


def _logged(predict: Any, request_type: Any, logger: RequestLogger) -> Any:
    """``predict`` taking the request's bytes, as received, and logging them with the answer it gave (a refusal
    aborts the call, so it is not logged). Bytes that do not parse are refused as gRPC's own deserializer does."""
    import grpc
    from google.protobuf.message import DecodeError

    def handle(raw: bytes, context: Any) -> Any:
        try:
            request = request_type.FromString(raw)
        except DecodeError:
            context.abort(grpc.StatusCode.INTERNAL, "Exception deserializing request!")
        response = predict(request, context)
        logger.log_protos(raw, response)
        return response

    return handle


class LocalServer:
    """REST + gRPC over one ``Repository``; ``start()`` returns once the current versions are loaded."""

    def __init__(self, model_dir: Path, rest_port: int = 8501, grpc_port: int = 8500,
                 model_config_file: Optional[Path] = None, poll_seconds: float = 1.0,
                 max_batch: int = protocol.MAX_BATCH, host: str = "127.0.0.1", limits: Limits = Limits(),
                 logger: Optional[RequestLogger] = None, traffic: Optional[Dict[str, float]] = None) -> None:
        entries = read_model_config(model_config_file, model_dir) if model_config_file else discover(model_dir)
        if not entries:
            raise ServingError("NOT_FOUND", f"no models under {model_dir} (expected <model>/<version>/saved_model.pb;"
                                            " run `sluice run` first, or pass --model-config-file)")
        if traffic and not any(all(label in e.labels for label in traffic) for e in entries):
            raise SettingError("--traffic", f"no model has every label of {', '.join(traffic)} (labels: "
                               f"{ {e.name: sorted(e.labels) for e in entries} })",
                               "give each label a version in --model-config-file (version_labels), e.g. "
                               "stable and canary")
        self.repo = Repository(entries, traffic=traffic)
        self.poll_seconds = poll_seconds
        self.logger = logger
        self.http = RestServer(make_api(self.repo, max_batch, logger), host, rest_port, limits)
        try:
            self.grpc, self.grpc_port = make_grpc_server(self.repo, grpc_port, max_batch, host, limits=limits,
                                                         logger=logger)
        except Exception:
            self.http.close()
            raise
        self.rest_port = self.http.port

    def start(self) -> "LocalServer":
        self.repo.start(self.poll_seconds)
        self.grpc.start()
        self.http.start()
        return self

    def stop(self) -> None:
        """Stop answering, then write what the request log holds (so its last file is complete)."""
        self.repo.stop()
        self.http.stop()
        self.grpc.stop(1).wait(5)  # calls in flight get a second to answer (and be logged)
        if self.logger is not None:
            self.logger.close()

    def models(self) -> List[str]:
        return sorted(self.repo.entries)


def request_logger(args: argparse.Namespace) -> Optional[RequestLogger]:
    """The request log ``--log-requests`` asks for (None without it); a flag that cannot work is refused."""
    import math

    tuning = {"--sample-rate": args.sample_rate, "--log-file-mb": args.log_file_mb,
              "--log-rotate-seconds": args.log_rotate_seconds}
    if not args.log_requests:
        given = [flag for flag, value in tuning.items() if value is not None]
        if given:
            raise SettingError(given[0], "has no effect without --log-requests",
                               "add --log-requests DIR, or leave the flag out")
        return None
    rate = 1.0 if args.sample_rate is None else args.sample_rate
    if not 0.0 < rate <= 1.0:
        raise SettingError("--sample-rate", f"{rate} is outside (0, 1]",
                           "pass the share of answered requests to log, e.g. 0.1 for one in ten")
    megabytes = 64.0 if args.log_file_mb is None else args.log_file_mb
    if not (math.isfinite(megabytes) and megabytes * 1024 * 1024 >= 1024):
        raise SettingError("--log-file-mb", f"{megabytes} is not a size from 0.001 MB up",
                           "pass the size in MB at which a new log file starts, e.g. 64")
    seconds = 300.0 if args.log_rotate_seconds is None else args.log_rotate_seconds
    if not (math.isfinite(seconds) and seconds > 0):
        raise SettingError("--log-rotate-seconds", f"{seconds} is not a positive number of seconds",
                           "pass how old a log file may get before it is finished, e.g. 300")
    try:
        return RequestLogger(args.log_requests, rate, int(megabytes * 1024 * 1024), rotate_seconds=seconds)
    except Exception as e:  # noqa: BLE001 - TensorFlow's file errors are not OSError; the flags are checked above
        raise SettingError(f"--log-requests {args.log_requests}", f"cannot create or use the directory: {e}",
                           "pass a directory this process can write")


def traffic_split(args: argparse.Namespace) -> Optional[Dict[str, float]]:
    """``--traffic stable=90,canary=10`` as label -> weight (None without the flag); refused when it cannot work."""
    import math

    if not args.traffic:
        return None
    fix = "pass label=weight pairs, e.g. --traffic stable=90,canary=10"
    if not args.model_config_file:
        raise SettingError("--traffic", "labels come from a models.config", "add --model-config-file with "
                           "version_labels for each label")
    weights: Dict[str, float] = {}
    for part in args.traffic.split(","):
        label, sep, weight = part.strip().partition("=")
        try:
            value = float(weight)
        except ValueError:
            value = math.nan
        if not sep or not label.strip() or not math.isfinite(value) or value < 0 or label.strip() in weights:
            raise SettingError("--traffic", f"{part.strip()!r} is not a new label=weight with a weight of 0 or more",
                               fix)
        weights[label.strip()] = value
    largest = max(weights.values(), default=0.0)
    if len(weights) < 2 or largest <= 0:
        raise SettingError("--traffic", "a split needs two labels or more and a weight above 0", fix)
    scaled = {label: w / largest for label, w in weights.items()}  # 1e308 + 1e308 would overflow the total
    total = sum(scaled.values())
    return {label: w / total for label, w in scaled.items()}


def serve(args: argparse.Namespace) -> int:
    traffic = traffic_split(args)
    logger = request_logger(args)
    try:
        server = LocalServer(Path(args.model_dir), args.rest_port, args.grpc_port,
                             Path(args.model_config_file) if args.model_config_file else None, args.poll_seconds,
                             host=args.host, logger=logger, traffic=traffic).start()
    except BaseException:
        if logger is not None:
            logger.close()
        raise
    unloaded = {name: server.repo.unloaded_labels(name) for name in server.models() if server.repo.split(name)}
    unloaded = {name: labels for name, labels in unloaded.items() if labels}
    if unloaded:  # TF Serving refuses such a config at start; a split to a version that never loads is no split
        server.stop()
        name, labels = next(iter(unloaded.items()))
        raise SettingError("--traffic", f"{name}'s label(s) {', '.join(f'{k} (version {v})' for k, v in labels.items())}"
                           " point at versions that did not load", "label versions that exist and that the "
                           "version policy loads (specific { versions: … } naming both)")
    for name in server.models():
        try:
            versions = ", ".join(r["version"] for r in server.repo.status(name))
        except ServingError as e:
            versions = e.message
        print(f"sluice serve: {name} (versions {versions})", flush=True)
    if traffic:
        split = ", ".join(f"{label} {share:.0%}" for label, share in traffic.items())
        for name in server.models():
            if server.repo.split(name):
                labels = server.repo.entries[name].labels
                print(f"  {name}: requests without a version or label go to {split} "
                      f"({', '.join(f'{k} = version {labels[k]}' for k in traffic)})", flush=True)
            else:
                print(f"  {name}: not split (its models.config entry lacks a label of --traffic): requests "
                      "without a version or label go to its newest version", flush=True)
    print(f"  REST  http://{args.host}:{server.rest_port}/v1/models/<model>[:predict]", flush=True)
    print(f"  gRPC  {args.host}:{server.grpc_port} (tensorflow_serving.apis PredictionService, ModelService)", flush=True)
    if logger is not None:
        print(f"  logging a share of {logger.sample_rate:g} of answered requests as PredictionLog files under "
              f"{args.log_requests} (`sluice monitor --config CONFIG --logs {args.log_requests}` reads them)",
              flush=True)
        for path in logger.recovered:
            print(f"  finished {path}, left by a server that was killed", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    if logger is not None:
        print(f"sluice serve: {logger.summary()}", flush=True)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", default="output/serving", help="the Pusher's serving directory")
    parser.add_argument("--rest-port", type=int, default=8501)
    parser.add_argument("--grpc-port", type=int, default=8500)
    parser.add_argument("--model-config-file", help="a TF Serving models.config (version policy, labels)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="how often new versions are picked up")
    parser.add_argument("--traffic", metavar="LABEL=W,...", help="split predict requests that name no version or "
                        "label by version label, e.g. stable=90,canary=10 (labels from --model-config-file)")
    parser.add_argument("--log-requests", metavar="DIR",
                        help="write answered requests as TF Serving PredictionLog TFRecord files under DIR")
    parser.add_argument("--sample-rate", type=float, default=None,
                        help="the share of answered requests to log, in (0, 1] (default 1: every one)")
    parser.add_argument("--log-file-mb", type=float, default=None,
                        help="start a new log file past this size (default 64)")
    parser.add_argument("--log-rotate-seconds", type=float, default=None,
                        help="finish a log file this old even when it is small (default 300)")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sluice.serving.server")
    add_arguments(parser)
    try:
        return serve(parser.parse_args(argv))
    except ServingError as e:
        print(f"sluice serve: {e.message}", file=sys.stderr)
        return 2
    except SettingError as e:
        print(f"sluice serve: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
