"""Which Beam DirectRunner mode is the better default for small data? The default pipeline, cold
(`--fresh`), on the bundled data (15k rows) with `in_memory` (1 worker) vs `multi_processing` (2 workers):
wall time and peak RSS of the process tree. (benchmarks/scale.py compares the same at 100k rows.)
Results: results/beam_modes.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPS, fare_config, median, ratio, run_measured, write_result  # noqa: E402

WORK = Path(__file__).resolve().parent / "work" / "beam_modes"


def _measure(mode: str, workers: int) -> dict:
    config = fare_config(WORK / f"{mode}.yaml", {"direct_running_mode": mode, "direct_num_workers": workers})
    exe = Path(sys.executable).parent / "sluice"
    samples = [run_measured([str(exe), "run", "--config", str(config), "--output", str(WORK / f"out-{mode}"), "--fresh"],
                            log=WORK / f"{mode}.log") for _ in range(max(1, REPS - 1))]
    assert all(s.returncode == 0 for s in samples), f"{mode} run failed: see {WORK / (mode + '.log')}"
    return {"seconds": [s.seconds for s in samples], "peak_rss_mb": [s.peak_rss_mb for s in samples]}


def main() -> int:
    memory = _measure("in_memory", 1)
    multi = _measure("multi_processing", 2)
    t_mem, t_multi = median(memory["seconds"]), median(multi["seconds"])
    r_mem, r_multi = median(memory["peak_rss_mb"]), median(multi["peak_rss_mb"])
    rows = [
        {"measure": "bundled data, cold run: multi_processing (2) vs in_memory wall", "sluice": t_multi,
         "reference": t_mem, "ratio": ratio(t_multi, t_mem), "goal": "(< 1: switch default)", "unit": "s"},
        {"measure": "bundled data, cold run: multi_processing (2) vs in_memory peak RSS", "sluice": r_multi,
         "reference": r_mem, "ratio": ratio(r_multi, r_mem), "goal": "", "unit": "MB"},
    ]
    write_result("beam_modes", rows, {"in_memory": memory, "multi_processing": multi})
    return 0


if __name__ == "__main__":
    sys.exit(main())
