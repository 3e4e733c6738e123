"""The blessing gate end to end: a deliberately weak model is not blessed and not pushed (the served model
stays byte-identical) and the run says which threshold failed with candidate vs baseline values; a good
model afterwards is blessed and pushed, with the change thresholds applied against the blessed baseline.

Works on a copy of the fare session pipeline's output (already holds a blessed, pushed model)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import config_variant, run_json

pytestmark = pytest.mark.e2e


def _tree_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def gated(fare, sample, tmp_path_factory):
    work = tmp_path_factory.mktemp("blessing")
    out = work / "output"
    shutil.copytree(fare["out"], out)
    serving = out / "serving" / fare["name"]
    before = _tree_digest(serving)
    weak_cfg = config_variant("taxi_fare", work, sample, tflite=False, train_steps=3, seed=11)
    weak = run_json("run", "--config", str(weak_cfg), "--output", str(out))
    after_weak = _tree_digest(serving)
    (work / "good").mkdir()
    good_cfg = config_variant("taxi_fare", work / "good", sample, tflite=False, train_steps=300, seed=12)
    good = run_json("run", "--config", str(good_cfg), "--output", str(out))
    return {"weak": weak, "good": good, "before": before, "after_weak": after_weak, "serving": serving}


def test_weak_model_is_not_blessed_and_nothing_is_pushed(gated):
    weak = gated["weak"]
    assert weak["_exit"] == 3, weak["_stderr"][-2000:]
    assert weak["status"] == "not_blessed" and weak["blessed"] is False and weak["pushed"] is False
    assert gated["after_weak"] == gated["before"]  # byte-identical served model, no new version
    overall = [f for f in weak["failures"] if f["slice"] == "overall" and f["metric"] == "mean_absolute_error"]
    value_failure = [f for f in overall if not f["is_change"]]
    change_failure = [f for f in overall if f["is_change"]]
    assert value_failure and value_failure[0]["candidate"] > 4.0
    assert change_failure and change_failure[0]["baseline"] is not None
    assert change_failure[0]["value"] == pytest.approx(change_failure[0]["candidate"] - change_failure[0]["baseline"], rel=1e-4)


def test_weak_run_explains_itself_on_screen_and_in_the_evaluation_page(gated):
    weak = gated["weak"]
    assert "FAILED mean_absolute_error on overall: candidate" in weak["_stderr"]
    assert "vs baseline" in weak["_stderr"] and "nothing pushed" in weak["_stderr"]
    page = Path(weak["evaluation_report"]).read_text()
    assert "NOT BLESSED" in page and "mean_absolute_error" in page and "<svg" in page
    run_page = (Path(weak["report_dir"]) / "index.html").read_text()  # failed runs get the run page too
    assert "not_blessed" in run_page and "not blessed" in run_page and "nothing pushed" in run_page
    assert "FAILED" not in run_page or "mean_absolute_error" in run_page


def test_good_model_afterwards_is_blessed_and_pushed_against_the_baseline(gated):
    good = gated["good"]
    assert good["_exit"] == 0, good["_stderr"][-2000:]
    assert good["blessed"] is True and good["pushed"] is True
    assert good["version"] not in {k.split("/")[0] for k in gated["before"]}
    assert (gated["serving"] / good["version"] / "saved_model.pb").is_file()
    # The change threshold was evaluated against the blessed baseline: TFMA's diff metrics are in the artifact.
    assert "mean_absolute_error" in good["metric_changes"]
    from sluice.pipeline.mlmd import latest_run

    record = latest_run(gated["serving"].parent.parent / "metadata.sqlite", "taxi_fare")
    gate = json.loads((Path(record.evaluation_uri) / "sluice_gate.json").read_text())
    assert gate["blessed"] is True and gate["min_slice_size"] == 50
    from sluice.components.evaluation import read_slices

    overall = read_slices(record.evaluation_uri)["overall"]
    assert overall["baseline"]["mean_absolute_error"] > 0 and "mean_absolute_error" in overall["change"]
    # Feature slices were evaluated and the small ones were not allowed to gate.
    assert any(r["spec"] == "payment_type" for r in good["slice_summary"])
