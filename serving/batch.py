"""Batch inference without an endpoint: CSV rows in, predictions out, on Beam (``sluice predict --output``).

Why it looks like this:

- **The training path, not the request path.** Each CSV row becomes the ``tf.Example`` CsvExampleGen would
  have made of it (TFX's cell handlers: ``int(cell)``, ``float(cell)``, the cell's bytes; an empty cell is the
  feature with no value, which Transform imputes as in training and TFDV counts as it counted the training
  data) and goes through ``serving_default``. ``serving_raw`` would need a fill value for every empty cell,
  which the model would take as a real value: the skew ``sluice monitor`` finds in ``serving_raw`` traffic.
- **Beam's RunInference** batches the rows, loads the model once per worker and runs on any runner; the
  model handler here calls the pushed SavedModel's signature. The same Beam profiles as the pipeline apply
  (direct ``in_memory`` / ``multi_processing``; Dataflow is for the compiled pipeline).
- **Nothing is dropped silently.** A row that cannot be parsed (wrong cell count, a number that is not one)
  or that the model refuses (a required value missing) goes to ``dead_letter-*.jsonl`` with the file, the line
  and the reason. A batch the model refuses is split in halves until the refusing rows are alone, so one bad
  row never costs its neighbours their predictions.
- **Outputs**: ``predictions-*.csv`` (key columns, then the prediction; ``class`` too for multi-class) and
  ``predictions-*.tfrecord`` (TF Serving ``PredictionLog`` records, the request being the row's
  ``tf.Example`` with every CSV column, so ``sluice monitor --logs`` reads a scored table as it reads
  request logs). ``summary.json`` is written last: a directory without it holds an unfinished run.

Rows are read as bytes (a cell keeps its bytes, as in CsvExampleGen; what it cannot read, a record that is
not UTF-8 or whose quotes never close, is a dead letter) with Python's ``csv`` module through
``tf.io.gfile`` (local paths, ``gs://``, …); files are the unit of reading, and with several workers the rows
are reshuffled after it, so the model calls spread over them.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from sluice.serving.errors import SettingError

SIGNATURE = "serving_default"
SUMMARY = "summary.json"
METRICS = "sluice_predict"
DEAD = "dead"
LOGS = "logs"
ROW_KEY = "row"
"""The key column when the input has no column besides the model's inputs: ``<file path>:<line>``."""
OUTPUT_COLUMNS = (ROW_KEY, "class", "prediction")
INT64 = (-(2**63), 2**63 - 1)
CELL_CHARS = 200
"""A dead letter keeps this much of each cell (a stray quote can join the rest of a file into one cell)."""


@dataclass(frozen=True)
class FilePlan:
    """One input file: its header and, per column, the model input's dtype (None: not a model input)."""

    path: str
    header: Tuple[str, ...]
    dtypes: Tuple[Optional[str], ...]


@dataclass(frozen=True)
class Plan:
    files: Tuple[FilePlan, ...]
    keys: Tuple[str, ...]
    """Columns copied to each prediction; empty: the ``row`` column (file:line) is written instead."""
    model: str
    version: int
    model_path: str
    classes: bool
    """The model answers ``classes`` (multi-class)."""

    @property
    def key_columns(self) -> Tuple[str, ...]:
        return self.keys or (ROW_KEY,)

    def output_columns(self) -> List[str]:
        return [*self.key_columns, *(["class"] if self.classes else []), "prediction"]


def model_inputs(loaded: Any) -> Dict[str, str]:
    """A loaded version's raw inputs (``serving_raw``: one per CSV column) -> ``float``/``int64``/``string``."""
    dtypes = {}
    for name, spec in loaded.signature("serving_raw").inputs.items():
        dtypes[name] = "string" if spec.dtype.name == "string" else "int64" if spec.dtype.is_integer else "float"
    return dtypes


class RowError(ValueError):
    """A row that cannot become an example; the message is the dead letter's reason."""


# ---------------------------------------------------------------------------------------------- planning
def input_files(spec: str) -> List[str]:
    """``spec``: a CSV file, a directory (its ``*.csv``) or a glob; sorted paths."""
    import tensorflow as tf

    try:
        if tf.io.gfile.isdir(spec):
            files = [f for f in tf.io.gfile.glob(f"{spec.rstrip('/')}/*.csv") if not tf.io.gfile.isdir(f)]
        elif any(c in spec for c in "*?["):
            files = [f for f in tf.io.gfile.glob(spec) if not tf.io.gfile.isdir(f)]
        else:
            files = [spec] if tf.io.gfile.exists(spec) else []
    except tf.errors.OpError as e:
        raise SettingError(f"--input {spec}", f"cannot list it: {e.message}", "check the path and its access")
    if not files:
        raise SettingError(f"--input {spec}", "no CSV file there", "give a CSV file, a directory of *.csv or a glob")
    return sorted(files)


def read_header(path: str) -> List[str]:
    """The column names of a CSV file at ``path`` (local or any TensorFlow filesystem)."""
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            first = f.readline()
    except tf.errors.OpError as e:
        raise SettingError(f"--input {path}", f"cannot read the file: {e.message}", "check the path and its access")
    return parse_header(first, path)


def parse_header(first: bytes, path: str) -> List[str]:
    """The column names in a CSV file's first line (a UTF-8 BOM dropped); ``SettingError`` for a line that is
    not UTF-8 CSV, an empty one, or a name given twice. No TensorFlow: the run's pre-flight uses it too."""
    try:
        header = next(csv.reader([first.decode("utf-8").lstrip("\ufeff")]), None)
    except UnicodeDecodeError:
        raise SettingError(f"--input {path}", "the header row is not UTF-8 text", "save the file as UTF-8 CSV")
    except csv.Error as e:
        raise SettingError(f"--input {path}", f"the header row cannot be read as CSV ({e})", "fix the first line")
    if not header:
        raise SettingError(f"--input {path}", "the file is empty or has no header row",
                           "give CSV files whose first line names the columns")
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise SettingError(f"--input {path}", f"the header names {', '.join(map(repr, duplicated))} twice",
                           "give every column its own name")
    return header


def plan(files: Sequence[str], inputs: Mapping[str, str], input_key: Callable[[str, Iterable[str]], str],
         keys: Optional[Sequence[str]], model: str, version: int, model_path: str, classes: bool) -> Plan:
    """What each file's columns are to the model, checked before any row is read.

    ``inputs``: the model's input name -> dtype (``float``/``int64``/``string``); ``input_key(column, inputs)``
    names the input a CSV column feeds (``features.request_key``). Every file must have every model input
    as a column (an empty cell is a missing value; an absent column is almost always the wrong file). Key
    columns: ``keys`` if given (each file must have them), else the columns every file has that the model
    does not take (ids, labels).
    """
    plans, common = [], None
    for path in files:
        header = read_header(path)
        feeds = [input_key(column, inputs) for column in header]
        dtypes = [inputs.get(key) for key in feeds]
        absent = sorted(set(inputs) - set(feeds))
        if absent:
            raise SettingError(f"--input {path}", f"no column for the model input(s) {', '.join(absent)}",
                               "score files with the training data's columns (an empty cell is a missing value)")
        others = [c for c, d in zip(header, dtypes) if d is None]
        common = others if common is None else [c for c in common if c in others]
        plans.append(FilePlan(path, tuple(header), tuple(dtypes)))
    if keys:
        clash = [k for k in keys if k in OUTPUT_COLUMNS]
        if clash:
            raise SettingError(f"--keys {','.join(keys)}", f"{', '.join(clash)} would repeat an output column's name",
                               f"leave out {', '.join(clash)} (the output adds {', '.join(OUTPUT_COLUMNS[1:])})")
        for p in plans:
            lacking = [k for k in keys if k not in p.header]
            if lacking:
                raise SettingError(f"--keys {','.join(keys)}", f"{p.path} has no column {', '.join(lacking)}",
                                   "name columns every input file has")
        chosen = tuple(keys)
    else:  # an earlier predictions file re-scored: its prediction column is not copied as a key
        chosen = tuple(c for c in (common or []) if c not in OUTPUT_COLUMNS)
    return Plan(tuple(plans), chosen, model, version, model_path, classes)


def prepare(model_path: str, model: str, version: int, input_spec: str, keys: Optional[Sequence[str]]) -> Plan:
    """The plan to score ``input_spec``'s files with the version at ``model_path`` (a local path or a URI):
    the version loaded once to check it is a sluice export and to read its inputs, then each file's header
    checked against them. Raises SettingError (one screen) for files, keys or a version that cannot be used."""
    from sluice.components.features import request_key
    from sluice.serving.repository import cause, load_version

    files = input_files(input_spec)
    try:
        loaded = load_version(model, version, model_path)
        signature = loaded.signature(SIGNATURE)
        if list(signature.inputs) != ["examples"] or "outputs" not in signature.outputs:
            raise ValueError(f"{SIGNATURE} takes {sorted(signature.inputs)} and answers "
                             f"{sorted(signature.outputs)}, not examples -> outputs")
        inputs, classes = model_inputs(loaded), "classes" in signature.outputs
    except Exception as e:  # noqa: BLE001 - a half-copied version, another program's SavedModel: one screen
        raise SettingError(model_path, f"cannot be used: {cause(e)}", "score with a version sluice's Pusher wrote "
                           "(serving_default and serving_raw signatures), or pass --version")
    return plan(files, inputs, request_key, keys, model, version, model_path, classes)


# ---------------------------------------------------------------------------------------------- rows
def _shown(cell: bytes) -> str:
    text = cell.decode("utf-8", "replace")
    return repr(text if len(text) <= 60 else text[:60] + "…")


def _value(column: str, cell: bytes, dtype: str) -> Any:
    """TFX's CsvExampleGen handlers (``int(cell)``, ``float(cell)``, the bytes), with the failure as a reason."""
    if dtype == "string":
        return cell
    if dtype == "int64":
        try:
            number = int(cell)
        except ValueError:
            raise RowError(f"column {column!r}: {_shown(cell)} is not an integer (the model takes int64)") from None
        if not INT64[0] <= number <= INT64[1]:
            raise RowError(f"column {column!r}: {_shown(cell)} is outside the int64 range")
        return number
    try:
        return float(cell)
    except ValueError:
        raise RowError(f"column {column!r}: {_shown(cell)} is not a number") from None


def example(header: Sequence[str], dtypes: Sequence[Optional[str]], cells: Sequence[bytes]) -> bytes:
    """A serialized ``tf.Example`` of one CSV row (cells as bytes), as CsvExampleGen makes it: every column
    present, an empty cell as the feature with no value, model inputs in the model's dtype, other columns as
    bytes (carried along for the logs, ignored by the model)."""
    from tensorflow.core.example import example_pb2

    if len(cells) != len(header):
        raise RowError(f"the row has {len(cells)} cells, the header {len(header)}")
    ex = example_pb2.Example()
    for column, dtype, cell in zip(header, dtypes, cells):
        feature = ex.features.feature[column]
        values = (feature.bytes_list if dtype in (None, "string") else
                  feature.int64_list if dtype == "int64" else feature.float_list)
        if cell:
            values.value.append(_value(column, cell, dtype or "string"))
        else:
            values.SetInParent()
    return ex.SerializeToString()


class ReadRows:
    """What ``run``'s read step does per file: path -> ``(key, serialized example)``; bad rows -> dead letters."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def rows(self, path: str) -> Iterator[Tuple[str, Any]]:
        """Latin-1 maps each byte to one character and back, so the ``csv`` module splits the bytes (quotes and
        commas are ASCII) and each cell is encoded back to exactly the bytes it was. What CsvExampleGen refuses
        is a dead letter here: a record that is not UTF-8 (TFX decodes each line as UTF-8) and one whose quotes
        never close (TFX: "unbalanced quotes"; Python's reader would take the rest of the file as one cell)."""
        import tensorflow as tf

        file_plan = next(p for p in self.plan.files if p.path == path)
        position = {c: i for i, c in enumerate(file_plan.header)}
        raw: List[str] = []  # the physical lines of the record being read

        def lines_of(f: Any) -> Iterator[str]:
            for line in f:
                text = line.decode("latin-1")
                raw.append(text)
                yield text

        with tf.io.gfile.GFile(path, "rb") as f:
            reader = csv.reader(lines_of(f))
            next(reader, None)
            while True:
                start = reader.line_num + 1
                del raw[:]
                try:
                    text = next(reader)
                except StopIteration:
                    return
                except csv.Error as e:
                    yield DEAD, _dead(path, start, f"unreadable CSV: {e}", [], lines=reader.line_num - start + 1)
                    continue
                if not text:
                    continue  # a blank line, skipped as CsvExampleGen skips it
                cells = [t.encode("latin-1") for t in text]
                lines = reader.line_num - start + 1
                record = "".join(raw)
                unreadable = None  # what CsvExampleGen cannot read: each line of it is a row lost
                if record.count('"') % 2:
                    unreadable = (f"a quote (\") opens a cell that no later line closes: lines {start}-"
                                  f"{reader.line_num} were read as one row (CsvExampleGen refuses the file)"
                                  if lines > 1 else 'a quote (") in the row is never closed (CsvExampleGen '
                                  "refuses the file)")
                else:
                    try:
                        record.encode("latin-1").decode("utf-8")
                    except UnicodeDecodeError as e:
                        unreadable = (f"not UTF-8 text (byte {record.encode('latin-1')[e.start:e.start + 1]!r}; "
                                      "CsvExampleGen cannot read it either)")
                if unreadable:
                    yield DEAD, _dead(path, start, unreadable, cells, lines=lines)
                    continue
                try:
                    serialized = example(file_plan.header, file_plan.dtypes, cells)
                except RowError as e:  # one record: one row not scored, however many lines its cells span
                    yield DEAD, _dead(path, start, str(e), cells)
                    continue
                key = tuple(_text(cells[position[k]]) for k in self.plan.keys)
                yield "ok", ((path, start, key or (f"{path}:{start}",)), serialized)


def _text(cell: bytes) -> str:
    return cell.decode("utf-8", "replace")


def _dead(path: str, line: int, reason: str, cells: Sequence[bytes], key: Sequence[str] = (), lines: int = 1) -> str:
    """A dead letter: where the row is (its first line; ``lines``: how many lines it spans, each counted as
    a row not scored), why it was not scored, and its cells, each cut at ``CELL_CHARS`` (or its key columns)."""
    letter: Dict[str, Any] = {"file": path, "line": line, "reason": reason,
                              "row": [_text(c)[:CELL_CHARS] for c in cells]}
    if lines > 1:
        letter["lines"] = lines
    if key:
        letter["key"] = list(key)
    return json.dumps(letter, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------- the model
@dataclass
class Refused:
    """A row the model refused (the dead letter's reason)."""

    reason: str


def answer_rows(call: Callable[[List[bytes]], Dict[str, Any]], batch: List[bytes],
                refused: Callable[[BaseException], Optional[str]]) -> List[Any]:
    """The model's answer per row: ``{output: value}`` or ``Refused``. A refused batch is halved until the
    rows it refuses are alone (``refused(error)`` says whether an error is the rows' fault, and why)."""
    try:
        outputs = call(batch)
    except Exception as e:  # noqa: BLE001 - refused() decides; anything else is re-raised
        reason = refused(e)
        if reason is None:
            raise
        if len(batch) == 1:
            return [Refused(reason)]
        half = len(batch) // 2
        return answer_rows(call, batch[:half], refused) + answer_rows(call, batch[half:], refused)
    return [{k: v[i] for k, v in outputs.items()} for i in range(len(batch))]


def _handler(model_path: str, model: str, version: int, max_batch: int) -> Any:
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult

    class SavedModelHandler(ModelHandler):
        """The pushed SavedModel's ``serving_default`` on batches of serialized examples."""

        def load_model(self) -> Any:
            from sluice.serving.repository import load_version

            return load_version(model, version, model_path)

        def run_inference(self, batch: Sequence[bytes], loaded: Any, inference_args: Any = None) -> Iterable[Any]:
            import tensorflow as tf

            from sluice.serving.repository import cause

            fn = loaded.signature(SIGNATURE).fn

            def call(rows: List[bytes]) -> Dict[str, Any]:
                return {k: v.numpy() for k, v in fn(examples=tf.constant(rows)).items()}

            def refused(error: BaseException) -> Optional[str]:
                return cause(error) if isinstance(error, tf.errors.InvalidArgumentError) else None

            rows = list(batch)
            return [PredictionResult(x, y) for x, y in zip(rows, answer_rows(call, rows, refused))]

        def get_metrics_namespace(self) -> str:
            return METRICS

        def batch_elements_kwargs(self) -> Mapping[str, Any]:
            # Full batches from the start: Beam's adaptive sizing begins at one row per call, which for a
            # model this cheap spends the run in call overhead (batches still end with the bundle).
            return {"min_batch_size": max_batch, "max_batch_size": max_batch}

    return SavedModelHandler()


# ---------------------------------------------------------------------------------------------- outputs
def csv_line(values: Sequence[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values)
    return buffer.getvalue()


def prediction_cells(answer: Mapping[str, Any], classes: bool) -> List[Any]:
    import numpy as np

    value = np.asarray(answer["outputs"], np.float64).reshape(-1)
    prediction = json.dumps(value.tolist()) if value.size > 1 else repr(float(value[0]))
    if not classes:
        return [prediction]
    name = answer["classes"]
    return [name.decode() if isinstance(name, bytes) else str(name), prediction]


def prediction_log(plan: Plan, serialized: bytes, answer: Mapping[str, Any], stamp: float) -> bytes:
    """One row as TF Serving logs a ``serving_default`` request: the example in, the outputs out."""
    import numpy as np

    from sluice.serving.request_log import arrays_log

    return arrays_log(plan.model, plan.version, SIGNATURE, {"examples": np.array([serialized], dtype=object)},
                      {name: np.asarray(value)[None, ...] for name, value in answer.items()}, stamp, 1.0)


# ---------------------------------------------------------------------------------------------- the run
@dataclass
class Outcome:
    scored: int
    dead: int
    seconds: float
    reasons: Dict[str, int] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return (self.scored + self.dead) / self.seconds if self.seconds else 0.0


def check_output(output: str) -> None:
    import tensorflow as tf

    try:
        exists = tf.io.gfile.exists(output)
    except tf.errors.OpError as e:
        raise SettingError(f"--output {output}", f"cannot check it: {e.message}", "check the path and its access")
    if exists:
        raise SettingError(f"--output {output}", "exists already",
                           "give a new directory: bulk predictions never overwrite or mix with earlier ones")


def claim_output(output: str) -> None:
    """Create ``output``; of two runs started together on a local directory, one gets it and the other stops
    before writing. ``tf.io.gfile.mkdir`` succeeds on a directory that exists, so a local path is created with
    ``os.mkdir`` (the one atomic create); an object store (``gs://``) has no directories to race for."""
    import os

    import tensorflow as tf

    check_output(output)
    parent = output.rstrip("/").rsplit("/", 1)[0] if "/" in output.rstrip("/") else ""
    try:
        if parent:
            tf.io.gfile.makedirs(parent)
        if "://" in output:
            tf.io.gfile.mkdir(output)
        else:
            os.mkdir(output)
    except FileExistsError:
        raise SettingError(f"--output {output}", "was created by another run just now",
                           "give each run its own directory") from None
    except (OSError, tf.errors.OpError) as e:
        raise SettingError(f"--output {output}", f"cannot create it: {getattr(e, 'message', None) or e}",
                           "check the path and its access")


def run(plan: Plan, output: str, beam_args: Sequence[str], max_batch: int = 1024) -> Outcome:
    """Score every row of ``plan``'s files into ``output``, which must not exist yet (``claim_output``)."""
    import apache_beam as beam
    import tensorflow as tf
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
    from apache_beam.options.pipeline_options import PipelineOptions

    claim_output(output)
    out = output.rstrip("/")
    stamp = time.time()
    reader = ReadRows(plan)
    handler = KeyedModelHandler(_handler(plan.model_path, plan.model, plan.version, max_batch))
    dead_rows = beam.metrics.Metrics.counter(METRICS, "dead_letter")
    scored_rows = beam.metrics.Metrics.counter(METRICS, "scored")

    def read(path: str) -> Iterator[Any]:
        for tag, value in reader.rows(path):
            if tag == DEAD:
                dead_rows.inc()
                yield beam.pvalue.TaggedOutput(DEAD, value)
            else:
                yield value

    def emit(item: Tuple[Any, Any]) -> Iterator[Any]:
        (path, line, key), result = item
        if isinstance(result.inference, Refused):
            dead_rows.inc()
            yield beam.pvalue.TaggedOutput(DEAD, _dead(path, line, f"the model refused the row: "
                                                       f"{result.inference.reason}", [], key))
            return
        scored_rows.inc()
        yield csv_line([*key, *prediction_cells(result.inference, plan.classes)])
        yield beam.pvalue.TaggedOutput(LOGS, prediction_log(plan, result.example, result.inference, stamp))

    started = time.perf_counter()
    # A multi_processing profile names components/beam_runner.py's runner: its workers die with this process.
    p = beam.Pipeline(options=PipelineOptions(list(beam_args)))
    rows = (p | "Files" >> beam.Create([f.path for f in plan.files])
            | "Read" >> beam.FlatMap(read).with_outputs(DEAD, main="ok"))
    scored = rows.ok
    if "--direct_num_workers=1" not in beam_args:  # several workers: spread one file's rows over all of them
        scored = scored | "Spread" >> beam.Reshuffle()
    results = (scored | "Predict" >> RunInference(handler)
               | "Emit" >> beam.FlatMap(emit).with_outputs(DEAD, LOGS, main="csv"))
    _ = results.csv | "WriteCsv" >> beam.io.WriteToText(
        f"{out}/predictions", file_name_suffix=".csv", header=csv_line(plan.output_columns()))
    _ = results[LOGS] | "WriteLogs" >> beam.io.WriteToTFRecord(f"{out}/predictions", file_name_suffix=".tfrecord")
    _ = ((rows[DEAD], results[DEAD]) | "Dead" >> beam.Flatten()
         | "WriteDead" >> beam.io.WriteToText(f"{out}/dead_letter", file_name_suffix=".jsonl"))
    try:
        result = p.run()
        result.wait_until_finish()
    except Exception as e:  # noqa: BLE001 - one screen; the traceback is Beam's internals
        from sluice.serving.repository import cause

        raise SettingError(f"--output {output}", f"the Beam run failed: {type(e).__name__}: {cause(e)}",
                           "nothing was finished there (no summary.json): delete the directory and run again "
                           "after fixing the cause") from e
    seconds = time.perf_counter() - started
    outcome = Outcome(scored=_counter(result, "scored"), dead=0, seconds=seconds)
    for path in sorted(tf.io.gfile.glob(f"{out}/dead_letter-*.jsonl")):
        with tf.io.gfile.GFile(path) as f:
            for line in f:
                if line.strip():
                    letter = json.loads(line)
                    lost, reason = letter.get("lines", 1), _kind(letter["reason"])
                    outcome.dead += lost
                    outcome.reasons[reason] = outcome.reasons.get(reason, 0) + lost
    summary = {"model": plan.model, "version": plan.version, "model_path": plan.model_path,
               "inputs": [f.path for f in plan.files], "keys": list(plan.key_columns), "scored": outcome.scored,
               "dead_letter": outcome.dead, "seconds": round(seconds, 3), "beam_args": list(beam_args),
               "reasons": dict(sorted(outcome.reasons.items(), key=lambda kv: -kv[1])[:20])}
    with tf.io.gfile.GFile(f"{out}/{SUMMARY}", "w") as f:
        f.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return outcome


def _kind(reason: str) -> str:
    """A reason without the cell's value, line numbers or byte, so the summary counts problems, not values."""
    import re

    reason = re.sub(r""": (?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")…? is """, ": … is ", reason)
    reason = re.sub(r"lines \d+-\d+", "lines …", reason)
    return re.sub(r"\(byte b'[^)]*'; ", "(", reason)


def _counter(result: Any, name: str) -> int:
    from apache_beam.metrics.metric import MetricsFilter

    counters = result.metrics().query(MetricsFilter().with_namespace(METRICS).with_name(name))["counters"]
    return int(sum(c.committed or 0 for c in counters))


def read_predictions(output: str) -> List[Dict[str, str]]:
    """Every row of ``predictions-*.csv`` (tests, small outputs)."""
    import tensorflow as tf

    rows: List[Dict[str, str]] = []
    for path in sorted(tf.io.gfile.glob(f"{output.rstrip('/')}/predictions-*.csv")):
        with tf.io.gfile.GFile(path) as f:
            rows.extend(csv.DictReader(f))
    return rows
