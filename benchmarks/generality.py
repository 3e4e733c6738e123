"""Generality: `sluice init --data X --label Y` then `sluice run` on every generated CSV kind
(``tests/generality.py``), as a new user would. Per kind: the outcome, and the gated metric vs the trivial
baseline init measured on the same data (the mean predictor's MAE, AUC 0.5 for 0/1 labels, the majority
class's accuracy for multi-class).

The ratio is model ÷ baseline: below 1 is better for MAE, above 1 for AUC and accuracy. A kind sluice
cannot train must end with one line saying why.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RESULTS, ROOT, write_result  # noqa: E402
from tests.generality import KINDS, generate  # noqa: E402

from sluice.pipeline import init  # noqa: E402


def _sluice(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "sluice"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=ROOT, timeout=1800)


def one(kind: str, work: Path) -> dict:
    data, label = generate(kind, work / "data")
    made = _sluice("init", "--data", str(data), "--label", label, "--out", str(work / kind), "--force")
    if made.returncode != 0:  # the one line, without the temporary path it names
        reason = made.stderr.strip().splitlines()[-1].split(f"{data}: ", 1)[-1]
        return {"kind": kind, "outcome": "init refused", "reason": reason}
    plan = init.plan(init.profile(data), init.project_name(data), label)
    threshold = plan.thresholds[0]
    target = next(c for c in init.profile(data) if c.name == label)
    if plan.task == "regression":
        baseline = init.mean_predictor_mae(target.numbers)
    elif plan.task == "multiclass_classification":
        baseline = max(target.values.values()) / target.present
    else:
        baseline = 0.5
    ran = _sluice("run", "--config", str(work / kind / f"{init.project_name(data)}.yaml"),
                  "--output", str(work / f"out-{kind}"), "--json")
    result = json.loads(ran.stdout.strip().splitlines()[-1]) if ran.stdout.strip() else {}
    metric = (result.get("metrics") or {}).get(threshold["metric"])
    reason = "" if result.get("status") == "succeeded" else (result.get("error") or ran.stderr.strip()[-300:])
    return {"kind": kind, "outcome": result.get("status", f"exit {ran.returncode}"), "metric": threshold["metric"],
            "value": metric, "baseline": round(baseline, 4), "gate": threshold, "reason": reason,
            "notes": result.get("notes", []), "exit": ran.returncode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", choices=sorted(KINDS), default=list(KINDS),
                        help="run these kinds only; the other kinds keep their last results")
    kinds = parser.parse_args().kinds
    previous = RESULTS / "generality.json"
    samples = json.loads(previous.read_text())["samples"] if previous.is_file() and set(kinds) != set(KINDS) else {}
    with tempfile.TemporaryDirectory(prefix="sluice-generality-") as tmp:
        for kind in kinds:
            samples[kind] = one(kind, Path(tmp))
    rows = []
    for kind in [k for k in KINDS if k in samples]:
        sample = samples[kind]
        value, baseline = sample.get("value"), sample.get("baseline")
        rows.append({"measure": f"{kind}: {sample['outcome']}" + (f" ({sample['metric']})" if value is not None else
                                                                  f" — {sample.get('reason', '')[:160]}"),
                     "sluice": round(value, 4) if value is not None else None,
                     "reference": baseline if value is not None else None,
                     "ratio": round(value / baseline, 3) if value is not None and baseline else None,
                     "goal": "blessed, or one correct line"})
    write_result("generality", rows, samples,
                 notes="reference = the trivial baseline on the same data (mean predictor MAE; AUC 0.5; "
                       "majority-class accuracy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
