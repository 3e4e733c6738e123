"""The Trainer's process-level paths on a real Transform output (the fare session pipeline's): mirrored over
two logical CPUs and MultiWorkerMirroredStrategy over two local worker processes train to a loss comparable
to one device and the chief's model serves; a killed training resumes from its checkpoint; a diverging
one fails with its explanation; the Tuner's search feeds the Trainer's hyperparameters."""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sluice.components.trainer.launcher import WorkerFailed, run_workers
from sluice.components.trainer.train import TrainJob
from sluice.components.settings import ModelConfig, TrainingConfig
from sluice.pipeline.config import load_config
from sluice.pipeline.mlmd import latest_run
from tests.helpers import DATA, serialized_examples

pytestmark = pytest.mark.e2e

STEPS = 240
# Synchronous data parallelism computes the same global-batch gradient as one device (up to float rounding
# and a different shuffle per worker), so after the same number of steps the losses are close. Stated bound:
CONVERGENCE_TOLERANCE = 0.25  # relative to the single-device final training loss
FEATURES = ["trip_miles", "trip_seconds", "trip_start_hour", "trip_start_day", "trip_start_month",
            "pickup_community_area", "dropoff_community_area", "payment_type", "company",
            "pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude"]


@pytest.fixture(scope="module")
def transformed(fare):
    cfg = load_config(next((fare["out"].parent).glob("*.yaml")))
    record = latest_run(fare["out"] / "metadata.sqlite", fare["name"])
    transform = record.outputs["Transform"]
    examples = transform["Examples"]
    return {
        "contract": cfg.trainer_contract(),
        "tuner_contract": cfg.tuner_contract(),
        "graph": transform["TransformGraph"],
        "train": sorted(glob.glob(os.path.join(examples, "Split-train", "*"))),
        "eval": sorted(glob.glob(os.path.join(examples, "Split-eval", "*"))),
    }


def _job(transformed, tmp: Path, steps: int = STEPS, rounds: int = 4, model=None, **training) -> TrainJob:
    contract = transformed["contract"]
    values = {**contract.training.model_dump(), "rounds": rounds, "early_stopping_patience": None, **training}
    contract = contract.model_copy(update={"training": TrainingConfig.model_validate(values)})
    if model:
        contract = contract.model_copy(update={"model": ModelConfig.model_validate({**contract.model.model_dump(),
                                                                                    **model})})
    return TrainJob(
        contract=contract, train_files=transformed["train"], eval_files=transformed["eval"],
        transform_output=transformed["graph"], serving_model_dir=str(tmp / "model"), log_dir=str(tmp / "logs"),
        train_steps=steps, eval_steps=5, checkpoint_dir=str(tmp / "ckpt"), history_path=str(tmp / "history.json"),
    )


def _history(job: TrainJob) -> dict:
    return json.loads(Path(job.history_path).read_text())


def _predict(model_dir: str, n: int = 16):
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)
    examples = serialized_examples(DATA, FEATURES, n)
    return loaded.signatures["serving_default"](examples=tf.constant(examples))["outputs"].numpy()


def test_mirrored_and_multi_worker_train_like_one_device(transformed, tmp_path):
    runs = {}
    for name, training in {
        "default": {"strategy": "default", "loop": "custom"},
        "mirrored_fit": {"strategy": "mirrored", "cpu_devices": 2, "loop": "fit"},
        "mirrored_custom": {"strategy": "mirrored", "cpu_devices": 2, "loop": "custom"},
        "multi_worker": {"strategy": "multi_worker", "workers": 2, "loop": "custom"},
    }.items():
        job = _job(transformed, tmp_path / name, **training)
        run_workers(job, str(tmp_path / name / "workers"), timeout_s=600)
        runs[name] = (job, _history(job))

    single = runs["default"][1]["loss"][-1]
    for name, (job, history) in runs.items():
        assert history["_replicas"] == [1.0 if name == "default" else 2.0], name
        assert abs(history["loss"][-1] - single) <= CONVERGENCE_TOLERANCE * single, (name, history["loss"], single)
        assert history["loss"][-1] < 0.5 * history["loss"][0], name  # it learned
        predictions = _predict(job.serving_model_dir)
        assert predictions.shape == (16, 1) and (predictions > 0).mean() > 0.9  # fares are positive
    # Only the chief exported; worker 1 wrote its copy to scratch (saving may run collectives) and removed it.
    logs = {i: (tmp_path / "multi_worker" / "workers" / f"worker-{i}.log").read_text() for i in (0, 1)}
    assert "CollectiveAllReduceStrategy over 2 replica(s)" in logs[1]  # MultiWorkerMirroredStrategy's class
    assert "exported SavedModel to" in logs[0] and "exported SavedModel to" not in logs[1]


def _committed(ckpt_dir: Path) -> int:
    """The newest checkpoint number the checkpoint state file names (0 before the first)."""
    state = ckpt_dir / "checkpoint"
    found = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', state.read_text(), re.M) if state.exists() else None
    return int(found.group(1)) if found else 0


def test_killed_training_resumes_from_its_checkpoint(transformed, tmp_path):
    job = _job(transformed, tmp_path, steps=6000, rounds=60)
    work = tmp_path / "workers"
    work.mkdir()
    (work / "train_job.json").write_text(job.to_json())
    proc = subprocess.Popen([sys.executable, "-m", "sluice.components.trainer.worker", str(work / "train_job.json")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    # Wait for checkpoint 3 to be committed: named in the state file, which TF rewrites atomically after the
    # checkpoint's files (ckpt-3.index alone appears earlier; a kill then resumes from ckpt-2, rightly).
    while _committed(tmp_path / "ckpt") < 3:
        assert proc.poll() is None, "training ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "model").exists()

    run_workers(job, str(work), timeout_s=600)
    history = _history(job)
    assert 3 <= history["_start_round"][0] < 60  # resumed, not from step 0
    assert len(history["loss"]) == 60 - history["_start_round"][0]
    assert "resumed from checkpoint" in (work / "worker-0.log").read_text()
    assert (tmp_path / "model" / "saved_model.pb").exists()
    assert not (tmp_path / "ckpt").exists()  # finished: an identical later run starts fresh


def test_diverging_training_fails_with_its_explanation_and_exports_nothing(transformed, tmp_path):
    job = _job(transformed, tmp_path, steps=60, rounds=2, strategy="mirrored", cpu_devices=2,
               clipping=None, model={"learning_rate": 1e6, "loss": "mse", "l2": 0.0})
    with pytest.raises(WorkerFailed, match=r"training diverged at step \d+: loss = (nan|inf)"):
        run_workers(job, str(tmp_path / "workers"), timeout_s=300)
    assert not (tmp_path / "model").exists()


def test_tuner_search_feeds_the_trainer(transformed, tmp_path):
    from tfx.components.trainer.fn_args_utils import FnArgs

    from sluice.components.settings import TunerConfig
    from sluice.components.trainer.tuning import model_values, tuner_fn

    search = TunerConfig(enabled=True, algorithm="random", max_trials=2, steps_per_trial=40,
                         search_space={"learning_rate": [0.0001, 0.01], "hidden_units": [[16], [32, 16]]})
    contract = transformed["tuner_contract"].model_copy(update={"tuner": search})
    fn_args = FnArgs(train_files=transformed["train"], eval_files=transformed["eval"], eval_steps=5,
                     transform_graph_path=transformed["graph"], working_dir=str(tmp_path),
                     custom_config=contract.to_dict())
    result = tuner_fn(fn_args)
    result.tuner.search(**{**result.fit_kwargs, "verbose": 0})
    best = result.tuner.get_best_hyperparameters()[0]
    assert best.values["learning_rate"] in (0.0001, 0.01) and best.values["hidden_units"] in ("16", "32,16")
    trials = result.tuner.oracle.get_best_trials(2)
    assert len(trials) == 2 and trials[0].score <= trials[1].score
    applied = contract.trainer().with_hyperparameters(model_values(dict(best.values)))
    assert applied.model.learning_rate == best.values["learning_rate"]
    assert applied.model.hidden_units == [int(u) for u in best.values["hidden_units"].split(",")]
