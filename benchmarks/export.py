"""Export: size of each TFLite variant, and single-row / batch-256 latency of each against an in-process
SavedModel ``serving_raw`` call (the same model, Transform included, same rows).

Uses the default pipeline's pushed model on the bundled data (run or reused in ``benchmarks/work/export``);
the ExportArchive is rebuilt so that every variant (float16 too, which the default config does not ship) is
converted the way ModelExport converts. TFLite is timed as an app calls it: inputs resized once to the batch
shape, then ``set_tensor`` + ``invoke`` + ``get_tensor`` (``tflite_*``); the signature-runner convenience
call, which re-resizes every input on every call, is reported too (``runner_*``).
Goals: TFLite fp32 single-row ≤ 0.05× the SavedModel call; int8 size ≤ 0.3× fp32.
Results: results/export.json.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import statistics  # noqa: E402

from common import REPS, default_pipeline_outputs, ratio, write_result  # noqa: E402

WORK = Path(__file__).resolve().parent / "work" / "deploy"  # shared with serving.py: one pipeline run
CALLS = int(os.environ.get("SLUICE_BENCH_EXPORT_CALLS", "300"))


def _per_call(fn, calls: int) -> float:
    fn()  # warm
    samples = []
    for _ in range(REPS):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)  # seconds (common.median rounds to 10 ms)


def _tflite_call(path: str, batch: dict):
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=path)
    # Input tensors are named "serving_raw_<column>:0" by the converter.
    details = {d["name"][len("serving_raw_"):].rsplit(":", 1)[0]: d for d in interpreter.get_input_details()}
    for name, d in details.items():
        interpreter.resize_tensor_input(d["index"], [len(batch[name])])
    interpreter.allocate_tensors()
    output = interpreter.get_output_details()[0]["index"]

    def call():
        for name, d in details.items():
            interpreter.set_tensor(d["index"], batch[name])
        interpreter.invoke()
        return interpreter.get_tensor(output)

    runner = tf.lite.Interpreter(model_path=path).get_signature_runner("serving_raw")
    reference = runner(**batch)["outputs"]
    assert abs(call() - reference).max() < 1e-4, "the raw-tensor call must answer like the signature runner"
    return call, (lambda: runner(**batch))


def main() -> None:
    import tensorflow as tf
    import tensorflow_transform as tft

    from sluice.components.export import tflite
    from sluice.components.export.rows import read_rows
    from sluice.components.trainer.signatures import keras_model_path, serving_columns

    cfg, record = default_pipeline_outputs(WORK)
    contract = cfg.export_contract()
    transform_dir = record.inputs["Trainer"]["TransformGraph"]
    examples = record.outputs["CsvExampleGen"]["Examples"]
    spec = serving_columns(tft.TFTransformOutput(transform_dir), contract)
    rows = read_rows(examples, "eval", contract.features, spec, 256)
    train = read_rows(examples, "train", contract.features, spec, contract.calibration_rows)
    saved = tf.saved_model.load(record.pushed_destination).signatures["serving_raw"]

    work = Path(tempfile.mkdtemp(prefix="sluice-export-bench-"))
    tflite.run_step({"step": "archive", "keras_model": keras_model_path(record.model_uri),
                     "transform_dir": transform_dir, "contract": contract.to_json(), "out_dir": str(work / "archive")},
                    str(work), "archive")
    np.savez(work / "rep.npz", **train.columns)
    sizes, latency, runner_latency = {}, {}, {}
    batches = {"single": {k: v[:1] for k, v in rows.columns.items()}, "batch256": rows.columns}
    for variant in tflite.VARIANTS:
        path = str(work / f"{variant}.tflite")
        tflite.run_step({"step": "convert", "archive_dir": str(work / "archive"), "variant": variant,
                         "out_path": path, "representative": str(work / "rep.npz")}, str(work), variant)
        sizes[variant] = os.path.getsize(path)
        for shape, batch in batches.items():
            fast, convenient = _tflite_call(path, batch)
            latency[f"{variant}_{shape}"] = _per_call(fast, CALLS)
            runner_latency[f"{variant}_{shape}"] = _per_call(convenient, CALLS)
    for shape, batch in batches.items():
        tensors = {k: tf.constant(v) for k, v in batch.items()}
        latency[f"saved_model_{shape}"] = _per_call(lambda: saved(**tensors), CALLS)

    us = {k: round(v * 1e6, 1) for k, v in latency.items()}
    rows_out = []
    for variant in tflite.VARIANTS:
        rows_out.append({"measure": f"{variant} size", "sluice": round(sizes[variant] / 1024, 1),
                         "reference": round(sizes["float32"] / 1024, 1), "ratio": ratio(sizes[variant], sizes["float32"]),
                         "unit": "KiB", "goal": "≤ 0.3 (int8)" if variant == "int8" else ""})
    for variant in tflite.VARIANTS:
        for shape in batches:
            key = f"{variant}_{shape}"
            rows_out.append({"measure": f"{variant} {shape} latency vs SavedModel serving_raw", "sluice": us[key],
                             "reference": us[f"saved_model_{shape}"], "unit": "µs",
                             "ratio": ratio(latency[key], latency[f"saved_model_{shape}"]),
                             "goal": "≤ 0.05" if key == "float32_single" else ""})
    rows_out.append({"measure": "float32 single latency via SignatureRunner (re-resizes inputs each call)",
                     "sluice": round(runner_latency["float32_single"] * 1e6, 1), "reference": us["saved_model_single"],
                     "unit": "µs", "ratio": ratio(runner_latency["float32_single"], latency["saved_model_single"])})
    write_result("export", rows_out, {"sizes_bytes": sizes, "latency_s": latency,
                                             "runner_latency_s": runner_latency, "calls": CALLS},
                        notes="TFLite: Transform graph inside, builtin ops only; SavedModel: serving_raw in process.")


if __name__ == "__main__":
    main()
