"""Small data: a batch larger than the train split is refused at the Trainer with one screen naming the setting
and the row count (it used to train zero steps and could be pushed), and a small eval split is flagged."""

from __future__ import annotations

import pytest
import yaml

from tests.e2e.test_any_header import _config, _write
from tests.helpers import run_cli

pytestmark = pytest.mark.e2e


def test_a_batch_larger_than_the_train_split_is_refused_and_nothing_is_pushed(tmp_path):
    data = tmp_path / "data.csv"
    _write(data, 150, seed=1)
    schema = tmp_path / "schema.pbtxt"
    assert run_cli("schema", "infer", "--data", str(data), "--out", str(schema)).returncode == 0
    config = _config(tmp_path, data, schema)
    raw = yaml.safe_load(config.read_text())
    raw["model"]["batch_size"] = 256
    raw["data"]["splits"] = {"train": 4, "eval": 1}
    # ~30 eval rows: train-vs-eval skew of a 3-value column is noise at this size (the note says why)
    raw["validation"] = {"skew": {"categorical_linf": 0.5, "numeric_jsd": 0.5}}
    config.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    out = tmp_path / "output"
    proc = run_cli("run", "--config", str(config), "--output", str(out))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "Trainer refused the run: model.batch_size: 256 is larger than the train split (" in proc.stderr
    assert "set model.batch_size to at most" in proc.stderr
    assert "note: the eval split has" in proc.stderr and "fewer than 200" in proc.stderr
    assert not (out / "serving").exists() or not any((out / "serving").rglob("saved_model.pb"))
    page = next((out / "reports").rglob("index.html")).read_text()
    assert "refused" in page and "the eval split has" in page
