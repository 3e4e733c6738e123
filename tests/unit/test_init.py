"""`sluice init`'s decisions, each from a small CSV built to trigger it (no TensorFlow: the plan is pure)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import yaml

from sluice.pipeline import init
from sluice.pipeline.config import load_config


def _csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return init.profile(path)


def _table(tmp_path, n=1000):
    header = ["row_id", "city", "note", "hour", "constant", "blank", "temp", "leak", "amount"]
    rows = []
    for i in range(n):
        temp = (i * 37 % 101) / 10.0
        amount = 3.0 * temp + (i % 7)
        rows.append([1000 + i, ["a", "b", "c"][i % 3] if i % 10 else "", f"text {i}", i % 24, 5, "",
                     temp, amount * 2 + 1, amount])
    return _csv(tmp_path / "t.csv", header, rows)


def test_each_column_gets_a_kind_or_a_reason_to_be_left_out(tmp_path):
    plan = init.plan(_table(tmp_path), "t", label="amount")
    by = {d.column: d for d in plan.decisions}
    assert by["row_id"].feature is None and "identifier" in by["row_id"].why
    assert by["note"].feature is None and "free text" in by["note"].why
    assert by["constant"].feature is None and "one value" in by["constant"].why
    assert by["blank"].feature is None and "empty in every row" in by["blank"].why
    assert by["leak"].feature is None and "leak" in by["leak"].why
    assert by["city"].feature == {"name": "city", "kind": "categorical_string", "top_k": 3, "optional": True}
    assert by["hour"].feature == {"name": "hour", "kind": "categorical_int", "num_buckets": 24}
    assert by["temp"].feature == {"name": "temp", "kind": "numeric"}
    assert plan.slices == [["city"]]  # hour has 24 values: too many to gate each


def test_the_threshold_is_relative_to_the_mean_predictor_measured_on_the_data(tmp_path):
    columns = _table(tmp_path)
    plan = init.plan(columns, "t", label="amount")
    amounts = next(c for c in columns if c.name == "amount").numbers
    mean = sum(amounts) / len(amounts)
    baseline = sum(abs(a - mean) for a in amounts) / len(amounts)
    assert plan.task == "regression"
    assert plan.thresholds[0] == {"metric": "mean_absolute_error", "upper_bound": pytest.approx(0.8 * baseline, rel=1e-2)}
    assert plan.thresholds[1]["slices"] is True and plan.thresholds[1]["upper_bound"] > plan.thresholds[0]["upper_bound"]
    assert f"{baseline:.4g}" in plan.baseline


def test_label_guess_task_and_unusable_labels(tmp_path):
    columns = _csv(tmp_path / "b.csv", ["x", "Target", "z"], [[i, i % 2, i * 0.5] for i in range(300)])
    plan = init.plan(columns, "b")
    assert (plan.label, plan.label_guessed, plan.task) == ("Target", True, "binary_classification")
    assert plan.thresholds[0] == {"metric": "auc", "lower_bound": 0.6} and plan.model["loss"] == "binary_crossentropy"
    last = _csv(tmp_path / "l.csv", ["x", "w"], [[(i * 37 % 101) / 10, i * 1.5] for i in range(300)])
    assert init.plan(last, "l").label == "w"  # no label-like name: the last column
    strings = _csv(tmp_path / "s.csv", ["x", "label"], [[i * 0.3, "yes" if i % 2 else "no"] for i in range(300)])
    assert (init.plan(strings, "s").task, init.plan(strings, "s").classes) == ("multiclass_classification", ["no", "yes"])
    with pytest.raises(ValueError, match="holds strings"):
        init.plan(strings, "s", task="regression")
    with pytest.raises(ValueError, match="not a column"):
        init.plan(strings, "s", label="nope")
    constant = _csv(tmp_path / "c.csv", ["x", "y"], [[i * 0.3, 7] for i in range(300)])
    with pytest.raises(ValueError, match="one value .7. in every row"):
        init.plan(constant, "c")
    holes = _csv(tmp_path / "h.csv", ["x", "y"], [[i * 0.3, "" if i % 10 == 0 else i % 5] for i in range(300)])
    with pytest.raises(ValueError, match="empty in 30 of 300 rows"):
        init.plan(holes, "h")
    with pytest.raises(ValueError, match="needs a label of 0 and 1"):
        init.plan(last, "l", task="binary_classification")


def test_multiclass_labels_classes_and_a_threshold_above_the_majority_class(tmp_path):
    names = ["setosa"] * 5 + ["versicolor"] * 3 + ["virginica"] * 2
    columns = _csv(tmp_path / "m.csv", ["p", "q", "species"], [[i * 0.3, (i * 7) % 11, names[i % 10]] for i in range(400)])
    plan = init.plan(columns, "m")
    assert (plan.task, plan.classes, plan.model["loss"]) == (
        "multiclass_classification", ["setosa", "versicolor", "virginica"], "sparse_categorical_crossentropy")
    assert plan.thresholds[0] == {"metric": "accuracy", "lower_bound": 0.625}  # majority 0.5, a quarter of the way
    assert "setosa" in plan.baseline and "50.0%" in plan.baseline
    config = yaml.safe_load(init.config_text(plan, "m.csv", "schema.pbtxt"))
    assert config["task"] == {"type": "multiclass_classification", "label": "species",
                              "classes": ["setosa", "versicolor", "virginica"]}
    ints = _csv(tmp_path / "i.csv", ["p", "grade"], [[i * 0.3, [3, 10, 7][i % 3]] for i in range(300)])
    assert init.plan(ints, "i").task == "regression"  # ordered numbers stay regression unless asked
    asked = init.plan(ints, "i", task="multiclass_classification")
    assert asked.classes == ["3", "7", "10"]  # numeric order: the model's outputs in the label's own order
    fractions = _csv(tmp_path / "f.csv", ["p", "y"], [[i * 0.3, [0.5, 1.5, 2.5][i % 3]] for i in range(300)])
    with pytest.raises(ValueError, match="holds fractions"):
        init.plan(fractions, "f", task="multiclass_classification")
    padded = _csv(tmp_path / "z.csv", ["p", "grade"], [[i * 0.3, ["01", "02", "03"][i % 3]] for i in range(300)])
    assert init.plan(padded, "z", task="multiclass_classification").classes == ["1", "2", "3"]  # as CsvExampleGen reads
    ids = _csv(tmp_path / "u.csv", ["p", "customer"], [[i * 0.3, f"c{i % 40}"] for i in range(60)])
    with pytest.raises(ValueError, match="fewer than 10 rows per class"):
        init.plan(ids, "u")
    many = _csv(tmp_path / "n.csv", ["p", "y"], [[i * 0.3, f"c{i % 60}"] for i in range(300)])
    with pytest.raises(ValueError, match="60 distinct values.*at most 50"):
        init.plan(many, "n")


def test_small_data_gets_category_thresholds_that_chance_stays_under(tmp_path):
    names = ["a", "b", "c"]
    small = init.plan(_csv(tmp_path / "s.csv", ["p", "k"], [[i * 0.3, names[i % 3]] for i in range(180)]), "s")
    config = yaml.safe_load(init.config_text(small, "s.csv", "schema.pbtxt"))
    assert config["validation"]["skew"]["categorical_linf"] == small.linf == init.chance_linf(180, small.splits)
    assert 0.2 < small.linf < 0.3  # 90 vs 90 rows: shares differ by ~0.07 per standard error
    large = init.plan(_csv(tmp_path / "l.csv", ["p", "k"], [[i * 0.3, names[i % 3]] for i in range(3000)]), "l")
    assert large.linf == 0.1 and "validation" not in yaml.safe_load(init.config_text(large, "l.csv", "s.pbtxt"))


def test_long_tailed_numbers_are_bucketized_and_symmetric_ones_z_scored(tmp_path):
    rng = np.random.default_rng(0)
    rows = [[float(np.round(rng.lognormal(0, 1.5), 3)), float(np.round(rng.normal(), 3)), i % 7 * 0.5]
            for i in range(500)]
    plan = init.plan(_csv(tmp_path / "t.csv", ["income", "score", "y"], rows), "t")
    by = {d.column: d for d in plan.decisions}
    assert by["income"].feature == {"name": "income", "kind": "bucketized", "buckets": 10}
    assert "skewness" in by["income"].why
    assert by["score"].feature == {"name": "score", "kind": "numeric"}


def test_types_follow_csv_example_gens_inference(tmp_path):
    """nan/inf are FLOAT to tfx_bsl (not text); an integer beyond int64 is STRING; a column of unique but
    non-consecutive integers (a size, not an id) stays a feature."""
    rows = [[("nan" if i % 10 == 0 else "inf" if i % 17 == 0 else i * 0.37), 10**20 + i, 300 + 7 * i,
             (i * 7919 % 101) * 0.3] for i in range(200)]
    plan = init.plan(_csv(tmp_path / "t.csv", ["ratio", "big", "sqft", "y"], rows), "t")
    by = {d.column: d for d in plan.decisions}
    assert by["ratio"].feature == {"name": "ratio", "kind": "numeric"}
    assert by["big"].feature is None and "distinct strings" in by["big"].why
    assert by["sqft"].feature == {"name": "sqft", "kind": "numeric"}


def test_without_a_usable_column_the_error_gives_each_reason(tmp_path):
    columns = _csv(tmp_path / "n.csv", ["id", "note", "y"], [[i, f"t{i}", i % 3 * 1.5] for i in range(100)])
    with pytest.raises(ValueError) as exc:
        init.plan(columns, "n", label="y")
    assert "id: a different integer in every row" in str(exc.value) and "note: 100 distinct strings" in str(exc.value)


@pytest.mark.parametrize("rows, splits, noted", [(5000, {"train": 4, "eval": 1}, False),
                                                 (700, {"train": 2, "eval": 1}, False),
                                                 (300, {"train": 1, "eval": 1}, True)])
def test_splits_leave_the_eval_split_enough_rows(rows, splits, noted):
    chosen, note = init.choose_splits(rows, 200)
    assert chosen == splits and (note is not None) == noted


@pytest.mark.parametrize("train_rows", [3, 10, 40, 150, 800, 12000, 500000])
def test_batch_is_a_small_share_of_the_train_split_and_steps_stay_bounded(train_rows):
    model = init.choose_model(train_rows)
    assert model["batch_size"] <= max(1, train_rows // 4)  # so the Trainer's guard never refuses init's choice
    assert model["batch_size"] <= 256 and math.log2(model["batch_size"]).is_integer()
    assert 200 <= model["train_steps"] <= 3000
    if train_rows >= 4096:
        assert model["batch_size"] == 256


def test_the_written_config_is_valid_and_keeps_the_reasons(tmp_path):
    plan = init.plan(_table(tmp_path), "t", label="amount")
    (tmp_path / "schema.pbtxt").write_text("")
    config = tmp_path / "t.yaml"
    config.write_text(init.config_text(plan, "t.csv", "schema.pbtxt"))
    loaded = load_config(config)
    assert [f.name for f in loaded.features] == ["city", "hour", "temp"]
    text = config.read_text()
    assert "# left out leak: correlation" in text and "# 3 distinct strings" in text
    assert loaded.evaluation.thresholds[0].upper_bound == plan.thresholds[0]["upper_bound"]
    assert any("left out row_id" in line for line in init.summary(plan))


def test_project_names_fit_the_config_pattern():
    from pathlib import Path

    assert init.project_name(Path("wine quality.csv")) == "wine_quality"
    assert init.project_name(Path("2024-sales.csv")) == "data_2024-sales"
