"""The iterate loop on a real pipeline: a re-run executes only what a change reaches, and an unchanged re-run
is answered before TensorFlow is imported.

One output directory, one sequence of runs (module fixture), each test reads one step of it:
cold → learning-rate change → threshold change → unchanged (answered by the shortcut) → Pusher code edited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Set

import pytest
import yaml

from tests.helpers import ROOT, config_variant, run_json

pytestmark = pytest.mark.e2e

# Before Transform; the DataGate is listed apart (see test_a_learning_rate_change_reruns_the_trainer_onwards).
DATA_NODES = {"CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "InferredSchemaGen", "ExampleValidator"}
MODEL_NODES = {"Trainer", "Evaluator", "ModelExport", "InfraCheck", "Pusher"}
RESOLVERS = {"LastPassedDataResolver", "LatestBlessedModelResolver"}
PUSHER_CODE = ROOT / "components" / "pusher.py"


def _executed(result: Dict[str, Any], exits=(0,)) -> Set[str]:
    assert result["_exit"] in exits, result["_stderr"][-3000:]
    return {c["name"] for c in result["components"] if not c["cached"]} - RESOLVERS


def _cached(result: Dict[str, Any]) -> Set[str]:
    return {c["name"] for c in result["components"] if c["cached"]}


def _write(cfg: Path, raw: Dict[str, Any]) -> None:
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="module")
def loop(tmp_path_factory, sample):
    work = tmp_path_factory.mktemp("iterate")
    cfg = config_variant("taxi_fare", work, sample, train_steps=300)
    raw = yaml.safe_load(cfg.read_text())
    raw["export"]["tflite_variants"] = ["float32"]
    _write(cfg, raw)
    out = work / "output"
    run = lambda *extra: run_json("run", "--config", str(cfg), "--output", str(out), *extra)  # noqa: E731
    steps: Dict[str, Any] = {"cfg": cfg, "out": out}
    steps["cold"] = run()

    raw["model"]["learning_rate"] = raw["model"].get("learning_rate", 1e-3) * 1.1
    _write(cfg, raw)
    steps["learning_rate"] = run()

    mae = next(t for t in raw["evaluation"]["thresholds"] if not t.get("slices"))
    mae["upper_bound"], mae["change"] = mae["upper_bound"] + 1.0, {"absolute": 5.0}
    _write(cfg, raw)
    steps["threshold"] = run()

    # The unchanged re-run, in a process that reports whether TensorFlow/TFX were imported.
    probe = ("import json, sys\nfrom sluice.pipeline.cli import main\n"
             f"code = main(['run', '--config', {str(cfg)!r}, '--output', {str(out)!r}, '--json'])\n"
             "heavy = sorted(m for m in ('tensorflow', 'tfx', 'apache_beam') if m in sys.modules)\n"
             "print(json.dumps({'exit': code, 'heavy': heavy}))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines = proc.stdout.strip().splitlines()
    assert len(lines) >= 2, proc.stderr[-3000:]
    steps["unchanged"] = {**json.loads(lines[-2]), "_probe": json.loads(lines[-1]), "_stdout": proc.stdout,
                          "_stderr": proc.stderr}

    original = PUSHER_CODE.read_bytes()
    stat = PUSHER_CODE.stat()
    try:
        PUSHER_CODE.write_bytes(original + b"\n# edited by tests/e2e/test_iterate.py; restored after the run\n")
        steps["pusher_code"] = run()
    finally:
        PUSHER_CODE.write_bytes(original)
        os.utime(PUSHER_CODE, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return steps


def test_cold_run_executes_everything_and_succeeds(loop):
    assert loop["cold"]["status"] == "succeeded", loop["cold"]["_stderr"][-3000:]
    assert _executed(loop["cold"]) >= DATA_NODES | {"DataGate", "Transform"} | MODEL_NODES


def test_a_learning_rate_change_reruns_the_trainer_onwards_only(loop):
    result = loop["learning_rate"]
    assert DATA_NODES | {"Transform"} <= _cached(result)
    # The DataGate re-checks (about a second): its drift baseline, the newest passed verdict, is the previous
    # run's. Nothing it feeds re-runs because of that: Transform consumes none of its outputs.
    assert _executed(result, exits=(0, 3)) - {"DataGate"} == MODEL_NODES  # 3: blessing is not the point here


def test_a_threshold_change_reruns_the_evaluator_and_the_pusher_only(loop):
    result = loop["threshold"]
    assert _executed(result) - {"DataGate"} == {"Evaluator", "Pusher"}
    assert {"Transform", "Trainer", "ModelExport", "InfraCheck"} <= _cached(result)
    assert result["status"] == "succeeded" and result["blessed"] is True


def test_an_unchanged_rerun_is_answered_before_tensorflow_is_imported(loop):
    answer, probe = loop["unchanged"], loop["unchanged"]["_probe"]
    assert probe == {"exit": 0, "heavy": []}, loop["unchanged"]["_stderr"][-3000:]
    assert answer["answered_from"] == loop["threshold"]["run_id"]
    assert answer["version"] == loop["threshold"]["version"] and answer["metrics"] == loop["threshold"]["metrics"]
    assert "nothing changed since run" in answer["_stderr"] + answer["_stdout"]


def test_editing_the_pusher_code_reruns_the_pusher_only(loop):
    result = loop["pusher_code"]
    assert _executed(result) - {"DataGate"} == {"Pusher"}, result["components"]
    assert result["version"] == loop["threshold"]["version"]  # the same model: no new version
