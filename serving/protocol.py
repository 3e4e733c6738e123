"""TF Serving's REST predict API, as pure functions: JSON body -> input arrays, outputs -> JSON.

Row format: ``{"instances": [{"name": value, ...}, ...]}`` (or bare values for a one-input signature),
answered with ``{"predictions": [...]}``. Columnar: ``{"inputs": {"name": [values...]}}`` answered with
``{"outputs": ...}``. Binary strings travel as ``{"b64": "..."}``. ``signature_name`` picks the signature.
Each malformed request gets TF Serving's status code and a message naming the element and field.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from sluice.serving.errors import invalid

MAX_BATCH = 1024
"""Rows per request; more is refused (TF Serving with batching refuses beyond max_batch_size)."""

_KINDS = {"string": (str,), "float": (int, float), "int": (int,), "bool": (bool,)}


def parse_body(body: bytes) -> Dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8") if body else "")
    except (ValueError, UnicodeDecodeError) as e:
        raise invalid(f"JSON Parse error: {e}")
    except RecursionError:
        raise invalid("JSON Parse error: the document is nested too deeply")
    if not isinstance(data, dict):
        raise invalid("JSON Parse error: the request body must be a JSON object")
    if "instances" in data and "inputs" in data:
        raise invalid("Not both 'instances' and 'inputs' can be specified in a request")
    if "instances" not in data and "inputs" not in data:
        raise invalid("Missing 'inputs' or 'instances' key")
    return data


def _kind(dtype: Any) -> str:
    import tensorflow as tf

    if dtype == tf.string:
        return "string"
    if dtype == tf.bool:
        return "bool"
    return "int" if dtype.is_integer else "float"


def _value(raw: Any, kind: str, where: str) -> Any:
    """One scalar JSON value checked against the input's dtype (b64 for strings)."""
    if isinstance(raw, dict):
        if set(raw) != {"b64"} or not isinstance(raw["b64"], str):
            raise invalid(f"{where}: a JSON object value must be {{\"b64\": <base64 string>}}")
        if kind != "string":
            raise invalid(f"{where}: {{\"b64\": ...}} is only valid for a string input")
        try:
            return base64.b64decode(raw["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise invalid(f"{where}: Unable to base64 decode")
    if isinstance(raw, list):
        raise invalid(f"{where}: Expecting a scalar value, got a list (this signature takes one value per row)")
    ok = isinstance(raw, _KINDS[kind]) and not (kind != "bool" and isinstance(raw, bool))
    if not ok:
        shown = json.dumps(raw)[:40]
        raise invalid(f"{where}: JSON Value: {shown} Type: {type(raw).__name__} is not of expected type: {kind}")
    if kind == "string":
        try:
            return raw.encode()
        except UnicodeEncodeError:
            raise invalid(f"{where}: the string is not valid Unicode (it holds a lone surrogate)")
    return raw


def _column(values: List[Any], dtype: Any, name: str) -> np.ndarray:
    """The values as the input's dtype; a number the dtype cannot hold is the client's error (TF Serving:
    INVALID_ARGUMENT), never a silent wrap-around or infinity."""
    kind = _kind(dtype)
    if kind == "string":
        return np.array(values, dtype=object)
    if kind == "int" and not all(_fits(v, dtype) for v in values):
        array = None  # NumPy 1.26 wraps int32/uint8 with only a DeprecationWarning: judged here instead
    else:
        try:
            with np.errstate(over="raise", invalid="raise"):
                array = np.array(values, dtype=dtype.as_numpy_dtype)
        except (OverflowError, FloatingPointError, ValueError):
            array = None
    if kind == "float" and array is not None:
        given = np.isfinite(np.array([v if isinstance(v, float) else 0.0 for v in values], dtype=np.float64))
        if np.any(given & ~np.isfinite(array)):
            array = None
    if array is None:
        bad = next((v for v in values if not _fits(v, dtype)), values[0] if values else None)
        raise invalid(f"input {name}: value {str(bad)[:40]} is out of range for {dtype.name}")
    return array


def _fits(value: Any, dtype: Any) -> bool:
    import math

    if _kind(dtype) == "int":
        info = np.iinfo(dtype.as_numpy_dtype)
        return info.min <= value <= info.max
    try:
        return math.isinf(value) or abs(float(value)) <= float(np.finfo(dtype.as_numpy_dtype).max)
    except OverflowError:
        return False


def to_inputs(data: Mapping[str, Any], specs: Mapping[str, Any], max_batch: int = MAX_BATCH
              ) -> Tuple[str, Dict[str, np.ndarray]]:
    """``(format, {input name: [rows] array})`` from a parsed body, checked against the signature's inputs."""
    names = sorted(specs)
    if "instances" in data:
        rows = data["instances"]
        if not isinstance(rows, list):
            raise invalid("'instances' must be a JSON list")
        if not rows:
            raise invalid("'instances' is an empty list: send at least one instance")
        if len(rows) > max_batch:
            raise invalid(f"Batch size {len(rows)} exceeds the maximum allowed ({max_batch})")
        columns: Dict[str, List[Any]] = {n: [] for n in names}
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or (set(row) == {"b64"} and names != ["b64"]):  # a bare (b64) value
                if len(names) != 1:
                    raise invalid(f"Failed to process element: {i} of 'instances' list. Error: Invalid argument: "
                                  f"expected a JSON object with named inputs {names}")
                row = {names[0]: row}
            unknown = sorted(set(row) - set(names))
            if unknown:
                raise invalid(f"Failed to process element: {i} key: {unknown[0]} of 'instances' list. Error: Invalid "
                              f"argument: JSON object: does not have named input: {unknown[0]} (inputs: {', '.join(names)})")
            missing = [n for n in names if n not in row]
            if missing:
                raise invalid(f"Failed to process element: {i} of 'instances' list. Error: Invalid argument: "
                              f"missing named input: {missing[0]}")
            for n in names:
                where = f"Failed to process element: {i} key: {n} of 'instances' list. Error: Invalid argument"
                columns[n].append(_value(row[n], _kind(specs[n].dtype), where))
        return "row", {n: _column(columns[n], specs[n].dtype, n) for n in names}
    inputs = data["inputs"]
    if not isinstance(inputs, dict) or (set(inputs) == {"b64"} and names != ["b64"]):
        if len(names) != 1:
            raise invalid(f"'inputs' must be a JSON object with named inputs {names}")
        inputs = {names[0]: inputs}
    unknown = sorted(set(inputs) - set(names))
    if unknown:
        raise invalid(f"'inputs' has no named input {unknown[0]} (inputs: {', '.join(names)})")
    missing = [n for n in names if n not in inputs]
    if missing:
        raise invalid(f"'inputs' is missing named input: {missing[0]}")
    out = {}
    sizes = set()
    for n in names:
        values = inputs[n]
        if not isinstance(values, list):
            raise invalid(f"'inputs' key {n}: expected a list of values, one per row")
        sizes.add(len(values))
        out[n] = _column([_value(v, _kind(specs[n].dtype), f"'inputs' key {n} element {i}")
                          for i, v in enumerate(values)], specs[n].dtype, n)
    if len(sizes) > 1:
        raise invalid(f"Expecting tensors in 'inputs' to have the same batch size, got {sorted(sizes)} (ragged batch)")
    size = sizes.pop()
    if size == 0:
        raise invalid("'inputs' lists are empty: send at least one row")
    if size > max_batch:
        raise invalid(f"Batch size {size} exceeds the maximum allowed ({max_batch})")
    return "columnar", out


def _text(value: bytes, name: str) -> Any:
    """A string output value as TF Serving writes it: a JSON string, or ``{"b64": …}`` when the output's name
    ends in ``_bytes`` (or the bytes are not UTF-8 text)."""
    if not name.endswith("_bytes"):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(value).decode()}


def _jsonable(array: np.ndarray, name: str = "") -> Any:
    if array.dtype == object or array.dtype.kind == "S":
        return np.vectorize(lambda v: _text(v, name) if isinstance(v, bytes) else v, otypes=[object])(array).tolist()
    return array.tolist()


def to_response(fmt: str, outputs: Mapping[str, np.ndarray]) -> Dict[str, Any]:
    """TF Serving's response: one output -> its values; several -> named (per row for the row format)."""
    if fmt == "row":
        if len(outputs) == 1:
            name, values = next(iter(outputs.items()))
            return {"predictions": _jsonable(values, name)}
        rows = len(next(iter(outputs.values())))
        return {"predictions": [{k: _jsonable(v[i:i + 1], k)[0] for k, v in outputs.items()} for i in range(rows)]}
    if len(outputs) == 1:
        name, values = next(iter(outputs.items()))
        return {"outputs": _jsonable(values, name)}
    return {"outputs": {k: _jsonable(v, k) for k, v in outputs.items()}}
