"""Seeded synthetic data and contracts for Trainer tests: no TFX, no Transform, seconds to train."""

from __future__ import annotations

import copy
from typing import Any, Dict, Tuple

import numpy as np
import tensorflow as tf

from sluice.components.contracts import TrainerContract
from sluice.pipeline.config import load_config
from tests.helpers import CONFIGS

SPECS = [["x0_xf", 0, 1], ["x1_xf", 0, 1], ["x2_xf", 0, 1], ["c_xf", 5, 3]]

# What the synthetic tests set; every other setting is the default of its config class (settings.py).
SYNTHETIC: Dict[str, Any] = {
    "name": "synthetic",
    "task": {"type": "regression", "label": "y"},
    "features": [
        {"name": "x0", "kind": "numeric"}, {"name": "x1", "kind": "numeric"}, {"name": "x2", "kind": "numeric"},
        {"name": "c", "kind": "categorical_int", "num_buckets": 4, "embedding_dim": 3},
    ],
    "model": {"hidden_units": [16, 8], "learning_rate": 0.01, "batch_size": 32, "train_steps": 200, "eval_steps": 4,
              "loss": "huber", "seed": 7},
    "training": {"rounds": 4},
    "input": {"deterministic": True},
}


def contract(**overrides: Any) -> TrainerContract:
    """A regression ``TrainerContract`` as ``PipelineConfig.trainer_contract()`` makes it, with the synthetic
    data's task and features and the settings above; ``section__key=value`` overrides one setting. The result
    is validated like a config file would be."""
    real = load_config(CONFIGS / "taxi_fare.yaml").trainer_contract()
    sections = copy.deepcopy(SYNTHETIC)
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        sections[section][key] = value
    return TrainerContract.model_validate({**real.model_dump(exclude=set(sections)), **sections})


def arrays(n: int = 1024, seed: int = 0, binary: bool = False,
           classes: int = 0) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """Features and a label: the regression target, or (``binary``) whether it is above its median, or
    (``classes``) which of ``classes`` equal-count bins it falls in (int64 class ids)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    c = rng.integers(0, 5, size=(n, 1)).astype("int64")
    y = (2.0 * x[:, :1] - x[:, 1:2] + 0.5 * x[:, 2:3] ** 2 + 0.3 * c + rng.normal(scale=0.3, size=(n, 1))).astype("float32")
    if binary:
        y = (y > np.median(y)).astype("float32")
    if classes:
        y = np.digitize(y, np.quantile(y, np.linspace(0, 1, classes + 1)[1:-1])).astype("int64")
    features = {"x0_xf": x[:, :1], "x1_xf": x[:, 1:2], "x2_xf": x[:, 2:3], "c_xf": c}
    return features, y


def dataset(n: int = 1024, batch: int = 32, seed: int = 0, binary: bool = False, repeat: bool = True,
            classes: int = 0) -> tf.data.Dataset:
    features, y = arrays(n, seed, binary, classes)
    ds = tf.data.Dataset.from_tensor_slices((features, y)).batch(batch, drop_remainder=True)
    return ds.repeat() if repeat else ds
