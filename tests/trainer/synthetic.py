"""Seeded synthetic data and payloads for Trainer tests: no TFX, no Transform, seconds to train."""

from __future__ import annotations

import copy
from typing import Any, Dict, Tuple

import numpy as np
import tensorflow as tf

SPECS = [["x0_xf", 0, 1], ["x1_xf", 0, 1], ["x2_xf", 0, 1], ["c_xf", 5, 3]]


def payload(**overrides: Any) -> Dict[str, Any]:
    """A regression payload shaped like ``PipelineConfig.component_payload()`` (defaults of the config)."""
    base: Dict[str, Any] = {
        "name": "synthetic",
        "task": {"type": "regression", "label": "y", "derive": None},
        "features": [
            {"name": "x0", "kind": "numeric"}, {"name": "x1", "kind": "numeric"}, {"name": "x2", "kind": "numeric"},
            {"name": "c", "kind": "categorical_int", "num_buckets": 4, "embedding_dim": 3},
        ],
        "model": {
            "architecture": "mlp", "hidden_units": [16, 8], "activation": "relu", "dropout": 0.0,
            "noise_stddev": 0.0, "l2": 0.0, "max_norm": None, "reconstruction_weight": 0.0,
            "learning_rate": 0.01, "batch_size": 32, "train_steps": 200, "eval_steps": 4, "loss": "huber",
            "huber_delta": 1.0, "quantile": 0.5, "focal_gamma": 2.0, "focal_alpha": 0.25, "seed": 7,
        },
        "training": {
            "strategy": "default", "cpu_devices": 2, "workers": 2, "loop": "fit", "rounds": 4,
            "clip_value": None, "clip_norm": None, "clip_global_norm": None, "lr_schedule": "constant",
            "lr_decay_rate": 0.5, "wide_learning_rate": None, "early_stopping_patience": None,
            "reduce_lr_patience": None, "reduce_lr_factor": 0.5, "checkpoint": True,
        },
        "input": {"deterministic": True},
    }
    out = copy.deepcopy(base)
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        out[section][key] = value
    return out


def arrays(n: int = 1024, seed: int = 0, binary: bool = False) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    c = rng.integers(0, 5, size=(n, 1)).astype("int64")
    y = (2.0 * x[:, :1] - x[:, 1:2] + 0.5 * x[:, 2:3] ** 2 + 0.3 * c + rng.normal(scale=0.3, size=(n, 1))).astype("float32")
    if binary:
        y = (y > np.median(y)).astype("float32")
    features = {"x0_xf": x[:, :1], "x1_xf": x[:, 1:2], "x2_xf": x[:, 2:3], "c_xf": c}
    return features, y


def dataset(n: int = 1024, batch: int = 32, seed: int = 0, binary: bool = False, repeat: bool = True) -> tf.data.Dataset:
    features, y = arrays(n, seed, binary)
    ds = tf.data.Dataset.from_tensor_slices((features, y)).batch(batch, drop_remainder=True)
    return ds.repeat() if repeat else ds
