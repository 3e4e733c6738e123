"""The run's report directory: ``summary.json`` (machine-readable) and ``index.html`` (opens from disk).

A first version of the run page: verdict, per-component table, metrics, threshold failures and where the
model is. Failed runs get one too.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Dict

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
h1{font-size:1.4em} table{border-collapse:collapse;margin:1em 0} td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
.ok{color:#176a2c;font-weight:bold} .bad{color:#a31515;font-weight:bold} code{background:#f4f4f4;padding:0 .2em}
"""


def _table(rows, header) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(result: Dict[str, Any], config: Dict[str, Any]) -> str:
    ok = result["status"] == "succeeded"
    verdict = {True: "BLESSED", False: "NOT BLESSED", None: "not evaluated"}[result["blessed"]]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>sluice run {html.escape(result['run_id'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>sluice · {html.escape(result['pipeline'])} · run {html.escape(result['run_id'])}</h1>",
        f"<p id='verdict' class='{'ok' if ok else 'bad'}'>Status: {html.escape(result['status'])} — model {verdict}</p>",
    ]
    if result.get("error"):
        parts.append(f"<pre class='bad'>Stopped: {html.escape(result['error'])}</pre>")
    if result.get("data_report"):
        parts.append("<p>Data validation: <a href='data_report.html'>data_report.html</a> "
                     "(anomalies, skew and drift, statistics)</p>")
    parts.append("<h2>Components</h2>")
    parts.append(_table([(c["name"], "cached" if c["cached"] else "ran", c["state"], f"{c['seconds']:.1f} s")
                         for c in result["components"]], ["component", "cache", "state", "time"]))
    if result["metrics"]:
        parts.append("<h2>Evaluation (eval split, overall)</h2>")
        parts.append(_table(sorted((k, f"{v:.5g}") for k, v in result["metrics"].items()), ["metric", "value"]))
    if result["failures"]:
        parts.append("<h2>Failed thresholds</h2>")
        parts.append(_table([(f["slice"], f["metric"], f["value"], f["message"] or f["threshold"])
                             for f in result["failures"]], ["slice", "metric", "value", "threshold"]))
    parts.append("<h2>Model</h2>")
    if result["pushed"]:
        parts.append(f"<p>Pushed SavedModel: <code>{html.escape(result['saved_model_path'])}</code> "
                     f"(version {html.escape(str(result['version']))})</p>")
    else:
        parts.append("<p>Nothing was pushed; the serving directory is unchanged.</p>")
    parts.append(f"<p>Full log: <code>{html.escape(result['log_file'])}</code></p>")
    parts.append("<h2>Config</h2><pre>" + html.escape(json.dumps(config, indent=2)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_run_report(result: Dict[str, Any], config: Dict[str, Any], report_dir: Path) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "summary.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    index = report_dir / "index.html"
    index.write_text(render_html(result, config))
    return index
