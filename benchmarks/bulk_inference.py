"""Bulk scoring on Beam (``sluice predict --output``) vs calling the pushed model's ``serving_raw`` in process.

The same 100k rows (the bundled taxi data repeated, each copy with its own ``trip_id`` key) are scored by:

- the reference: the loaded SavedModel's ``serving_raw`` called in this process on ready-made column tensors
  in batches of 1024 (the model's own speed; no CSV, no I/O, empty cells given their fill value);
- ``sluice predict --output`` with Beam's DirectRunner, ``in_memory`` and ``multi_processing`` (one worker per
  core): CSV parsing, the examples, RunInference, the CSV + PredictionLog + dead-letter writes. Its rate is
  rows / the Beam pipeline's seconds (``summary.json``); the command's wall time (start-up and model load
  included) is reported beside it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, default_pipeline_outputs, ratio, write_result  # noqa: E402

WORK = Path(__file__).resolve().parent / "work" / "deploy"  # the pipeline run serving.py and export.py use
ROWS = int(os.environ.get("SLUICE_BENCH_BULK_ROWS", "100000"))
BATCH = 1024


def _table(path: Path) -> int:
    """``ROWS`` rows of the bundled data with a ``trip_id`` key column."""
    with open(ROOT / "data" / "taxi" / "data.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trip_id", *header])
        for i in range(ROWS):
            writer.writerow([i, *rows[i % len(rows)]])
    return ROWS


def _in_process(pushed: str, path: Path) -> float:
    """Rows per second of ``serving_raw`` on the table's columns, batches of ``BATCH``."""
    import tensorflow as tf

    from sluice.components.features import request_key

    fn = tf.saved_model.load(pushed).signatures["serving_raw"]
    _, specs = fn.structured_input_signature
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    columns = {}
    for column in table[0]:
        key = request_key(column, specs)
        if key not in specs:
            continue
        dtype = specs[key].dtype
        cells = [row[column] for row in table]
        if dtype == tf.string:
            columns[key] = tf.constant(np.array([c.encode() for c in cells], dtype=object))
        else:
            columns[key] = tf.constant(np.array([float(c) if c else 0 for c in cells]), dtype=dtype)
    fn(**{k: v[:BATCH] for k, v in columns.items()})
    start = time.perf_counter()
    for i in range(0, len(table), BATCH):
        fn(**{k: v[i:i + BATCH] for k, v in columns.items()})
    return len(table) / (time.perf_counter() - start)


def _bulk(serving: str, model: str, path: Path, out: Path, mode: str, workers: int) -> dict:
    exe = Path(sys.executable).parent / "sluice"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    start = time.perf_counter()
    proc = subprocess.run([str(exe), "predict", "--input", str(path), "--output", str(out), "--model-dir", serving,
                           "--model", model, "--keys", "trip_id", "--direct-running-mode", mode,
                           "--direct-num-workers", str(workers)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"sluice predict failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"rows": summary["scored"], "dead_letter": summary["dead_letter"], "beam_seconds": summary["seconds"],
            "wall_seconds": round(wall, 2), "rows_per_s": round(summary["scored"] / summary["seconds"], 1)}


def main() -> None:
    cfg, record = default_pipeline_outputs(WORK)
    pushed = record.pushed_destination
    serving = str(Path(pushed).parent.parent)
    table = WORK / "bulk" / "table.csv"
    table.parent.mkdir(parents=True, exist_ok=True)
    _table(table)
    results = {"in_process_rows_per_s": round(_in_process(pushed, table), 1)}
    for mode, workers in (("in_memory", 1), ("multi_processing", 0)):
        results[mode] = _bulk(serving, cfg.model_name, table, WORK / "bulk" / f"out-{mode}", mode, workers)
        print(mode, results[mode], flush=True)
    reference = results["in_process_rows_per_s"]
    rows = []
    for mode in ("in_memory", "multi_processing"):
        r = results[mode]
        rows.append({"measure": f"sluice predict --output, {r['rows']:,} rows, DirectRunner {mode}: rows/s of the Beam "
                                f"run (command wall {r['wall_seconds']} s incl. start-up; {r['dead_letter']} dead "
                                f"letters) vs in-process serving_raw, batches of {BATCH}",
                     "sluice": r["rows_per_s"], "reference": reference, "unit": "rows/s",
                     "ratio": ratio(r["rows_per_s"], reference), "goal": "every row scored or dead-lettered"})
    write_result("bulk_inference", rows, results, notes="reference = the pushed model's serving_raw on ready column "
                 "tensors in this process (no CSV parsing or writing)")


if __name__ == "__main__":
    main()
