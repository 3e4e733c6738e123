"""Per-component contracts, code fingerprints and the no-op run key, from the real configs (no TensorFlow).

Each contract must change exactly when a setting its component uses changes: that is what makes TFX's
cache re-run only what a change reaches (tests/e2e/test_iterate.py checks it on a real pipeline).
"""

from __future__ import annotations

import ast
import copy
import json
import os
import shutil

import pytest
import yaml

from sluice.components.contracts import (
    ExportContract,
    GateContract,
    TrainerContract,
    TransformContract,
    TunerContract,
)
from sluice.pipeline import code_version, shortcut
from sluice.pipeline.config import parse_config
from tests.helpers import CONFIGS, ROOT

CONTRACTS = ("gate", "transform", "trainer", "evaluation", "export", "infra_check", "push")


def _raw(name="taxi_fare"):
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


def _contracts(raw):
    cfg = parse_config(raw, base_dir=str(CONFIGS))
    return {name: getattr(cfg, f"{name}_contract")() for name in CONTRACTS}


@pytest.mark.parametrize("name", ["taxi_fare", "taxi_tips"])
def test_every_contract_round_trips_through_its_json(name):
    for contract in _contracts(_raw(name)).values():
        assert type(contract).parse(contract.to_json()) == contract
        assert type(contract).parse(contract.to_dict()) == contract


def _set(path):
    def change(raw):
        node = raw
        *parents, key = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = {"model.learning_rate": 0.0042, "model.batch_size": 64, "training.rounds": 3,
                     "input.shuffle_buffer": 777, "validation.fail_on": "warning", "export.eval_rows": 321,
                     "evaluation.report_top_k": 5, "evaluation.min_slice_size": 77}[path]
    return change


def _threshold(raw):
    raw["evaluation"]["thresholds"][0]["upper_bound"] += 1.0


def _feature(raw):
    next(f for f in raw["features"] if f["kind"] == "numeric")["optional"] = True


def _embedding(raw):
    next(f for f in raw["features"] if f["kind"] == "categorical_string")["embedding_dim"] = 13


@pytest.mark.parametrize("change,changed", [
    (_set("model.learning_rate"), {"trainer", "push"}),
    (_set("model.batch_size"), {"trainer", "push"}),
    (_set("training.rounds"), {"trainer", "push"}),
    (_set("input.shuffle_buffer"), {"trainer", "push"}),
    (_threshold, {"evaluation", "push"}),
    (_set("evaluation.min_slice_size"), {"evaluation", "export", "push"}),  # parity judges gated slices too
    (_set("validation.fail_on"), {"gate", "push"}),
    (_set("export.eval_rows"), {"export", "push"}),
    (_feature, {"transform", "trainer", "export", "push"}),
    (_embedding, {"trainer", "push"}),  # the model's embedding size: Transform and the export never read it
    (_set("evaluation.report_top_k"), {"push"}),  # the report's setting: no component uses it
], ids=["learning_rate", "batch_size", "rounds", "shuffle_buffer", "threshold", "min_slice_size", "fail_on",
        "eval_rows", "feature", "embedding_dim", "report_top_k"])
def test_a_setting_reaches_exactly_the_contracts_that_use_it(change, changed):
    raw = _raw()
    before = _contracts(raw)
    changed_raw = copy.deepcopy(raw)
    change(changed_raw)
    after = _contracts(changed_raw)
    assert {name for name in CONTRACTS if before[name] != after[name]} == changed


def test_kubeflow_settings_reach_no_contract():
    raw = _raw()
    before = _contracts(raw)
    raw["kubeflow"] = {"resources": {"default": {"cpu": 4}}}
    assert _contracts(raw) == before


def test_contracts_refuse_unknown_keys_but_drop_tfx_cloud_keys():
    trainer = parse_config(_raw(), base_dir=str(CONFIGS)).trainer_contract()
    cloud = {**trainer.to_dict(), "ai_platform_training_args": {"project": "p"}, "ai_platform_enable_vertex": True}
    assert TrainerContract.parse(cloud) == trainer
    with pytest.raises(ValueError, match="learning_rat"):
        TrainerContract.parse({**trainer.to_dict(), "model": {**trainer.to_dict()["model"], "learning_rat": 1}})
    with pytest.raises(ValueError, match="payload"):
        TransformContract.parse({**parse_config(_raw(), base_dir=str(CONFIGS)).transform_contract().to_dict(),
                                 "payload": {}})


def test_tuner_contract_is_the_trainers_plus_the_search():
    raw = _raw()
    raw["tuner"] = {"enabled": True, "search_space": {"learning_rate": [0.001, 0.01]}}
    cfg = parse_config(raw, base_dir=str(CONFIGS))
    tuner = cfg.tuner_contract()
    assert isinstance(tuner, TunerContract) and tuner.trainer() == cfg.trainer_contract()
    best = tuner.trainer().with_hyperparameters({"learning_rate": 0.01})
    assert best.model.learning_rate == 0.01
    with pytest.raises(ValueError):  # the tuner's values are validated like the YAML's
        tuner.trainer().with_hyperparameters({"learning_rate": -1.0})


def test_gate_and_export_contracts_carry_what_their_executors_read():
    cfg = parse_config(_raw(), base_dir=str(CONFIGS))
    gate = cfg.gate_contract()
    assert isinstance(gate, GateContract) and gate.columns["payment_type"] == "categorical"
    assert gate.columns["fare"] == "numeric"  # the label column is compared too
    export = cfg.export_contract()
    assert isinstance(export, ExportContract) and export.model_name == "taxi_fare" and export.variants


# ------------------------------------------------------------------------------------------- code version
def test_each_component_closure_holds_its_subprocesses_and_no_pipeline_module():
    closures = {node: set(code_version.closure(entries)) for node, entries in code_version.COMPONENT_CODE.items()}
    assert "sluice.components.trainer.worker" in closures["Trainer"]  # python -m … worker processes
    assert "sluice.components.export.tflite" in closures["ModelExport"]  # converter subprocesses
    assert "sluice.serving.server" in closures["InfraCheck"]  # the server it starts
    assert "sluice.components.evaluation_metrics" in closures["Evaluator"]  # TFMA loads it by name
    for node, modules in closures.items():
        assert not any(m.startswith("sluice.pipeline") for m in modules), (node, modules)  # one-way layering
    assert "sluice.components.trainer.models" not in closures["Transform"]
    assert [n for n, m in closures.items() if "sluice.components.pusher" in m] == ["Pusher"]


def test_no_component_module_imports_the_pipeline_package():
    for path in (ROOT / "components").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith("sluice.pipeline") for n in names), path


@pytest.fixture()
def source_copy(tmp_path, monkeypatch):
    """A copy of the source tree that code_version reads instead of the checkout (edits stay in tmp)."""
    packages = {}
    for prefix, folder in code_version.PACKAGES.items():
        packages[prefix] = tmp_path / folder.name
        shutil.copytree(folder, packages[prefix], ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(code_version, "PACKAGES", packages)
    return packages


def _versions():
    return {node: code_version.component_code_version(node) for node in code_version.COMPONENT_CODE}


def test_editing_a_module_changes_the_code_version_of_its_users_only(source_copy):
    before = _versions()
    pusher = source_copy["sluice.components"] / "pusher.py"
    pusher.write_text(pusher.read_text() + "\n# an edit\n")
    after = _versions()
    assert {n for n in before if before[n] != after[n]} == {"Pusher"}
    features = source_copy["sluice.components"] / "features.py"
    features.write_text(features.read_text() + "\n# an edit\n")
    again = _versions()
    assert {n for n in after if after[n] != again[n]} >= {"Transform", "Trainer", "Tuner", "ModelExport"}
    assert again["DataGate"] == after["DataGate"]


# ------------------------------------------------------------------------------------------- no-op run key
def test_the_run_key_changes_with_data_content_config_and_code(tmp_path, source_copy):
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    raw = _raw()
    cfg = parse_config(raw, base_dir=str(CONFIGS))
    key = shortcut.run_key(cfg, [str(data)])
    assert shortcut.run_key(cfg, [str(data)]) == key

    stat = data.stat()
    data.write_text("a,b\n1,3\n")  # same size, same mtime: only the content differs
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert shortcut.run_key(cfg, [str(data)])["data"] != key["data"]
    data.write_text("a,b\n1,2\n")

    raw["model"]["learning_rate"] = 0.0042
    assert shortcut.run_key(parse_config(raw, base_dir=str(CONFIGS)), [str(data)])["config"] != key["config"]

    serving = source_copy["sluice.serving"] / "server.py"
    serving.write_text(serving.read_text() + "\n# an edit\n")
    assert shortcut.run_key(cfg, [str(data)])["code"] != key["code"]


def test_lookup_answers_only_a_matching_record_whose_push_still_exists(tmp_path):
    out = tmp_path / "out"
    report, served = out / "reports" / "r1", out / "serving" / "m" / "1"
    report.mkdir(parents=True)
    served.mkdir(parents=True)
    (served / "saved_model.pb").write_bytes(b"pb")
    summary = {"run_id": "r1", "status": "succeeded", "report_dir": str(report), "saved_model_path": str(served)}
    (report / "summary.json").write_text(json.dumps(summary))
    key = {"config": "c", "data": "d"}
    shortcut.record(out, key, summary)
    assert shortcut.lookup(out, key).run_id == "r1"
    assert shortcut.lookup(out, {**key, "data": "other"}) is None

    (served / "saved_model.pb").unlink()
    assert shortcut.lookup(out, key) is None  # the pushed version is gone: run again
    (served / "saved_model.pb").write_bytes(b"pb")
    (report / "summary.json").write_text(json.dumps({**summary, "status": "not_blessed"}))
    assert shortcut.lookup(out, key) is None  # only a successful run answers
    (report / "summary.json").write_text(json.dumps(summary))

    copy_of_out = tmp_path / "copy"
    shutil.copytree(out, copy_of_out)  # its record still names the original's report and model
    assert shortcut.lookup(copy_of_out, key) is None

    for broken in ("{half", "[]", "null", json.dumps({"key": key, "run_id": "r1"})):
        (out / shortcut.RECORD).write_text(broken)
        assert shortcut.lookup(out, key) is None  # an unreadable or odd record is no answer
    shortcut.record(out, key, summary)
    (report / "summary.json").write_text("[]")
    assert shortcut.lookup(out, key) is None
    shortcut.forget(out)
    assert not (out / shortcut.RECORD).exists()


def test_no_key_when_the_inputs_cannot_be_read(tmp_path):
    raw = _raw()
    raw["data"]["path"] = str(tmp_path / "missing.csv")
    assert shortcut.key_of(parse_config(raw, base_dir=str(CONFIGS))) is None
    data = tmp_path / "part-1.csv"
    data.write_text("a\n1\n")
    raw["data"]["path"] = str(tmp_path / "part-*.csv")  # a glob has a key too
    assert shortcut.key_of(parse_config(raw, base_dir=str(CONFIGS))) is not None
    raw["schema"] = str(tmp_path / "no-schema.pbtxt")
    assert shortcut.key_of(parse_config(raw, base_dir=str(CONFIGS))) is None
