"""`sluice synth`: seeded, sharded, inside the schema's domains, missing values only where the reference has
them, and valid input for the pipeline's pre-flight."""

from __future__ import annotations

import csv

from sluice.pipeline.synth import synthesize
from tests.helpers import CONFIGS, DATA, SCHEMA, run_cli


def _rows(paths):
    out = []
    for p in paths:
        with open(p, newline="") as fh:
            reader = csv.DictReader(fh)
            out += list(reader)
    return out


def test_synth_is_seeded_sharded_and_respects_the_schema(tmp_path):
    a = synthesize(DATA, tmp_path / "a", rows=5000, shards=3, seed=7, schema_file=SCHEMA, outlier_rate=0.01)
    b = synthesize(DATA, tmp_path / "b", rows=5000, shards=3, seed=7, schema_file=SCHEMA, outlier_rate=0.01)
    c = synthesize(DATA, tmp_path / "c", rows=5000, shards=3, seed=8, schema_file=SCHEMA, outlier_rate=0.01)
    assert len(a) == 3 and [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert [p.read_bytes() for p in a] != [p.read_bytes() for p in c]
    rows = _rows(a)
    assert len(rows) == 5000
    lat = [float(r["pickup_latitude"]) for r in rows if r["pickup_latitude"]]
    assert min(lat) >= 41.6 and max(lat) <= 42.1  # jitter clipped into the float domain
    assert all(float(r["fare"]) >= 0 for r in rows)
    with open(DATA, newline="") as fh:
        reference = list(csv.DictReader(fh))
    never_empty = [k for k in reference[0] if all(r[k] != "" for r in reference)]
    assert never_empty and all(r[k] != "" for r in rows for k in never_empty)
    fares = sorted(float(r["fare"]) for r in reference)
    p99 = fares[int(0.99 * len(fares))]
    spiky = _rows(synthesize(DATA, tmp_path / "d", rows=5000, shards=1, seed=7, schema_file=SCHEMA, outlier_rate=0.05))
    calm = _rows(synthesize(DATA, tmp_path / "e", rows=5000, shards=1, seed=7, schema_file=SCHEMA, outlier_rate=0.0))
    high = [sum(float(r["fare"]) > p99 for r in rs) for rs in (spiky, calm)]
    assert high[0] > high[1] + 30, high  # outliers: far more fares above the reference's 99th percentile


def test_synth_cli_output_passes_preflight(tmp_path):
    out = run_cli("synth", "--like", str(DATA), "--schema", str(SCHEMA), "--rows", "2000", "--out", str(tmp_path),
                  "--shards", "2")
    assert out.returncode == 0, out.stderr
    check = run_cli("check", "--config", str(CONFIGS / "taxi_fare.yaml"), "--data", str(tmp_path))
    assert check.returncode == 0 and "reads 2 file(s)" in check.stdout
