"""Pipelines shared by the end-to-end tests: run once per session, read by many tests.

The sample is 3,000 rows of the bundled data so that the eval split has at least 500 rows for both configs
(fare: 1 of 5 hash buckets; tips: 1 of 3).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import config_variant, run_json, sample_csv

SAMPLE_ROWS = 3000


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> Path:
    return sample_csv(tmp_path_factory.mktemp("data") / "sample.csv", SAMPLE_ROWS)


@pytest.fixture(scope="session")
def fare(tmp_path_factory, sample):
    """Three identical runs of the fare pipeline in one output directory (``--rerun``: through TFX, not
    answered by the no-op shortcut, so its caching can be checked)."""
    work = tmp_path_factory.mktemp("fare")
    cfg = config_variant("taxi_fare", work, sample, train_steps=300)
    out = work / "output"
    runs = [run_json("run", "--config", str(cfg), "--output", str(out), *(["--rerun"] if i else []))
            for i in range(3)]
    return {"runs": runs, "out": out, "name": "taxi_fare", "config": cfg}


@pytest.fixture(scope="session")
def tips(tmp_path_factory, sample):
    work = tmp_path_factory.mktemp("tips")
    cfg = config_variant("taxi_tips", work, sample, train_steps=300)
    out = work / "output"
    return {"run": run_json("run", "--config", str(cfg), "--output", str(out)), "out": out, "name": "taxi_tips"}
