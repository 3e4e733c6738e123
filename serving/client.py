"""Clients for TF Serving and ``sluice serve`` (same API): raw feature rows in, predictions out.

``RestClient`` posts ``{"signature_name": "serving_raw", "instances": rows}`` (every raw column present, as
``serving_raw`` requires — ``fill_rows`` puts in what is missing); ``GrpcClient`` sends the same columns as
``TensorProto``s through ``PredictionService.Predict``. Both raise ``ServingError`` with the server's code
and message.
"""

from __future__ import annotations

import csv
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from sluice.serving.errors import ServingError

SIGNATURE = "serving_raw"
_DTYPES = {"DT_STRING": "string", "DT_FLOAT": "float", "DT_DOUBLE": "float", "DT_INT64": "int64", "DT_INT32": "int32"}
_NUMPY = {"string": object, "float": np.float32, "int64": np.int64, "int32": np.int32}
_HTTP_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 501: "UNIMPLEMENTED",
               503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def read_rows(path: Path) -> List[Dict[str, Any]]:
    """Rows from a CSV (header; empty cells left out) or a JSON file (a list of objects, or {"instances": …})."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        rows = data["instances"] if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"{path}: expected a JSON list of objects (one per row) or {{\"instances\": [...]}}")
        return rows
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def _number(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


def fill_rows(rows: Sequence[Mapping[str, Any]], inputs: Mapping[str, str],
              defaults: Optional[Mapping[str, Any]] = None) -> List[Dict[str, Any]]:
    """Each row reduced to the signature's inputs, typed, with missing values filled (default, else 0 / "")."""
    defaults = defaults or {}
    out = []
    for row in rows:
        filled = {}
        for name, dtype in inputs.items():
            value = row.get(name, defaults.get(name))
            if dtype == "string":
                filled[name] = "" if value is None else str(value)
            elif dtype.startswith("int"):
                filled[name] = 0 if value is None else int(float(value))
            else:
                filled[name] = 0.0 if value is None else float(value)
        out.append(filled)
    return out


class RestClient:
    def __init__(self, endpoint: str, model: str, timeout: float = 30.0):
        self.endpoint = endpoint.rstrip("/")
        self.model = model
        self.timeout = timeout

    def _call(self, path: str, body: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.endpoint}{path}", data=data, method="POST" if data else "GET",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error", str(e))
            except ValueError:
                message = str(e)
            raise ServingError(_HTTP_CODES.get(e.code, "UNKNOWN"), message) from None

    def status(self) -> Dict[str, Any]:
        return self._call(f"/v1/models/{self.model}")

    def metadata(self) -> Dict[str, Any]:
        return self._call(f"/v1/models/{self.model}/metadata")

    def input_types(self, signature: str = SIGNATURE) -> Dict[str, str]:
        """Input name -> "string" / "float" / "int64" from the model's metadata."""
        defs = self.metadata()["metadata"]["signature_def"]["signature_def"]
        if signature not in defs:
            raise ServingError("INVALID_ARGUMENT", f"the model has no signature {signature!r} (has: {sorted(defs)})")
        return {k: _DTYPES.get(v["dtype"], "float") for k, v in defs[signature]["inputs"].items()}

    def predict(self, rows: Sequence[Mapping[str, Any]], signature: str = SIGNATURE) -> Dict[str, np.ndarray]:
        """Output name -> values per row (``outputs``; multi-class models also answer ``classes``)."""
        response = self._call(f"/v1/models/{self.model}:predict",
                              {"signature_name": signature, "instances": list(rows)})
        return _columns(response["predictions"])


def _columns(predictions: List[Any]) -> Dict[str, np.ndarray]:
    """TF Serving's row-format ``predictions``: one output -> its values; several -> one object per row."""
    if predictions and isinstance(predictions[0], dict):
        return {name: np.asarray([row[name] for row in predictions]) for name in predictions[0]}
    return {"outputs": np.asarray(predictions, dtype=np.float64)}


class GrpcClient:
    def __init__(self, target: str, model: str, timeout: float = 30.0):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.channel = grpc.insecure_channel(target)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model = model
        self.timeout = timeout

    def predict_columns(self, columns: Mapping[str, np.ndarray], signature: str = SIGNATURE) -> np.ndarray:
        """The ``outputs`` tensor for ``columns`` (name -> ``[rows]`` values)."""
        return self.predict_all(columns, signature)["outputs"]

    def predict_all(self, columns: Mapping[str, np.ndarray], signature: str = SIGNATURE) -> Dict[str, np.ndarray]:
        """Every output tensor for ``columns``, by name."""
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model
        request.model_spec.signature_name = signature
        for name, values in columns.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
        try:
            response = self.stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise ServingError(e.code().name, e.details()) from None
        return {name: tf.make_ndarray(tensor) for name, tensor in response.outputs.items()}

    def input_types(self, signature: str = SIGNATURE) -> Dict[str, str]:
        """Input name -> "string" / "float" / "int64", from ``GetModelMetadata``."""
        import grpc
        from tensorflow.core.framework import types_pb2
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = self.model
        try:
            response = self.stub.GetModelMetadata(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise ServingError(e.code().name, e.details()) from None
        defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(defs)
        if signature not in defs.signature_def:
            raise ServingError("INVALID_ARGUMENT", f"the model has no signature {signature!r}")
        inputs = defs.signature_def[signature].inputs
        return {k: _DTYPES.get(types_pb2.DataType.Name(v.dtype), "float") for k, v in inputs.items()}

    def predict(self, rows: Sequence[Mapping[str, Any]], signature: str = SIGNATURE) -> Dict[str, np.ndarray]:
        """``rows`` as from ``fill_rows`` (every input present); output name -> values per row."""
        types = self.input_types(signature)
        columns = {}
        for name, kind in types.items():
            values = [row[name] for row in rows]
            columns[name] = np.array([str(v).encode() for v in values], dtype=object) if kind == "string" \
                else np.array(values, dtype=_NUMPY[kind])
        return self.predict_all(columns, signature)

    def close(self) -> None:
        self.channel.close()
