"""The TFX graph create_pipeline builds from a config (no run): optional nodes and their wiring."""

from __future__ import annotations

import copy

import yaml

from sluice.pipeline.config import parse_config
from sluice.pipeline.data_source import DataSource
from sluice.pipeline.pipeline import OutputPaths, create_pipeline
from tests.helpers import CONFIGS


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
