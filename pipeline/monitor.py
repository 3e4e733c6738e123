"""``sluice monitor``: is what the endpoint receives still what the model was trained on?

Reads the ``PredictionLog`` files a server wrote (``sluice serve --log-requests``, or TF Serving with a
collector that writes the same records), keeps the configured model's requests, and for each served version
finds the run that pushed it in the output directory's ML Metadata (the first run whose Pusher pushed that
version; later identical runs only reuse it). The config must be the one that pushed it (its fingerprint is
in the version's ``sluice_push.json``; ``--data`` as that run was given it): the thresholds and features
judged are the config's, the schema the one that run imported. Then, with the
DataGate's own code and thresholds (``components/data_gate.py``: TFDV's L-infinity comparator on string
columns, decile Jensen-Shannon on numeric ones, ``validation.skew``/``comparators``/``allow``/``fail_on``):

- serving skew per feature: TFDV statistics of the logged requests (turned back into tf.Examples and decoded
  as StatisticsGen decodes CsvExampleGen's) against that run's train statistics;
- missing values: each feature's share of rows without it, served vs train (L-infinity on present/absent,
  with the categorical threshold), so a client that stops sending a feature is caught;
- values the schema refuses: the served statistics validated against that schema restricted to the model's
  features, in its ``SERVING`` environment where it names one (unseen categories, out-of-domain numbers,
  wrong types);
- predictions: the logged responses against the same model's predictions on that run's eval split through
  ``serving_default`` (as the Evaluator saw them): decile JSD for a number, class-share L-infinity for
  classes, with that kind's skew threshold.

``serving_raw`` requests carry every feature, an empty optional cell as its fill value: the model really
receives that value, so where training rows were often empty it is reported as what it is, a skew.

When the logs hold versions served side by side (a canary next to stable, ``sluice serve --traffic``), their
predictions in the time both were served are also compared, pairwise (``compare_versions``).

Writes ``monitor.html`` (offline, like the other pages) and ``monitor.json``; exit 3 when anything is
flagged, 0 when not. At most ``max_rows`` rows per version are kept (a uniform sample of the logs, seeded).
"""

from __future__ import annotations

import html
import json
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from sluice.pipeline.errors import SluiceError

PREDICTION = "(prediction)"  # the served outputs' row in the comparison; parentheses: never a CSV column here
MISSING_SHARE_SHIFT = "MISSING_SHARE_SHIFT"
PREDICTION_SHIFT = "PREDICTION_DISTRIBUTION_SHIFT"
DEFAULT_MAX_ROWS = 100_000


class Reservoir:
    """A uniform sample of at most ``limit`` items of a stream (seeded: the same logs, the same sample)."""

    def __init__(self, limit: int, seed: int) -> None:
        self.limit, self.seen, self.items = limit, 0, []
        self._random = random.Random(seed)

    def extend(self, items: Sequence[Any]) -> None:
        for item in items:
            self.seen += 1
            if len(self.items) < self.limit:
                self.items.append(item)
            else:
                slot = self._random.randrange(self.seen)
                if slot < self.limit:
                    self.items[slot] = item


@dataclass
class Served:
    """What the logs hold for one model version: a uniform sample of at most ``limit`` of the requests' rows
    (as tf.Examples) and of the predictions (one per answered row; a response without the model's output,
    e.g. under a gRPC ``output_filter``, still gives its rows), and what was seen in all of them."""

    version: int
    limit: int = DEFAULT_MAX_ROWS
    requests: int = 0
    signatures: Counter = field(default_factory=Counter)
    first: float = 0.0
    last: float = 0.0
    sampling_rates: set = field(default_factory=set)

    def __post_init__(self) -> None:
        self._rows = Reservoir(self.limit, 0)
        self._predictions = Reservoir(self.limit, 1)
        """``(time logged, prediction)`` pairs."""

    def add(self, examples: List[bytes], predicted: List[Any], stamp: float = 0.0) -> None:
        self._rows.extend(examples)
        self._predictions.extend([(stamp, p) for p in predicted])

    def predictions_between(self, start: float, end: float) -> List[Any]:
        """The sampled predictions logged from ``start`` to ``end`` (seconds since the epoch)."""
        return [p for t, p in self._predictions.items if start <= t <= end]

    @property
    def examples(self) -> List[bytes]:
        return self._rows.items

    @property
    def predictions(self) -> List[Any]:
        return [p for _, p in self._predictions.items]

    @property
    def rows(self) -> int:
        return self._rows.seen


def _feature(values: np.ndarray, i: int) -> Any:
    import tensorflow as tf

    value = values[i]
    if isinstance(value, bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    if np.issubdtype(values.dtype, np.integer):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))


def examples_of(request: Any, columns: Sequence[str]) -> List[bytes]:
    """The rows of one logged ``PredictRequest`` as serialized tf.Examples: ``examples`` as sent
    (``serving_default``), or one Example per row of raw inputs keyed by column or its request key
    (``serving_raw``; an input that is no configured column is not a feature and is left out)."""
    import tensorflow as tf

    from sluice.components.features import request_key

    inputs = request.inputs
    if set(inputs) == {"examples"}:
        return [bytes(x) for x in tf.make_ndarray(inputs["examples"]).reshape(-1)]
    arrays = {c: tf.make_ndarray(inputs[request_key(c, inputs)]).reshape(-1)
              for c in columns if request_key(c, inputs) in inputs}
    n = max((len(a) for a in arrays.values()), default=0)
    return [tf.train.Example(features=tf.train.Features(feature={
        c: _feature(a, i) for c, a in arrays.items() if i < len(a)})).SerializeToString() for i in range(n)]


def predictions(outputs: Dict[str, np.ndarray]) -> List[Any]:
    """One value per row of a response's outputs: the class name for a multi-class model, else the (first)
    output's first column."""
    if "classes" in outputs:
        return [c.decode() if isinstance(c, bytes) else str(c) for c in np.asarray(outputs["classes"]).reshape(-1)]
    values = np.asarray(outputs["outputs" if "outputs" in outputs else sorted(outputs)[0]])
    return [float(v) for v in values.reshape(values.shape[0], -1)[:, 0]] if values.size else []


def read_served(logs_dir: str, model: str, columns: Sequence[str], limit: int = DEFAULT_MAX_ROWS
                ) -> Tuple[Dict[int, Served], Counter]:
    """The logged requests of ``model`` by version; and how many records each other model name had."""
    import tensorflow as tf

    from sluice.serving.request_log import iter_logs

    by_version: Dict[int, Served] = {}
    others: Counter = Counter()
    for log in iter_logs(logs_dir):
        spec = log.log_metadata.model_spec
        if not log.HasField("predict_log") or spec.name != model:
            others[spec.name or "(not a PredictionLog of a predict call)"] += 1
            continue
        version = int(spec.version.value or log.predict_log.response.model_spec.version.value)
        served = by_version.setdefault(version, Served(version, limit))
        outputs = {k: tf.make_ndarray(v) for k, v in log.predict_log.response.outputs.items()}
        stamp = float(log.log_metadata.timestamp_secs)
        served.add(examples_of(log.predict_log.request, columns), predictions(outputs) if outputs else [], stamp)
        served.requests += 1
        served.signatures[spec.signature_name or "serving_default"] += 1
        served.first = min(served.first or stamp, stamp)
        served.last = max(served.last, stamp)
        served.sampling_rates.add(round(log.log_metadata.sampling_config.sampling_rate, 6))
    return by_version, others


def statistics(examples: Sequence[bytes]):
    """TFDV statistics of serialized tf.Examples, decoded as StatisticsGen decodes CsvExampleGen's output."""
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl
    from tfx_bsl.coders import example_coder

    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(list(examples))
    return stats_impl.generate_statistics_in_memory(batch, tfdv.StatsOptions())


def _values(values: Sequence[Any]) -> List[bytes]:
    """One-feature tf.Examples holding ``values`` (predictions), for the same statistics."""
    import tensorflow as tf

    array = np.asarray(values)
    return [tf.train.Example(features=tf.train.Features(feature={PREDICTION: _feature(array, i)})).SerializeToString()
            for i in range(len(array))]


@dataclass
class PushedRun:
    """What the check reads of the run that pushed a version: its push destination and the URIs of the data
    the model came from (train statistics, the examples it was evaluated on, transform graph, schema)."""

    pushed_destination: str
    statistics: str
    examples: str
    transform_graph: str
    schema: Optional[str]
    run_id: Optional[str] = None
    """The local run's id (ML Metadata); None when found through the serving directory alone."""

    @classmethod
    def from_push_record(cls, destination: str, run_id: Optional[str] = None) -> Optional["PushedRun"]:
        """From the version's ``sluice_push.json`` (``lineage_uris``, written by the Pusher); None for a
        version pushed before the record named them."""
        import tensorflow as tf

        from sluice.components import artifact_io as aio
        from sluice.components.pusher import PUSH_RECORD

        path = aio.join(destination, PUSH_RECORD)
        try:
            uris = aio.read_json(path).get("lineage_uris") if tf.io.gfile.exists(path) else None
        except (ValueError, AttributeError, tf.errors.OpError):
            raise SluiceError(path, "is not a push record sluice wrote (not a JSON object)",
                              "monitor versions pushed by sluice's Pusher, with their sluice_push.json intact")
        if not isinstance(uris, dict) or not all(isinstance(uris.get(k), str) for k in
                                                 ("statistics", "examples", "transform_graph")):
            return None
        return cls(destination, uris["statistics"], uris["examples"], uris["transform_graph"], uris.get("schema"),
                   run_id)

    @classmethod
    def from_record(cls, record: Any) -> "PushedRun":
        """From a local run's ML Metadata (``mlmd.RunRecord``): its push record where it names the URIs, else
        the run's own nodes (a version pushed before the record named them)."""
        found = cls.from_push_record(record.pushed_destination, record.run_id)
        if found is not None:
            return found
        return cls(record.pushed_destination, record.outputs["StatisticsGen"]["ExampleStatistics"],
                   record.outputs["CsvExampleGen"]["Examples"], record.inputs["Trainer"]["TransformGraph"],
                   record.outputs.get("ImportSchemaGen", {}).get("Schema"), record.run_id)


def pushing_run(output: Path, pipeline: str, version: int) -> Optional[PushedRun]:
    """The run that pushed ``version`` in ``output``'s ML Metadata: the first with that pushed version (later
    runs reused it from the cache and report the same version)."""
    from sluice.pipeline.mlmd import all_runs

    runs = [r for r in all_runs(output / "metadata.sqlite", pipeline) if r.pushed and r.pushed_version == str(version)]
    return PushedRun.from_record(runs[0]) if runs else None


def served_version(serving: str, model: str, version: int) -> Optional[PushedRun]:
    """The version in a serving directory (``<serving>/<model>/<version>``, as the Pusher writes it, on any
    filesystem), read from its push record alone: for pipelines whose ML Metadata is not here (Vertex)."""
    from sluice.components import artifact_io as aio

    return PushedRun.from_push_record(aio.join(serving, model, str(version)))


def eval_predictions(cfg: Any, record: PushedRun, limit: int = 2000) -> List[Any]:
    """The pushed model's predictions on (up to ``limit`` rows of) its run's eval split, through
    ``serving_default`` (serialized tf.Examples: an empty cell stays absent, as the Evaluator saw them)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from sluice.components.export.rows import read_rows
    from sluice.components.trainer.signatures import serving_columns

    contract = cfg.export_contract()
    spec = serving_columns(tft.TFTransformOutput(record.transform_graph), contract)
    rows = read_rows(record.examples, "eval", contract.features, spec, limit)
    signature = tf.saved_model.load(record.pushed_destination).signatures["serving_default"]
    [key] = signature.structured_input_signature[1]
    outputs = signature(**{key: tf.constant(rows.serialized)})
    return predictions({k: v.numpy() for k, v in outputs.items()})


def _prediction_distance(gate: Any, served: List[Any], reference: List[Any]) -> Tuple[Dict[str, Any], bool]:
    """Decile JSD (numbers) or class-share L-infinity (class names) of served vs eval-split predictions."""
    from sluice.components import data_gate

    if isinstance(reference[0], str):
        threshold = gate.validation.skew.categorical_linf
        a, b = Counter(served), Counter(reference)
        value = max(abs(a[k] / len(served) - b[k] / len(reference)) for k in set(a) | set(b))
        measure = "L_INFINITY (class shares)"
    else:
        threshold = gate.validation.skew.numeric_jsd
        base = data_gate.quantile_buckets(statistics(_values(reference)), PREDICTION)
        cur = data_gate.quantile_buckets(statistics(_values(served)), PREDICTION)
        value = data_gate.decile_jsd(base, cur)
        measure = "JENSEN_SHANNON_DIVERGENCE (deciles)"
    row = {"feature": PREDICTION, "comparison": "skew", "measure": measure, "value": round(float(value), 4),
           "threshold": threshold}
    return row, bool(threshold) and value > threshold


def _missing_share(stats: Any, column: str) -> float:
    """The share of rows without a value of ``column`` (1 when no row has one)."""
    from sluice.components import data_gate

    feature = data_gate.feature_stats(stats).get(column)
    common = data_gate.common_stats(feature) if feature is not None else None
    if common is None:
        return 1.0
    total = common.num_missing + common.num_non_missing
    return common.num_missing / total if total else 1.0


def missing_shares(gate: Any, train: Any, current: Any, label: str):
    """Per feature, the share of rows without a value, served vs train: ``(rows, findings)``."""
    from sluice.components import data_gate

    threshold = gate.validation.skew.categorical_linf
    rows, findings = [], []
    for column in sorted(gate.columns):
        before, now = _missing_share(train, column), _missing_share(current, column)
        value = round(abs(now - before), 4)
        rows.append({"feature": column, "comparison": "skew", "measure": "L_INFINITY (share of rows missing it)",
                     "value": value, "threshold": threshold})
        if threshold and value > threshold:
            findings.append(data_gate.Finding(label, column, MISSING_SHARE_SHIFT, "ERROR",
                                              f"{now:.1%} of served rows lack it, {before:.1%} of train rows did",
                                              f"a share within {threshold} of train's"))
    return rows, findings


def _model_features(cfg: Any) -> List[str]:
    return [f.name for f in cfg.features]


def run_schema(record: PushedRun, fallback: Path) -> Tuple[Any, str]:
    """The schema the pushing run imported (ImportSchemaGen's copy of the curated file: what the model was
    trained and gated with), else the config's file; ``(schema proto, its text)``."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv

    from sluice.components import artifact_io as aio

    path = aio.join(record.schema, "schema.pbtxt") if record.schema else None
    path = path if path and tf.io.gfile.exists(path) else str(fallback)
    return tfdv.load_schema_text(path), aio.read_text(path)


def serving_environment(schema: Any) -> Optional[str]:
    """``SERVING`` where the schema names environments; None where it names none (a schema drafted by
    ``sluice init``), since TFDV refuses an environment the schema lacks."""
    return "SERVING" if "SERVING" in schema.default_environment else None


def check_version(cfg: Any, gate: Any, schema: Any, schema_text: str, served: Served, record: PushedRun
                  ) -> Dict[str, Any]:
    """Findings, distances and counts for one served version against the run that pushed it."""
    import tensorflow_data_validation as tfdv

    from sluice.components import data_gate

    train = data_gate.load_split_stats(record.statistics, "train")
    # What the model takes: its features (the label and unused CSV columns are not sent to it; a
    # serving_default client may still send them inside its tf.Examples, where the model ignores them).
    features = set(_model_features(cfg))
    try:
        current = statistics(served.examples)
    except RuntimeError as e:  # tfx_bsl: one feature with int values in one Example and floats in another
        raise SluiceError(f"logged requests of version {served.version}", f"cannot be decoded as tf.Examples: {e}",
                          "a client sends one feature with different types (e.g. 3 and 3.0); fix the client")
    for dataset in current.datasets:
        kept = [f for f in dataset.features if ".".join(f.path.step) in features]
        del dataset.features[:]
        dataset.features.extend(kept)
    served_gate = gate.model_copy(update={"columns": {c: k for c, k in gate.columns.items() if c in features}})
    served_schema = type(schema)()
    served_schema.CopyFrom(schema)
    del served_schema.feature[:]
    served_schema.feature.extend(f for f in schema.feature if f.name in features)
    label = f"v{served.version} served vs train"
    distances, findings = data_gate.compare_statistics(
        served_gate, data_gate.comparator_schema(served_schema, served_gate), train, current, "skew", label)
    rows, found = missing_shares(served_gate, train, current, label)
    distances, findings = distances + rows, findings + found
    anomalies = tfdv.validate_statistics(current, served_schema, environment=serving_environment(served_schema))
    findings += data_gate.findings_from_anomalies(anomalies, label, served_schema, schema_text)
    predicted = served.predictions
    kinds = {type(p) for p in predicted}
    prediction_note = None
    if predicted and len(kinds) == 1:
        reference = eval_predictions(cfg, record)
        if isinstance(reference[0], str) == (kinds == {str}):
            row, crossed = _prediction_distance(gate, predicted, reference)
            distances.append(row)
            if crossed:
                findings.append(data_gate.Finding(
                    label, PREDICTION, PREDICTION_SHIFT, "ERROR",
                    f"served predictions vs the same model's on its eval split: {row['measure']} {row['value']}",
                    f"at most {row['threshold']}"))
        else:
            prediction_note = "the logged outputs are not the model's prediction (a client's output_filter)"
    else:
        prediction_note = "no comparable predictions in the logs (output filters, or mixed output kinds)"
    blocking = data_gate.decide(findings, gate.validation)
    return {"version": served.version, "run_id": record.run_id, "requests": served.requests,
            "rows": served.rows, "rows_compared": len(served.examples), "signatures": dict(served.signatures),
            "logged_from": served.first, "logged_to": served.last, "sampling_rates": sorted(served.sampling_rates),
            "passed": not blocking, "flagged": sorted({f.feature for f in blocking} - {PREDICTION}),
            "prediction_shift": any(f.feature == PREDICTION for f in blocking), "prediction_note": prediction_note,
            "findings": [asdict(f) for f in findings], "blocking": [asdict(f) for f in blocking],
            "distances": distances, "_stats": (train, current)}


MIN_COMPARED = 100
"""Predictions each version needs before two versions are compared: on fewer, equal distributions measure as
far apart as different ones (three rows of N(10, 2) against 2,000 measured 0.28-0.45)."""


def _distinct_share_distance(a: List[Any], b: List[Any]) -> float:
    """L-infinity of the shares of each value (rounded to 6 digits): for predictions with few distinct values,
    where deciles have no inner edge and measure 0 between a constant 5 and a constant 10."""
    ca, cb = Counter(round(float(x), 6) for x in a), Counter(round(float(x), 6) for x in b)
    return max(abs(ca[k] / len(a) - cb[k] / len(b)) for k in set(ca) | set(cb))


def compare_versions(gate: Any, by_version: Dict[int, Served]) -> List[Dict[str, Any]]:
    """The prediction distributions of versions served at the same time (a canary next to stable), pairwise,
    on the predictions logged while both were served. With the traffic split at random both saw the same
    inputs then, so a distance above the skew threshold says the newer model answers differently, not that the
    traffic moved. Versions served one after the other (their logged periods share no second) are not
    compared, nor are logs without timestamps; a hot-swap push's shared second rarely holds ``MIN_COMPARED``
    predictions of each."""
    rows = []
    versions = sorted(v for v in by_version if by_version[v].first > 0)
    for i, older in enumerate(versions):
        for newer in versions[i + 1:]:
            a, b = by_version[older], by_version[newer]
            start, end = max(a.first, b.first), min(a.last, b.last)
            if end < start:  # (stamps are whole seconds: a shared second counts, if it holds enough rows)
                continue
            before, after = a.predictions_between(start, end), b.predictions_between(start, end)
            row: Dict[str, Any] = {"older": older, "newer": newer, "shifted": False, "value": None,
                                   "threshold": None, "measure": None, "rows": [len(before), len(after)],
                                   "window": [start, end], "note": None}
            kinds = {type(p) for p in before} | {type(p) for p in after}
            if len(kinds) != 1:
                row["note"] = "no comparable predictions in both versions' logs"
            elif min(row["rows"]) < MIN_COMPARED:
                row["note"] = f"too few predictions to compare ({row['rows'][0]} and {row['rows'][1]}; " \
                              f"at least {MIN_COMPARED} each)"
            elif kinds == {str} or min(len(set(before)), len(set(after))) >= 10:
                # Deciles of each side as the baseline in turn: one direction alone is blind where the
                # baseline's deciles cannot place the other side's mass.
                forward, crossed = _prediction_distance(gate, after, before)
                backward, crossed_back = _prediction_distance(gate, before, after)
                worst = max(forward, backward, key=lambda r: r["value"])
                row.update(value=worst["value"], threshold=worst["threshold"], measure=worst["measure"],
                           shifted=crossed or crossed_back)
            else:
                threshold = gate.validation.skew.categorical_linf
                value = round(_distinct_share_distance(before, after), 4)
                row.update(value=value, threshold=threshold, measure="L_INFINITY (shares of each value)",
                           shifted=bool(threshold) and value > threshold)
            if row["note"] is None and not row["threshold"]:
                row["note"] = "not judged (no skew threshold in the config)"
            rows.append(row)
    return rows


def render(result: Dict[str, Any], stats_html: Dict[int, str]) -> str:
    from sluice.components import data_gate

    parts = [data_gate.page_head(f"sluice monitor: {result['model']}"),
             f"<h1>Serving monitor, {html.escape(result['model'])}: <span id='verdict' class="
             f"'{'ok' if result['passed'] else 'bad'}'>{'PASSED' if result['passed'] else 'FLAGGED'}</span></h1>",
             f"<p>{result['records']} logged requests from {html.escape(result['logs'])}; records of other models "
             f"skipped: {html.escape(json.dumps(result['other_models']))}.</p>"]
    for v in result["versions"]:
        findings = [data_gate.Finding(**f) for f in v["findings"]]
        blocking = [data_gate.Finding(**f) for f in v["blocking"]]
        title = (f"Version {v['version']} (pushed by run {v['run_id']}; {v['rows']} rows in {v['requests']} "
                 f"requests, {v['rows_compared']} compared)")
        parts.append(data_gate.render_report(
            findings, blocking, v["distances"], stats_html.get(v["version"], ""), title=title,
            comparisons="Served vs train (skew, missing shares) and predictions vs eval split",
            statistics="Statistics (train vs served)", fragment=True, verdicts=("PASSED", "FLAGGED")))
        if v["prediction_note"]:
            parts.append(f"<p>Predictions not compared: {html.escape(v['prediction_note'])}.</p>")
    if result["between_versions"]:
        parts.append("<h2>Versions side by side (predictions, newer vs older)</h2><table><tr><th>older</th>"
                     "<th>newer</th><th>measure</th><th>value</th><th>threshold</th><th>verdict</th></tr>")
        for c in result["between_versions"]:
            verdict = c["note"] or ("SHIFTED" if c["shifted"] else "ok")
            cells = [html.escape(str(c[k])) if c[k] is not None else "—" for k in ("measure", "value", "threshold")]
            parts.append(f"<tr><td>{c['older']}</td><td>{c['newer']}</td><td>{cells[0]}</td>"
                         f"<td>{cells[1]}</td><td>{cells[2]}</td><td class='{'bad' if c['shifted'] else 'ok'}'>"
                         f"{html.escape(verdict)}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _config_hash(record: PushedRun) -> Optional[str]:
    import tensorflow as tf

    from sluice.components import artifact_io as aio

    path = aio.join(record.pushed_destination, "sluice_push.json")
    return aio.read_json(path).get("config_hash") if tf.io.gfile.exists(path) else None


def monitor(config_path: str, logs: str, output: str, report: Optional[str] = None,
            max_rows: int = DEFAULT_MAX_ROWS, data: Optional[str] = None,
            serving: Optional[str] = None) -> Dict[str, Any]:
    """The check, for the CLI: the result dict (``passed``, per version findings) and the pages written.
    ``data``: the ``--data`` the pushing run was given (it is part of the config's fingerprint). ``serving``:
    find each version in that serving directory by its push record, not in ``output``'s ML Metadata."""
    import tensorflow as tf

    from sluice.components import stats_view
    from sluice.pipeline.config import load_config

    cfg = load_config(config_path)
    if data:
        cfg = cfg.with_data_path(data)
    if not tf.io.gfile.isdir(logs):
        raise SluiceError(f"--logs {logs}", "no such directory", "pass the directory given to --log-requests")
    gate = cfg.gate_contract()
    by_version, others = read_served(logs, cfg.model_name, _model_features(cfg), max_rows)
    if not by_version:
        seen = ", ".join(f"{name} ({n})" for name, n in others.most_common(5)) or "none"
        raise SluiceError(f"--logs {logs}", f"no logged requests of model {cfg.model_name!r}; records seen: {seen}",
                          "serve with `sluice serve --log-requests DIR` and send traffic, or pass the config of "
                          "the model those logs are for")
    out_dir = Path(output)
    versions, stats_pages = [], {}
    for version, served in sorted(by_version.items()):
        if serving:
            record = served_version(serving, cfg.model_name, version)
            if record is None:
                raise SluiceError(f"--serving {serving}", f"version {version} of {cfg.model_name} (the logged "
                                  "requests' version) is not there with a push record naming its data",
                                  "pass the serving directory the pipeline pushed to (e.g. gs://BUCKET/root/"
                                  "serving), or --output for a local run's ML Metadata")
        else:
            record = pushing_run(out_dir, cfg.name, version)
        if record is None:
            raise SluiceError(f"--output {output}", f"no run in its ML Metadata pushed version {version} of "
                              f"{cfg.model_name} (the logged requests' version)",
                              "pass the output directory of the pipeline that pushed the served model, or "
                              "--serving DIR for a pipeline run elsewhere (Kubeflow/Vertex)")
        if not tf.io.gfile.exists(record.pushed_destination):
            raise SluiceError(f"version {version}", f"{record.pushed_destination} is gone (pruned from serving?)",
                              "monitor logs of versions still in the serving directory")
        pushed_with = _config_hash(record)
        if pushed_with and pushed_with != cfg.fingerprint():
            raise SluiceError(f"--config {config_path}", f"version {version} was pushed with config {pushed_with}; "
                              f"this one is {cfg.fingerprint()}, whose features and thresholds may differ",
                              "pass the config that pushed the served version (e.g. from version control), "
                              "and --data as that run was given it, if it was")
        schema, schema_text = run_schema(record, cfg.schema_file)
        checked = check_version(cfg, gate, schema, schema_text, served, record)
        train, current = checked.pop("_stats")
        try:
            stats_pages[version] = stats_view.render({"train": train, f"served v{version}": current},
                                                     columns=_model_features(cfg))
        except Exception as e:  # noqa: BLE001 - the statistics view is a convenience; the tables are the verdict
            stats_pages[version] = f"<p>(statistics view unavailable: {html.escape(str(e))})</p>"
        versions.append(checked)
    between = compare_versions(gate, by_version)
    result = {"model": cfg.model_name, "logs": logs, "records": sum(v.requests for v in by_version.values()),
              "other_models": dict(others), "versions": versions, "between_versions": between,
              "passed": all(v["passed"] for v in versions) and not any(c["shifted"] for c in between),
              "flagged": sorted({f for v in versions for f in v["flagged"]}),
              "prediction_shift": any(v["prediction_shift"] for v in versions) or any(c["shifted"] for c in between)}
    report_dir = Path(report) if report else out_dir / "reports" / f"monitor-{time.strftime('%Y%m%d-%H%M%S')}"
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "monitor.html").write_text(render(result, stats_pages))
    result["report"] = str(report_dir / "monitor.html")
    (report_dir / "monitor.json").write_text(json.dumps(result, indent=1, sort_keys=True, default=str))
    return result


def summary_lines(result: Dict[str, Any]) -> List[str]:
    flagged = result["flagged"] + (["predictions"] if result["prediction_shift"] else [])
    lines = [f"sluice monitor: {result['model']}, {result['records']} logged requests: "
             f"{'nothing flagged' if result['passed'] else 'FLAGGED ' + ', '.join(flagged)}"]
    for v in result["versions"]:
        lines.append(f"  version {v['version']} (pushed by run {v['run_id']}): {v['rows']} rows in "
                     f"{v['requests']} requests")
        for f in v["blocking"][:8]:
            lines.append(f"    - {f['feature']} {f['anomaly']}: {f['description']}")
        if len(v["blocking"]) > 8:
            lines.append(f"    … and {len(v['blocking']) - 8} more (see the report)")
        worst = sorted((d for d in v["distances"] if d["threshold"]), key=lambda d: -d["value"] / d["threshold"])[:3]
        for d in worst:
            lines.append(f"    {d['feature']}: {d['measure']} {d['value']} (threshold {d['threshold']})")
    for c in result.get("between_versions", []):
        state = c["note"] or (f"{c['measure']} {c['value']} (threshold {c['threshold']})"
                              + (" SHIFTED" if c["shifted"] else ""))
        lines.append(f"  predictions of version {c['newer']} vs {c['older']}: {state}")
    lines.append(f"  report: {result['report']}")
    return lines
