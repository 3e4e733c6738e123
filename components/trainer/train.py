"""One training job, from Transform's output to the exported SavedModel — the code every worker runs.

``TrainJob`` is the ``TrainerContract`` plus paths, and travels as JSON (the contract serialized by its own
model), so the same job runs in the TFX Trainer's process, in a fresh local worker process (``worker.py``:
logical CPU devices, multi-worker), or on a cluster node. ``train`` sets seeds and
determinism, builds model/optimizers/metrics inside the strategy's scope, resumes from the last round
checkpoint if an earlier attempt was interrupted, runs the configured loop, and lets only the chief export.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

import keras
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from sluice.components.contracts import TrainerContract
from sluice.components.features import label_key
from sluice.components.trainer import guards, loops
from sluice.components.settings import MULTICLASS
from sluice.components.trainer.data import InputOptions, input_fn, regression_scale
from sluice.components.trainer.losses import make_loss
from sluice.components.trainer.metrics import task_metrics
from sluice.components.trainer.models import make_model
from sluice.components.trainer.signatures import export_saved_model
from sluice.components.trainer.strategies import is_chief, make_strategy


@dataclass
class TrainJob:
    contract: TrainerContract
    train_files: List[str]
    eval_files: List[str]
    transform_output: str
    serving_model_dir: str
    log_dir: str
    train_steps: int
    eval_steps: int
    checkpoint_dir: Optional[str] = None
    history_path: Optional[str] = None
    keras_model_path: Optional[str] = None
    """Where the chief also saves the bare Keras model (``.keras``): the TFLite export starts from it."""
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        body = {f.name: getattr(self, f.name) for f in fields(self)}
        body["contract"] = self.contract.to_dict()
        return json.dumps(body, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "TrainJob":
        body = json.loads(text)
        return cls(**{**body, "contract": TrainerContract.parse(body["contract"])})


def checkpoint_key(contract: TrainerContract, transform_output: str, train_files: List[str], steps: int) -> str:
    """Identifies "the same training": a re-run resumes only a checkpoint written for identical inputs."""
    body = json.dumps([contract.to_json(), transform_output, sorted(train_files), steps])
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def save_keras_model(model: keras.Model, path: str) -> None:
    """``model.save`` to ``path`` (any filesystem: Keras writes local files, so go through a temp file)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "model.keras")
        model.save(local)
        tf.io.gfile.makedirs(os.path.dirname(path))
        tf.io.gfile.copy(local, path, overwrite=True)


def train(job: TrainJob) -> loops.History:
    contract = job.contract
    training = contract.training
    keras.utils.set_random_seed(contract.model.seed)
    if contract.input.deterministic:
        tf.config.experimental.enable_op_determinism()

    strategy = make_strategy(training.strategy)
    logging.info("training with %s over %d replica(s), loop=%s", type(strategy).__name__,
                 strategy.num_replicas_in_sync, training.loop)
    tft_output = tft.TFTransformOutput(job.transform_output)
    label = label_key(contract.task)
    train_ds = input_fn(job.train_files, tft_output, label, InputOptions.from_contract(contract))
    eval_ds = input_fn(job.eval_files, tft_output, label, InputOptions.from_contract(contract, shuffle=False))
    if training.strategy == "multi_worker":
        # Each worker reads every file and keeps its share of the batches (Transform may write one file).
        shard = tf.data.Options()
        shard.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train_ds, eval_ds = train_ds.with_options(shard), eval_ds.with_options(shard)

    guards.check_batch_fits(job.train_files, contract.model.batch_size, cached=contract.input.cache)
    eval_steps = guards.eval_steps_for(job.eval_files, contract.model.batch_size, job.eval_steps)
    label_scale = regression_scale(contract, job.train_files, tft_output)
    if contract.task.type == MULTICLASS:
        guards.check_class_ids({"train": job.train_files, "eval": job.eval_files}, label, contract.task.classes or [])
    plan = loops.Plan.from_contract(contract, job.train_steps, eval_steps)
    chief = is_chief()
    with strategy.scope():
        model = make_model(contract, tft_output, label_scale)
        groups = loops.optimizer_groups(model, contract, plan, with_clipping=training.loop == "fit")
        metrics = task_metrics(contract)
        if training.loop == "fit":
            model.compile(optimizer=groups[0][0], loss=make_loss(contract), metrics=metrics)
        else:
            model.compile(optimizer=groups[0][0])  # only so LR-on-plateau finds the (main) optimizer
        for optimizer, variables in groups:
            optimizer.build(variables)
        callbacks = loops.keras_callbacks(training)
        start_round = 0
        if job.checkpoint_dir and training.checkpoint:
            directory = job.checkpoint_dir if chief else tempfile.mkdtemp(prefix="sluice-ckpt-")
            checkpoint = loops.RoundCheckpoint(directory, model, [o for o, _ in groups])
            start_round = checkpoint.restore()
            callbacks.append(checkpoint)
    model.summary(print_fn=logging.info)

    before = guards.snapshot(model)
    started = time.perf_counter()
    if start_round >= plan.rounds:
        logging.info("checkpoint already holds all %d rounds: exporting it", plan.rounds)
        history: loops.History = {}
    elif training.loop == "fit":
        history = loops.fit_loop(model, contract, train_ds, eval_ds, plan, callbacks, job.log_dir, start_round)
    else:
        history = loops.custom_loop(model, contract, strategy, groups, metrics, train_ds, eval_ds, plan, callbacks,
                                    job.log_dir, start_round)
    history["_train_seconds"] = [time.perf_counter() - started]  # the loop alone: benchmarks/training.py
    history["_start_round"] = [float(start_round)]
    history["_replicas"] = [float(strategy.num_replicas_in_sync)]
    if start_round < plan.rounds:
        guards.check_weights_moved(before, model, contract.model.learning_rate,
                                   (plan.rounds - start_round) * plan.steps_per_round)

    # Every worker saves (collective ops may run during save); only the chief's copy is the model.
    target = job.serving_model_dir if chief else tempfile.mkdtemp(prefix="sluice-worker-model-")
    export_saved_model(model, tft_output, contract, target)
    if chief:
        logging.info("exported SavedModel to %s", target)
        if job.keras_model_path:
            save_keras_model(model, job.keras_model_path)
        if job.history_path:
            with tf.io.gfile.GFile(job.history_path, "w") as f:
                f.write(json.dumps(history))
        if job.checkpoint_dir and tf.io.gfile.exists(job.checkpoint_dir):
            tf.io.gfile.rmtree(job.checkpoint_dir)  # finished: a later identical run starts fresh
    else:
        shutil.rmtree(target, ignore_errors=True)
        wait_for_model(job.serving_model_dir)
    return history


def wait_for_model(serving_model_dir: str, timeout_s: float = 900.0, poll_s: float = 2.0) -> None:
    """A non-chief worker returns only once the chief's model exists.

    On a Vertex AI training job every replica runs TFX's Trainer executor, which fails a replica whose run_fn
    leaves no model at ``serving_model_dir``; the chief may still be writing it when the others finish."""
    marker = os.path.join(serving_model_dir, "saved_model.pb")
    deadline = time.monotonic() + timeout_s
    while not tf.io.gfile.exists(marker):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the chief wrote no model to {serving_model_dir} within {timeout_s:.0f} s")
        time.sleep(poll_s)
