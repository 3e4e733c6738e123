"""TFLite export: the trained Keras model with the Transform graph inside, builtin ops only, in variants.

Why it is shaped like this (measured on TF 2.16.2 / Keras 3.6.0):

- ``TFLiteConverter`` aborts the whole process (``LLVM ERROR``) on a Keras 3 model saved with
  ``tf.saved_model.save`` or passed via ``from_keras_model``, but converts a SavedModel written by Keras 3's
  ``keras.export.ExportArchive``. So the export writes an ExportArchive first and converts in a subprocess
  (``python -m sluice.components.export.tflite``): all steps in one process first (one TensorFlow import),
  and when that process dies, each missing step in a process of its own, so a converter crash becomes a
  clear error naming the variant, not a dead pipeline (``component.export_variants``).
- Parsing serialized ``tf.Example`` needs the Flex delegate, which phone runtimes lack: the TFLite model
  takes one named tensor per raw column (``serving_raw``'s contract) and runs Transform's own graph on it,
  which is written with builtin ops (``components/transform.py``).
- Transform's vocabulary tables are initialized from asset files; the converter keeps the lookups but drops
  the file initializer (measured: every string looked up as "not found"). So the vocabulary features' ids are
  recomputed here from Transform's own vocabulary files as constant-initialized tables (builtin
  ``HASHTABLE_IMPORT``/``FIND``), with Transform's rule (position in the file; unseen -> the size). The
  parity gate is what proves this rebuild equal to the SavedModel.

Variants: ``float32`` (the reference), ``dynamic_range`` (int8 weights of the large tensors), ``int8``
(the model's dense layers in int8, weights and activations calibrated on train rows; Transform's ops and the
inputs/outputs stay float/string) and ``float16`` (every float constant in fp16, Transform's included:
bucket boundaries on narrow ranges collapse, which the parity gate catches — see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from sluice.components import step_process
from sluice.components.contracts import ExportContract

VARIANTS = ("float32", "dynamic_range", "float16", "int8")
ENDPOINT = "serving_raw"
OUTPUT = "outputs"
MODEL_FILE = "model.tflite"
IO_SPEC_FILE = "io_spec.json"
ARCHIVE_DONE = "sluice_archive.done"


class ExportFailed(Exception):
    """A step of the TFLite export failed (in its subprocess); the message names the step and the cause."""


# ------------------------------------------------------------------------------------------ subprocess side
def build_archive(keras_model: str, transform_dir: str, contract: ExportContract, out_dir: str) -> None:
    """Write an ExportArchive SavedModel whose ``serving_raw`` endpoint = Transform graph + model."""
    import keras
    import tensorflow as tf
    import tensorflow_transform as tft

    from sluice.components import user_code
    from sluice.components.features import input_keys, transformed_name, vocabulary_name
    from sluice.components.trainer.signatures import _raw_tensor, answer, model_input_names, serving_columns

    if contract.code.model_fn:  # your model's module registers its custom objects when imported
        user_code.load(contract.code.model_fn, "code.model_fn")
    model = keras.models.load_model(keras_model, custom_objects=user_code.custom_objects(contract.code.custom_objects))
    tft_output = tft.TFTransformOutput(transform_dir)
    layer = tft_output.transform_features_layer()
    spec = serving_columns(tft_output, contract)
    keys = input_keys(spec)
    names = model_input_names(model, contract, tft_output)
    tables = {}
    for feature in [] if contract.custom_preprocessing else contract.features:
        if feature.kind == "categorical_string" and not feature.hash_buckets:
            if feature.oov_buckets != 1:
                raise ValueError(f"{feature.name}: oov_buckets > 1 hashes strings, which TFLite cannot run")
            words = tft_output.vocabulary_by_name(vocabulary_name(feature.name))
            init = tf.lookup.KeyValueTensorInitializer(tf.constant(words, tf.string),
                                                       tf.range(len(words), dtype=tf.int64))
            tables[feature.name] = tf.lookup.StaticHashTable(init, default_value=len(words))

    def serve(*columns: tf.Tensor) -> Dict[str, tf.Tensor]:
        given = dict(zip(spec, columns))
        transformed = dict(layer({name: _raw_tensor(value, spec[name]) for name, value in given.items()}))
        for name, table in tables.items():
            transformed[transformed_name(name)] = tf.reshape(table.lookup(given[name]), [-1, 1])
        return answer(model({k: transformed[k] for k in names}, training=False), list(contract.task.classes or []))

    archive = keras.export.ExportArchive()
    archive.track(model)
    # Transform's tables live in its loaded SavedModel; ExportArchive saves only what its trackable root
    # holds, so attach the loaded object there (else: "references an 'untracked' resource").
    layer._saved_model_loader  # loads the transform graph
    archive._tf_trackable.transform_graph = layer._saved_model_loader._imported
    archive._tf_trackable.vocabularies = list(tables.values())
    archive.add_endpoint(ENDPOINT, serve, input_signature=[tf.TensorSpec([None], s.dtype, name=keys[n])
                                                       for n, s in spec.items()])
    archive.write_out(out_dir, verbose=False)


def _converter(archive_dir: str) -> Any:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(archive_dir, signature_keys=[ENDPOINT])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


QUANTIZED_INT8_OPS = {"FULLY_CONNECTED"}
"""Ops the int8 variant runs in int8. Everything else (Transform's z-scores, bucket comparisons, lookups)
stays float: raw columns like trip seconds (0..86,400) or latitudes (buckets 0.01 deg apart) lose their
meaning on an int8 grid (measured on taxi_fare: MAE +272 % with every op quantized, -5.5 % like this)."""


def convert(archive_dir: str, variant: str, out_path: str, representative: Optional[str] = None) -> None:
    """Convert the archive's endpoint to one TFLite variant (builtin ops only)."""
    import tensorflow as tf

    converter = _converter(archive_dir)
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        if representative is None:
            raise ValueError("int8 needs a representative dataset")
        columns = dict(np.load(representative, allow_pickle=True))
        rows = len(next(iter(columns.values())))

        def dataset():
            for i in range(rows):
                yield ENDPOINT, {name: values[i:i + 1] for name, values in columns.items()}

        converter.representative_dataset = dataset
        interpreter = tf.lite.Interpreter(model_content=_converter(archive_dir).convert())
        ops = {op["op_name"] for op in interpreter._get_ops_details()}
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=dataset,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(
                denylisted_ops=sorted(ops - QUANTIZED_INT8_OPS)))
        data = debugger.get_nondebug_quantized_model()
    else:
        data = converter.convert()
    with open(out_path, "wb") as f:
        f.write(data)


def archive_done(archive_dir: str) -> bool:
    """The archive step's marker: written last, so a half-written archive is never converted."""
    return os.path.isfile(os.path.join(archive_dir, ARCHIVE_DONE))


def run_job(job: Mapping[str, Any]) -> None:
    """One step: ``archive``, ``convert``, or ``all`` (its ``steps`` in order, in this process)."""
    if job["step"] == "all":
        for step in job["steps"]:
            run_job(step)
    elif job["step"] == "archive":
        build_archive(job["keras_model"], job["transform_dir"], ExportContract.parse(job["contract"]), job["out_dir"])
        with open(os.path.join(job["out_dir"], ARCHIVE_DONE), "w"):
            pass
    else:
        os.makedirs(os.path.dirname(job["out_path"]), exist_ok=True)
        partial = job["out_path"] + ".partial"
        convert(job["archive_dir"], job["variant"], partial, job.get("representative"))
        os.replace(partial, job["out_path"])  # a variant's file exists only once it converted completely


def main(argv: Sequence[str]) -> None:
    """``python -m sluice.components.export.tflite JOB.json``: run the job (see ``run_job``)."""
    with open(argv[0]) as f:
        run_job(json.load(f))


# ------------------------------------------------------------------------------------------- caller side
def run_step(job: Dict[str, Any], workdir: str, name: str, log_home: Optional[str] = None, timeout: int = 900) -> None:
    """Run one export step in a fresh Python process; its death or error becomes ``ExportFailed``.

    ``workdir`` is local (the step is another process); the caller keeps ``<workdir>/<name>.log`` under
    ``log_home`` (the export artifact), which is where the error message points."""
    os.makedirs(workdir, exist_ok=True)
    job_file = os.path.join(workdir, f"{name}.json")
    log_file = Path(workdir) / f"{name}.log"
    with open(job_file, "w") as f:
        json.dump(job, f)
    kept = f"{log_home.rstrip('/')}/{name}.log" if log_home else str(log_file)
    try:
        code = step_process.run([sys.executable, "-m", "sluice.components.export.tflite", job_file], log_file,
                                timeout=timeout)
    except subprocess.TimeoutExpired:  # the step was killed
        raise ExportFailed(f"TFLite {name} did not finish in {timeout} s (full log: {kept})") from None
    if code != 0:
        raise ExportFailed(f"TFLite {name} failed ({step_process.how_it_ended(code)}): "
                           f"{step_process.cause(log_file, 400)} (full log: {kept})")


def io_spec(model_path: str, classes: Sequence[str] = ()) -> Dict[str, Any]:
    """What a mobile developer needs to call the model: the signature's inputs and outputs (multi-class: the
    class names in the order of the probabilities, also answered per row as ``classes``)."""
    interpreter = _interpreter(model_path)
    runner = interpreter.get_signature_runner(ENDPOINT)
    details = runner.get_input_details()
    outputs = runner.get_output_details()

    def describe(d: Mapping[str, Any]) -> Dict[str, Any]:
        shape = [int(s) for s in d["shape_signature"]]
        kind = np.dtype(d["dtype"])
        return {"dtype": "string" if kind.kind in "SOU" else kind.name,
                "shape": shape, "batch_dimension": 0 if shape and shape[0] == -1 else None}

    return {
        "signature": ENDPOINT,
        "inputs": {name: describe(d) for name, d in sorted(details.items())},
        "outputs": {name: describe(d) for name, d in sorted(outputs.items())},
        **({"classes": list(classes)} if classes else {}),
        "notes": "One value per row and input, every input present (send the configured default for an empty "
                 "optional column); raw values, not transformed ones: the Transform graph is inside.",
    }


def _interpreter(model_path: str, runtime: str = "tensorflow") -> Any:
    if runtime == "litert":
        from ai_edge_litert.interpreter import Interpreter
    else:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=model_path)


def predict(model_path: str, columns: Mapping[str, np.ndarray], batch_size: int = 256,
            runtime: str = "tensorflow") -> np.ndarray:
    """Run the TFLite model over ``columns`` (name -> ``[rows]`` array) in batches; ``[rows, k]`` outputs."""
    runner = _interpreter(model_path, runtime).get_signature_runner(ENDPOINT)
    rows = len(next(iter(columns.values())))
    out: List[np.ndarray] = []
    for start in range(0, rows, batch_size):
        batch = {name: np.asarray(values[start:start + batch_size]) for name, values in columns.items()}
        out.append(np.asarray(runner(**batch)[OUTPUT]))
    return np.concatenate(out, axis=0) if out else np.zeros((0, 1), np.float32)


if __name__ == "__main__":
    main(sys.argv[1:])
