"""BulkScore's executor (the pipeline's bulk_inference step) on a tiny model: it scores with the version the
Pusher pushed, read through TensorFlow's filesystems (``ram://`` here: not local-disk-only), scores nothing
when nothing was pushed, and refuses a table with too many bad rows with one screen."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.serving.test_batch import _tiny_model, _write

BEAM = ["--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _run(tmp_path, table, pushed=True, allow=0, name="run"):
    import tensorflow as tf
    from tfx.types import standard_artifacts

    from sluice.components.bulk_score import Executor
    from sluice.components.contracts import BulkContract
    from sluice.components.settings import BulkInferenceConfig

    local = _tiny_model(tmp_path / "serving" / "tiny", 7)
    remote = f"ram://{uuid.uuid4().hex[:8]}/serving/tiny/7"  # ram:// is one per process: a fresh root each time
    for path in local.rglob("*"):
        target = f"{remote}/{path.relative_to(local)}"
        if path.is_dir():
            tf.io.gfile.makedirs(target)
        else:
            tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
            tf.io.gfile.copy(str(path), target)
    model = standard_artifacts.PushedModel()
    model.set_int_custom_property("pushed", int(pushed))
    if pushed:
        model.set_string_custom_property("pushed_destination", remote)
        model.set_string_custom_property("pushed_version", "7")
    result = standard_artifacts.InferenceResult()
    result.uri = str(tmp_path / name)
    contract = BulkContract(model_name="tiny", bulk=BulkInferenceConfig(input=str(table), keys=["id"],
                                                                         allow_bad_rows=allow))
    executor = Executor(Executor.Context(beam_pipeline_args=BEAM, tmp_dir=str(tmp_path / "tmp"), unique_id="1"))
    executor.Do({"pushed_model": [model]}, {"inference_result": [result]}, {"contract": contract.to_json()})
    return result


def test_the_pushed_version_scores_the_table(tmp_path):
    from sluice.serving.batch import read_predictions

    table = _write(tmp_path / "t.csv", ["id", "a", "b", "c"], [[1, "1.5", "x", "2"], [2, "2", "", ""]])
    result = _run(tmp_path, table)
    assert result.get_int_custom_property("scored") == 2 and result.get_int_custom_property("dead_letter") == 0
    predictions = {r["id"]: float(r["prediction"]) for r in read_predictions(f"{result.uri}/scored")}
    assert predictions == {"1": 2 * 1.5 + 2 + 1, "2": 4.0}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["version"] == 7 and summary["model_path"].startswith("ram://")


def test_a_run_that_pushed_nothing_scores_nothing(tmp_path):
    table = _write(tmp_path / "t.csv", ["id", "a", "b", "c"], [[1, "1.5", "x", "2"]])
    result = _run(tmp_path, table, pushed=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["scored"] == 0 and "pushed no version" in summary["skipped"]
    assert not (tmp_path / "run" / "scored").exists() and result.get_int_custom_property("scored") == 0


def test_bad_rows_beyond_the_allowance_and_a_wrong_table_are_refused_with_one_screen(tmp_path):
    from sluice.components.refusal import Refused

    table = _write(tmp_path / "t.csv", ["id", "a", "b", "c"], [[1, "one", "x", "2"], [2, "2", "", ""]])
    with pytest.raises(Refused) as e:
        _run(tmp_path, table, name="strict")
    assert "1 row(s) not scored" in e.value.problem and "dead_letter" in e.value.fix and "version 7" in e.value.fix
    lenient = _run(tmp_path, table, allow=1, name="lenient")  # within the allowance: the step passes
    assert (lenient.get_int_custom_property("scored"), lenient.get_int_custom_property("dead_letter")) == (1, 1)
    wrong = _write(tmp_path / "w.csv", ["id", "a", "b"], [[1, "1", "x"]])
    with pytest.raises(Refused) as e:
        _run(tmp_path, wrong, name="wrong")
    assert "no column for the model input(s) c" in e.value.problem


def test_an_empty_table_is_no_success(tmp_path):
    from sluice.components.refusal import Refused

    with pytest.raises(Refused) as e:
        _run(tmp_path, _write(tmp_path / "empty.csv", ["id", "a", "b", "c"], []))
    assert "no data rows" in e.value.problem
