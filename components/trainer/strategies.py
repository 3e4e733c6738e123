"""Distribution strategies (``training.strategy``) and the process setup each one needs.

- ``default``: one device, no distribution.
- ``mirrored``: synchronous data parallelism inside one process — over every local GPU, or, on a CPU-only
  machine, over ``cpu_devices`` logical CPU devices. Logical devices can only be configured before
  TensorFlow initializes its runtime, which has already happened inside a TFX Trainer (Transform ran in the
  same process); ``launcher.py`` therefore trains in a fresh worker process whenever this needs doing.
- ``multi_worker``: ``MultiWorkerMirroredStrategy`` across processes that find each other through
  ``TF_CONFIG`` — on a cluster the orchestrator sets it; locally ``launcher.py`` starts ``workers``
  processes on localhost ports. Same code path either way; only the chief (task 0) writes the model.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, List

import tensorflow as tf

if TYPE_CHECKING:
    from sluice.components.settings import TrainingConfig


def configure_cpu_devices(count: int) -> bool:
    """Split the CPU into ``count`` logical devices (for ``mirrored`` without GPUs).

    Returns False when it is too late (TensorFlow already initialized) or there are GPUs to mirror over.
    """
    if count <= 1 or tf.config.list_physical_devices("GPU"):
        return False
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        return False
    return True


def needs_fresh_process(training: "TrainingConfig") -> bool:
    """Whether this strategy must be set up before TensorFlow initializes (so in a new process)."""
    if training.strategy == "multi_worker":
        return "TF_CONFIG" not in os.environ
    if training.strategy == "mirrored" and not tf.config.list_physical_devices("GPU"):
        return training.cpu_devices > 1 and len(tf.config.list_logical_devices("CPU")) < training.cpu_devices
    return False


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy object, in a process already set up for it."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.RING
            )
        )
    raise ValueError(f"unknown strategy {name!r}")


def is_chief() -> bool:
    """Task 0 of the ``worker`` (or the ``chief``) job writes the model; everyone else writes to scratch."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = config.get("task", {})
    return task.get("type", "chief") == "chief" or (task.get("type") == "worker" and task.get("index", 0) == 0
                                                    and "chief" not in config.get("cluster", {}))


def local_cluster(ports: List[int], index: int) -> str:
    """TF_CONFIG for worker ``index`` of a localhost cluster on ``ports``."""
    return json.dumps(
        {"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )
