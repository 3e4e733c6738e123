"""The Keras 3 models a config can choose (``model.architecture``), built from the config and from the
vocabulary sizes Transform actually computed.

- ``mlp`` (functional): ``FeatureEncoder`` -> ``TrainingNoise`` -> a stack of ``ConstrainedDense`` (custom
  initializer, L2 regularizer, max-norm constraint, configurable activation) with dropout -> head.
- ``wide_deep`` (subclassed ``WideDeep``): a linear "wide" part over every input (1-d embeddings for ids)
  plus a "deep" tower of ``ResidualBlock``s; their logits are summed. The two parts can be trained by two
  optimizers in the custom loop (``training.wide_learning_rate``).

Both put ``Reconstruction`` after the first hidden layer when ``model.reconstruction_weight > 0``: an
auxiliary loss on model internals, tracked as its own metric. The head is linear for regression, a
sigmoid probability for binary classification (what TFMA's AUC/calibration expect) and K softmax
probabilities for multi-class (the order of ``task.classes``; TFMA's sparse metrics take the class id).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

import keras
from keras import ops

from sluice.components.features import cardinality, model_inputs, vocabulary_name
from sluice.components.settings import BINARY, MULTICLASS, REGRESSION
from sluice.components.trainer.layers import (
    ConstrainedDense,
    FeatureEncoder,
    L2Regularizer,
    LabelScale,
    MaxNorm,
    Reconstruction,
    ResidualBlock,
    ScaledGlorotNormal,
    TrainingNoise,
    activation,
    seeded_glorot,
)

if TYPE_CHECKING:
    from sluice.components.contracts import TrainerContract


def feature_specs(contract: "TrainerContract", vocabulary_sizes: Mapping[str, int]) -> List[List[Any]]:
    """``[input name, ids (0 = numeric), embedding dim]`` for every model input (``FeatureEncoder``'s specs).

    ``vocabulary_sizes``: Transform's vocabulary size per ``categorical_string`` feature (by feature name).
    """
    specs = []
    for key, categorical, feature in model_inputs(contract.features):
        if categorical:
            size = vocabulary_sizes.get(feature.name)
            specs.append([key, cardinality(feature, size), int(feature.embedding_dim)])
        else:
            specs.append([key, 0, 1])
    return specs


def vocabulary_sizes(contract: "TrainerContract", tft_output: Any) -> Dict[str, int]:
    """Transform's vocabulary sizes for the vocabulary (not hashed) string features."""
    return {
        f.name: tft_output.vocabulary_size_by_name(vocabulary_name(f.name))
        for f in contract.features
        if f.kind == "categorical_string" and not f.hash_buckets
    }


def _input_layer(name: str, size: int) -> keras.KerasTensor:
    return keras.Input(shape=(1,), name=name, dtype="int64" if size else "float32")


def _build_mlp(contract: "TrainerContract", specs: List[List[Any]],
               label_scale: Optional[Tuple[float, float]] = None) -> keras.Model:
    hp = contract.model
    seed = hp.seed
    inputs = {name: _input_layer(name, size) for name, size, _ in specs}
    encoded = FeatureEncoder(specs, seed=seed, name="features")(inputs)
    x = TrainingNoise(hp.noise_stddev, seed=seed, name="noise")(encoded)
    regularizer = L2Regularizer(hp.l2) if hp.l2 else None
    constraint = MaxNorm(hp.max_norm) if hp.max_norm else None
    for i, units in enumerate(hp.hidden_units):
        x = ConstrainedDense(
            units,
            activation=activation(hp.activation),
            kernel_initializer=ScaledGlorotNormal(1.0, seed=seed + i),
            kernel_regularizer=regularizer,
            kernel_constraint=constraint,
            name=f"hidden_{i}",
        )(x)
        if i == 0 and hp.reconstruction_weight:
            x = Reconstruction(hp.reconstruction_weight, seed=seed, name="reconstruction")((x, encoded))
        if hp.dropout:
            x = keras.layers.Dropout(hp.dropout, seed=seed, name=f"dropout_{i}")(x)
    units, head = output_head(contract)
    output = keras.layers.Dense(
        units, activation=head, kernel_initializer=seeded_glorot(seed + 99), name="prediction"
    )(x)
    if label_scale is not None:
        output = LabelScale(*label_scale, name="label_scale")(output)
    return keras.Model(inputs=inputs, outputs=output, name=contract.name)


def output_head(contract: "TrainerContract") -> tuple:
    """``(units, activation)`` of the model's last layer for the task."""
    task = contract.task
    if task.type == MULTICLASS:
        return len(task.classes or []), "softmax"
    return 1, "sigmoid" if task.type == BINARY else None


@keras.saving.register_keras_serializable(package="sluice")
class WideDeep(keras.Model):
    """Wide (linear) + deep (residual) model; ``wide_variables`` / ``deep_variables`` split it for two
    optimizers."""

    def __init__(
        self,
        specs: List[List[Any]],
        hidden_units: List[int],
        binary: bool = False,
        activation_name: str = "relu",
        dropout: float = 0.0,
        noise_stddev: float = 0.0,
        l2: float = 0.0,
        reconstruction_weight: float = 0.0,
        seed: int = 42,
        classes: int = 0,
        label_mean: float = 0.0,
        label_scale: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.specs = [list(s) for s in specs]
        self.hidden_units = list(hidden_units)
        self.binary = bool(binary)
        self.classes = int(classes)
        """Multi-class: K softmax outputs (0: one output, a sigmoid probability when ``binary``)."""
        self.label_mean, self.label_scale = float(label_mean), float(label_scale)
        """Regression: the output in the label's units, ``label_mean + label_scale * logit`` (``LabelScale``)."""
        self.activation_name = activation_name
        self.dropout_rate = float(dropout)
        self.noise_stddev = float(noise_stddev)
        self.l2 = float(l2)
        self.reconstruction_weight = float(reconstruction_weight)
        self.seed = int(seed)

        self.wide_encoder = FeatureEncoder([[n, s, 1] for n, s, _ in self.specs], seed=self.seed + 1,
                                           name="wide_features")
        units = max(1, self.classes)
        self.wide = keras.layers.Dense(units, kernel_initializer=seeded_glorot(self.seed + 2), name="wide_linear")
        self.encoder = FeatureEncoder(self.specs, seed=self.seed + 3, name="deep_features")
        self.noise = TrainingNoise(self.noise_stddev, seed=self.seed, name="noise")
        self.blocks = [
            ResidualBlock(u, activation(activation_name), l2=self.l2, seed=self.seed + i, name=f"residual_{i}")
            for i, u in enumerate(self.hidden_units)
        ]
        self.reconstruction = (
            Reconstruction(self.reconstruction_weight, seed=self.seed + 4, name="reconstruction")
            if self.reconstruction_weight
            else None
        )
        self.dropout = keras.layers.Dropout(self.dropout_rate, seed=self.seed) if self.dropout_rate else None
        self.deep_out = keras.layers.Dense(units, kernel_initializer=seeded_glorot(self.seed + 5), name="deep_linear")

    def build(self, input_shape: Any = None) -> None:
        wide_dim = len(self.specs)
        self.wide_encoder.build(None)
        self.wide.build((None, wide_dim))
        self.encoder.build(None)
        width = self.encoder.output_dim
        for block in self.blocks:
            block.build((None, width))
            width = block.units
        if self.reconstruction is not None:
            self.reconstruction.build(((None, self.blocks[0].units), (None, self.encoder.output_dim)))
        self.deep_out.build((None, width))
        self.built = True

    def call(self, inputs: Dict[str, Any], training: Optional[bool] = None) -> Any:
        logit = self.wide(self.wide_encoder(inputs))
        encoded = self.encoder(inputs)
        h = self.noise(encoded, training=training)
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == 0 and self.reconstruction is not None:
                h = self.reconstruction((h, encoded), training=training)
            if self.dropout is not None:
                h = self.dropout(h, training=training)
        logit = logit + self.deep_out(h)
        if self.classes:
            return ops.softmax(logit, axis=-1)
        return ops.sigmoid(logit) if self.binary else logit * self.label_scale + self.label_mean

    @property
    def wide_variables(self) -> List[Any]:
        return self.wide_encoder.trainable_variables + self.wide.trainable_variables

    @property
    def deep_variables(self) -> List[Any]:
        wide = {id(v) for v in self.wide_variables}
        return [v for v in self.trainable_variables if id(v) not in wide]

    def get_config(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "specs": self.specs,
            "hidden_units": self.hidden_units,
            "binary": self.binary,
            "activation_name": self.activation_name,
            "dropout": self.dropout_rate,
            "noise_stddev": self.noise_stddev,
            "l2": self.l2,
            "reconstruction_weight": self.reconstruction_weight,
            "seed": self.seed,
            "classes": self.classes,
            "label_mean": self.label_mean,
            "label_scale": self.label_scale,
        }


def make_model(contract: "TrainerContract", tft_output: Any,
               label_scale: Optional[Tuple[float, float]] = None) -> keras.Model:
    """Your ``code.model_fn``'s model when the config names one, else sluice's (``build_model``; a regression
    head in the label's units when ``label_scale`` = the train label's (mean, std) is given)."""
    if not contract.code.model_fn:
        return build_model(contract, feature_specs(contract, vocabulary_sizes(contract, tft_output)), label_scale)
    from sluice.components import user_code
    from sluice.components.features import label_key
    from sluice.components.refusal import Refused

    spec = dict(tft_output.transformed_feature_spec())
    spec.pop(label_key(contract.task), None)
    model = user_code.load(contract.code.model_fn, "code.model_fn")(spec, contract)
    if not isinstance(model, keras.Model):
        raise Refused("code.model_fn", f"{contract.code.model_fn} returned {type(model).__name__}, not a keras.Model",
                      "return the (uncompiled) Keras model")
    from sluice.components.trainer.signatures import model_input_names

    unknown = sorted(set(model_input_names(model, contract, tft_output)) - set(spec))
    if unknown:
        raise Refused("code.model_fn", f"the model takes {', '.join(unknown)}, which Transform does not output "
                      f"(it outputs {', '.join(sorted(spec))})", "key the model's inputs by Transform's outputs")
    return model


def build_model(contract: "TrainerContract", specs: List[List[Any]],
                label_scale: Optional[Tuple[float, float]] = None) -> keras.Model:
    """The (uncompiled, built) model for ``contract``: the loops compile or drive it. ``label_scale``
    (regression only): the head's ``(mean, std)``, so it predicts in the label's units from unit scale."""
    hp = contract.model
    if contract.task.type != REGRESSION:
        label_scale = None
    if hp.architecture == "wide_deep":
        model = WideDeep(
            specs,
            hp.hidden_units,
            binary=contract.task.type == BINARY,
            activation_name=hp.activation,
            dropout=hp.dropout,
            noise_stddev=hp.noise_stddev,
            l2=hp.l2,
            reconstruction_weight=hp.reconstruction_weight,
            seed=hp.seed,
            classes=len(contract.task.classes or []) if contract.task.type == MULTICLASS else 0,
            label_mean=label_scale[0] if label_scale else 0.0,
            label_scale=label_scale[1] if label_scale else 1.0,
            name=contract.name,
        )
        model.build()
        return model
    return _build_mlp(contract, specs, label_scale)


def internal_metrics(model: keras.Model) -> List[keras.metrics.Metric]:
    """Metrics that layers keep about model internals (the ``Reconstruction`` tracker)."""
    return [layer.tracker for layer in _all_layers(model) if isinstance(layer, Reconstruction)]


def _all_layers(model: keras.Model) -> List[keras.layers.Layer]:
    """Every layer of ``model``, nested models' included, through Keras' public ``layers`` property (the
    ``Reconstruction`` layer sits directly in both architectures)."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(_all_layers(layer))
    return found
