"""Config validation: the shipped configs load; each kind of mistake gets one precise line."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sluice.pipeline.config import PipelineConfig, load_config, parse_config
from sluice.pipeline.errors import ConfigError
from tests.helpers import CONFIGS, ROOT


@pytest.fixture(scope="module")
def fare_raw():
    return yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text())


@pytest.mark.parametrize("name", ["taxi_fare", "taxi_tips", "wine"])
def test_shipped_configs_load(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert isinstance(cfg, PipelineConfig)
    assert cfg.data_path.is_file()
    assert cfg.schema_file.is_file()
    assert cfg.model_name == name


def test_fare_is_huber_regression_and_tips_is_derived_binary():
    fare = load_config(CONFIGS / "taxi_fare.yaml")
    tips = load_config(CONFIGS / "taxi_tips.yaml")
    assert (fare.task.type, fare.model.loss, fare.task.label) == ("regression", "huber", "fare")
    assert tips.task.type == "binary_classification"
    assert tips.task.derive is not None and tips.task.raw_label_columns() == ["tips", "fare"]


def test_relative_paths_resolve_against_the_config_file(tmp_path, fare_raw):
    raw = copy.deepcopy(fare_raw)
    raw["data"]["path"] = "sub/data.csv"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.data_path == (tmp_path / "sub" / "data.csv").resolve()


def _error(raw) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(raw)
    return exc.value.render()


def _mutate(raw, fn):
    raw = copy.deepcopy(raw)
    fn(raw)
    return raw


CASES = [
    # (description, mutation, substrings expected in the one-line message)
    ("misspelt top-level key", lambda r: r.update(modle=r.pop("model")), ["modle", "unknown key", "did you mean 'model'"]),
    ("misspelt nested key", lambda r: r["model"].update(learnig_rate=0.1), ["model.learnig_rate", "did you mean 'learning_rate'"]),
    ("misspelt feature key", lambda r: r["features"][7].update(top_kk=3), ["features[7] (payment_type).top_kk", "did you mean 'top_k'"]),
    ("bad feature kind", lambda r: r["features"][0].update(kind="numerc"), ["features[0] (trip_miles).kind", "'numerc'", "did you mean 'numeric'"]),
    ("bad task type", lambda r: r["task"].update(type="regresion"), ["task.type", "'regresion'", "binary_classification", "did you mean 'regression'"]),
    ("missing key", lambda r: r.pop("task"), ["task", "required key is missing"]),
    ("wrong type", lambda r: r["model"].update(batch_size="big"), ["model.batch_size", "'big'"]),
    ("out of range", lambda r: r["model"].update(learning_rate=-1), ["model.learning_rate", "-1"]),
    ("loss does not fit task", lambda r: r["model"].update(loss="binary_crossentropy"), ["binary_crossentropy", "does not fit", "huber"]),
    ("unknown threshold metric", lambda r: r["evaluation"]["thresholds"][0].update(metric="mean_absolut_error"), ["mean_absolut_error", "did you mean 'mean_absolute_error'"]),
    ("slice on unknown column", lambda r: r["evaluation"].update(slices=[["paymnt_type"]]), ["evaluation.slices", "did you mean 'payment_type'"]),
    ("duplicate feature", lambda r: r["features"].append(dict(r["features"][0])), ["duplicate feature names", "trip_miles"]),
    ("label used as feature", lambda r: r["features"].append({"name": "fare", "kind": "numeric"}), ["fare", "label leakage"]),
    ("splits without eval", lambda r: r["data"].update(splits={"train": 1}), ["data.splits", "eval"]),
    ("unknown strategy", lambda r: r["training"].update(strategy="tpu"), ["training.strategy", "'tpu'", "mirrored"]),
    ("categorical_int without num_buckets", lambda r: r["features"][2].pop("num_buckets"), ["features[2] (trip_start_hour).num_buckets", "missing"]),
    ("bad pipeline name", lambda r: r.update(name="taxi fare!"), ["name", "taxi fare!"]),
    ("fit under multi_worker", lambda r: r["training"].update(strategy="multi_worker", loop="fit"), ["training", "multi_worker", "use loop: custom"]),
    ("clipping in the old spelling", lambda r: r["training"].update(clip_value=1.0), ["clip_value", "clipping: {kind: value, limit: 1.0}"]),
    ("unknown clipping kind", lambda r: r["training"].update(clipping={"kind": "global", "limit": 1.0}), ["training.clipping", "'global'"]),
    ("schedule parameter out of range", lambda r: r["training"].update(lr_schedule={"kind": "exponential", "rate": 2.0}), ["training.lr_schedule", "rate"]),
    ("parameter of another schedule", lambda r: r["training"].update(lr_schedule={"kind": "cosine", "rate": 0.5}), ["training.lr_schedule", "rate"]),
    ("plateau with a schedule", lambda r: r["training"].update(reduce_lr_patience=2, lr_schedule="cosine"), ["reduce_lr_patience", "lr_schedule: constant"]),
    ("second optimizer needs custom loop", lambda r: r["training"].update(wide_learning_rate=0.1), ["wide_learning_rate", "loop: custom"]),
    ("second optimizer needs wide_deep", lambda r: r["training"].update(wide_learning_rate=0.1, loop="custom"), ["wide_learning_rate", "wide_deep"]),
    ("focal loss for regression", lambda r: r["model"].update(loss="focal"), ["focal", "does not fit", "log_cosh"]),
    ("unknown architecture", lambda r: r["model"].update(architecture="widedeep"), ["model.architecture", "did you mean 'wide_deep'"]),
    ("tuner on unknown key", lambda r: r.update(tuner={"enabled": True, "search_space": {"learnig_rate": [0.1]}}), ["search_space", "did you mean 'learning_rate'"]),
    ("tuner candidate invalid", lambda r: r.update(tuner={"enabled": True, "search_space": {"dropout": [0.1, 1.5]}}), ["tuner.search_space.dropout", "1.5"]),
    ("tuner enabled without a space", lambda r: r.update(tuner={"enabled": True}), ["tuner.search_space"]),
    ("tflite with hashed strings", lambda r: r["features"][7].update(hash_buckets=16), ["payment_type", "TFLite", "oov_buckets: 1"]),
    ("tflite without float32", lambda r: r["export"].update(tflite_variants=["int8"]), ["export.tflite_variants", "float32"]),
    ("unknown tflite variant", lambda r: r["export"].update(tflite_variants=["float32", "int4"]), ["export.tflite_variants", "'int4'"]),
    ("no saved_model target", lambda r: r["export"].update(targets=["tflite"]), ["export.targets", "saved_model"]),
    ("multiclass without classes", lambda r: r["task"].update(type="multiclass"), ["task", "classes", "at least 2"]),
    ("classes repeated", lambda r: r["task"].update(type="multiclass", classes=["a", "b", "a"]), ["classes", "each value once", "'a'"]),
    ("classes for regression", lambda r: r["task"].update(classes=["a", "b"]), ["classes", "only for task.type multiclass"]),
    ("binary loss for multiclass", lambda r: r["task"].update(type="multiclass", classes=["a", "b", "c"]),
     ["huber", "does not fit", "sparse_categorical_crossentropy, sparse_focal"]),
    ("classes the same number", lambda r: (r["task"].update(type="multiclass", classes=["1", "01", "2"]),
                                           r["model"].update(loss="sparse_focal")), ["classes", "'1' and '01'", "same number"]),
    ("yes/no classes unquoted", lambda r: (r["task"].update(type="multiclass", classes=[True, False]),
                                           r["model"].update(loss="sparse_focal")), ["classes", "quote the class names"]),
    ("macro_auc on slices", lambda r: (r["task"].update(type="multiclass", classes=["a", "b"]),
                                       r["model"].update(loss="sparse_focal"),
                                       r["evaluation"].update(metrics=["accuracy", "macro_auc"], thresholds=[
                                           {"metric": "macro_auc", "lower_bound": 0.8, "slices": True}])),
     ["macro_auc on feature slices", "lacks a class"]),
    ("binary metric for multiclass", lambda r: (r["task"].update(type="multiclass", classes=["a", "b", "c"]),
                                                r["model"].update(loss="sparse_focal")),
     ["evaluation.metrics", "mean_absolute_error", "accuracy"]),
]


@pytest.mark.parametrize("desc,mutation,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_config_gives_one_precise_line(fare_raw, desc, mutation, expected):
    message = _error(_mutate(fare_raw, mutation))
    assert "\n" not in message, message
    for part in expected:
        assert part in message, f"{desc}: {part!r} not in {message!r}"


def test_yaml_syntax_error_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: [unclosed\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert f"{bad}:" in exc.value.render() and "YAML" in exc.value.render()


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    """PyYAML keeps the second of two equal keys silently: a config edited by appending a setting would train
    with whichever came last. Issue 17's reproduction."""
    text = (CONFIGS / "taxi_fare.yaml").read_text().replace("  learning_rate: 0.005\n",
                                                              "  learning_rate: 0.005\n  learning_rate: 0.5\n")
    twice = tmp_path / "twice.yaml"
    twice.write_text(text.replace("../", str(CONFIGS.parent) + "/"))
    line = text.splitlines().index("  learning_rate: 0.5") + 1
    with pytest.raises(ConfigError) as exc:
        load_config(twice)
    rendered = exc.value.render()
    assert f"{twice}:{line}" in rendered and "'learning_rate' appears twice" in rendered and f"line {line - 1}" in rendered


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/sluice.yaml")


def test_not_a_mapping():
    with pytest.raises(ConfigError, match="YAML mapping"):
        parse_config(["a", "b"])


def test_cli_reports_misspelt_key_in_one_line_without_traceback(tmp_path, fare_raw):
    raw = _mutate(fare_raw, lambda r: r["model"].update(hiden_units=[8]))
    raw["data"]["path"] = str(CONFIGS.parent / "data" / "taxi" / "data.csv")
    cfg = tmp_path / "typo.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "sluice"), "run", "--config", str(cfg), "--output", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "model.hiden_units" in lines[0] and "did you mean 'hidden_units'" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists(), "a config error must not create the output directory"


def test_multiclass_classes_written_as_numbers_are_the_labels_text_and_string_labels_are_compared_as_categories():
    raw = yaml.safe_load((CONFIGS / "wine.yaml").read_text())
    raw["task"]["classes"] = [0, 1, 2]
    cfg = parse_config(raw, base_dir=str(CONFIGS))
    assert cfg.task.classes == ["0", "1", "2"]
    assert cfg.gate_contract().columns["cultivar"] == "numeric"  # integer classes: a numeric label column
    wine = load_config(CONFIGS / "wine.yaml")
    assert wine.gate_contract().columns["cultivar"] == "categorical"  # string classes: frequencies compared
    assert wine.gate_contract().label_classes == ["class_0", "class_1", "class_2"]


def test_derive_is_rejected_for_regression(fare_raw):
    raw = _mutate(fare_raw, lambda r: r["task"].update(derive={"left": "tips", "op": ">", "right": 1}))
    assert _error(raw).startswith("task.derive: only supported when task.type is binary_classification")


def test_categorical_string_default_must_be_text(fare_raw):
    raw = _mutate(fare_raw, lambda r: r["features"][7].update(default=3))
    assert "features (payment_type).default: must be a string" in _error(raw)


def test_missing_indicator_needs_optional(fare_raw):
    raw = _mutate(fare_raw, lambda r: r["features"][0].update(missing_indicator=True))
    assert "missing_indicator: needs optional: true" in _error(raw)


def test_input_options_have_defaults_and_are_validated(fare_raw):
    cfg = parse_config(fare_raw)
    assert cfg.input.cache is True and cfg.input.shuffle_buffer >= 1
    raw = _mutate(fare_raw, lambda r: r.update(input={"shuffle_bufer": 10}))
    assert "did you mean 'shuffle_buffer'" in _error(raw)


def test_uri_locations_are_kept_for_compile_and_refused_for_local_work(fare_raw):
    raw = _mutate(fare_raw, lambda r: r.update(schema="gs://bucket/schema.pbtxt"))
    raw["data"]["path"] = "gs://bucket/data/"
    cfg = parse_config(raw)
    with pytest.raises(ConfigError, match=r"^schema: gs://bucket/schema.pbtxt is a URI; local runs"):
        cfg.schema_file
    with pytest.raises(ConfigError, match=r"^data.path: gs://bucket/data/ is a URI; local runs .*--data PATH"):
        cfg.data_path
    assert cfg.with_data_path("gs://other/data/").data.path == "gs://other/data/"  # --data URI: not resolved
