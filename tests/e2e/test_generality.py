"""Generality: eight varied CSVs (tests/generality.py) through `sluice init`, and a sample of them through
`sluice run`: each ends blessed with its metric beating the trivial baseline, or with one line that is the
right reason for that data. `benchmarks/generality.py` runs all eight end to end for the numbers."""

from __future__ import annotations

import pytest
import yaml

from sluice.pipeline import init
from tests.generality import KINDS, generate
from tests.helpers import run_cli, run_json

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_init_decides_every_kind_or_says_why_not(kind, tmp_path):
    data, label = generate(kind, tmp_path)
    columns = init.profile(data)
    plan = init.plan(columns, kind, label)
    kept = plan.features()
    assert kept and all(f["name"] != label for f in kept)
    tasks = {"categorical_only": "binary_classification", "multiclass": "multiclass_classification"}
    assert plan.task == tasks.get(kind, "regression")
    assert plan.model["batch_size"] * 4 <= columns[0].rows  # never a batch near the train split's size
    if kind == "wide":
        assert len(kept) == 120
    if kind == "heavy_missing":
        assert all(f.get("optional") for f in kept)
    if kind == "tiny":
        assert plan.splits == {"train": 1, "eval": 1} and plan.notes
    if kind == "mixed":
        assert next(f for f in kept if f["name"] == "lot")["kind"] == "bucketized"
    if kind == "multiclass":
        assert plan.classes == ["setosa", "versicolor", "virginica"] and plan.thresholds[0]["metric"] == "accuracy"
    if kind == "awkward_headers":
        assert {f["name"] for f in kept} >= {"od280/od315 of wine", "Prix (€)", "1st value", "class", "ville"}


def test_a_multiclass_csv_gets_its_classes_from_sluice_init(tmp_path):
    """String classes: `sluice init` picks multi-class, lists the classes and writes a config `sluice check`
    accepts (the run itself: tests/e2e/test_multiclass.py on the bundled example, and
    `benchmarks/generality.py` on this CSV)."""
    data, label = generate("multiclass", tmp_path)
    made = run_cli("init", "--data", str(data), "--label", label, "--out", str(tmp_path / "p"))
    assert made.returncode == 0, made.stderr[-2000:]
    assert f"label: {label} (given); task: multiclass_classification" in made.stdout
    config = yaml.safe_load((tmp_path / "p" / "multiclass.yaml").read_text())
    assert config["task"]["classes"] == ["setosa", "versicolor", "virginica"]
    assert config["model"]["loss"] == "sparse_categorical_crossentropy"
    checked = run_cli("check", "--config", str(tmp_path / "p" / "multiclass.yaml"))
    assert checked.returncode == 0 and "multiclass_classification" in checked.stdout, checked.stderr


def test_heavy_missing_values_first_try_blessed_and_beats_the_mean_predictor(tmp_path):
    """A new user's first try (`sluice init`, then `sluice run` on what it wrote) on the hardest ordinary
    kind: 40 % of every feature's cells empty. The drafted schema accepts them, Transform imputes, and the
    model beats the mean predictor by the margin init set (80 % of its MAE)."""
    data, label = generate("heavy_missing", tmp_path)
    made = run_cli("init", "--data", str(data), "--label", label, "--out", str(tmp_path / "p"))
    assert made.returncode == 0, made.stderr[-2000:]
    assert f"label: {label} (given); task: regression" in made.stdout
    assert "gate: always predicting the mean scores MAE" in made.stdout
    again = run_cli("init", "--data", str(data), "--out", str(tmp_path / "p"))
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    run = run_json("run", "--config", str(tmp_path / "p" / "heavy_missing.yaml"), "--output", str(tmp_path / "out"))
    assert run["_exit"] == 0 and run["blessed"] is True and run["pushed"] is True, run["_stderr"][-3000:]
    baseline = init.mean_predictor_mae(next(c for c in init.profile(data) if c.name == label).numbers)
    assert run["metrics"]["mean_absolute_error"] < 0.8 * baseline
    assert set(run["parity"]["shipped"]) == {"float32", "dynamic_range"}
