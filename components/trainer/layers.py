"""Custom Keras building blocks. Each is registered serializable (``sluice>…``), so ``.keras`` files and
SavedModels reload without ``custom_objects``; ``tests/unit/test_trainer_objects.py`` round-trips each.

Weight-level pieces come in two forms, as in the seed material: a plain function (simple, no
hyperparameters to save) and a class with ``get_config`` (its hyperparameters survive save/load):

=============  ==============================  =====================================
piece          function                        class
=============  ==============================  =====================================
initializer    ``glorot_scaled_normal``        ``ScaledGlorotNormal(scale)``
regularizer    ``l1_l2_tiny``                  ``L2Regularizer(factor)``
constraint     ``nonneg_max_norm``             ``MaxNorm(max_value, axis)``
activation     ``leaky_softplus``              ``LeakySoftplus(alpha)``
=============  ==============================  =====================================

Layers: ``ConstrainedDense`` (a Dense built from those pieces), ``TrainingNoise`` (Gaussian noise in
training only), ``ResidualBlock``, ``FeatureEncoder`` (Transform's outputs -> one vector) and
``Reconstruction`` (a loss on a hidden layer's activations: the "losses and metrics on model internals") and
``LabelScale`` (a regression head's units: the label's mean and spread).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import keras
from keras import ops

_PKG = "sluice"


# ----------------------------------------------------------------------------------------- initializers
# Every initializer in sluice's models gets an explicit seed: Keras 3's unseeded initializers draw from one
# process-global generator that ``keras.utils.set_random_seed`` (Keras 3.6) does not rewind, so a second
# model built in the same process (a Tuner trial, a test) would not start from the first one's weights.
def _offset(seed: Optional[int], i: int) -> Optional[int]:
    return None if seed is None else seed + 1000 + i


def seeded_glorot(seed: Optional[int]) -> keras.initializers.Initializer:
    return keras.initializers.GlorotUniform(seed=seed)


@keras.saving.register_keras_serializable(package=_PKG)
def glorot_scaled_normal(shape: Sequence[int], dtype: Any = None) -> Any:
    """Glorot normal with a 0.5 gain: smaller first steps for a regression head on z-scored inputs."""
    fan_in, fan_out = (shape[0], shape[-1]) if len(shape) >= 2 else (shape[0], shape[0])
    stddev = 0.5 * math.sqrt(2.0 / (fan_in + fan_out))
    return keras.random.normal(shape, stddev=stddev, dtype=dtype or "float32")


@keras.saving.register_keras_serializable(package=_PKG)
class ScaledGlorotNormal(keras.initializers.Initializer):
    """Glorot normal times ``scale``, seeded for reproducible runs."""

    def __init__(self, scale: float = 1.0, seed: Optional[int] = None) -> None:
        self.scale = float(scale)
        self.seed = seed

    def __call__(self, shape: Sequence[int], dtype: Any = None) -> Any:
        fan_in, fan_out = (shape[0], shape[-1]) if len(shape) >= 2 else (shape[0], shape[0])
        stddev = self.scale * math.sqrt(2.0 / (fan_in + fan_out))
        return keras.random.truncated_normal(shape, stddev=stddev, dtype=dtype or "float32", seed=self.seed)

    def get_config(self) -> Dict[str, Any]:
        return {"scale": self.scale, "seed": self.seed}


# ----------------------------------------------------------------------------------------- regularizers
@keras.saving.register_keras_serializable(package=_PKG)
def l1_l2_tiny(weights: Any) -> Any:
    """A fixed, tiny elastic-net penalty (1e-6 L1 + 1e-5 L2)."""
    return 1e-6 * ops.sum(ops.abs(weights)) + 1e-5 * ops.sum(ops.square(weights))


@keras.saving.register_keras_serializable(package=_PKG)
class L2Regularizer(keras.regularizers.Regularizer):
    """``factor * Σw²`` (``model.l2`` in the config)."""

    def __init__(self, factor: float = 0.01) -> None:
        self.factor = float(factor)

    def __call__(self, weights: Any) -> Any:
        return self.factor * ops.sum(ops.square(weights))

    def get_config(self) -> Dict[str, Any]:
        return {"factor": self.factor}


class _FunctionRegularizer(keras.regularizers.Regularizer):
    """Lets a plain function act where Keras 3's ``add_weight`` insists on a ``Regularizer`` instance.
    Internal: ``ConstrainedDense`` serializes the function itself, never this wrapper."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self, weights: Any) -> Any:
        return self.fn(weights)


class _FunctionConstraint(keras.constraints.Constraint):
    """The same adapter for constraints."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self, weights: Any) -> Any:
        return self.fn(weights)


def _as(kind: type, adapter: type, obj: Any) -> Any:
    return obj if obj is None or isinstance(obj, kind) else adapter(obj)


# ------------------------------------------------------------------------------------------ constraints
@keras.saving.register_keras_serializable(package=_PKG)
def nonneg_max_norm(weights: Any) -> Any:
    """Non-negative weights with column norm at most 3 (monotone layers)."""
    w = ops.relu(weights)
    norms = ops.sqrt(ops.sum(ops.square(w), axis=0, keepdims=True))
    return w * ops.minimum(1.0, 3.0 / (norms + 1e-7))


@keras.saving.register_keras_serializable(package=_PKG)
class MaxNorm(keras.constraints.Constraint):
    """Rescales each unit's incoming weight vector to norm ≤ ``max_value`` after every update."""

    def __init__(self, max_value: float = 3.0, axis: int = 0) -> None:
        self.max_value = float(max_value)
        self.axis = axis

    def __call__(self, weights: Any) -> Any:
        norms = ops.sqrt(ops.sum(ops.square(weights), axis=self.axis, keepdims=True))
        return weights * ops.minimum(1.0, self.max_value / (norms + 1e-7))

    def get_config(self) -> Dict[str, Any]:
        return {"max_value": self.max_value, "axis": self.axis}


# ------------------------------------------------------------------------------------------ activations
@keras.saving.register_keras_serializable(package=_PKG)
def leaky_softplus(x: Any) -> Any:
    """A smooth leaky ReLU: ``0.9·softplus(x) + 0.1·x`` (never a dead unit, no kink)."""
    return 0.9 * ops.softplus(x) + 0.1 * x


@keras.saving.register_keras_serializable(package=_PKG)
class LeakySoftplus:
    """``(1-alpha)·softplus(x) + alpha·x`` with a configurable slope ``alpha`` for negative inputs."""

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = float(alpha)

    def __call__(self, x: Any) -> Any:
        return (1.0 - self.alpha) * ops.softplus(x) + self.alpha * x

    def get_config(self) -> Dict[str, Any]:
        return {"alpha": self.alpha}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "LeakySoftplus":
        return cls(**config)


def activation(name: str, alpha: float = 0.1) -> Any:
    """The configured hidden activation (``model.activation``)."""
    if name == "leaky_softplus":
        return LeakySoftplus(alpha)
    return keras.activations.get(name)


# ------------------------------------------------------------------------------------------------ layers
@keras.saving.register_keras_serializable(package=_PKG)
class ConstrainedDense(keras.layers.Layer):
    """A Dense layer whose kernel has its own initializer, regularizer and constraint.

    Any of them may be a function or an object (they are serialized with Keras' own ``serialize``), so the
    same layer carries ``ScaledGlorotNormal`` + ``L2Regularizer`` + ``MaxNorm`` + ``LeakySoftplus`` from the
    config, or the function forms in tests.
    """

    def __init__(
        self,
        units: int,
        activation: Any = None,
        kernel_initializer: Any = "glorot_uniform",
        kernel_regularizer: Any = None,
        kernel_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation) if isinstance(activation, (str, type(None))) else activation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)

    def build(self, input_shape: Tuple[Optional[int], ...]) -> None:
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units),
            initializer=self.kernel_initializer,
            regularizer=_as(keras.regularizers.Regularizer, _FunctionRegularizer, self.kernel_regularizer),
            constraint=_as(keras.constraints.Constraint, _FunctionConstraint, self.kernel_constraint),
            name="kernel",
        )
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, inputs: Any) -> Any:
        return self.activation(ops.matmul(inputs, self.kernel) + self.bias)

    def compute_output_shape(self, input_shape: Tuple[Optional[int], ...]) -> Tuple[Optional[int], ...]:
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self) -> Dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.saving.serialize_keras_object(self.activation),
            "kernel_initializer": keras.saving.serialize_keras_object(self.kernel_initializer),
            "kernel_regularizer": keras.saving.serialize_keras_object(self.kernel_regularizer),
            "kernel_constraint": keras.saving.serialize_keras_object(self.kernel_constraint),
        }

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "ConstrainedDense":
        config = dict(config)
        for key in ("activation", "kernel_initializer", "kernel_regularizer", "kernel_constraint"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


@keras.saving.register_keras_serializable(package=_PKG)
class TrainingNoise(keras.layers.Layer):
    """Adds N(0, ``stddev``²) noise while training and is the identity at inference (and in exports)."""

    def __init__(self, stddev: float, seed: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stddev = float(stddev)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: Optional[bool] = None) -> Any:
        if training and self.stddev > 0:
            return inputs + keras.random.normal(ops.shape(inputs), stddev=self.stddev, seed=self.seed_generator)
        return inputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


@keras.saving.register_keras_serializable(package=_PKG)
class ResidualBlock(keras.layers.Layer):
    """``act(x + Dense(Dense(x)))``: two ``ConstrainedDense`` of ``units`` with a skip connection (projected
    when the input width differs). The second layer starts small (gain 0.5), so a fresh block is close to
    the identity and deep stacks train as easily as shallow ones."""

    def __init__(self, units: int, activation: Any = "relu", l2: float = 0.0, seed: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.saving.deserialize_keras_object(activation) if isinstance(activation, dict) else activation
        self.l2 = float(l2)
        self.seed = seed
        reg = L2Regularizer(self.l2) if self.l2 else None
        self.dense_1 = ConstrainedDense(units, self.activation, ScaledGlorotNormal(1.0, seed), reg, name="dense_1")
        self.dense_2 = ConstrainedDense(units, None, ScaledGlorotNormal(0.5, seed), reg, name="dense_2")
        self.project: Optional[ConstrainedDense] = None
        self._act = keras.activations.get(self.activation) if isinstance(self.activation, str) else self.activation

    def build(self, input_shape: Tuple[Optional[int], ...]) -> None:
        self.dense_1.build(input_shape)
        self.dense_2.build(tuple(input_shape[:-1]) + (self.units,))
        if input_shape[-1] != self.units:
            self.project = ConstrainedDense(self.units, None, ScaledGlorotNormal(1.0, self.seed), name="project")
            self.project.build(input_shape)

    def call(self, inputs: Any) -> Any:
        shortcut = self.project(inputs) if self.project is not None else inputs
        return self._act(shortcut + self.dense_2(self.dense_1(inputs)))

    def compute_output_shape(self, input_shape: Tuple[Optional[int], ...]) -> Tuple[Optional[int], ...]:
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self) -> Dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.saving.serialize_keras_object(self.activation),
            "l2": self.l2,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package=_PKG)
class FeatureEncoder(keras.layers.Layer):
    """Transform's outputs (a dict of ``[batch, 1]`` tensors) -> one ``[batch, d]`` vector.

    ``specs`` lists ``[input_name, vocabulary_size_or_0, embedding_dim]``: size 0 means a numeric z-score
    passed through, otherwise an id looked up in a learned embedding. Kept as plain lists so the layer's
    config is JSON and the model rebuilds from it without Transform's output at hand.
    """

    def __init__(self, specs: List[List[Any]], seed: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.specs = [[str(n), int(size), int(dim)] for n, size, dim in specs]
        self.seed = seed
        self.embeddings = {
            name: keras.layers.Embedding(
                size, dim, embeddings_initializer=keras.initializers.RandomUniform(-0.05, 0.05, seed=_offset(seed, i)),
                name=f"{name}_embedding")
            for i, (name, size, dim) in enumerate(self.specs)
            if size
        }

    def build(self, input_shape: Any) -> None:
        for layer in self.embeddings.values():
            layer.build((None, 1))

    def call(self, inputs: Dict[str, Any]) -> Any:
        parts = []
        for name, size, dim in self.specs:
            x = inputs[name]
            if size:
                parts.append(ops.reshape(self.embeddings[name](ops.cast(x, "int32")), (-1, dim)))
            else:
                parts.append(ops.reshape(ops.cast(x, "float32"), (-1, 1)))
        return ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    @property
    def output_dim(self) -> int:
        return sum(dim if size else 1 for _, size, dim in self.specs)

    def compute_output_shape(self, input_shape: Any) -> Tuple[Optional[int], int]:
        return (None, self.output_dim)

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "specs": self.specs, "seed": self.seed}


@keras.saving.register_keras_serializable(package=_PKG)
class Reconstruction(keras.layers.Layer):
    """An auxiliary loss on model internals: how well a hidden layer ``h`` can reconstruct the input ``x``.

    Called as ``Reconstruction(weight)((h, x))``; returns ``h`` unchanged. While training it adds
    ``weight · mean((decoder(h) - x)²)`` with ``add_loss`` (Keras adds it to the loss both loops minimize)
    and updates its own ``reconstruction_loss`` Mean tracker — the Keras 3 replacement for
    ``model.add_metric``: Keras collects layer metrics, so the value shows in ``fit`` logs and TensorBoard.
    """

    def __init__(self, weight: float = 0.01, seed: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weight = float(weight)
        self.seed = seed
        self.tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.decoder: Optional[keras.layers.Dense] = None

    def build(self, input_shape: Any) -> None:
        hidden, original = input_shape
        self.decoder = keras.layers.Dense(original[-1], kernel_initializer=seeded_glorot(self.seed), name="decoder")
        self.decoder.build(hidden)

    def call(self, inputs: Any, training: Optional[bool] = None) -> Any:
        hidden, original = inputs
        if training:
            loss = ops.mean(ops.square(self.decoder(hidden) - ops.stop_gradient(original)))
            self.add_loss(self.weight * loss)
            self.tracker.update_state(loss)
        return hidden

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "weight": self.weight, "seed": self.seed}


@keras.saving.register_keras_serializable(package=_PKG)
class LabelScale(keras.layers.Layer):
    """``mean + scale * x``: a regression head predicts in the label's own units from a unit-scale output.

    Without it, a label in the hundreds of thousands (house prices) must be reached by weights that start
    near zero and move about a learning rate per step: the first-try model of such a CSV ended no better
    than the mean predictor. The constants are the train split's label mean and standard deviation
    (``trainer.data.label_moments``), fixed, saved in the config; the loss stays in the label's units."""

    def __init__(self, mean: float = 0.0, scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean, self.scale = float(mean), float(scale)

    def call(self, x: Any) -> Any:
        return x * self.scale + self.mean

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "scale": self.scale}
