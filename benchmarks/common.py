"""Shared benchmark plumbing: process-tree timing with peak RSS, machine facts, result files.

Every benchmark writes ``results/<name>.json`` with raw samples and ``rows`` (measure, sluice, reference,
ratio, goal); ``run_all.py`` turns all of them into ``RESULTS.md``. Ratios compare two things measured in the
same run on the same machine: these machines are shared and noisy, so absolute times drift but ratios hold.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
REPS = int(os.environ.get("SLUICE_BENCH_REPS", "3"))


@dataclass
class Sample:
    seconds: float
    peak_rss_mb: float
    returncode: int


def run_measured(cmd: Sequence[str], env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None,
                 log: Optional[Path] = None, poll: float = 0.2) -> Sample:
    """Run ``cmd``; wall time and the peak of the summed RSS of its whole process tree."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    start = time.monotonic()
    proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [root] + root.children(recursive=True)
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    pass
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(poll)
    seconds = time.monotonic() - start
    if log:
        out.close()
    return Sample(round(seconds, 2), round(peak / 2**20, 1), proc.returncode)


def median(values: List[float]) -> float:
    return round(statistics.median(values), 2)


def machine() -> Dict[str, object]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def packages(names: Sequence[str] = ("tfx", "tensorflow", "keras", "apache-beam", "tensorflow-transform",
                                     "tensorflow-model-analysis", "sluice")) -> Dict[str, str]:
    found = {}
    for n in names:
        try:
            found[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            found[n] = "missing"
    return found


def write_result(name: str, rows: List[Dict[str, object]], samples: Dict[str, object], notes: str = "") -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    body = {
        "name": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "reps": REPS,
        "machine": machine(),
        "packages": packages(),
        "rows": rows,
        "samples": samples,
        "notes": notes,
    }
    path.write_text(json.dumps(body, indent=2, default=lambda o: asdict(o)))
    print(f"{name}: {path}")
    for row in rows:  # the same rows as RESULTS.md, on the console
        unit = f" {row['unit']}" if row.get("unit") else ""
        print(f"  {row['measure']}: {row['sluice']}{unit} vs {row['reference']}{unit} (ratio {row['ratio']})")
    return path


def ratio(ours: float, reference: float) -> Optional[float]:
    return round(ours / reference, 3) if reference else None


def default_pipeline_outputs(work: Path):
    """Run (or reuse through TFX's cache) the default pipeline on the bundled data into ``work``; returns
    ``(config, MLMD run record)`` so a benchmark can use its real Transform output and model."""
    import sys

    exe = Path(sys.executable).parent / "sluice"
    config = ROOT / "configs" / "taxi_fare.yaml"
    proc = subprocess.run([str(exe), "run", "--config", str(config), "--output", str(work)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"pipeline run failed:\n{proc.stderr[-3000:]}")
    from sluice.pipeline.config import load_config
    from sluice.pipeline.mlmd import latest_run

    cfg = load_config(config)
    return cfg, latest_run(work / "metadata.sqlite", cfg.name)


def fare_config(dest: Path, beam: Dict[str, object]) -> Path:
    """``configs/taxi_fare.yaml`` with absolute data/schema paths and the given ``beam`` section, at ``dest``."""
    import yaml

    raw = yaml.safe_load((ROOT / "configs" / "taxi_fare.yaml").read_text())
    raw["data"]["path"] = str(ROOT / "data" / "taxi" / "data.csv")
    raw["schema"] = str(ROOT / "schemas" / "taxi" / "schema.pbtxt")
    raw["beam"] = beam
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(raw, sort_keys=False))
    return dest
