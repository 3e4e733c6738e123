"""TFX Trainer entry point (``sluice.components.trainer.run_fn.run_fn``): thin glue from ``FnArgs`` to a
``TrainJob``.

It validates the ``TrainerContract`` (``custom_config``) once, applies the Tuner's best hyperparameters (when
the Tuner ran), picks a checkpoint directory that an
interrupted-and-retried Trainer finds again (``<Trainer>/_resume/<key of the inputs>``, beside TFX's
per-execution directories), and hands the job to the launcher, which trains here or in worker processes.
TensorBoard logs go to the model run artifact; the per-round history to ``history.json`` beside them.
"""

from __future__ import annotations

import os
from typing import Any, Dict

from tfx.components.trainer.fn_args_utils import FnArgs

from sluice.components.contracts import TrainerContract
from sluice.components.trainer.launcher import launch
from sluice.components.trainer.signatures import keras_model_path
from sluice.components.trainer.train import TrainJob, checkpoint_key


def _best_hyperparameters(fn_args: FnArgs) -> Dict[str, Any]:
    """The Tuner's best values as ``model`` settings (empty when no Tuner ran)."""
    hp = fn_args.hyperparameters
    if not hp:
        return {}
    import keras_tuner

    from sluice.components.trainer.tuning import model_values

    return model_values(keras_tuner.HyperParameters.from_config(hp).values)


def run_fn(fn_args: FnArgs) -> None:
    # parse drops the ai_platform_* keys TFX's Google Cloud Trainer adds beside the contract.
    contract = TrainerContract.parse(fn_args.custom_config).with_hyperparameters(_best_hyperparameters(fn_args))
    if contract.code.model_fn:  # resolved here, so a bad path is refused in one screen, not in a worker
        from sluice.components import user_code

        user_code.load(contract.code.model_fn, "code.model_fn")
        user_code.custom_objects(contract.code.custom_objects)
    steps = int(fn_args.train_steps)
    run_root = os.path.dirname(os.path.dirname(fn_args.model_run_dir.rstrip("/")))
    key = checkpoint_key(contract, fn_args.transform_output, list(fn_args.train_files), steps)
    job = TrainJob(
        contract=contract,
        train_files=list(fn_args.train_files),
        eval_files=list(fn_args.eval_files),
        transform_output=fn_args.transform_output,
        serving_model_dir=fn_args.serving_model_dir,
        log_dir=fn_args.model_run_dir,
        train_steps=steps,
        eval_steps=int(fn_args.eval_steps),
        checkpoint_dir=os.path.join(run_root, "_resume", key),
        history_path=os.path.join(fn_args.model_run_dir, "history.json"),
        keras_model_path=keras_model_path(os.path.dirname(fn_args.serving_model_dir.rstrip("/"))),
    )
    launch(job, workdir=os.path.join(fn_args.model_run_dir, "workers"))
