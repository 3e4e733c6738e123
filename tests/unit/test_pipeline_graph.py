"""The TFX graph create_pipeline builds from a config (no run): optional nodes and their wiring."""

from __future__ import annotations

import copy
import json
import time

import pytest
import yaml

from sluice.pipeline.config import parse_config
from sluice.pipeline.data_source import DataSource
from sluice.pipeline.pipeline import OutputPaths, create_pipeline
from tests.helpers import CONFIGS, DATA


def _pipeline(tmp_path, **sections):
    raw = yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text())
    raw = copy.deepcopy(raw)
    raw.update(sections)
    cfg = parse_config(raw, base_dir=str(CONFIGS))
    source = DataSource(input_base=str(tmp_path), pattern="*.csv", files=(str(tmp_path / "a.csv"),))
    return create_pipeline(cfg, source, OutputPaths(tmp_path / "out"))


def _node(pipeline, node_id):
    return next(c for c in pipeline.components if c.id == node_id)


def test_default_graph_has_no_tuner_and_uses_sluice_evaluator(tmp_path):
    p = _pipeline(tmp_path)
    ids = [c.id for c in p.components]
    assert "Tuner" not in ids
    evaluator = _node(p, "Evaluator")
    assert type(evaluator).__module__ == "sluice.components.evaluator"
    assert evaluator.exec_properties["min_slice_size"] == 50


def test_enabled_tuner_feeds_the_trainer(tmp_path):
    p = _pipeline(tmp_path, tuner={"enabled": True, "max_trials": 2,
                                   "search_space": {"learning_rate": [0.001, 0.01]}})
    ids = [c.id for c in p.components]
    assert ids.index("Transform") < ids.index("Tuner") < ids.index("Trainer")
    tuner, trainer = _node(p, "Tuner"), _node(p, "Trainer")
    assert tuner.exec_properties["tuner_fn"] == "sluice.components.trainer.tuning.tuner_fn"
    assert trainer.inputs["hyperparameters"].producer_component_id == "Tuner"


def test_bulk_inference_scores_after_the_push_with_its_own_contract(tmp_path):
    p = _pipeline(tmp_path, bulk_inference={"input": "../data/taxi/data.csv", "keys": ["fare"]})
    bulk = _node(p, "BulkScore")
    assert p.components[-1] is bulk
    assert bulk.inputs["pushed_model"] is _node(p, "Pusher").outputs["pushed_model"]
    contract = json.loads(bulk.exec_properties["contract"])
    assert contract["bulk"]["input"] == str((CONFIGS / "../data/taxi/data.csv").resolve())  # the config's dir
    assert contract["bulk"]["keys"] == ["fare"] and contract["code_version"]
    assert "BulkScore" not in [c.id for c in _pipeline(tmp_path / "none").components]


def test_a_changed_bulk_table_is_scored_again_and_is_no_no_op(tmp_path):
    from sluice.pipeline import shortcut

    table = tmp_path / "nightly.csv"
    table.write_text("fare,trip_miles\n1,2\n")

    def contract_and_key():
        p = _pipeline(tmp_path, bulk_inference={"input": str(table)})
        raw = yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text())
        raw["bulk_inference"] = {"input": str(table)}
        key = shortcut.run_key(parse_config(raw, base_dir=str(CONFIGS)), [])
        return json.loads(_node(p, "BulkScore").exec_properties["contract"])["input_fingerprint"], key["bulk"]

    before = contract_and_key()
    table.write_text("fare,trip_miles\n1,3\n")  # same name, new rows
    after = contract_and_key()
    assert before[0] and before[0] != after[0] and before[1] != after[1]


def test_a_bulk_table_that_cannot_be_scored_stops_the_run_before_training(tmp_path):
    from sluice.pipeline.errors import DataError
    from sluice.pipeline.runner import check_bulk_table

    raw = yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text())
    (tmp_path / "short.csv").write_text("trip_miles,fare\n1,2\n")
    (tmp_path / "empty.csv").write_text("trip_miles,fare\n\n")
    (tmp_path / "twice.csv").write_text("trip_miles,fare,fare\n1,2,3\n")
    (tmp_path / "latin.csv").write_bytes("trip_miles,fär\n1,2\n".encode("latin-1"))
    for table, problem in ((tmp_path / "missing.csv", "does not exist"), (tmp_path / "short.csv", "no column"),
                           (tmp_path / "empty.csv", "no data rows"), (tmp_path / "twice.csv", "'fare' twice"),
                           (tmp_path / "latin.csv", "not UTF-8")):
        raw["bulk_inference"] = {"input": str(table)}
        with pytest.raises(DataError) as e:
            check_bulk_table(parse_config(raw, base_dir=str(CONFIGS)))
        assert "bulk_inference.input" in str(e.value) and problem in str(e.value)
    lines = DATA.read_text().splitlines(keepends=True)
    (tmp_path / "bom.csv").write_text("\ufeff" + lines[0] + lines[1], encoding="utf-8")  # Excel's UTF-8 CSV
    raw["bulk_inference"] = {"input": str(tmp_path / "bom.csv")}
    check_bulk_table(parse_config(raw, base_dir=str(CONFIGS)))  # the same rules sluice predict applies


def test_a_bulk_table_at_a_uri_is_fingerprinted_through_tensorflow_and_never_answered_by_the_shortcut(tmp_path):
    import uuid

    import tensorflow as tf

    from sluice.pipeline import shortcut

    table = f"ram://{uuid.uuid4().hex[:8]}/nightly.csv"
    with tf.io.gfile.GFile(table, "w") as f:
        f.write("fare,trip_miles\n1,2\n")
    raw = yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text())
    raw["bulk_inference"] = {"input": table}
    assert shortcut.bulk_fingerprint(parse_config(raw, base_dir=str(CONFIGS))) is None

    def fingerprint():
        bulk = _node(_pipeline(tmp_path, bulk_inference={"input": table}), "BulkScore")
        return json.loads(bulk.exec_properties["contract"])["input_fingerprint"]

    before = fingerprint()
    time.sleep(0.01)
    with tf.io.gfile.GFile(table + ".tmp", "w") as f:
        f.write("fare,trip_miles\n1,2\n3,4\n")
    tf.io.gfile.rename(table + ".tmp", table, overwrite=True)
    assert before and fingerprint() != before
