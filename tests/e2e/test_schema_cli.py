"""`sluice schema infer|diff` on the sample: a starting schema for new data, and the curated schema's departures."""

from __future__ import annotations

import pytest

from sluice.pipeline.schema import load_schema
from tests.helpers import CONFIGS, run_cli

pytestmark = pytest.mark.e2e


def test_infer_writes_a_schema_with_every_column(tmp_path, sample):
    out = tmp_path / "inferred.pbtxt"
    proc = run_cli("schema", "infer", "--config", str(CONFIGS / "taxi_fare.yaml"), "--data", str(sample), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == "" and "wrote the inferred schema" in proc.stdout
    names = {f.name for f in load_schema(out).feature}
    assert {"fare", "trip_miles", "payment_type", "company", "tips"} <= names and len(names) == 18


def test_diff_lists_the_curated_departures(sample):
    proc = run_cli("schema", "diff", "--config", str(CONFIGS / "taxi_fare.yaml"), "--data", str(sample))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert "difference(s)" in lines[0]
    trip_hour = next(line for line in lines if line.strip().startswith("trip_start_hour"))
    assert "domain" in trip_hour and "int [0, 23]" in trip_hour
