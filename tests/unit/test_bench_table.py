"""The benchmark table is generated from result files (the numbers themselves live in benchmarks/)."""

from __future__ import annotations

import importlib.util
import json

from tests.helpers import ROOT


def _run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_has_one_row_per_result_row(tmp_path):
    body = {
        "name": "e2e_vs_tfx",
        "machine": {"cpus": 2, "cpu_model": "x", "memory_gb": 24, "python": "3.10.13"},
        "rows": [
            {"measure": "e2e wall time, cold", "sluice": 50.0, "reference": 100.0, "ratio": 0.5, "goal": "≤ 0.5", "unit": "s"},
            {"measure": "e2e peak RSS, cold", "sluice": 900.0, "reference": None, "ratio": None, "goal": "", "unit": "MB"},
        ],
    }
    (tmp_path / "e2e_vs_tfx.json").write_text(json.dumps(body))
    table = _run_all().render_table(tmp_path)
    assert "| e2e_vs_tfx | e2e wall time, cold | 50 s | 100 s | 0.5 | ≤ 0.5 |" in table
    assert "| e2e_vs_tfx | e2e peak RSS, cold | 900 MB | — | — |  |" in table
    assert "2 CPUs" in table


def test_every_benchmark_script_is_discovered():
    names = [p.stem for p in _run_all().scripts()]
    assert "e2e_vs_tfx" in names and "common" not in names and "run_all" not in names
