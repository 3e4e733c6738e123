"""TFX Tuner entry point (``sluice.components.trainer.tuning.tuner_fn``): a KerasTuner search over the
``tuner.search_space`` of the config.

Each trial builds the same model the Trainer would (``models.build_model``) with the trial's values
replacing the ``model`` settings, trains it with ``fit`` for ``tuner.steps_per_trial`` steps on one device
and is scored by ``val_loss`` on the eval split. TFX writes the best values as the ``best_hyperparameters``
artifact; the Trainer's ``run_fn`` applies them (``TrainerContract.with_hyperparameters``, after
``model_values``).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import keras
import keras_tuner
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.components.tuner.component import TunerFnResult

from sluice.components.contracts import TunerContract
from sluice.components.features import label_key
from sluice.components.trainer import loops
from sluice.components.settings import MULTICLASS
from sluice.components.trainer import guards
from sluice.components.trainer.data import InputOptions, input_fn, regression_scale
from sluice.components.trainer.losses import make_loss
from sluice.components.trainer.metrics import task_metrics
from sluice.components.trainer.models import make_model

_ROUNDS = 4


def _choice_values(key: str, values: list) -> list:
    # KerasTuner choices are scalars: layer stacks travel as "64,32".
    return [",".join(str(u) for u in v) if key == "hidden_units" else v for v in values]


def model_values(values: Mapping[str, Any]) -> Dict[str, Any]:
    """KerasTuner values as ``model`` settings (``hidden_units`` back from "64,32" to ``[64, 32]``)."""
    return {key: [int(u) for u in value.split(",")] if key == "hidden_units" and isinstance(value, str) else value
            for key, value in values.items()}


def search_space(space: Dict[str, list]) -> keras_tuner.HyperParameters:
    hp = keras_tuner.HyperParameters()
    for key, values in space.items():
        hp.Choice(key, _choice_values(key, values))
    return hp


def tuner_fn(fn_args: FnArgs) -> TunerFnResult:
    contract = TunerContract.parse(fn_args.custom_config)
    settings = contract.tuner
    base = contract.trainer()
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    steps = settings.steps_per_trial
    label_scale = regression_scale(base, list(fn_args.train_files), tft_output)
    if base.task.type == MULTICLASS:  # the Tuner trains first: the same refusal as the Trainer's
        guards.check_class_ids({"train": list(fn_args.train_files), "eval": list(fn_args.eval_files)},
                               label_key(base.task), base.task.classes or [])

    def build(hp: keras_tuner.HyperParameters) -> keras.Model:
        trial = base.with_hyperparameters(model_values({k: hp.get(k) for k in settings.search_space}))
        plan = loops.Plan.from_contract(trial, steps, int(fn_args.eval_steps))
        model = make_model(trial, tft_output, label_scale)
        optimizer = loops.make_optimizer(trial.model.learning_rate, trial.training, plan, with_clipping=True)
        model.compile(optimizer=optimizer, loss=make_loss(trial), metrics=task_metrics(trial))
        return model

    tuner_class = keras_tuner.BayesianOptimization if settings.algorithm == "bayesian" else keras_tuner.RandomSearch
    tuner = tuner_class(
        hypermodel=build,
        hyperparameters=search_space(settings.search_space),
        objective=keras_tuner.Objective("val_loss", "min"),
        max_trials=settings.max_trials,
        seed=base.model.seed,
        directory=fn_args.working_dir,
        project_name="sluice",
        overwrite=True,
    )
    label = label_key(base.task)
    train_ds = input_fn(fn_args.train_files, tft_output, label, InputOptions.from_contract(base))
    eval_ds = input_fn(fn_args.eval_files, tft_output, label, InputOptions.from_contract(base, shuffle=False))
    return TunerFnResult(
        tuner=tuner,
        fit_kwargs={
            "x": train_ds,
            "validation_data": eval_ds,
            "epochs": _ROUNDS,
            "steps_per_epoch": max(1, steps // _ROUNDS),
            "validation_steps": int(fn_args.eval_steps),
            "verbose": 2,
        },
    )
