"""``InfraCheck``: the candidate model must load and answer in a TF Serving–compatible server before it is
pushed — TFX's InfraValidator idea without Docker or Kubernetes (which it requires, and this machine lacks).

The executor puts the candidate SavedModel in a scratch model tree, starts ``python -m sluice.serving.server``
in a separate process on free ports, waits until the version is AVAILABLE, replays the export's warmup
requests over gRPC and REST, and checks each answer: a success status, finite outputs, and agreement with the
same signature called in process (relative 1e-5). The verdict is TFX's ``InfraBlessing`` (custom property
``blessed``), which the Pusher already honours; ``infra_check.json`` says what was checked and what failed.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, path_utils

from sluice.components import artifact_io as aio, lifeline, verdicts
from sluice.components.contracts import InfraCheckContract
from sluice.components.export.component import WARMUP_PATH, ExportedModel

REPORT_FILE = verdicts.FILES["infra"]
_PORTS = re.compile(r"(REST\s+http://127\.0\.0\.1:(\d+)|gRPC\s+127\.0\.0\.1:(\d+))")


def start_server(model_dir: str, log_path: str, timeout: float = 120.0, extra_args: Sequence[str] = ()):
    """Start the local server on free ports; returns ``(process, rest_port, grpc_port)``."""
    log = open(log_path, "w")
    proc = subprocess.Popen(lifeline.command([sys.executable, "-u", "-m", "sluice.serving.server",
                                              "--model-dir", model_dir, "--rest-port", "0", "--grpc-port", "0",
                                              *extra_args]),
                            stdout=subprocess.PIPE, stderr=log, text=True)
    rest = grpc_port = None
    deadline = time.monotonic() + timeout
    while (rest is None or grpc_port is None) and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        for match in _PORTS.finditer(line):
            rest = int(match.group(2)) if match.group(2) else rest
            grpc_port = int(match.group(3)) if match.group(3) else grpc_port
    if rest is None or grpc_port is None:
        proc.kill()
        raise RuntimeError(f"the local server did not start (log: {log_path})")
    return proc, rest, grpc_port


def _rest_body(request: Any) -> Dict[str, Any]:
    import tensorflow as tf

    inputs = {}
    for name, proto in request.inputs.items():
        values = tf.make_ndarray(proto)
        inputs[name] = ([{"b64": base64.b64encode(v).decode()} for v in values.reshape(-1)]
                        if values.dtype == object else values.tolist())
    return {"signature_name": request.model_spec.signature_name, "inputs": inputs}


def check(model_dir: str, model_name: str, requests: List[Any], work: str, rtol: float = 1e-5
          ) -> Dict[str, Any]:
    """Serve ``model_dir`` as version 1 of ``model_name`` in a separate process and replay ``requests``."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from sluice.serving.client import RestClient

    tree = os.path.join(work, "models", model_name)
    os.makedirs(tree, exist_ok=True)
    # A local copy, whatever the candidate's filesystem: the server is another process (it cannot see this
    # process's ram:// files) and would otherwise read a gs:// model remotely.
    io_utils.copy_dir(model_dir, os.path.join(tree, "1"))
    model_dir = os.path.join(tree, "1")
    failures: List[str] = []
    checked = {"grpc": 0, "rest": 0}
    started = time.monotonic()
    proc, rest_port, grpc_port = start_server(os.path.join(work, "models"), os.path.join(work, "server.log"))
    try:
        rest = RestClient(f"http://127.0.0.1:{rest_port}", model_name)
        status = rest.status()["model_version_status"]
        if not status or status[0]["state"] != "AVAILABLE":
            failures.append(f"model status is {status} (expected version 1 AVAILABLE)")
        loaded = tf.saved_model.load(model_dir)
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for i, request in enumerate(requests):
            request.model_spec.name = model_name
            signature = request.model_spec.signature_name or "serving_default"
            inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
            expected = loaded.signatures[signature](**inputs)["outputs"].numpy()
            answers = {}
            try:
                answers["grpc"] = tf.make_ndarray(stub.Predict(request, timeout=60).outputs["outputs"])
            except grpc.RpcError as e:
                failures.append(f"request {i} ({signature}) over gRPC: {e.code().name}: {e.details()}")
            try:
                response = rest._call(f"/v1/models/{model_name}:predict", _rest_body(request))
                outputs = response["outputs"]  # several outputs (multi-class: + "classes") come by name
                answers["rest"] = np.asarray(outputs["outputs"] if isinstance(outputs, dict) else outputs,
                                             dtype=np.float64)
            except Exception as e:
                failures.append(f"request {i} ({signature}) over REST: {e}")
            for how, got in answers.items():
                checked[how] += 1
                got = np.asarray(got).reshape(expected.shape)
                if not np.all(np.isfinite(got)):
                    failures.append(f"request {i} ({signature}) over {how}: non-finite outputs")
                elif not np.allclose(got, expected, rtol=rtol, atol=1e-6):
                    failures.append(f"request {i} ({signature}) over {how}: answers differ from in-process "
                                    f"predictions by up to {float(np.max(np.abs(got - expected))):.3g}")
        channel.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"blessed": not failures and all(checked.values()), "failures": failures[:20], "requests": len(requests),
            "checked": checked, "seconds": round(time.monotonic() - started, 2)}


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        from sluice.components.export import warmup

        contract = InfraCheckContract.parse(exec_properties["contract"])
        model_uri = artifact_utils.get_single_uri(input_dict["model"])
        export_uri = artifact_utils.get_single_uri(input_dict["export"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        fileio.makedirs(blessing.uri)
        requests = warmup.read(aio.join(export_uri, WARMUP_PATH))[: contract.max_requests]
        with tempfile.TemporaryDirectory(prefix="sluice-infra-") as work:
            try:
                verdict = check(path_utils.serving_model_path(model_uri), contract.model_name, requests, work)
            except Exception as e:  # a server that cannot start is a failed check, not a crashed pipeline
                verdict = {"blessed": False, "failures": [f"{type(e).__name__}: {e}"], "requests": len(requests)}
            aio.keep_logs(work, blessing.uri)  # server.log
        verdicts.write(blessing.uri, "infra", verdict, passed=verdict["blessed"])
        blessing.set_int_custom_property("blessed", int(verdict["blessed"]))
        for line in verdict["failures"]:
            logging.error("InfraCheck: %s", line)


class InfraCheckSpec(types.ComponentSpec):
    PARAMETERS = {"contract": ExecutionParameter(type=str)}
    INPUTS = {"model": ChannelParameter(type=standard_artifacts.Model),
              "export": ChannelParameter(type=ExportedModel)}
    OUTPUTS = {"blessing": ChannelParameter(type=standard_artifacts.InfraBlessing)}


class InfraCheck(base_component.BaseComponent):
    """``InfraCheck(model, export, contract=InfraCheckContract JSON)`` -> ``blessing`` (InfraBlessing)."""

    SPEC_CLASS = InfraCheckSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model, export, contract: str):
        super().__init__(spec=InfraCheckSpec(model=model, export=export, contract=contract,
                                             blessing=types.Channel(type=standard_artifacts.InfraBlessing)))


def read_report(blessing_uri: str) -> Optional[Dict[str, Any]]:
    return verdicts.read(blessing_uri, "infra")
