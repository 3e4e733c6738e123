"""``BulkScore``: after a push, the pipeline scores a table with the version it pushed (config ``bulk_inference:``).

TFX's BulkInferrer would do this over a second CsvExampleGen's examples, and that is where it breaks: that
ExampleGen infers each column's type from the scoring files alone, so a float column whose values happen to
be whole numbers there becomes int64, and the model (trained on floats) refuses every row. BulkScore reads
the CSV files itself with ``serving/batch.py`` — the code of ``sluice predict --output`` — which types each
cell by the pushed model's inputs exactly as CsvExampleGen typed the training data, and runs Beam's
RunInference with the pipeline's Beam arguments (the DirectRunner locally, Dataflow in a compiled pipeline).

Inputs: the Pusher's ``PushedModel``. A run that pushed nothing scores nothing (``summary.json`` says so):
predictions come only from a version that passed every gate. The version is read where the Pusher wrote it
(``pushed_destination``), through TensorFlow's filesystems (gs:// on Vertex). Output: ``InferenceResult``
(TFX's type for bulk predictions) holding ``predictions-*.csv``, ``predictions-*.tfrecord``
(PredictionLog), ``dead_letter-*.jsonl`` and ``summary.json``. More dead letters than ``allow_bad_rows``
fail the step with one screen; the pushed version stays pushed (it passed its gates; the table did not).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from sluice.components import artifact_io as aio
from sluice.components.contracts import BulkContract
from sluice.components.refusal import Refused

SCORED = "scored"
"""The directory under the artifact that ``serving/batch.py`` writes (it must create it: never two runs in one)."""


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        from sluice.serving import batch
        from sluice.serving.errors import SettingError

        contract = BulkContract.parse(exec_properties["contract"])
        pushed = artifact_utils.get_single_instance(input_dict["pushed_model"])
        result = artifact_utils.get_single_instance(output_dict["inference_result"])
        fileio.makedirs(result.uri)
        out = aio.join(result.uri, SCORED)
        if not pushed.get_int_custom_property("pushed"):
            aio.write_text(aio.join(result.uri, batch.SUMMARY), json.dumps(
                {"scored": 0, "skipped": "this run pushed no version: nothing was scored"}, indent=2) + "\n")
            result.set_int_custom_property("scored", 0)
            return
        settings = contract.bulk
        version = int(pushed.get_string_custom_property("pushed_version"))
        try:
            plan = batch.prepare(pushed.get_string_custom_property("pushed_destination"), contract.model_name,
                                 version, settings.input, settings.keys)
            outcome = batch.run(plan, out, self._beam_pipeline_args, max_batch=settings.batch_size)
        except SettingError as e:  # the table (a missing column, no file): one screen, as `sluice predict`
            raise Refused(f"bulk_inference ({e.where})", e.problem, f"{e.fix}; version {version} is pushed")
        aio.copy_file(aio.join(out, batch.SUMMARY), aio.join(result.uri, batch.SUMMARY))
        if outcome.scored + outcome.dead == 0:  # a nightly export that came out empty is no success
            raise Refused(f"bulk_inference.input {settings.input}", "has no data rows: nothing was scored",
                          f"check the export that writes the table; version {version} is pushed")
        result.set_int_custom_property("scored", outcome.scored)
        result.set_int_custom_property("dead_letter", outcome.dead)
        if outcome.dead > settings.allow_bad_rows:
            worst = "; ".join(f"{n} x {reason}" for reason, n in
                              sorted(outcome.reasons.items(), key=lambda kv: -kv[1])[:3])
            raise Refused(f"bulk_inference.input {settings.input}",
                          f"{outcome.dead} row(s) not scored, more than allow_bad_rows {settings.allow_bad_rows} "
                          f"({worst})", f"each is in {out}/dead_letter-*.jsonl with its file, line and reason: fix "
                          f"them or raise the allowance; version {version} is pushed (it passed its gates)")


class BulkScoreSpec(types.ComponentSpec):
    PARAMETERS = {"contract": ExecutionParameter(type=str)}
    INPUTS = {"pushed_model": ChannelParameter(type=standard_artifacts.PushedModel)}
    OUTPUTS = {"inference_result": ChannelParameter(type=standard_artifacts.InferenceResult)}


class BulkScore(base_beam_component.BaseBeamComponent):
    """``BulkScore(pushed_model, contract=BulkContract JSON)`` -> ``inference_result``."""

    SPEC_CLASS = BulkScoreSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, pushed_model, contract: str):
        super().__init__(spec=BulkScoreSpec(pushed_model=pushed_model, contract=contract,
                                            inference_result=types.Channel(type=standard_artifacts.InferenceResult)))
