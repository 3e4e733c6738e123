"""The evaluation page: ``reports/<run>/evaluation.html``, standalone (inline CSS and SVG, no scripts, no
network), written from the Evaluator's artifact by the runner after every run that evaluated a model.

It answers "why was this model (not) blessed": the verdict, each failed threshold with candidate and
baseline values, then per slicing spec a table of the largest ``report_top_k`` slices (size, every metric,
candidate vs baseline and the change, pass / fail / not gated) and a bar chart of the gated metric, and the
calibration plot (mean label vs mean prediction per prediction bucket) from TFMA's CalibrationPlot; for
multi-class, each class's precision / recall / AUC and the confusion matrix (TFMA's
MultiClassConfusionMatrixPlot), by class name.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from sluice.components.evaluation import OVERALL, slice_spec
from sluice.pipeline.svg import bar_chart, calibration_svg

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:72rem;color:#1f2933;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d8dee4;padding-bottom:.3rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}th,td{border:1px solid #d8dee4;padding:.25rem .5rem;text-align:right}
th{background:#f3f5f7}td:first-child,th:first-child{text-align:left}
.ok{color:#0a7d32;font-weight:600}.bad{color:#b42318;font-weight:600}.muted{color:#6b7785}
.verdict{font-size:1.2rem;padding:.6rem 1rem;border-radius:.4rem;display:inline-block}
.verdict.ok{background:#e6f4ea}.verdict.bad{background:#fdecea}
"""


def _fmt(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.4g}"


def _overall_plot(evaluation_uri: str, field: str) -> Any:
    """The candidate's plot value with ``field`` set, on the overall slice (None when not computed)."""
    import tensorflow_model_analysis as tfma

    from sluice.components.evaluation import slice_name

    for plots in tfma.load_plots(evaluation_uri):
        if slice_name(plots.slice_key) != OVERALL:
            continue
        for kv in plots.plot_keys_and_values:
            if kv.key.model_name != "baseline" and kv.value.HasField(field):
                return getattr(kv.value, field)
    return None


def calibration_points(evaluation_uri: str) -> List[Tuple[float, float, float]]:
    """(mean prediction, mean label, weight) per bucket of the overall slice's CalibrationPlot."""
    plot = _overall_plot(evaluation_uri, "calibration_histogram_buckets")
    out = []
    for b in plot.buckets if plot is not None else []:
        w = b.num_weighted_examples.value
        if w > 0:
            out.append((b.total_weighted_refined_prediction.value / w, b.total_weighted_label.value / w, w))
    return out


def confusion_matrix(evaluation_uri: str) -> Dict[Tuple[int, int], float]:
    """(actual class id, predicted class id) -> examples, from the overall slice's TFMA
    ``MultiClassConfusionMatrixPlot`` (the prediction is the most probable class); empty when not computed."""
    plot = _overall_plot(evaluation_uri, "multi_class_confusion_matrix_at_thresholds")
    if plot is None or not plot.matrices:
        return {}
    return {(e.actual_class_id, e.predicted_class_id): e.num_weighted_examples for e in plot.matrices[0].entries}


def _per_class(slices: Dict[str, Dict[str, Any]], classes: List[str],
               matrix: Dict[Tuple[int, int], float]) -> List[str]:
    """Multi-class: each class's one-vs-rest metrics (overall slice) and the confusion matrix."""
    overall = slices.get(OVERALL, {}).get("candidate", {})
    names = [m for m in ("precision", "recall", "auc") if f"{m}[0]" in overall]
    out = ["<h2>Per class (overall)</h2><table><tr><th>class</th>"
           + "".join(f"<th>{m}</th>" for m in names) + "</tr>"]
    for i, c in enumerate(classes):
        out.append(f"<tr><td>{html.escape(c)}</td>" + "".join(f"<td>{_fmt(overall.get(f'{m}[{i}]'))}</td>"
                                                             for m in names) + "</tr>")
    out.append("</table>")
    if matrix:
        out.append('<h2>Confusion matrix (overall)</h2><p class="muted">Rows: the actual class; columns: the '
                   "most probable class the model predicts.</p><table><tr><th>actual \\ predicted</th>"
                   + "".join(f"<th>{html.escape(c)}</th>" for c in classes) + "</tr>")
        for i, actual in enumerate(classes):
            out.append(f"<tr><td>{html.escape(actual)}</td>"
                       + "".join(f"<td>{matrix.get((i, j), 0):.0f}</td>" for j in range(len(classes))) + "</tr>")
        out.append("</table>")
    return out


def _status(name: str, metric: str, failed: Dict[Tuple[str, str], str]) -> str:
    state = failed.get((name, metric))
    if state == "gating":
        return '<span class="bad">fail</span>'
    if state == "exempt":
        return '<span class="muted">fail, not gated (small)</span>'
    return ""


def render(verdict: Dict[str, Any], evaluation: Dict[str, Any], calibration: List[Tuple[float, float, float]],
           matrix: Optional[Dict[Tuple[int, int], float]] = None) -> str:
    """The page. ``verdict``: ``components.evaluation.read_verdict``; ``evaluation``: the config section (plus
    ``classes``, the task's, for multi-class); ``matrix``: ``confusion_matrix``."""
    slices: Dict[str, Dict[str, Any]] = verdict.get("slices", {})
    blessed = verdict.get("blessed")
    failed: Dict[Tuple[str, str], str] = {}
    for f in verdict.get("failures", []):
        failed[(f["slice"], f["metric"])] = "gating"
    for f in verdict.get("exempt_failures", []):
        failed.setdefault((f["slice"], f["metric"]), "exempt")
    gated_metrics = sorted({t["metric"] for t in evaluation.get("thresholds", [])})
    metrics = sorted({m for s in slices.values() for m in s["candidate"] if m != "example_count" and "[" not in m})
    has_baseline = any(s["baseline"] for s in slices.values())
    out = ['<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Evaluation</title>',
           f"<style>{_CSS}</style></head><body><h1>Model evaluation</h1>"]
    cls = "ok" if blessed else "bad"
    word = "BLESSED — may be pushed" if blessed else "NOT BLESSED — nothing pushed"
    out.append(f'<p class="verdict {cls}">{word}</p>')
    out.append(f'<p class="muted">Baseline: {"the latest blessed model" if has_baseline else "none (first model: value thresholds only)"}. '
               f'Feature slices under {evaluation.get("min_slice_size")} examples are reported, not gated.</p>')
    rows = verdict.get("failures", []) + verdict.get("exempt_failures", [])
    if rows:
        out.append("<h2>Failed thresholds</h2><table><tr><th>slice</th><th>metric</th><th>candidate</th>"
                   "<th>baseline</th><th>checked value</th><th>gates?</th><th>TFMA says</th></tr>")
        for f in rows:
            gates = "yes" if f in verdict.get("failures", []) else f"no (n={_fmt(f.get('size'))})"
            checked = f"change {_fmt(f['value'])}" if f.get("is_change") else _fmt(f["value"])
            out.append(f"<tr><td>{html.escape(f['slice'])}</td><td>{html.escape(f['metric'])}</td>"
                       f"<td>{_fmt(f.get('candidate'))}</td><td>{_fmt(f.get('baseline'))}</td><td>{checked}</td>"
                       f"<td>{gates}</td><td>{html.escape(f.get('message') or '')}</td></tr>")
        out.append("</table>")

    specs: Dict[str, List[str]] = {}
    for name in slices:
        specs.setdefault(slice_spec(name), []).append(name)
    top_k = int(evaluation["report_top_k"])  # the config section, defaults applied
    for spec, names in sorted(specs.items(), key=lambda kv: kv[0] != OVERALL):
        names = sorted(names, key=lambda n: -(slices[n]["size"] or 0))
        shown = names[:top_k]
        out.append(f"<h2>Slices: {html.escape(spec)}</h2>")
        if len(names) > top_k:
            out.append(f'<p class="muted">{len(shown)} largest of {len(names)} slices.</p>')
        head = "".join(f"<th>{html.escape(m)}</th>" + ("<th>baseline</th><th>change</th>" if has_baseline else "")
                       for m in metrics)
        out.append(f"<table><tr><th>slice</th><th>examples</th>{head}</tr>")
        for name in shown:
            s = slices[name]
            cells = []
            for m in metrics:
                status = _status(name, m, failed)
                cells.append(f"<td>{_fmt(s['candidate'].get(m))} {status}</td>")
                if has_baseline:
                    cells.append(f"<td>{_fmt(s['baseline'].get(m))}</td><td>{_fmt(s['change'].get(m))}</td>")
            out.append(f"<tr><td>{html.escape(name)}</td><td>{_fmt(s['size'])}</td>{''.join(cells)}</tr>")
        out.append("</table>")
        for m in gated_metrics or metrics[:1]:
            chart = bar_chart(f"{m} by slice (dark: candidate, light: baseline)",
                               [(n, slices[n]["candidate"].get(m), slices[n]["baseline"].get(m)) for n in shown])
            out.append(chart)
    if evaluation.get("classes"):
        out += _per_class(slices, evaluation["classes"], matrix or {})
    if calibration:
        out.append("<h2>Calibration (overall)</h2>")
        out.append(calibration_svg(calibration, "mean label vs mean prediction per bucket"))
    out.append("</body></html>")
    return "\n".join(out)


def write_evaluation_report(evaluation_uri: str, verdict: Dict[str, Any], evaluation_config: Dict[str, Any],
                            report_dir: Path) -> Path:
    """``verdict``: ``components.evaluation.read_verdict(evaluation_uri)``, which the caller already has."""
    try:
        calibration = calibration_points(evaluation_uri)
        matrix = confusion_matrix(evaluation_uri) if evaluation_config.get("classes") else {}
    except Exception:  # the plots are a nicety; the tables carry the verdict
        calibration, matrix = [], {}
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "evaluation.html"
    path.write_text(render(verdict, evaluation_config, calibration, matrix))
    return path
