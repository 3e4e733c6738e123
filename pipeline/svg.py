"""Inline SVG charts for the standalone report pages: no JavaScript, no network, no plotting library (the
pinned stack has none), so a page opens from disk anywhere and renders the same in any browser."""

from __future__ import annotations

import html
import math
from typing import Dict, List, Optional, Sequence, Tuple


def bar_chart(title: str, rows: Sequence[Tuple[str, Optional[float], Optional[float]]]) -> str:
    """Horizontal bars, candidate (dark) and baseline (light) per slice, as inline SVG."""
    values = [abs(v) for _, c, b in rows for v in (c, b) if v is not None and not math.isnan(v)]
    if not values:
        return ""
    top = max(values) or 1.0
    label_w, bar_w, row_h = 260, 360, 26
    height = 30 + row_h * len(rows)
    parts = [f'<svg role="img" aria-label="{html.escape(title)}" width="{label_w + bar_w + 80}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">',
             f'<text x="0" y="14" font-weight="bold">{html.escape(title)}</text>']
    for i, (name, cand, base) in enumerate(rows):
        y = 24 + i * row_h
        parts.append(f'<text x="0" y="{y + 13}">{html.escape(name[:40])}</text>')
        for j, (value, color) in enumerate(((cand, "#1f6feb"), (base, "#a5c8f5"))):
            if value is None or math.isnan(value):
                continue
            w = max(1.0, bar_w * abs(value) / top)
            parts.append(f'<rect x="{label_w}" y="{y + j * 10}" width="{w:.1f}" height="9" fill="{color}"/>')
            parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + j * 10 + 8}">{value:.3g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def calibration_svg(points: List[Tuple[float, float, float]], title: str) -> str:
    """Mean prediction (x) vs mean label (y) per bucket, marker area ~ bucket weight; diagonal = perfect."""
    points = [p for p in points if p[2] > 0]
    if not points:
        return ""
    lo = min(min(x, y) for x, y, _ in points)
    hi = max(max(x, y) for x, y, _ in points)
    span = (hi - lo) or 1.0
    size, pad = 320, 40
    total = sum(w for _, _, w in points)

    def sx(v: float) -> float:
        return pad + (v - lo) / span * size

    def sy(v: float) -> float:
        return pad + size - (v - lo) / span * size

    parts = [f'<svg role="img" aria-label="{html.escape(title)}" width="{size + 2 * pad}" height="{size + 2 * pad}" '
             'xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">',
             f'<text x="{pad}" y="16" font-weight="bold">{html.escape(title)}</text>',
             f'<rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="none" stroke="#d8dee4"/>',
             f'<line x1="{sx(lo)}" y1="{sy(lo)}" x2="{sx(hi)}" y2="{sy(hi)}" stroke="#9aa5b1" stroke-dasharray="4"/>',
             f'<text x="{pad}" y="{size + pad + 16}">mean prediction ({lo:.3g} … {hi:.3g})</text>',
             f'<text x="8" y="{pad - 6}">mean label</text>']
    for x, y, w in points:
        r = 2 + 10 * math.sqrt(w / total)
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{r:.1f}" fill="#1f6feb" fill-opacity="0.6"/>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, series: Dict[str, List[Tuple[float, float]]], width: int = 420, height: int = 220) -> str:
    """One line per series (e.g. train and validation loss per round), with min/max labels on the y axis."""
    points = [p for values in series.values() for p in values if math.isfinite(p[1])]
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    pad_l, pad_t, pad_b = 54, 24, 28
    w, h = width - pad_l - 10, height - pad_t - pad_b
    colors = ["#1f6feb", "#e8590c", "#0a7d32", "#7048e8"]

    def sx(v: float) -> float:
        return pad_l + (v - x0) / (x1 - x0) * w

    def sy(v: float) -> float:
        return pad_t + h - (v - y0) / (y1 - y0) * h

    parts = [f'<svg role="img" aria-label="{html.escape(title)}" width="{width}" height="{height}" '
             'xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">',
             f'<text x="{pad_l}" y="14" font-weight="bold">{html.escape(title)}</text>',
             f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="none" stroke="#d8dee4"/>',
             f'<text x="2" y="{pad_t + 10}">{y1:.4g}</text><text x="2" y="{pad_t + h}">{y0:.4g}</text>',
             f'<text x="{pad_l}" y="{height - 8}">round {x0:g}</text>',
             f'<text x="{pad_l + w - 50}" y="{height - 8}">round {x1:g}</text>']
    for i, (name, values) in enumerate(series.items()):
        color = colors[i % len(colors)]
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values if math.isfinite(y))
        if pts:
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.append(f'<text x="{pad_l + 8 + 110 * i}" y="{pad_t + 14}" fill="{color}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
