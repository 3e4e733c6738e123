"""What the Trainer exports: the trained model joined to the Transform graph, with three signatures, so
clients send raw features only:

- ``serving_default``: serialized ``tf.Example`` of the raw feature columns -> ``{"outputs": prediction}``
  (TF Serving ``:predict``, TFMA); multi-class adds ``"classes"``, the most probable class's name
  (``outputs`` are the K probabilities in ``task.classes`` order);
- ``serving_raw``: one named dense tensor per raw feature column (shape ``[batch]``) -> the same outputs; for
  JSON clients and the basis of the TFLite export. Every value must be present (send the configured default
  for an empty optional column; ``serving_default`` accepts absent values). Inputs are named by
  ``features.input_key``: the CSV's column name wherever TensorFlow accepts it as a signature name;
- ``transform_features``: serialized ``tf.Example`` incl. label columns -> transformed features (TFMA uses it
  to get the transformed label, e.g. a derived one).

The functions here take any contract with ``task`` and ``features`` (the Trainer's ``TrainerContract``,
ModelExport's ``ExportContract``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, Union

import keras
import tensorflow as tf
import tensorflow_transform as tft

from sluice.components.features import input_keys, model_inputs

if TYPE_CHECKING:
    from sluice.components.contracts import ExportContract, TrainerContract

    ModelContract = Union[TrainerContract, ExportContract]


def keras_model_path(model_uri: str) -> str:
    """``<Model artifact>/Format-Keras/model.keras``, beside TFX's ``Format-Serving``: the bare Keras model,
    which the TFLite export (``components/export/``) starts from."""
    return os.path.join(model_uri, "Format-Keras", "model.keras")


def _raw_spec(tft_output: tft.TFTransformOutput, columns: list) -> Dict[str, Any]:
    spec = tft_output.raw_feature_spec()
    return {c: spec[c] for c in columns if c in spec}


def serving_columns(tft_output: tft.TFTransformOutput, contract: "ModelContract") -> Dict[str, Any]:
    """The raw feature columns a request carries (no label columns), in config order, with parsing specs."""
    return _raw_spec(tft_output, [f.name for f in contract.features])


def _raw_tensor(value: tf.Tensor, spec: Any) -> Any:
    """A dense ``[batch]`` raw column as the parsing spec would have produced it (dense [batch, 1] or sparse)."""
    column = tf.reshape(value, [-1, 1])
    if isinstance(spec, tf.io.VarLenFeature):
        rows = tf.shape(value, out_type=tf.int64)[0]
        indices = tf.stack([tf.range(rows), tf.zeros([rows], tf.int64)], axis=1)
        return tf.SparseTensor(indices, value, tf.stack([rows, tf.constant(1, tf.int64)]))
    return column


def model_input_names(model: keras.Model, contract: "ModelContract", tft_output: tft.TFTransformOutput) -> list:
    """The transformed features the model takes: a functional model's own inputs; else sluice's model inputs,
    or, for your ``code.model_fn``, every transformed feature but the label."""
    try:  # a functional model called with a dict: its keys (Keras matches by key, not by Input name)
        structure = model.input
        names = list(structure) if isinstance(structure, dict) else [t.name for t in model.inputs or []]
    except (AttributeError, ValueError):  # a subclassed model has no symbolic inputs
        names = []
    if names:
        return names
    if contract.code.model_fn:
        from sluice.components.features import label_key

        return sorted(k for k in tft_output.transformed_feature_spec() if k != label_key(contract.task))
    return [name for name, _, _ in model_inputs(contract.features)]


def answer(predictions: tf.Tensor, classes: list) -> Dict[str, tf.Tensor]:
    """A signature's outputs: the model's predictions, plus (multi-class) the name of the most probable class."""
    if not classes:
        return {"outputs": predictions}
    best = tf.argmax(predictions, axis=-1)
    return {"outputs": predictions, "classes": tf.gather(tf.constant(classes, tf.string), best)}


class ServingModule(tf.Module):
    """What is saved: the trained model, the Transform layer and the signatures that join them."""

    def __init__(self, model: keras.Model, tft_output: tft.TFTransformOutput, contract: "ModelContract") -> None:
        super().__init__()
        self.model = model
        self.tft_layer = tft_output.transform_features_layer()
        feature_columns = [f.name for f in contract.features]
        self._serving_spec = serving_columns(tft_output, contract)
        label_columns = [c for c in contract.task.raw_label_columns() if c not in feature_columns]
        self._eval_spec = _raw_spec(tft_output, feature_columns + label_columns)
        input_names = tuple(model_input_names(model, contract, tft_output))
        classes = list(contract.task.classes or [])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve_examples(examples: tf.Tensor) -> Dict[str, tf.Tensor]:
            raw = tf.io.parse_example(examples, self._serving_spec)
            transformed = self.tft_layer(raw)
            inputs = {k: transformed[k] for k in input_names}
            return answer(self.model(inputs, training=False), classes)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def transform_features(examples: tf.Tensor) -> Dict[str, tf.Tensor]:
            raw = tf.io.parse_example(examples, self._eval_spec)
            return self.tft_layer(raw)

        # One dict argument, not keyword arguments: a signature's input names are its TensorSpecs' names,
        # which need not be Python identifiers (``x.y``, ``1st``, ``class``).
        keys = input_keys(self._serving_spec)

        @tf.function(input_signature=[{keys[name]: tf.TensorSpec([None], spec.dtype, name=keys[name])
                                       for name, spec in self._serving_spec.items()}])
        def serve_raw(columns: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
            raw = {name: _raw_tensor(columns[keys[name]], spec) for name, spec in self._serving_spec.items()}
            transformed = self.tft_layer(raw)
            return answer(self.model({k: transformed[k] for k in input_names}, training=False), classes)

        self.serve_examples = serve_examples
        self.serve_raw = serve_raw
        self.transform_features = transform_features

    def signatures(self) -> Dict[str, Any]:
        return {
            "serving_default": self.serve_examples,
            "serving_raw": self.serve_raw.get_concrete_function(),
            "transform_features": self.transform_features,
        }


def export_saved_model(model: keras.Model, tft_output: tft.TFTransformOutput, contract: "ModelContract",
                       path: str) -> None:
    """Write the serving SavedModel (all three signatures) to ``path``."""
    module = ServingModule(model, tft_output, contract)
    tf.saved_model.save(module, path, signatures=module.signatures())
