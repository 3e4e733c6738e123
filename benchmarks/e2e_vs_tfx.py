"""End to end, sluice vs TFX's own example, on the same data and task, in the same run.

Reference: ``tfx/examples/chicago_taxi_pipeline/taxi_pipeline_native_keras.py`` from the installed tfx
package, run as its docstring expects from a temporary HOME holding ``taxi/data/simple/data.csv`` and
``taxi/taxi_utils_native_keras.py`` (copied at run time from the package; nothing of it lives in this repo).
Ours: ``sluice run --config configs/taxi_tips.yaml`` (the same "big tipper" task).

Each repetition: a cold run (empty pipeline root and MLMD), then a cached re-run of the same directory, for
both (sluice's with ``--rerun``: through TFX and its cache, like the reference). sluice then also runs the
loop a user lives in, each against its own cold run: an unchanged re-run (answered by the no-op shortcut)
and a hyperparameter change (``model.learning_rate`` × 1.1: Transform and everything before it stay cached).
Wall time and peak RSS of the whole process tree; sluice's per-component seconds from its --json summary.
Results: results/e2e_vs_tfx.json.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPS, ROOT, median, ratio, run_measured, write_result  # noqa: E402


def _tfx_example_dir() -> Path:
    import tfx

    return Path(tfx.__file__).resolve().parent / "examples" / "chicago_taxi_pipeline"


def _tfx_home(base: Path) -> Path:
    example = _tfx_example_dir()
    home = base / "home"
    (home / "taxi" / "data" / "simple").mkdir(parents=True)
    shutil.copy(ROOT / "data" / "taxi" / "data.csv", home / "taxi" / "data" / "simple" / "data.csv")
    shutil.copy(example / "taxi_utils_native_keras.py", home / "taxi" / "taxi_utils_native_keras.py")
    return home


def _run_tfx(home: Path, log: Path):
    env = dict(os.environ, HOME=str(home), TF_CPP_MIN_LOG_LEVEL="1")
    script = _tfx_example_dir() / "taxi_pipeline_native_keras.py"
    return run_measured([sys.executable, str(script)], env=env, cwd=home, log=log)


def _sluice_configs(base: Path) -> Dict[str, Path]:
    """taxi_tips.yaml with absolute paths, and the same with a changed learning rate."""
    import yaml

    raw = yaml.safe_load((ROOT / "configs" / "taxi_tips.yaml").read_text())
    raw["data"]["path"] = str((ROOT / "configs" / raw["data"]["path"]).resolve())
    raw["schema"] = str((ROOT / "configs" / raw["schema"]).resolve())
    base.mkdir(parents=True, exist_ok=True)
    paths = {"base": base / "taxi_tips.yaml", "learning_rate": base / "taxi_tips_lr.yaml"}
    paths["base"].write_text(yaml.safe_dump(raw, sort_keys=False))
    raw["model"]["learning_rate"] = raw["model"].get("learning_rate", 1e-3) * 1.1
    paths["learning_rate"].write_text(yaml.safe_dump(raw, sort_keys=False))
    return paths


def _run_sluice(config: Path, output: Path, log: Path, *extra: str):
    exe = Path(sys.executable).parent / "sluice"
    cmd = [str(exe), "run", "--config", str(config), "--output", str(output), "--json", *extra]
    # --json puts the summary on stdout; the measured run's output goes to the log, so read it back from there.
    sample = run_measured(cmd, cwd=ROOT, log=log)
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("{")]
    return sample, (json.loads(lines[-1]) if lines else {})


def main() -> int:
    samples: Dict[str, List] = {"tfx_cold": [], "tfx_cached": [], "sluice_cold": [], "sluice_unchanged": [],
                                "sluice_cached": [], "sluice_learning_rate": []}
    components: Dict[str, List[float]] = {}
    work = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    try:
        for rep in range(REPS):
            rep_dir = work / f"rep{rep}"
            home = _tfx_home(rep_dir)
            for phase in ("cold", "cached"):
                s = _run_tfx(home, rep_dir / f"tfx-{phase}.log")
                if s.returncode != 0:
                    print((rep_dir / f"tfx-{phase}.log").read_text()[-3000:], file=sys.stderr)
                    raise SystemExit(f"TFX example failed ({phase}, rep {rep})")
                samples[f"tfx_{phase}"].append(s)
                print(f"  rep {rep} tfx {phase}: {s.seconds:.1f} s, {s.peak_rss_mb:.0f} MB", flush=True)
            configs = _sluice_configs(rep_dir / "configs")
            phases = (("cold", configs["base"], ()), ("unchanged", configs["base"], ()),
                      ("cached", configs["base"], ("--rerun",)), ("learning_rate", configs["learning_rate"], ()))
            for phase, config, extra in phases:
                s, summary = _run_sluice(config, rep_dir / "sluice-output", rep_dir / f"sluice-{phase}.log", *extra)
                if s.returncode != 0:
                    print((rep_dir / f"sluice-{phase}.log").read_text()[-3000:], file=sys.stderr)
                    raise SystemExit(f"sluice failed ({phase}, rep {rep})")
                samples[f"sluice_{phase}"].append(s)
                if phase == "cold":
                    for c in summary.get("components", []):
                        components.setdefault(c["name"], []).append(c["seconds"])
                if phase == "unchanged" and "answered_from" not in summary:
                    raise SystemExit("the unchanged re-run was not answered by the no-op shortcut")
                if phase == "learning_rate":
                    executed = sorted(c["name"] for c in summary.get("components", []) if not c["cached"])
                    print(f"  rep {rep} sluice learning_rate executed: {', '.join(executed)}", flush=True)
                print(f"  rep {rep} sluice {phase}: {s.seconds:.1f} s, {s.peak_rss_mb:.0f} MB", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(key: str, field: str = "seconds") -> float:
        return median([getattr(s, field) for s in samples[key]])

    rows = []
    for phase, goal in (("cold", "≤ 0.5"), ("cached", "≤ 0.3")):
        ours, ref = med(f"sluice_{phase}"), med(f"tfx_{phase}")
        rows.append({"measure": f"e2e wall time, {phase}", "sluice": ours, "reference": ref,
                     "ratio": ratio(ours, ref), "goal": goal, "unit": "s"})
    for phase, goal in (("unchanged", "≤ 0.15"), ("learning_rate", "≤ 0.4")):
        ours, ref = med(f"sluice_{phase}"), med("sluice_cold")
        label = "unchanged re-run" if phase == "unchanged" else "hyperparameter-change re-run (learning_rate)"
        rows.append({"measure": f"e2e wall time, {label} vs sluice's own cold run", "sluice": ours,
                     "reference": ref, "ratio": ratio(ours, ref), "goal": goal, "unit": "s"})
    for phase in ("cold", "cached"):
        ours, ref = med(f"sluice_{phase}", "peak_rss_mb"), med(f"tfx_{phase}", "peak_rss_mb")
        rows.append({"measure": f"e2e peak RSS, {phase}", "sluice": ours, "reference": ref,
                     "ratio": ratio(ours, ref), "goal": "", "unit": "MB"})
    breakdown = {name: round(statistics.median(v), 2) for name, v in components.items()}
    write_result("e2e_vs_tfx", rows, {**samples, "sluice_cold_components_s": breakdown},
                 notes="reference: TFX 1.16 taxi_pipeline_native_keras.py (BeamDagRunner, multi_processing); "
                       "sluice: configs/taxi_tips.yaml")
    print("  sluice cold per component (s): " + ", ".join(f"{k} {v}" for k, v in breakdown.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
