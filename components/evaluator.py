"""TFX's Evaluator with one policy added: feature slices under ``min_slice_size`` eval examples do not block.

TFMA applies a slicing spec's thresholds to every slice of that spec, however small. This component is
TFX's Evaluator (same inputs, outputs, TFMA run and artifacts) with an extra ``min_slice_size`` parameter;
its executor runs TFX's executor, then re-decides the ``ModelBlessing`` with
``evaluation.decide`` — threshold failures only on small slices bless the model, and every decision
(gating and exempt failures, candidate vs baseline values) is written to ``sluice_gate.json`` in the
evaluation artifact for the run summary and the report.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

import tensorflow_model_analysis as tfma
from absl import logging
from google.protobuf import json_format
from tfx import types
from tfx.components.evaluator import component as tfx_evaluator
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as tfx_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

from sluice.components import artifact_io as aio
from sluice.components import verdicts
from sluice.components.evaluation import decide

MIN_SLICE_SIZE = "min_slice_size"
CODE_VERSION = "code_version"


class EvaluatorSpec(standard_component_specs.EvaluatorSpec):
    # ``code_version``: sluice's evaluation code (the re-blessing, the custom TFMA metrics) is referenced by
    # import path, so its fingerprint is a parameter — part of the cache key, unused by the executor.
    PARAMETERS = {**standard_component_specs.EvaluatorSpec.PARAMETERS, MIN_SLICE_SIZE: ExecutionParameter(type=int),
                  CODE_VERSION: ExecutionParameter(type=str, optional=True)}


class Executor(tfx_executor.Executor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        exec_properties = dict(exec_properties)
        min_slice_size = int(exec_properties.pop(MIN_SLICE_SIZE, 0) or 0)
        exec_properties.pop(CODE_VERSION, None)
        input_dict, itself = without_self_baseline(input_dict)
        super().Do(input_dict, output_dict, exec_properties)
        eval_config = json_format.Parse(exec_properties[standard_component_specs.EVAL_CONFIG_KEY], tfma.EvalConfig())
        rebless(output_dict, min_slice_size, baseline_is_candidate=itself, eval_config=eval_config)


def without_self_baseline(input_dict: Dict[str, List[types.Artifact]]) -> Tuple[Dict[str, List[types.Artifact]], bool]:
    """The inputs without the baseline when it is the candidate itself (a re-run whose Trainer was cached:
    the latest blessed model is this one). Comparing a model with itself changes nothing but doubles TFMA's
    work (both models loaded and evaluated); without a baseline TFX drops the change thresholds, which a
    model meets against itself anyway. Returns ``(inputs, whether the baseline was dropped)``."""
    baseline = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY) or []
    model = input_dict.get(standard_component_specs.MODEL_KEY) or []
    if baseline and model and baseline[0].uri.rstrip("/") == model[0].uri.rstrip("/"):
        logging.info("The baseline is the candidate itself (%s): evaluating it once, without change thresholds.",
                     model[0].uri)
        return {**input_dict, standard_component_specs.BASELINE_MODEL_KEY: []}, True
    return input_dict, False


def rebless(output_dict: Dict[str, List[types.Artifact]], min_slice_size: int,
            baseline_is_candidate: bool = False, eval_config: Any = None) -> Dict[str, Any]:
    """The extension proper, after TFX's TFMA run: re-decide the blessing with ``min_slice_size``, write
    ``sluice_gate.json`` into the evaluation artifact and the BLESSED / NOT_BLESSED file into the blessing
    (through fileio: on Vertex both are gs:// URIs). Returns the decision."""
    evaluation = artifact_utils.get_single_uri(output_dict[standard_component_specs.EVALUATION_KEY])
    blessing = artifact_utils.get_single_instance(output_dict[standard_component_specs.BLESSING_KEY])
    decision = {**decide(evaluation, min_slice_size, eval_config=eval_config),
                "baseline_is_candidate": baseline_is_candidate}
    verdict = verdicts.write(evaluation, "evaluation", decision, passed=decision["blessed"])
    blessed_file = os.path.join(blessing.uri, constants.BLESSED_FILE_NAME)
    not_blessed_file = os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME)
    for stale in (blessed_file, not_blessed_file):
        if fileio.exists(stale):
            fileio.remove(stale)
    aio.write_text(blessed_file if verdict["blessed"] else not_blessed_file, "")
    blessing.set_int_custom_property(
        constants.ARTIFACT_PROPERTY_BLESSED_KEY,
        constants.BLESSED_VALUE if verdict["blessed"] else constants.NOT_BLESSED_VALUE,
    )
    return verdict


class Evaluator(tfx_evaluator.Evaluator):
    """``tfx.components.Evaluator`` + ``min_slice_size`` + ``code_version`` (keyword arguments as TFX's,
    eval_config required)."""

    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, *, examples: types.BaseChannel, model: types.BaseChannel, baseline_model: Any,
                 eval_config: Any, schema: types.BaseChannel, example_splits: List[str], min_slice_size: int,
                 code_version: str = "") -> None:
        from tfx.types import standard_artifacts

        spec = EvaluatorSpec(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            feature_slicing_spec=None,
            fairness_indicator_thresholds=json_utils.dumps(None),
            example_splits=json_utils.dumps(example_splits),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            eval_config=eval_config,
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            schema=schema,
            module_file=None,
            module_path=None,
            min_slice_size=min_slice_size,
            code_version=code_version,
        )
        # Skip TFX Evaluator.__init__ (it builds TFX's own spec); BaseBeamComponent takes ours.
        super(tfx_evaluator.Evaluator, self).__init__(spec=spec)
