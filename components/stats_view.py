"""The data report's statistics section, rendered offline: one table row per feature with its train / eval /
drift-baseline numbers side by side and small histograms, in plain HTML and CSS.

TFDV's own view (``get_statistics_html``) is the Facets web component, which loads its scripts from the web:
offline (an air-gapped cluster, a laptop on a plane, a CI artifact) the section was blank. This reads the same
``DatasetFeatureStatisticsList`` protos and needs nothing but the page.
"""

from __future__ import annotations

import html
from typing import Any, Dict, List, Mapping, Optional, Sequence

from tensorflow_metadata.proto.v0 import statistics_pb2

CSS = (".stats td{vertical-align:top}.stats .num{text-align:right;font-variant-numeric:tabular-nums}"
       ".hist{display:inline-flex;align-items:flex-end;height:28px;gap:1px;margin-right:.4em}"
       ".hist span{display:inline-block;width:5px;background:#4a78b5}.hist span.z{background:#d8dee4;height:1px}"
       ".warn{color:#a31515;font-weight:600}")


def _features(stats: Optional[statistics_pb2.DatasetFeatureStatisticsList]) -> Dict[str, Any]:
    if stats is None or not stats.datasets:
        return {}
    return {(f.path.step[0] if f.path.step else f.name): f for f in stats.datasets[0].features}


def _count(stats: Optional[statistics_pb2.DatasetFeatureStatisticsList]) -> int:
    return int(stats.datasets[0].num_examples) if stats is not None and stats.datasets else 0


def _common(feature: Any) -> Any:
    kind = feature.WhichOneof("stats")
    return getattr(feature, kind).common_stats if kind in ("num_stats", "string_stats") else None


def _g(value: float) -> str:
    return f"{value:.4g}"


def _bars(counts: Sequence[float]) -> str:
    top = max(counts) if counts else 0
    if top <= 0:
        return ""
    spans = "".join(f'<span style="height:{max(1, round(28 * c / top))}px"></span>' if c > 0 else '<span class="z"></span>'
                    for c in counts)
    return f'<span class="hist">{spans}</span>'


def _histogram(feature: Any) -> str:
    if feature.HasField("num_stats"):
        for hist in feature.num_stats.histograms:
            if hist.type == statistics_pb2.Histogram.STANDARD and hist.buckets:
                return _bars([b.sample_count for b in hist.buckets])
    if feature.HasField("string_stats"):
        return _bars([v.frequency for v in feature.string_stats.top_values[:12]])
    return ""


def describe(feature: Any, examples: int) -> str:
    """One split's numbers for one feature, as a table cell's HTML."""
    common = _common(feature)
    present = int(common.num_non_missing) if common is not None else 0
    missing = (1 - present / examples) if examples else 0.0
    parts = [f"missing {missing:.1%}" if missing < 1 else '<span class="warn">empty in every row</span>']
    if feature.HasField("num_stats") and present:
        n = feature.num_stats
        parts.append(f"mean {_g(n.mean)} · sd {_g(n.std_dev)} · min {_g(n.min)} · median {_g(n.median)} · max {_g(n.max)}"
                     + (f" · zeros {n.num_zeros}" if n.num_zeros else ""))
        if n.min == n.max:
            parts.append('<span class="warn">one value in every row</span>')
    elif feature.HasField("string_stats") and present:
        s = feature.string_stats
        top = ", ".join(f"{html.escape(v.value[:30])} ({v.frequency / present:.0%})" for v in s.top_values[:4])
        parts.append(f"{s.unique} distinct · top: {top}")
        if s.unique == 1:
            parts.append('<span class="warn">one value in every row</span>')
    return _histogram(feature) + "<br>".join(parts)


def render(splits: Mapping[str, Optional[statistics_pb2.DatasetFeatureStatisticsList]],
           columns: Optional[Sequence[str]] = None) -> str:
    """The statistics section: ``splits`` maps a column title (``train``, ``eval``, ``last passed run``) to
    its statistics (None: not available); ``columns`` (the gated ones) are listed even when a split lacks them."""
    names: List[str] = list(columns or [])
    per_split = {title: _features(stats) for title, stats in splits.items()}
    for features in per_split.values():
        names += [n for n in sorted(features) if n not in names]
    head = "".join(f"<th>{html.escape(title)} ({f'{_count(stats)} rows' if stats is not None else 'none yet'})</th>"
                   for title, stats in splits.items())
    rows = []
    for name in names:
        cells = []
        for title, stats in splits.items():
            feature = per_split[title].get(name)
            if stats is None:
                cells.append("<td class='muted'>—</td>")
            elif feature is None:
                cells.append('<td><span class="warn">absent (no value in any row)</span></td>')
            else:
                cells.append(f"<td>{describe(feature, _count(stats))}</td>")
        rows.append(f"<tr><td><code>{html.escape(name)}</code></td>{''.join(cells)}</tr>")
    return (f"<style>{CSS}</style><table class='stats'><tr><th>feature</th>{head}</tr>{''.join(rows)}</table>")
