"""Distribution strategies selectable from the config (``training.strategy``)."""

from __future__ import annotations

import tensorflow as tf


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``default``: one device. ``mirrored``: synchronous data parallelism over all local devices."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}")
