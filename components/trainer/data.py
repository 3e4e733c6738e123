"""tf.data input for the Trainer, read from Transform's output through TFX's data accessor (TFXIO).

TFXIO batches records before parsing them (vectorized parsing) and yields ``(features, label)`` with the
shapes of Transform's output schema; we add shuffling with a fixed seed and prefetching so the input is
never what the training step waits on.
"""

from __future__ import annotations

from typing import List

import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import DataAccessor
from tfx_bsl.public import tfxio


def input_fn(
    file_pattern: List[str],
    data_accessor: DataAccessor,
    tft_output: tft.TFTransformOutput,
    label_key: str,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
) -> tf.data.Dataset:
    """An endless dataset of ``(transformed features, label)`` batches."""
    options = tfxio.TensorFlowDatasetOptions(
        batch_size=batch_size,
        label_key=label_key,
        shuffle=shuffle,
        shuffle_seed=seed,
        num_epochs=None,  # repeat: the Trainer counts steps, not epochs
    )
    dataset = data_accessor.tf_dataset_factory(file_pattern, options, tft_output.transformed_metadata.schema)
    return dataset.prefetch(tf.data.AUTOTUNE)
