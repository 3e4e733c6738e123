"""DataGate: the custom TFX component that stops a run on bad data, before Transform spends anything.

TFX's ExampleValidator computes anomalies but nothing acts on them: a bad batch still trains and pushes.
DataGate reads ExampleValidator's anomalies for every split, adds train/eval skew and drift against the last
run whose data passed the gate (its own previous ``DataVerdict``, resolved from MLMD), applies the config's
severity and allow-list, writes ``verdict.json`` + ``data_report.html`` into its artifact, and raises
``DataGateFailed`` (one screen: feature, anomaly, expected vs found, report path) when the data fails.
Transform is wired downstream of it, so a failed gate means no Transform, no training and no push.

Pure functions (``findings_from_anomalies``, ``comparator_schema``, ``decide``, ``render_message``) hold the
logic; the executor is glue.
"""

from __future__ import annotations

import html
import math
import posixpath
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from sluice.components import artifact_io as aio, span_ledger, verdicts
from sluice.components.contracts import GateContract
from sluice.components.settings import DATASET, ValidationConfig, class_number
from sluice.components.schema_hints import schema_change
from sluice.components.span_window import DATA_SOURCE, EXAMPLES_ID, SPAN, pick_previous, span_of

VERDICT_FILE = verdicts.FILES["data"]
REPORT_FILE = "data_report.html"
BASELINE_STATS = "baseline_statistics.pb"
PREVIOUS_STATS = "previous_statistics.pb"
"""The statistics this verdict's data was compared with (with spans: the previous span's), kept so that a
re-run of the same span compares with the previous span again."""
MISSING_BASELINE = "DRIFT_BASELINE_MISSING"
"""The finding when the drift baseline's statistics are gone (``BaselineGone``)."""
PREVIOUS_SPAN = "previous_span"
"""Custom property of a passed verdict: the span it was compared with (``SPAN``: its own; ``EXAMPLES_ID``: the
MLMD id of the Examples it passed, which the span window reads)."""

_SEVERITY_RANK = {"WARNING": 1, "ERROR": 2, "UNKNOWN": 2}


class DataVerdict(types.Artifact):
    """The gate's decision for one run's data; published only when the data passed (drift baseline)."""

    TYPE_NAME = "sluice.DataVerdict"


class DataGateFailed(Exception):
    """The data failed the gate. ``message`` fits one screen; ``report`` is the full HTML report."""

    def __init__(self, message: str, report: str) -> None:
        self.report = report
        super().__init__(message)


@dataclass
class Finding:
    split: str
    feature: str
    anomaly: str
    severity: str
    description: str
    expected: str = ""
    allowed: bool = False
    schema_change: str = ""
    """Where the curated schema would accept this data (``schema_hints``), for when the data is right."""


# ---------------------------------------------------------------------------------------- pure logic
def _expected(schema: schema_pb2.Schema, feature: str) -> str:
    """What the curated schema says about ``feature``, in a few words."""
    for f in schema.feature:
        if f.name != feature:
            continue
        parts = [schema_pb2.FeatureType.Name(f.type)]
        if f.HasField("int_domain"):
            parts.append(f"in [{f.int_domain.min}, {f.int_domain.max}]" if f.int_domain.HasField("max")
                         else f">= {f.int_domain.min}")
        if f.HasField("float_domain"):
            lo = f.float_domain.min if f.float_domain.HasField("min") else "-inf"
            hi = f.float_domain.max if f.float_domain.HasField("max") else "inf"
            parts.append(f"in [{lo}, {hi}]")
        if f.domain:
            domain = next((d for d in schema.string_domain if d.name == f.domain), None)
            if domain is not None:
                values = list(domain.value)
                parts.append("one of " + ", ".join(values[:6]) + (" …" if len(values) > 6 else ""))
        if f.presence.min_fraction >= 1.0:
            parts.append("required")
        return ", ".join(parts)
    return "not in the schema"


def anomaly_column(key: str, info: anomalies_pb2.AnomalyInfo) -> str:
    """The CSV column an anomaly is about. TFDV keys ``anomaly_info`` by its serialized path, which quotes
    names with punctuation (``'rate (%)'``); the path's one step is the column's own name, as the config,
    ``validation.allow`` and the schema spell it."""
    return info.path.step[0] if len(info.path.step) == 1 else key


def findings_from_anomalies(anomalies: anomalies_pb2.Anomalies, split: str, schema: schema_pb2.Schema,
                            schema_text: str = "") -> List[Finding]:
    """One finding per TFDV anomaly reason; ``schema_text`` (the curated file) lets each name its schema line."""
    findings = []
    for key, info in sorted(anomalies.anomaly_info.items()):
        feature = anomaly_column(key, info)
        severity = anomalies_pb2.AnomalyInfo.Severity.Name(info.severity)
        for reason in info.reason or [None]:
            kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type) if reason else "UNKNOWN_TYPE"
            text = (reason.description if reason else "") or info.description
            findings.append(Finding(split, feature, kind, severity, text, _expected(schema, feature),
                                    schema_change=schema_change(schema_text, feature, kind)))
    dataset = anomalies.dataset_anomaly_info
    if dataset.reason:
        for reason in dataset.reason:
            findings.append(Finding(split, DATASET, anomalies_pb2.AnomalyInfo.Type.Name(reason.type),
                                    anomalies_pb2.AnomalyInfo.Severity.Name(dataset.severity), reason.description))
    if anomalies.data_missing:
        findings.append(Finding(split, DATASET, "DATA_MISSING", "ERROR", "the split has no examples"))
    return findings


def threshold_for(gate: GateContract, column: str, which: str) -> Optional[float]:
    """The ``skew``/``drift`` threshold of ``column``: its override, else its kind's default (None: off)."""
    validation = gate.validation
    own = validation.comparators.get(column)
    override = getattr(own, which) if own is not None else None
    default = getattr(validation, which)
    return override or (default.categorical_linf if gate.columns[column] == "categorical" else default.numeric_jsd)


def comparator_schema(schema: schema_pb2.Schema, gate: GateContract) -> schema_pb2.Schema:
    """A copy of the curated schema with TFDV's L-infinity skew/drift comparators on string columns.

    Numeric columns are compared by ``decile_jsd`` instead (see there why not TFDV's numeric JSD).
    """
    out = schema_pb2.Schema()
    out.CopyFrom(schema)
    by_name = {f.name: f for f in out.feature}
    for column, kind in gate.columns.items():
        feature = by_name.get(column)
        if feature is None or kind != "categorical":
            continue
        for which, comparator in (("skew", feature.skew_comparator), ("drift", feature.drift_comparator)):
            threshold = threshold_for(gate, column, which)
            if threshold:
                comparator.infinity_norm.threshold = threshold
    return out


# ------------------------------------------------------------------------------------ content of the columns
# sluice's own anomaly types (TFDV has none for these): the schema cannot say "must vary", and an optional
# column TFDV accepts empty in every row. Each can be tolerated like a TFDV anomaly (validation.allow).
LABEL_CONSTANT = "LABEL_CONSTANT"
FEATURE_CONSTANT = "FEATURE_CONSTANT"
COLUMN_EMPTY = "COLUMN_EMPTY"
LABEL_UNKNOWN_CLASS = "LABEL_UNKNOWN_CLASS"
COLUMN_VANISHED = "COLUMN_VANISHED"


def feature_stats(stats: statistics_pb2.DatasetFeatureStatisticsList) -> Dict[str, Any]:
    """Column name -> its FeatureNameStatistics (of the first dataset)."""
    if not stats.datasets:
        return {}
    return {(f.path.step[0] if f.path.step else f.name): f for f in stats.datasets[0].features}


def common_stats(feature: Any) -> Any:
    """A column's CommonStatistics (present/missing counts), None for kinds without them."""
    kind = feature.WhichOneof("stats")
    return getattr(feature, kind).common_stats if kind in ("num_stats", "string_stats") else None


def _distinct(feature: Any) -> Optional[int]:
    """1 when every present value is the same, 2 when at least two differ, None when unknown."""
    if feature.HasField("num_stats"):
        return 1 if feature.num_stats.min == feature.num_stats.max else 2
    if feature.HasField("string_stats"):
        return min(int(feature.string_stats.unique), 2)
    return None


def content_findings(gate: GateContract, split: str, stats, baseline=None) -> List[Finding]:
    """What TFDV lets through on every gated column of one split: no value in any row (``COLUMN_EMPTY``), gone
    since the last passed run (``COLUMN_VANISHED``), one value in every row (``LABEL_CONSTANT`` — nothing to
    learn, r² undefined — or ``FEATURE_CONSTANT``, which carries no signal; features are judged on train).
    A column whose present values are all equal but which is missing in some rows still varies (present vs
    missing: an optional feature's missing indicator learns from it), so it is not constant.

    A column with no value at all is absent from TFDV's statistics, so absence is "empty" unless the drift
    baseline (``baseline``: the last passed run's train statistics) had the column."""
    present, before = feature_stats(stats), feature_stats(baseline) if baseline is not None else {}
    findings = []
    for column in sorted(gate.columns):
        feature = present.get(column)
        common = common_stats(feature) if feature is not None else None
        is_label = column == gate.label
        if feature is None or (common is not None and common.num_non_missing == 0):
            kind = COLUMN_VANISHED if feature is None and column in before else COLUMN_EMPTY
            findings.append(Finding(split, column, kind, "ERROR",
                                    "no value in any row" + (" (the last passed run had values)"
                                                             if kind == COLUMN_VANISHED else ""),
                                    "values in at least some rows" + ("" if is_label else
                                                                      "; drop the feature from the config if it is gone for good")))
        elif (is_label or split == "train") and _distinct(feature) == 1 and not (common and common.num_missing):
            value = feature.num_stats.min if feature.HasField("num_stats") else (
                feature.string_stats.top_values[0].value if feature.string_stats.top_values else "?")
            findings.append(Finding(split, column, LABEL_CONSTANT if is_label else FEATURE_CONSTANT, "ERROR",
                                    f"every row has the same value ({value}): "
                                    + ("there is nothing to learn" if is_label else "the feature carries no signal"),
                                    "at least two distinct values"))
        if is_label and feature is not None and gate.label_classes:
            findings += _class_findings(split, column, feature, gate.label_classes)
    return findings


def _class_findings(split: str, column: str, feature: Any, classes: List[str]) -> List[Finding]:
    """A multi-class label with a value outside ``task.classes`` (Transform would make it class id -1) or empty
    cells (no class at all). String labels: TFDV's rank histogram lists every value (up to 1,000 distinct, and
    ``unique`` says when there are more); numeric labels: their min and max, which settle it for classes that
    are a run of integers (the Trainer counts the rest: ``trainer.guards.check_class_ids``)."""
    findings, common = [], common_stats(feature)
    if common is not None and common.num_missing:
        findings.append(Finding(split, column, LABEL_UNKNOWN_CLASS, "ERROR",
                                f"{int(common.num_missing)} rows have no label", "a class in every row"))
    unknown: List[str] = []
    if feature.HasField("string_stats"):
        seen = [b.label for b in feature.string_stats.rank_histogram.buckets]
        unknown = [v for v in seen if v not in classes]
        if not unknown and feature.string_stats.unique > len(seen):
            unknown = [f"{feature.string_stats.unique - len(seen)} values beyond TFDV's histogram"]
    elif feature.HasField("num_stats"):  # numbers match classes numerically, as Transform compares them
        numbers = {class_number(c) for c in classes} - {None}
        unknown = [f"{v:g}" for v in (feature.num_stats.min, feature.num_stats.max) if float(v) not in numbers]
    if unknown:
        findings.append(Finding(split, column, LABEL_UNKNOWN_CLASS, "ERROR",
                                f"label values outside task.classes: {', '.join(sorted(set(unknown))[:5])}",
                                f"only the classes {', '.join(classes[:10])}; add the new class to task.classes "
                                "(and retrain) or drop those rows"))
    return findings


# ----------------------------------------------------------------------------- numeric distribution distance
def quantile_buckets(stats: statistics_pb2.DatasetFeatureStatisticsList, column: str):
    for feature in stats.datasets[0].features:
        name = feature.path.step[0] if feature.path.step else feature.name
        if name == column and feature.HasField("num_stats"):
            for hist in feature.num_stats.histograms:
                if hist.type == statistics_pb2.Histogram.QUANTILES:
                    return [(b.low_value, b.high_value, b.sample_count) for b in hist.buckets]
    return None


def _cdf(buckets, x: float) -> float:
    """Fraction of the mass at or below ``x``, values spread uniformly inside each bucket."""
    total = sum(c for _, _, c in buckets) or 1.0
    mass = 0.0
    for low, high, count in buckets:
        if x >= high:
            mass += count
        elif x > low:
            mass += count * (x - low) / (high - low)
    return mass / total


def _below(buckets, x: float) -> float:
    """Fraction of the mass strictly below ``x`` (a bucket of one value at ``x`` does not count)."""
    total = sum(c for _, _, c in buckets) or 1.0
    mass = 0.0
    for low, high, count in buckets:
        if high < x:
            mass += count
        elif low < x:
            mass += count * (x - low) / (high - low)
    return mass / total


def decile_jsd(baseline, current) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of ``current`` against ``baseline``'s quantile buckets.

    TFDV approximates numeric JSD from each dataset's own equal-width histogram, which a single far-off value
    stretches: on the bundled taxi data two random halves of ``fare`` (max $700) measure 0.32 that way. On
    the baseline's quantile boundaries every bucket holds ~1/10 of the baseline, outliers affect only the
    last one, and the same halves measure below 0.01 while fares x 10 measure above 0.5.
    """
    edges = sorted({low for low, _, _ in baseline} | {high for _, high, _ in baseline})
    # Cells (-inf, c1], (c1, c2], …, (ck, +inf). With 4+ distinct boundaries the cuts are the inner ones: the
    # outermost cells stay open, so values beyond the baseline's range (outliers, a small sample's extremes)
    # share the outer deciles. With fewer (a constant, a 0/1 flag, three values) that would leave one or two
    # cells, and 5 → 10 or a flag's 10 % → 90 % measured 0: every boundary is a cut there.
    # There the lowest cell is split at the smallest boundary too (strictly below it vs at it), so 5 → 3
    # shows as well as 5 → 10.
    few = len(edges) <= 3
    cuts = edges if few else edges[1:-1]

    def masses(buckets):
        cdf = [0.0] + ([_below(buckets, edges[0])] if few else []) + [_cdf(buckets, x) for x in cuts] + [1.0]
        return [max(0.0, b - a) for a, b in zip(cdf, cdf[1:])]

    p, q = masses(baseline), masses(current)
    m = [(a + b) / 2 for a, b in zip(p, q)]

    def kl(a, b):
        return sum(x * math.log2(x / y) for x, y in zip(a, b) if x > 0 and y > 0)

    return max(0.0, min(1.0, 0.5 * kl(p, m) + 0.5 * kl(q, m)))


def numeric_distances(gate: GateContract, baseline_stats, current_stats, which: str, label: str):
    """Decile JSD per numeric column with a threshold: ``(measurements, findings)``."""
    rows, findings = [], []
    for column, kind in sorted(gate.columns.items()):
        threshold = threshold_for(gate, column, which) if kind == "numeric" else None
        if not threshold:
            continue
        base, cur = quantile_buckets(baseline_stats, column), quantile_buckets(current_stats, column)
        if not base or not cur:
            continue
        value = round(decile_jsd(base, cur), 4)
        rows.append({"feature": column, "comparison": which, "value": value, "threshold": threshold,
                     "measure": "JENSEN_SHANNON_DIVERGENCE (deciles)"})
        if value > threshold:
            findings.append(Finding(label, column, "JENSEN_SHANNON_DIVERGENCE_HIGH", "ERROR",
                                    f"{which}: Jensen-Shannon divergence {value} on the deciles of "
                                    f"{'the train split' if which == 'skew' else label.split(' vs ')[-1]}, "
                                    f"above the threshold {threshold}",
                                    "distance below the configured threshold"))
    return rows, findings


def distance_findings(anomalies: anomalies_pb2.Anomalies, label: str) -> List[Finding]:
    """Skew/drift anomalies from a comparator run, renamed so the report says which comparison it was."""
    out = []
    for key, info in sorted(anomalies.anomaly_info.items()):
        feature = anomaly_column(key, info)
        for reason in info.reason:
            kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
            if "COMPARATOR" not in kind:
                continue
            out.append(Finding(label, feature, kind, anomalies_pb2.AnomalyInfo.Severity.Name(info.severity),
                               reason.description, "distance below the configured threshold"))
    return out


def measurements(anomalies: anomalies_pb2.Anomalies) -> List[Dict[str, Any]]:
    rows = []
    for info in anomalies.drift_skew_info:
        feature = ".".join(info.path.step)
        for kind, items in (("drift", info.drift_measurements), ("skew", info.skew_measurements)):
            for m in items:
                rows.append({"feature": feature, "comparison": kind, "value": round(m.value, 4),
                             "threshold": m.threshold,
                             "measure": anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type)})
    return rows


def decide(findings: List[Finding], validation: ValidationConfig) -> List[Finding]:
    """Mark allowed findings; return those that stop the run."""
    allowed = {(a.feature, a.anomaly) for a in validation.allow}
    floor = _SEVERITY_RANK["ERROR" if validation.fail_on == "error" else "WARNING"]
    blocking = []
    for f in findings:
        f.allowed = (f.feature, f.anomaly) in allowed
        if not f.allowed and _SEVERITY_RANK.get(f.severity, 2) >= floor:
            blocking.append(f)
    return blocking


def render_message(blocking: List[Finding], report: str, limit: int = 8) -> str:
    """One screen: what failed, where, what was expected, where the full report is, what to do."""
    lines = [f"data gate: {len(blocking)} problem(s) in the input data; nothing was trained or pushed."]
    for f in blocking[:limit]:
        lines.append(f"  - {f.feature} [{f.split}] {f.anomaly}: {f.description}")
        if f.expected:
            lines.append(f"      expected: {f.expected}")
        if f.schema_change:
            lines.append(f"      schema: {f.schema_change}")
    if len(blocking) > limit:
        lines.append(f"  … and {len(blocking) - limit} more (see the report)")
    lines.append(f"  full report: {report}")
    schema = "; or, where the data is right, change the schema line named above" if any(
        f.schema_change for f in blocking[:limit]) else ""
    lines.append(f"  fix the data{schema}; or allow a known anomaly under validation.allow in the config "
                 "(feature + anomaly type, with why)")
    return "\n".join(lines)


def page_head(title: str) -> str:
    """The start of a report page in the gate's style, up to ``<body>`` (``title`` is escaped)."""
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}.bad{color:#a31515}.ok{color:#176a2c}"
            "</style></head><body>")


def render_report(findings: List[Finding], blocking: List[Finding], distances: List[Dict[str, Any]],
                  stats_html: str, title: str = "Data gate",
                  comparisons: str = "Skew (train vs eval) and drift (vs last passed run)",
                  statistics: str = "Statistics (train vs eval vs the drift baseline)", fragment: bool = False,
                  verdicts: Tuple[str, str] = ("PASSED", "FAILED")) -> str:
    """The gate's page (``fragment``: its body only, for a page holding several, as ``sluice monitor``'s)."""
    def table(rows, header):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    verdict = verdicts[1] if blocking else verdicts[0]
    head = [page_head("sluice data report")]
    tag, ident = ("h2", "") if fragment else ("h1", "id='verdict' ")
    parts = [
        f"<{tag}>{html.escape(title)}: <span {ident}class='{'bad' if blocking else 'ok'}'>"
        f"{verdict}</span></{tag}>",
        "<h2>Anomalies</h2>",
        table([(f.split, f.feature, f.anomaly, f.severity, "allowed" if f.allowed else
                ("blocks" if f in blocking else "below fail_on"), f.description, f.expected) for f in findings],
              ["split", "feature", "anomaly", "severity", "gate", "found", "expected"]) if findings
        else "<p>No anomalies.</p>",
        f"<h2>{html.escape(comparisons)}</h2>",
        table([(d["feature"], d["comparison"], d["measure"], d["value"], d["threshold"]) for d in distances],
              ["feature", "comparison", "measure", "value", "threshold"]) if distances
        else "<p>No comparisons (first run, or no comparators configured).</p>",
        f"<h2>{html.escape(statistics)}</h2>",
        stats_html,
    ]
    return "\n".join(parts if fragment else head + parts + ["</body></html>"])


# ---------------------------------------------------------------------------------------------- TFX glue
STATS_FILE = "FeatureStats.pb"  # StatisticsGen's file in each split directory (TFX has no public constant)


def _load_stats(artifact: types.Artifact, split: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    import tensorflow_data_validation as tfdv

    return tfdv.load_stats_binary(aio.join(artifact_utils.get_split_uri([artifact], split), STATS_FILE))


def load_split_stats(uri: str, split: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """One split's statistics from an ``ExampleStatistics`` artifact known by its URI (an MLMD run record)."""
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = uri
    artifact.split_names = artifact_utils.encode_split_names([split])
    return _load_stats(artifact, split)


def _rows(stats: statistics_pb2.DatasetFeatureStatisticsList) -> int:
    return int(stats.datasets[0].num_examples) if stats.datasets else 0


def _stats_html(gate: GateContract, train, eval_, previous, against: str) -> str:
    """Per-feature statistics, offline (``stats_view``; TFDV's Facets view loads its scripts from the web)."""
    from sluice.components import stats_view

    try:
        return stats_view.render({"train": train, "eval": eval_, f"{against} (train)": previous},
                                 columns=sorted(gate.columns))
    except Exception as e:  # the statistics view is a convenience; the tables above are the verdict
        return f"<p>(statistics view unavailable: {html.escape(str(e))})</p>"


def compare_statistics(gate, compare, train, other, which: str, label: str):
    """Skew (``other`` = eval split, or served requests in ``sluice monitor``) or drift (``other`` = last passed
    run) of ``train``: TFDV's L-infinity comparators on string columns plus decile JSD on numeric ones.
    Returns ``(measurements, findings)``."""
    import tensorflow_data_validation as tfdv

    key = "serving_statistics" if which == "skew" else "previous_statistics"
    result = tfdv.validate_statistics(train, compare, **{key: other})
    baseline, current = (train, other) if which == "skew" else (other, train)
    rows, found = numeric_distances(gate, baseline, current, which, label)
    return ([d for d in measurements(result) if d["comparison"] == which] + rows,
            distance_findings(result, label) + found)


@dataclass(frozen=True)
class Baseline:
    """A passed verdict the drift check may compare with: its folder, its span, and the span it was itself
    compared with. From MLMD (``of_verdict``) or from the span ledger (``of_entry``)."""

    uri: str
    span: Optional[int]
    previous_span: Optional[int]

    @classmethod
    def of_verdict(cls, verdict: types.Artifact) -> "Baseline":
        def prop(name: str) -> Optional[int]:
            return verdict.get_int_custom_property(name) if verdict.has_custom_property(name) else None
        return cls(verdict.uri, prop(SPAN), prop(PREVIOUS_SPAN))

    @classmethod
    def of_entry(cls, entry: span_ledger.Entry) -> "Baseline":
        return cls(entry.verdict, entry.span, entry.previous_span)


def drift_baseline(gate: GateContract, span: int, baseline: Optional[Baseline]) -> Tuple[Optional[str], int]:
    """``(statistics file, its span)`` that this run's train split is compared with for drift, or ``(None, 0)``.

    The baseline is the newest verdict that passed (``LastPassedDataResolver``), or with spans the one of the
    span before (``PreviousSpanVerdict`` locally, the span ledger when compiled). Without spans that is the
    last passed run's data. With spans, when the baseline is of this very span (a re-run: another
    hyperparameter, a corrected file), the verdict's own baseline, which it kept (``PREVIOUS_STATS``), is used
    instead of comparing the span with itself."""
    if baseline is None:
        return None, 0
    if not (gate.spans and baseline.span == span):
        path, its_span = aio.join(baseline.uri, BASELINE_STATS), baseline.span or 0
    elif baseline.previous_span is None:  # this span again, and its first pass had nothing to compare with
        return None, 0
    else:
        path, its_span = aio.join(baseline.uri, PREVIOUS_STATS), baseline.previous_span
    if not fileio.exists(path):  # fail closed: passing unchecked would hide the drift the gate exists for
        raise BaselineGone(path, f"span {its_span}" if gate.spans else "the last passed run")
    return path, its_span


class BaselineGone(Exception):
    """The drift baseline's statistics file is gone (a pruned pipeline root, a moved output directory): the
    gate records a ``DRIFT_BASELINE_MISSING`` finding, which stops the run unless ``validation.allow`` names
    it (feature ``(dataset)``)."""

    def __init__(self, path: str, of: str) -> None:
        self.path, self.of = path, of
        super().__init__(f"{path} ({of})")


def baseline_gone_finding(gone: BaselineGone) -> Finding:
    return Finding("train", DATASET, MISSING_BASELINE, "ERROR",
                   f"drift is unchecked: the statistics of {gone.of}, which this run's data is compared with, are "
                   f"gone ({gone.path})",
                   f"restore them (was the pipeline root pruned, the output directory moved?); to go on without a "
                   f"drift check, allow {{feature: '{DATASET}', anomaly: {MISSING_BASELINE}, why: …}} under "
                   "validation.allow (the next run compares with this one's statistics)")


def ledger_baseline(gate: GateContract, span: int) -> Optional[Baseline]:
    """The drift baseline from the span ledger (compiled pipelines): the passed verdict of the span before."""
    found = pick_previous(span_ledger.passed(span_ledger.entries(gate.span_ledger, gate.data_source)), span)
    return Baseline.of_entry(found.data) if found else None


def _execution_name(out_uri: str) -> str:
    """A name for this execution's report folder: the artifact's id directory in TFX's local layout
    (``…/DataGate/verdict/<id>``), the task directory on Kubeflow/Vertex (``…/<job>/DataGate_<id>/verdict``)."""
    name = posixpath.basename(out_uri.rstrip("/"))
    return name if name.isdigit() else posixpath.basename(posixpath.dirname(out_uri.rstrip("/")))


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        import tensorflow_data_validation as tfdv

        gate = GateContract.parse(exec_properties["gate"])
        schema_uri = artifact_utils.get_single_uri(input_dict["schema"])
        schema = tfdv.load_schema_text(aio.join(schema_uri, "schema.pbtxt"))
        schema_text = aio.read_text(aio.join(schema_uri, "schema.pbtxt"))
        anomalies_artifact = artifact_utils.get_single_instance(input_dict["anomalies"])
        stats_artifact = artifact_utils.get_single_instance(input_dict["statistics"])
        out_uri = artifact_utils.get_single_uri(output_dict["verdict"])
        fileio.makedirs(out_uri)

        findings: List[Finding] = []
        for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
            path = aio.join(artifact_utils.get_split_uri([anomalies_artifact], split), "SchemaDiff.pb")
            findings += findings_from_anomalies(anomalies_pb2.Anomalies.FromString(aio.read_bytes(path)), split,
                                                schema, schema_text)

        train = _load_stats(stats_artifact, "train")
        eval_ = _load_stats(stats_artifact, "eval")
        examples = (input_dict.get("examples") or [None])[0]
        span = span_of(examples) if examples is not None else 0
        if gate.span_ledger:
            baseline = ledger_baseline(gate, span)
        else:
            resolved = (input_dict.get("baseline") or [None])[0]
            baseline = Baseline.of_verdict(resolved) if resolved is not None else None
        try:
            previous_file, previous_span = drift_baseline(gate, span, baseline)
        except BaselineGone as gone:
            previous_file, previous_span = None, 0
            findings.append(baseline_gone_finding(gone))
        previous = tfdv.load_stats_binary(previous_file) if previous_file else None
        findings += content_findings(gate, "train", train, previous) + content_findings(gate, "eval", eval_, previous)
        compare = comparator_schema(schema, gate)
        distances, found = compare_statistics(gate, compare, train, eval_, "skew", "train vs eval")
        findings += found
        against = f"span {previous_span}" if gate.spans else "last passed run"
        if previous is not None:
            rows, found = compare_statistics(gate, compare, train, previous, "drift", f"train vs {against}")
            distances, findings = distances + rows, findings + found

        blocking = decide(findings, gate.validation)
        # TFX deletes a failed execution's output directory, so the report also goes where it survives.
        report_dir = aio.join(exec_properties.get("report_root") or out_uri, _execution_name(out_uri))
        report = aio.join(report_dir, REPORT_FILE)
        aio.write_text(report, render_report(findings, blocking, distances, _stats_html(gate, train, eval_, previous, against)))
        verdict = {"passed": not blocking, "findings": [asdict(f) for f in findings], "distances": distances,
                   "report": report, "rows": {"train": _rows(train), "eval": _rows(eval_)}}
        if gate.spans:
            verdict["span"], verdict["drift_baseline_span"] = span, (previous_span if previous is not None else None)
        for directory in {out_uri, report_dir}:
            verdicts.write(directory, "data", verdict, passed=not blocking)
        if report_dir != out_uri:
            aio.copy_file(report, aio.join(out_uri, REPORT_FILE))
        if blocking:
            raise DataGateFailed(render_message(blocking, report), report)
        aio.copy_file(aio.join(artifact_utils.get_split_uri([stats_artifact], "train"), STATS_FILE),
                      aio.join(out_uri, BASELINE_STATS))
        verdict_artifact = artifact_utils.get_single_instance(output_dict["verdict"])
        verdict_artifact.set_int_custom_property("passed", 1)
        verdict_artifact.set_int_custom_property("anomalies", len(findings))
        # What the span window (``span_window``) and the next run's drift check read back.
        verdict_artifact.set_int_custom_property(SPAN, span)
        if examples is not None:
            verdict_artifact.set_int_custom_property(EXAMPLES_ID, examples.id)
        verdict_artifact.set_string_custom_property(DATA_SOURCE, gate.data_source)
        if previous_file and gate.spans:  # what a re-run of this span compares with (``drift_baseline``)
            aio.copy_file(previous_file, aio.join(out_uri, PREVIOUS_STATS))
            verdict_artifact.set_int_custom_property(PREVIOUS_SPAN, previous_span)
        if gate.span_ledger and examples is not None:  # last: a recorded verdict has its statistics in place
            span_ledger.record(gate.span_ledger, span_ledger.Entry(
                span=span, examples=examples.uri, verdict=out_uri, data_source=gate.data_source, written_ns=0,
                previous_span=previous_span if previous_file else None))


class DataGateSpec(types.ComponentSpec):
    PARAMETERS = {
        "gate": ExecutionParameter(type=str),
        "report_root": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics),
        "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        "schema": ChannelParameter(type=standard_artifacts.Schema),
        "baseline": ChannelParameter(type=DataVerdict, optional=True),
        "examples": ChannelParameter(type=standard_artifacts.Examples, optional=True),
        # read for its MLMD id only: a passed verdict names the Examples it passed (the span window's filter)
    }
    OUTPUTS = {"verdict": ChannelParameter(type=DataVerdict)}


class DataGate(base_component.BaseComponent):
    """``DataGate(statistics, anomalies, schema, baseline, gate=GateContract JSON)`` -> ``verdict``."""

    SPEC_CLASS = DataGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, statistics, anomalies, schema, gate: str, baseline: Optional[Any] = None,
                 report_root: Optional[str] = None, examples: Optional[Any] = None):
        verdict = types.Channel(type=DataVerdict)
        super().__init__(spec=DataGateSpec(statistics=statistics, anomalies=anomalies, schema=schema,
                                           baseline=baseline, gate=gate, examples=examples,
                                           report_root=report_root, verdict=verdict))
