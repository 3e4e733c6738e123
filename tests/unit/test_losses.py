"""The custom Huber loss matches Keras' reference and survives serialization."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from sluice.components.trainer.losses import Huber, make_loss
from tests.trainer.synthetic import contract


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
def test_huber_matches_keras_reference(delta):
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=(64, 1)).astype("float32") * 3
    y_pred = rng.normal(size=(64, 1)).astype("float32") * 3
    ours = float(Huber(delta=delta)(y_true, y_pred))
    ref = float(keras.losses.Huber(delta=delta)(y_true, y_pred))
    assert ours == pytest.approx(ref, rel=1e-5)


def test_huber_at_the_delta_boundary():
    delta = 1.5
    y_true = np.zeros((3, 1), "float32")
    y_pred = np.array([[delta], [-delta], [delta + 1]], "float32")
    values = Huber(delta=delta, reduction=None)(y_true, y_pred).numpy()
    assert values[:2] == pytest.approx([0.5 * delta**2] * 2)  # quadratic and linear pieces meet at delta
    assert values[2] == pytest.approx(0.5 * delta**2 + delta * 1)


def test_huber_round_trips_through_config():
    loss = make_loss(contract(model__loss="huber", model__huber_delta=2.5))
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, Huber) and restored.delta == 2.5


def test_invalid_delta():
    with pytest.raises(ValueError):
        Huber(delta=0)
