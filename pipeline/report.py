"""The run page: ``reports/<run>/index.html`` (standalone: inline CSS and SVG, no scripts, no network) and
``summary.json`` beside it. Written for every run, failed ones included.

One page answers "what happened, is it good, where is it": the summary (config, data fingerprint, every
gate's verdict, per-component durations and cache state), data (anomalies, skew and drift table, link to the
full data report), training (curves from the TensorBoard logs, final values, strategy and loop), evaluation
(overall and slice summary, link to ``evaluation.html``), export (signatures) and how to serve the pushed
model.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence

from sluice.pipeline.svg import line_chart


def describe_rule(failure: Dict[str, Any]) -> str:
    """The broken rule of an Evaluator failure in words, from the threshold's numbers that
    ``components.evaluation.threshold_bounds`` read from TFMA's proto (TFMA's own message is often empty)."""
    if failure.get("is_change"):
        limit = failure.get("allowed_change")
        return f"change {failure['value']:+.4g} vs baseline, allowed {'?' if limit is None else f'{limit:+.4g}'}"
    parts = [f"≥ {failure['lower_bound']:.4g}"] if failure.get("lower_bound") is not None else []
    parts += [f"≤ {failure['upper_bound']:.4g}"] if failure.get("upper_bound") is not None else []
    return f"must be {' and '.join(parts)}" if parts else (failure.get("message") or failure.get("threshold", ""))


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:72rem;color:#1f2933;padding:0 1rem}
h1{font-size:1.45rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d8dee4;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.88rem}td,th{border:1px solid #d8dee4;padding:.25rem .55rem;text-align:left}
th{background:#f3f5f7}.ok{color:#0a7d32;font-weight:600}.bad{color:#b42318;font-weight:600}.muted{color:#6b7785}
code,pre{background:#f3f5f7;padding:0 .25rem}pre{padding:.6rem;overflow-x:auto}
#verdict{font-size:1.2rem;padding:.6rem 1rem;border-radius:.4rem;display:inline-block}
#verdict.ok{background:#e6f4ea}#verdict.bad{background:#fdecea}
.charts svg{margin:0 1rem 1rem 0;vertical-align:top}
"""


def _table(rows: Iterable[Sequence[Any]], header: Sequence[str], raw: bool = False) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    cell = (lambda c: str(c)) if raw else (lambda c: html.escape(str(c)))
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _num(v: Any) -> str:
    return f"{v:.5g}" if isinstance(v, (int, float)) else ("—" if v is None else str(v))


def _gates(result: Dict[str, Any], details: Dict[str, Any]) -> List[List[str]]:
    verdict = details.get("data_verdict")
    if result["status"] == "data_rejected":
        data = '<span class="bad">rejected</span>'
    elif verdict is not None:
        data = '<span class="ok">passed</span>' if verdict.get("passed") else '<span class="bad">rejected</span>'
    else:
        data = '<span class="muted">not reached</span>'
    blessing = {True: '<span class="ok">blessed</span>', False: '<span class="bad">not blessed</span>',
                None: '<span class="muted">not evaluated</span>'}[result["blessed"]]
    push = (f'<span class="ok">pushed version {html.escape(str(result["version"]))}</span>' if result["pushed"]
            else '<span class="muted">nothing pushed</span>')
    parity = result.get("parity") or {}
    if not parity:
        tflite = '<span class="muted">not reached</span>'
    elif not parity.get("variants"):
        tflite = '<span class="muted">no TFLite target (warmup only)</span>'
    else:
        dropped = parity.get("dropped") or []
        tflite = (('<span class="ok">passed</span>' + (f" (not shipped: {html.escape(', '.join(dropped))})" if dropped else ""))
                  if parity.get("passed") else
                  '<span class="bad">failed: ' + html.escape("; ".join(parity.get("failures", []))) + "</span>")
    return [["DataGate (anomalies, skew, drift)", data], ["Evaluator (thresholds vs baseline)", blessing],
            ["ModelExport (TFLite parity vs SavedModel)", tflite], ["InfraCheck (local TF Serving API)", _infra(result)],
            ["Pusher", push]]


def _infra(result: Dict[str, Any]) -> str:
    infra = result.get("infra") or {}
    if not infra:
        return '<span class="muted">not reached</span>'
    if infra.get("blessed"):
        checked = infra.get("checked", {})
        return (f'<span class="ok">passed</span> ({checked.get("grpc", 0)} gRPC + {checked.get("rest", 0)} REST '
                "warmup requests)")
    return '<span class="bad">failed: ' + html.escape("; ".join(infra.get("failures", []))) + "</span>"


def _data_section(result: Dict[str, Any], details: Dict[str, Any]) -> List[str]:
    parts = ['<h2 id="data">Data</h2>']
    parts.append(f"<p>Data fingerprint: <code>{html.escape(str(details.get('data_fingerprint') or '—'))}</code> "
                 "(from CsvExampleGen's input fingerprint: same files, same value).</p>")
    if result.get("data_report"):
        parts.append("<p>Full data report: <a href='data_report.html'>data_report.html</a> (anomalies, skew, drift, "
                     "statistics per split).</p>")
    verdict = details.get("data_verdict")
    if verdict:
        findings = verdict.get("findings", [])
        if findings:
            parts.append(_table([(f.get("split"), f.get("feature"), f.get("anomaly"), f.get("severity"),
                                  "allowed" if f.get("allowed") else "", f.get("description", ""))
                                 for f in findings], ["split", "feature", "anomaly", "severity", "", "detail"]))
        else:
            parts.append("<p class='ok'>No anomalies against the curated schema.</p>")
        rows = [(d["feature"], d["comparison"], _num(d["value"]), _num(d["threshold"]), d["measure"],
                 '<span class="bad">over</span>' if d["threshold"] is not None and d["value"] > d["threshold"] else "ok")
                for d in sorted(verdict.get("distances", []), key=lambda d: (d["comparison"], -d["value"]))]
        if rows:
            parts.append(_table(rows, ["feature", "comparison", "distance", "threshold", "measure", ""], raw=True))
    return parts


def _training_section(details: Dict[str, Any]) -> List[str]:
    training = details.get("training") or {}
    parts = ['<h2 id="training">Training</h2>']
    if not training.get("final") and not training.get("curves"):
        parts.append("<p class='muted'>No training in this run (cached model, or the run stopped before).</p>")
        return parts
    resumed = training.get("resumed_from_round")
    parts.append(f"<p>Strategy <code>{html.escape(str(training.get('strategy')))}</code> over "
                 f"{_num(training.get('replicas'))} replica(s), loop <code>{html.escape(str(training.get('loop')))}</code>"
                 + (f", resumed from round {resumed:g}" if resumed else "") + ". TensorBoard logs: "
                 f"<code>{html.escape(str(training.get('log_dir')))}</code></p>")
    charts = []
    for metric, series in sorted(training.get("curves", {}).items(), key=lambda kv: kv[0] != "loss"):
        charts.append(line_chart(metric, {k: [tuple(p) for p in v] for k, v in series.items()}))
    parts.append(f"<div class='charts'>{''.join(charts)}</div>")
    final = training.get("final", {})
    names = sorted({k.removeprefix("val_") for k in final})
    parts.append(_table([(n, _num(final.get(n)), _num(final.get(f"val_{n}"))) for n in names],
                        ["metric (last round)", "train", "validation"]))
    return parts


def _evaluation_section(result: Dict[str, Any]) -> List[str]:
    parts = ['<h2 id="evaluation">Evaluation</h2>']
    if not result["metrics"]:
        parts.append("<p class='muted'>Not evaluated in this run.</p>")
        return parts
    if result.get("evaluation_report"):
        parts.append("<p>Per-slice tables and charts: <a href='evaluation.html'>evaluation.html</a></p>")
    changes = result.get("metric_changes", {})
    parts.append(_table([(k, _num(v), _num(changes.get(k))) for k, v in sorted(result["metrics"].items())],
                        ["metric (overall)", "candidate", "change vs baseline"]))
    if result.get("slice_summary"):
        parts.append(_table([(r["metric"], r["spec"], r["worst_slice"], _num(r["value"]), _num(r["size"]),
                              f"{r['gated_slices']} of {r['slices']}") for r in result["slice_summary"]],
                            ["metric", "slices", "worst gated slice", "value", "examples", "gated"]))
    failures = result.get("failures", []) + result.get("exempt_failures", [])
    if failures:
        parts.append(_table([(f["slice"], f["metric"], _num(f.get("candidate")), _num(f.get("baseline")),
                              "yes" if f in result.get("failures", []) else "no (small slice)", describe_rule(f))
                             for f in failures], ["slice", "metric", "candidate", "baseline", "gates", "threshold"]))
    return parts


def _export_section(result: Dict[str, Any], details: Dict[str, Any]) -> List[str]:
    parts = ['<h2 id="export">Export</h2>']
    sigs = details.get("signatures") or {}
    if sigs:
        parts.append(_table([(name, ", ".join(s["inputs"]), ", ".join(s["outputs"])) for name, s in sorted(sigs.items())],
                            ["SavedModel signature", "inputs", "outputs"]))
    parity = result.get("parity") or {}
    variants = parity.get("variants") or []
    if variants:
        dropped = parity.get("dropped") or []
        verdict = ("FAILED — nothing pushed" if not parity.get("passed") else
                   f"passed; not shipped: {', '.join(dropped)}" if dropped else "passed")
        parts.append(f"<p>TFLite parity vs the SavedModel on {parity.get('rows', 0)} eval rows: "
                     f"<strong>{verdict}</strong>.</p>")
        reference = parity.get("saved_model_metric")
        if reference:
            parts.append(
                f"<p class='muted'>Why the SavedModel's {html.escape(reference['metric'])} here "
                f"({_num(reference['dense_rows'])}) differs from the Evaluator's: parity feeds the dense rows a "
                f"TFLite client sends, where an empty optional cell carries its fill value (default or 0); the "
                f"Evaluator feeds tf.Examples, where the cell stays missing and Transform imputes it. On the same "
                f"rows as tf.Examples the SavedModel measures {_num(reference['examples'])}; "
                f"{reference['rows_with_empty_cells']} of {parity.get('rows', 0)} rows have an empty cell.</p>")
        parts.append(_table([(v["variant"], _num(v.get("size_bytes", 0) / 1024), _num(v.get("max_abs_diff")),
                              v.get("rows_outside_tolerance", ""), f"{v.get('metric', '')} {_num(v.get('metric_tflite'))}",
                              _num(v.get("metric_saved_model")), v.get("rule", ""),
                              "pass" if v["passed"] else f"FAIL (not shipped) {v.get('error') or ''}") for v in variants],
                            ["variant", "KiB", "max |diff|", "rows off", "metric", "SavedModel", "rule", "verdict"]))
    parts.append(f"<p>TFLite: {html.escape(result.get('tflite_path') or ('not pushed' if variants else 'not exported (export.targets has no tflite)'))}</p>")
    parts.append('<h2 id="serving">Where the model is</h2>')
    if result["pushed"]:
        path = result["saved_model_path"]
        base = str(Path(path).parent)
        name = Path(base).name
        parts.append(f"<p>Pushed SavedModel: <code>{html.escape(path)}</code> (version {html.escape(str(result['version']))}).</p>")
        parts.append("<p>Serve it with TF Serving (REST on 8501):</p><pre>" + html.escape(
            f"docker run -p 8501:8501 -v {base}:/models/{name} -e MODEL_NAME={name} tensorflow/serving:2.16.1\n"
            f"curl -d '{{\"signature_name\": \"serving_raw\", \"instances\": [{{...raw feature columns...}}]}}' \\\n"
            f"  localhost:8501/v1/models/{name}:predict") + "</pre>")
        parts.append("<p>Without Docker, the same requests work against <code>" + html.escape(
            f"sluice serve --model-dir {Path(base).parent}") + "</code> (TF Serving's REST and gRPC API).</p>")
    else:
        parts.append("<p>Nothing was pushed by this run; the serving directory is unchanged.</p>")
    return parts


def render_html(result: Dict[str, Any], config: Dict[str, Any], details: Dict[str, Any] | None = None) -> str:
    details = details or result.get("details") or {}
    ok = result["status"] == "succeeded"
    verdict = {True: "BLESSED", False: "NOT BLESSED", None: "not evaluated"}[result["blessed"]]
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>sluice run {html.escape(result['run_id'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>sluice · {html.escape(result['pipeline'])} · run {html.escape(result['run_id'])}</h1>",
        f"<p id='verdict' class='{'ok' if ok else 'bad'}'>{html.escape(result['status'])} — model {verdict}"
        + (f" — pushed version {html.escape(str(result['version']))}" if result["pushed"] else " — nothing pushed") + "</p>",
        '<h2 id="summary">Summary</h2>',
    ]
    if result.get("error"):
        parts.append(f"<pre class='bad'>Stopped: {html.escape(result['error'])}</pre>")
    for note in result.get("notes") or []:
        parts.append(f"<p class='bad' id='note'>Note: {html.escape(note)}</p>")
    fingerprint = details.get("data_fingerprint") or "—"
    parts.append(_table([("config", f"{result['pipeline']} ({config.get('task', {}).get('type', '')}, label "
                                    f"{config.get('task', {}).get('label', '')})"),
                         ("data fingerprint", fingerprint),
                         *([("spans", details["spans"])] if details.get("spans", "-") != "-" else []),
                         ("duration", f"{result['seconds']:.1f} s"),
                         ("log", result["log_file"])], ["", ""]))
    parts.append(_table(_gates(result, details), ["gate", "verdict"], raw=True))
    parts.append(_table([(c["name"], "cached" if c["cached"] else "ran", c["state"], f"{c['seconds']:.1f} s")
                         for c in result["components"]], ["component", "cache", "state", "time"]))
    parts += _data_section(result, details)
    parts += _training_section(details)
    parts += _evaluation_section(result)
    parts += _export_section(result, details)
    parts.append("<h2 id='config'>Config</h2><pre>" + html.escape(json.dumps(config, indent=2)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_run_report(result: Dict[str, Any], config: Dict[str, Any], report_dir: Path) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "summary.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    index = report_dir / "index.html"
    index.write_text(render_html(result, config))
    return index
