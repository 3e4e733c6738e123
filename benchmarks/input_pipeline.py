"""Is the Trainer's input ever the bottleneck? Input examples/s vs what the training step consumes.

Uses a real Transform output: runs (or reuses, through TFX's cache) the default pipeline on the bundled data
into ``benchmarks/work/``. Then, with the Trainer's own ``input_fn`` and model:

- input: examples/s of pulling batches from ``input_fn`` over the transformed train split in-graph (as the
  Keras loop does), after a warm-up pass so a cached dataset is measured as the Trainer sees it from the
  second epoch on; the first (reading) pass separately;
- consumption: examples/s of ``model.fit`` on the same batches held in memory (the step alone);
- ablation: input examples/s with each option turned off in turn.
Results: results/input_pipeline.json.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPS, default_pipeline_outputs, median, ratio, write_result  # noqa: E402

WORK = Path(__file__).resolve().parent / "work" / "input_pipeline"
BATCHES = int(os.environ.get("SLUICE_BENCH_BATCHES", "300"))


def _puller():
    """A tf.function pulling ``n`` batches from an iterator in-graph, as Keras' training loop does."""
    import tensorflow as tf

    @tf.function
    def pull(iterator, n):
        for _ in tf.range(n):
            iterator.get_next()
        return n

    return pull


def _examples_per_second(dataset, batches: int, batch_size: int, warm: int = 0) -> float:
    pull = _puller()
    pull(iter(dataset), 1)  # trace on a throwaway iterator: the timed one starts from the first record
    it = iter(dataset)
    if warm:
        pull(it, warm)  # e.g. one full pass, so a cached dataset is measured as from the second epoch on
    start = time.perf_counter()
    pull(it, batches)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> int:
    import keras
    import tensorflow as tf
    import tensorflow_transform as tft

    from sluice.components.features import label_key
    from sluice.components.trainer.data import InputOptions, input_fn
    from sluice.components.trainer.losses import make_loss
    from sluice.components.trainer.models import build_model, feature_specs, vocabulary_sizes

    cfg, record = default_pipeline_outputs(WORK)
    contract = cfg.trainer_contract()
    tft_output = tft.TFTransformOutput(record.outputs["Transform"]["TransformGraph"])
    files = sorted(glob.glob(os.path.join(record.outputs["Transform"]["Examples"], "Split-train", "*.gz")))
    label = label_key(contract.task)
    base = InputOptions.from_contract(contract)

    def dataset(options: InputOptions):
        return input_fn(files, tft_output, label, options)

    def measure(options: InputOptions, warm_batches: int) -> float:
        samples = []
        for _ in range(REPS):
            samples.append(_examples_per_second(dataset(options), BATCHES, options.batch_size, warm_batches))
        return median(samples)

    train_examples = sum(1 for f in files for _ in tf.data.TFRecordDataset(f, compression_type="GZIP"))
    pass_batches = -(-train_examples // base.batch_size)
    variants = {
        "all options (config defaults)": base,
        "no cache": dataclasses.replace(base, cache=False),
        "no prefetch": dataclasses.replace(base, prefetch=False),
        "1 reader thread": dataclasses.replace(base, reader_threads=1),
        "deterministic": dataclasses.replace(base, deterministic=True),
        "no cache, 1 thread, no prefetch": dataclasses.replace(base, cache=False, prefetch=False, reader_threads=1),
    }
    input_rates = {name: measure(opts, pass_batches if opts.cache else 5) for name, opts in variants.items()}
    first_pass = median([_examples_per_second(dataset(base), pass_batches, base.batch_size) for _ in range(REPS)])

    # Consumption: the training step alone, on batches already in memory.
    batches = list(dataset(dataclasses.replace(base, cache=False)).take(64))
    features = {k: tf.concat([b[0][k] for b in batches], 0) for k in batches[0][0]}
    labels = tf.concat([b[1] for b in batches], 0)
    memory = tf.data.Dataset.from_tensor_slices((features, labels)).batch(base.batch_size).cache().repeat()
    model = build_model(contract, feature_specs(contract, vocabulary_sizes(contract, tft_output)))
    model.compile(optimizer="adam", loss=make_loss(contract))
    model.fit(memory, steps_per_epoch=20, epochs=1, verbose=0)  # trace and warm up
    consume = []
    for _ in range(REPS):
        start = time.perf_counter()
        model.fit(memory, steps_per_epoch=BATCHES, epochs=1, verbose=0)
        consume.append(BATCHES * base.batch_size / (time.perf_counter() - start))
    consumption = median(consume)

    default = input_rates["all options (config defaults)"]
    rows = [{"measure": "input ex/s vs training-step ex/s", "sluice": round(default), "reference": round(consumption),
             "ratio": ratio(default, consumption), "goal": "≥ 10", "unit": "ex/s"},
            {"measure": "input ex/s, first (uncached) pass vs step", "sluice": round(first_pass),
             "reference": round(consumption), "ratio": ratio(first_pass, consumption), "goal": "", "unit": "ex/s"}]
    for name, rate in input_rates.items():
        if name == "all options (config defaults)":
            continue
        rows.append({"measure": f"ablation: {name}", "sluice": round(rate), "reference": round(default),
                     "ratio": ratio(rate, default), "goal": "(vs all options)", "unit": "ex/s"})
    write_result("input_pipeline", rows, {"input_ex_per_s": input_rates, "first_pass_ex_per_s": first_pass,
                                          "consumption_ex_per_s": consume, "train_examples": train_examples,
                                          "batch_size": base.batch_size, "batches_timed": BATCHES,
                                          "keras": keras.__version__})
    return 0


if __name__ == "__main__":
    sys.exit(main())
