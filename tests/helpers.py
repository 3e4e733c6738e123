"""Shared test helpers: sample data, config variants, tf.Examples from CSV rows."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import yaml

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "taxi" / "data.csv"
SCHEMA = ROOT / "schemas" / "taxi" / "schema.pbtxt"
CONFIGS = ROOT / "configs"
WINE_DATA = ROOT / "data" / "wine" / "wine.csv"
WINE_SCHEMA = ROOT / "schemas" / "wine" / "schema.pbtxt"


def sample_csv(dest: Path, rows: int) -> Path:
    """The first ``rows`` data rows of the bundled CSV (plus header)."""
    with open(DATA, newline="") as src, open(dest, "w", newline="") as out:
        for i, line in enumerate(src):
            if i > rows:
                break
            out.write(line)
    return dest


def config_variant(name: str, dest_dir: Path, data: Path, schema: Path = SCHEMA, tflite: bool = True,
                   **model_overrides: Any) -> Path:
    """A copy of ``configs/<name>.yaml`` with absolute paths, ``data`` as source, and model overrides.
    ``tflite=False``: the SavedModel target only, for tests about something else (the TFLite conversions
    and their parity gate are a fifth of a run; tests/e2e/test_export.py and the session runs cover them)."""
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    raw["data"]["path"] = str(data)
    raw["schema"] = str(schema)
    if not tflite:
        raw["export"]["targets"] = ["saved_model"]
        raw["export"].pop("tflite_variants", None)
    raw["model"].update(model_overrides)
    dest = dest_dir / f"{name}.yaml"
    dest.write_text(yaml.safe_dump(raw, sort_keys=False))
    return dest


def run_cli(*args: str, timeout: int = 900, env: Dict[str, str] = None) -> subprocess.CompletedProcess:
    """Run the installed ``sluice`` console script as a user would (``env``: variables added to this one's)."""
    exe = Path(sys.executable).parent / "sluice"
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def run_json(*args: str) -> Dict[str, Any]:
    proc = run_cli(*args, "--json")
    assert proc.stdout.strip(), f"no JSON on stdout; stderr:\n{proc.stderr[-4000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["_exit"] = proc.returncode
    result["_stderr"] = proc.stderr
    return result


def serialized_examples(csv_path: Path, columns: List[str], limit: int) -> List[bytes]:
    """tf.Examples of the given raw columns, typed by the curated schema; empty cells are left out."""
    import tensorflow as tf
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = text_format.Parse(SCHEMA.read_text(), schema_pb2.Schema())
    types = {f.name: f.type for f in schema.feature}
    out = []
    with open(csv_path, newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i >= limit:
                break
            feature = {}
            for col in columns:
                value = row[col]
                if value == "":
                    continue
                t = types[col]
                if t == schema_pb2.INT:
                    feature[col] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(float(value))]))
                elif t == schema_pb2.FLOAT:
                    feature[col] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
                else:
                    feature[col] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
            out.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return out


def post_json(url: str, body: Any, raw: bool = False):
    """POST ``body`` (JSON, or bytes as they are with ``raw``) to ``url``: ``(status, parsed JSON answer)``,
    4xx/5xx answers included."""
    import urllib.error
    import urllib.request

    data = body if raw else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a reaper that never comes counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
