"""The loss registry: Keras' built-ins where they are the loss we mean (proved here against the formulas in
NumPy float64), built from the contract's settings, for every loss the config accepts."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from sluice.components.settings import LOSSES as CONFIG_LOSSES
from sluice.components.trainer.losses import LOSSES, Huber, Quantile, make_loss
from tests.trainer.synthetic import contract

RNG = np.random.default_rng(0)
Y_TRUE = (RNG.normal(size=(64, 1)) * 3).astype("float32")
Y_PRED = (RNG.normal(size=(64, 1)) * 3).astype("float32")


def _per_example(name, y_true=Y_TRUE, y_pred=Y_PRED, **model):
    overrides = {f"model__{k}": v for k, v in model.items()}
    return make_loss(contract(model__loss=name, **overrides), reduction="none")(y_true, y_pred).numpy()


def test_every_configurable_loss_is_registered():
    assert set(LOSSES) == {name for names in CONFIG_LOSSES.values() for name in names}


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.5])
def test_huber_is_quadratic_up_to_delta_then_linear(delta):
    err = np.abs(Y_PRED - Y_TRUE).astype("float64")[:, 0]
    expected = np.where(err <= delta, 0.5 * err**2, delta * err - 0.5 * delta**2)
    assert _per_example("huber", huber_delta=delta) == pytest.approx(expected, rel=1e-5)


def test_log_cosh_is_log_cosh_and_does_not_overflow():
    err = (Y_PRED - Y_TRUE).astype("float64")[:, 0]
    assert _per_example("log_cosh") == pytest.approx(np.log(np.cosh(err)), rel=1e-5, abs=1e-6)
    big = _per_example("log_cosh", np.zeros((1, 1), "float32"), np.full((1, 1), 1000.0, "float32"))
    assert big[0] == pytest.approx(1000.0 - np.log(2.0), rel=1e-6)  # cosh(1000) overflows float32


@pytest.mark.parametrize("gamma,alpha", [(2.0, 0.25), (0.0, 0.5), (1.0, 0.8)])
def test_focal_is_class_balanced_focal_cross_entropy(gamma, alpha):
    labels = (RNG.random((200, 1)) > 0.7).astype("float32")
    probs = RNG.uniform(0.01, 0.99, size=(200, 1)).astype("float32")
    y, p = labels.astype("float64")[:, 0], probs.astype("float64")[:, 0]
    p_t = y * p + (1 - y) * (1 - p)
    alpha_t = y * alpha + (1 - y) * (1 - alpha)
    expected = -alpha_t * (1 - p_t) ** gamma * np.log(p_t)
    got = _per_example("focal", labels, probs, focal_gamma=gamma, focal_alpha=alpha)
    assert got == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
def test_quantile_is_pinball(q):
    err = (Y_TRUE - Y_PRED).astype("float64")[:, 0]
    assert _per_example("quantile", quantile=q) == pytest.approx(np.maximum(q * err, (q - 1) * err), rel=1e-5)


def test_losses_round_trip_through_their_config():
    # Why sluice keeps its own Huber: Keras 3.6's drops delta from the config (reloads with delta = 1).
    assert "delta" not in keras.losses.Huber(delta=2.5).get_config()
    huber = keras.losses.deserialize(keras.losses.serialize(make_loss(contract(model__loss="huber",
                                                                               model__huber_delta=2.5))))
    assert isinstance(huber, Huber) and huber.delta == 2.5
    assert float(huber(Y_TRUE, Y_PRED)) == pytest.approx(float(keras.losses.Huber(delta=2.5)(Y_TRUE, Y_PRED)))
    focal = keras.losses.deserialize(keras.losses.serialize(make_loss(contract(
        task__type="binary_classification", model__loss="focal", model__focal_alpha=0.4, model__focal_gamma=1.5))))
    assert (focal.get_config()["alpha"], focal.get_config()["gamma"]) == (0.4, 1.5)
    quantile = keras.losses.deserialize(keras.losses.serialize(Quantile(0.9)))
    assert isinstance(quantile, Quantile) and quantile.quantile == 0.9
    with pytest.raises(ValueError):
        Quantile(1.0)


def _multiclass(**model):
    return contract(task__type="multiclass", task__classes=["a", "b", "c", "d"], **model)


@pytest.mark.parametrize("gamma,alpha", [(2.0, 0.25), (0.0, 1.0), (1.0, 0.8)])
def test_sparse_focal_is_focal_cross_entropy_on_class_ids(gamma, alpha):
    ids = RNG.integers(0, 4, size=(200, 1))
    logits = RNG.normal(size=(200, 4)) * 2
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype("float32")
    p_true = probs.astype("float64")[np.arange(200), ids[:, 0]]
    expected = -alpha * (1 - p_true) ** gamma * np.log(p_true)
    loss = make_loss(_multiclass(model__loss="sparse_focal", model__focal_gamma=gamma, model__focal_alpha=min(alpha, 0.99)),
                     reduction="none")
    got = loss(ids, probs).numpy()
    assert got == pytest.approx(expected * min(alpha, 0.99) / alpha, rel=1e-4)
    keras_focal = keras.losses.CategoricalFocalCrossentropy(alpha=min(alpha, 0.99), gamma=gamma, reduction="none")
    assert got == pytest.approx(keras_focal(np.eye(4)[ids[:, 0]], probs).numpy(), rel=1e-4)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert (again.gamma, again.alpha) == (gamma, min(alpha, 0.99))


def test_sparse_categorical_crossentropy_is_minus_log_of_the_true_class():
    ids = RNG.integers(0, 4, size=(50, 1))
    probs = RNG.dirichlet(np.ones(4), size=50).astype("float32")
    got = make_loss(_multiclass(model__loss="sparse_categorical_crossentropy"), reduction="none")(ids, probs).numpy()
    assert got == pytest.approx(-np.log(probs.astype("float64")[np.arange(50), ids[:, 0]]), rel=1e-4)
