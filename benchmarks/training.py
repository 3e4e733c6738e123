"""Training throughput: is the Trainer's tf.data input free, and what do the strategies give on this machine?

Uses the real Transform output of the default pipeline on the bundled data (run or reused in
``benchmarks/work/training``).

1. input vs memory: examples/s of ``model.fit`` (the Trainer's model, compiled as the Trainer does) fed by
   the Trainer's ``input_fn`` (cached, shuffled, prefetched), against the same model fed the same
   transformed examples as in-memory tensors. Goal ≥ 0.9: the input pipeline costs the step < 10 %.
2. strategies: examples/s of the training loop alone (``_train_seconds`` in the job's history; process
   start-up excluded) for default, mirrored over 2 logical CPU devices (fit and custom loop) and
   MultiWorkerMirroredStrategy over 2 local worker processes — each through the launcher, as the Trainer
   runs them. On a 2-core CPU machine data parallelism has no spare hardware to use; the numbers say what
   the synchronization costs here, not what GPUs or a cluster would give.
Results: results/training.json.
"""

from __future__ import annotations

import glob
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPS, default_pipeline_outputs, median, ratio, write_result  # noqa: E402

WORK = Path(__file__).resolve().parent / "work" / "training"
STEPS = int(os.environ.get("SLUICE_BENCH_TRAIN_STEPS", "600"))


def _fit_rate(model, dataset, steps: int, batch: int) -> float:
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - start)


def input_vs_memory(contract, tft_output, files):
    import tensorflow as tf

    from sluice.components.features import label_key
    from sluice.components.trainer.data import InputOptions, input_fn
    from sluice.components.trainer.losses import make_loss
    from sluice.components.trainer.metrics import task_metrics
    from sluice.components.trainer.models import build_model, feature_specs, vocabulary_sizes

    options = InputOptions.from_contract(contract)
    batch = options.batch_size
    pipeline = input_fn(files, tft_output, label_key(contract.task), options)
    one_pass = list(input_fn(files, tft_output, label_key(contract.task),
                             InputOptions.from_contract(contract, shuffle=False)).take(10_000_000 // batch))
    n_batches = len(one_pass)
    features = {k: tf.concat([b[0][k] for b in one_pass], 0) for k in one_pass[0][0]}
    labels = tf.concat([b[1] for b in one_pass], 0)
    memory = (tf.data.Dataset.from_tensor_slices((features, labels)).shuffle(20_000, seed=1)
              .batch(batch, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE))

    model = build_model(contract, feature_specs(contract, vocabulary_sizes(contract, tft_output)))
    model.compile(optimizer="adam", loss=make_loss(contract), metrics=task_metrics(contract))
    _fit_rate(model, pipeline, n_batches + 5, batch)  # trace, and fill input_fn's cache (one full pass)
    _fit_rate(model, memory, 20, batch)
    rates = {"tf.data input_fn": [], "in-memory tensors": []}
    for _ in range(REPS):  # alternate, so drift on a shared machine hits both alike
        rates["tf.data input_fn"].append(_fit_rate(model, pipeline, STEPS, batch))
        rates["in-memory tensors"].append(_fit_rate(model, memory, STEPS, batch))
    return rates, n_batches * batch


def strategies(contract, record):
    from sluice.components.settings import TrainingConfig
    from sluice.components.trainer.launcher import run_workers
    from sluice.components.trainer.train import TrainJob

    examples = record.outputs["Transform"]["Examples"]
    variants = {
        "default (fit)": {"strategy": "default", "loop": "fit"},
        "default (custom loop)": {"strategy": "default", "loop": "custom"},
        "mirrored, 2 CPU devices (fit)": {"strategy": "mirrored", "cpu_devices": 2, "loop": "fit"},
        "mirrored, 2 CPU devices (custom loop)": {"strategy": "mirrored", "cpu_devices": 2, "loop": "custom"},
        "multi_worker, 2 processes (custom loop)": {"strategy": "multi_worker", "workers": 2, "loop": "custom"},
    }
    rates = {name: [] for name in variants}
    losses = {name: [] for name in variants}
    import json

    for _ in range(max(1, REPS - 1)):
        for name, training in variants.items():
            tmp = Path(tempfile.mkdtemp(prefix="sluice-bench-train-"))
            settings = {**contract.training.model_dump(), "early_stopping_patience": None, "checkpoint": False,
                        **training}
            job_contract = contract.model_copy(update={"training": TrainingConfig.model_validate(settings)})
            job = TrainJob(
                contract=job_contract,
                train_files=sorted(glob.glob(os.path.join(examples, "Split-train", "*"))),
                eval_files=sorted(glob.glob(os.path.join(examples, "Split-eval", "*"))),
                transform_output=record.outputs["Transform"]["TransformGraph"],
                serving_model_dir=str(tmp / "model"), log_dir=str(tmp / "logs"), train_steps=STEPS, eval_steps=5,
                history_path=str(tmp / "history.json"),
            )
            run_workers(job, str(tmp / "workers"), timeout_s=900)
            history = json.loads((tmp / "history.json").read_text())
            rates[name].append(STEPS * job_contract.model.batch_size / history["_train_seconds"][0])
            losses[name].append(history["loss"][-1])
    return rates, losses


def main() -> int:
    import tensorflow_transform as tft

    cfg, record = default_pipeline_outputs(WORK)
    contract = cfg.trainer_contract()
    tft_output = tft.TFTransformOutput(record.outputs["Transform"]["TransformGraph"])
    files = sorted(glob.glob(os.path.join(record.outputs["Transform"]["Examples"], "Split-train", "*.gz")))

    io_rates, train_examples = input_vs_memory(contract, tft_output, files)
    pipe, mem = median(io_rates["tf.data input_fn"]), median(io_rates["in-memory tensors"])
    rows = [{"measure": "fit ex/s: tf.data input_fn vs in-memory tensors", "sluice": round(pipe),
             "reference": round(mem), "ratio": ratio(pipe, mem), "goal": "≥ 0.9", "unit": "ex/s"}]

    strategy_rates, losses = strategies(contract, record)
    base = median(strategy_rates["default (fit)"])
    for name, values in strategy_rates.items():
        if name == "default (fit)":
            rows.insert(1, {"measure": "training loop ex/s: default (fit)", "sluice": round(base), "reference": None,
                            "ratio": None, "goal": "", "unit": "ex/s"})
            continue
        rows.append({"measure": f"training loop ex/s: {name} vs default (fit)", "sluice": round(median(values)),
                     "reference": round(base), "ratio": ratio(median(values), base), "goal": "(2 cores, no GPU)",
                     "unit": "ex/s"})
    write_result("training", rows, {"input_vs_memory_ex_per_s": io_rates, "strategy_ex_per_s": strategy_rates,
                                    "final_train_loss": losses, "steps": STEPS, "train_examples": train_examples})
    return 0


if __name__ == "__main__":
    sys.exit(main())
