"""Scale: the whole pipeline (default config, `--fresh`) on synthetic data of 100k and 1M rows.

Data: `sluice synth` from the bundled CSV (bootstrap rows, jitter inside the curated schema's domains,
outliers, missing values), 4 shards per 100k rows. Measured per size: wall time of the `sluice run` process
tree, its peak RSS (summed over the tree), and each component's seconds from the run summary. Goals: time
per row at 1M ≤ time per row at 100k; peak RSS ≤ 4 GB. At 100k rows the Beam DirectRunner's
`in_memory` and `multi_processing` (2 workers) modes are compared; the faster one is the config default.
Sizes: SLUICE_SCALE_ROWS (comma-separated, default 100000,1000000). Results: results/scale.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, fare_config, ratio, run_measured, write_result  # noqa: E402

WORK = Path(__file__).resolve().parent / "work" / "scale"
SIZES = [int(n) for n in os.environ.get("SLUICE_SCALE_ROWS", "100000,1000000").split(",")]


def _run(rows: int, mode: str = "in_memory", workers: int = 1) -> dict:
    exe = Path(sys.executable).parent / "sluice"
    data = WORK / f"data-{rows}"
    if not data.is_dir():
        sample = run_measured([str(exe), "synth", "--like", str(ROOT / "data" / "taxi" / "data.csv"),
                               "--schema", str(ROOT / "schemas" / "taxi" / "schema.pbtxt"), "--rows", str(rows),
                               "--out", str(data), "--shards", str(max(4, 4 * rows // 100_000)), "--seed", "1"])
        assert sample.returncode == 0, "synth failed"
    out = WORK / f"out-{rows}-{mode}"
    log = WORK / f"run-{rows}-{mode}.log"
    log.unlink(missing_ok=True)
    sample = run_measured([str(exe), "run", "--config", str(fare_config(WORK / f"taxi_fare_{mode}.yaml", {"direct_running_mode": mode, "direct_num_workers": workers})), "--data", str(data),
                           "--output", str(out), "--fresh", "--json"], log=log)
    summary = None
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            summary = json.loads(line)
            break
    assert summary is not None, f"no summary in {log}"
    stages = {c["name"]: round(c["seconds"], 1) for c in summary["components"] if c["seconds"] >= 0.5}
    return {"rows": rows, "mode": mode, "seconds": sample.seconds, "peak_rss_mb": sample.peak_rss_mb,
            "status": summary["status"], "stages": stages, "us_per_row": round(1e6 * sample.seconds / rows, 1)}


def main() -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    runs = []
    for rows in SIZES:
        runs.append(_run(rows))
        print(f"  {rows} rows: {runs[-1]}", flush=True)
    small = runs[0]
    modes = [small, _run(SIZES[0], "multi_processing", 2)]
    print(f"  {SIZES[0]} rows, multi_processing: {modes[-1]}", flush=True)
    rows = []
    for r in runs:
        rows.append({"measure": f"{r['rows']:,} rows: wall s (status {r['status']})", "sluice": r["seconds"],
                     "reference": None, "ratio": None, "goal": "", "unit": "s"})
        rows.append({"measure": f"{r['rows']:,} rows: peak RSS of the process tree", "sluice": r["peak_rss_mb"],
                     "reference": 4096, "ratio": ratio(r["peak_rss_mb"], 4096), "goal": "≤ 1 (4 GB)", "unit": "MB"})
    if len(runs) > 1:
        big = runs[-1]
        rows.append({"measure": f"time per row: {big['rows']:,} vs {small['rows']:,} rows", "sluice": big["us_per_row"],
                     "reference": small["us_per_row"], "ratio": ratio(big["us_per_row"], small["us_per_row"]),
                     "goal": "≤ 1", "unit": "µs/row"})
    rows.append({"measure": f"{SIZES[0]:,} rows: Beam multi_processing (2 workers) vs in_memory wall",
                 "sluice": modes[1]["seconds"], "reference": modes[0]["seconds"],
                 "ratio": ratio(modes[1]["seconds"], modes[0]["seconds"]), "goal": "(< 1: switch default)", "unit": "s"})
    write_result("scale", rows, {"runs": runs, "beam_modes": modes})
    return 0


if __name__ == "__main__":
    sys.exit(main())
