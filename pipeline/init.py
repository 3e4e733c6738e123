"""`sluice init`: a first config and schema for a CSV sluice has never seen.

It reads the CSV once (Python's csv module, no TensorFlow), profiles every column (types, empty cells,
distinct values, the label's distribution) and decides, each decision with its reason:

- the label (``--label``, else a column named like one, else the last column) and the task (a 0/1 label:
  binary classification; a string label with 2 to ``MAX_CLASSES`` values, or ``--task
  multiclass_classification`` on integers: multi-class; another numeric label: regression);
- each column's feature kind (numeric z-score; long-tailed numbers bucketized by quantiles; integer and
  string categories), or why it is left out: identifiers and near-unique strings (they do not
  generalize), constant and empty columns (nothing to learn), columns that leak the label (near-perfect
  correlation: usually computed from it);
- split shares that leave the eval split at least ``runner.MIN_EVAL_ROWS`` rows where the data allows it;
- the model's size, batch and steps from the train split's size (a batch never larger than the split);
- slices from low-cardinality columns, and a threshold relative to the trivial baseline measured on the
  data: the mean predictor's MAE for regression, the prior's AUC of 0.5 for binary labels, the majority
  class's accuracy for multi-class;
- TFLite variants that keep parity on ordinary data (float32, dynamic_range; int8 only on request).

The schema draft is ``schema infer``'s (``pipeline/schema.py``), so the gate accepts the CSV it came from.
Everything here but ``write_project`` is a pure function of the profile, so each rule is unit-tested.
"""

from __future__ import annotations

import csv
import math
import re
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from sluice.components.settings import BINARY, MULTICLASS, REGRESSION

LABEL_NAMES = ["label", "target", "y", "outcome", "class", "price", "fare", "quality"]
"""Names (lower case, letters only) that make a column the guessed label, first match in this order."""
MAX_PROFILE_VALUES = 1000  # distinct values remembered per column; more means "many"
MAX_NUMBER_ROWS = 200_000  # rows whose numbers are kept for correlation and the baseline (8 bytes per cell)
INT64 = (-(2**63), 2**63 - 1)
ID_NAMES = re.compile(r"(^|[^a-z])(id|key|index|uuid)$|^(row|record)(_?(num|number|no))?$", re.IGNORECASE)
CATEGORICAL_INT_MAX = 30   # an integer column with at most this many values, all in [0, 1000), is an id
SLICE_MAX_VALUES = 12
LEAK_CORRELATION = 0.98
SKEWED = 3.0  # |skewness| beyond which a numeric column is bucketized (quantiles) rather than z-scored
MAX_CLASSES = 50  # a string label with more distinct values is not a class label sluice should guess
MIN_ROWS_PER_CLASS = 10  # fewer rows per class on average: an identifier, not classes


@dataclass
class Column:
    name: str
    rows: int = 0
    empty: int = 0
    ints: int = 0
    floats: int = 0
    strings: int = 0
    values: Dict[str, int] = field(default_factory=dict)
    many: bool = False
    numbers: "array[float]" = field(default_factory=lambda: array("d"))
    """The first ``MAX_NUMBER_ROWS`` rows' values as numbers (NaN: empty or not a number)."""

    @property
    def present(self) -> int:
        return self.rows - self.empty

    @property
    def kind(self) -> str:
        """``int``, ``float``, ``string`` or ``empty``: what CsvExampleGen's type inference makes of it."""
        if not self.present:
            return "empty"
        if self.strings:
            return "string"
        return "float" if self.floats else "int"

    @property
    def distinct(self) -> int:
        """Distinct values (a lower bound when ``many``)."""
        return len(self.values)


def _parse(cell: str) -> Tuple[str, Optional[float]]:
    """The cell's type as CsvExampleGen infers it (``tfx_bsl.coders.csv_decoder._InferValueType``): an int64
    is INT (a larger integer is STRING), anything ``float()`` reads (``nan`` and ``inf`` included) is FLOAT."""
    try:
        number = int(cell)
        return ("int", float(number)) if INT64[0] <= number <= INT64[1] else ("string", None)
    except ValueError:
        pass
    try:
        return "float", float(cell)
    except ValueError:
        return "string", None


def profile(path: Path) -> List[Column]:
    """One pass over the CSV: every column's types, empty cells, distinct values, and the numbers of its first
    ``MAX_NUMBER_ROWS`` rows. The file is assumed checked (``data_source.check_columns``: header, field
    counts, UTF-8), as ``sluice init`` does first."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ValueError("the file is empty (a header row and data rows are needed)")
        columns = [Column(name) for name in header]
        for line in reader:
            if not line:
                continue
            for column, cell in zip(columns, line):
                column.rows += 1
                keep = column.rows <= MAX_NUMBER_ROWS
                if cell == "":
                    column.empty += 1
                    if keep:
                        column.numbers.append(math.nan)
                    continue
                kind, number = _parse(cell)
                setattr(column, f"{kind}s", getattr(column, f"{kind}s") + 1)
                if keep:
                    column.numbers.append(math.nan if number is None else number)
                if not column.many:
                    column.values[cell] = column.values.get(cell, 0) + 1
                    column.many = len(column.values) > MAX_PROFILE_VALUES
    return columns


@dataclass
class Decision:
    column: str
    feature: Optional[Dict[str, Any]]
    """The config's feature entry, or None when the column is left out."""
    why: str


@dataclass
class Plan:
    name: str
    label: str
    label_guessed: bool
    task: str
    decisions: List[Decision]
    splits: Dict[str, int]
    model: Dict[str, Any]
    metrics: List[str]
    thresholds: List[Dict[str, Any]]
    slices: List[List[str]]
    baseline: str
    notes: List[str]
    classes: Optional[List[str]] = None
    rows: int = 0
    linf: float = 0.1
    """The DataGate's L-infinity threshold for categories: the default 0.1, or what chance allows on small data."""

    def features(self) -> List[Dict[str, Any]]:
        return [d.feature for d in self.decisions if d.feature is not None]


def guess_label(columns: Sequence[Column]) -> Column:
    """A column named like a label (``label``, ``target``, ``Fare ($)``…), else the last column."""
    names = {re.sub(r"[^a-z]", "", c.name.lower()): c for c in reversed(columns)}
    return next((names[n] for n in LABEL_NAMES if n in names), columns[-1])


def choose_task(label: Column, task: Optional[str] = None) -> str:
    """Binary classification for a 0/1 label, multi-class for a string label with a few values (or integers
    with ``--task multiclass_classification``), else regression; a label none can train on is refused."""
    name = repr(label.name)
    if label.kind == "empty":
        raise ValueError(f"label {name} is empty in every row")
    if label.empty:
        raise ValueError(f"label {name} is empty in {label.empty} of {label.rows} rows; the pipeline would read "
                         "them as 0: remove those rows (or fill them) first")
    if label.distinct == 1 and not label.many:
        raise ValueError(f"label {name} has one value ({next(iter(label.values))}) in every row: nothing to learn")
    if label.kind == "string" or task == MULTICLASS:
        if label.many or label.distinct > MAX_CLASSES:
            raise ValueError(f"label {name} has {_count(label)} distinct values ({', '.join(list(label.values)[:3])}…):"
                             f" too many to be classes (at most {MAX_CLASSES}); pass --label for another column")
        if label.kind == "float":
            raise ValueError(f"--task {MULTICLASS} needs integer or string classes; {name} holds fractions")
        if label.present < MIN_ROWS_PER_CLASS * label.distinct:
            raise ValueError(f"label {name} has {label.distinct} distinct values in {label.present} rows: fewer than "
                             f"{MIN_ROWS_PER_CLASS} rows per class, an identifier rather than classes; pass --label "
                             "for another column")
        if task not in (None, MULTICLASS):
            raise ValueError(f"--task {task} needs numbers; label {name} holds strings "
                             f"({', '.join(list(label.values)[:3])}…): use --task {MULTICLASS}")
        return MULTICLASS
    binary = set(label.values) == {"0", "1"}
    if task == BINARY and not binary:
        raise ValueError(f"--task {BINARY} needs a label of 0 and 1; {name} has "
                         f"{_count(label)} values ({', '.join(list(label.values)[:3])}…)")
    if task is not None:
        return task
    return BINARY if binary else REGRESSION


def class_names(label: Column) -> List[str]:
    """The label's values as ``task.classes``: integers as CsvExampleGen reads them (``01`` is 1) in numeric
    order, strings alphabetically."""
    if label.kind == "int":
        return [str(v) for v in sorted({int(v) for v in label.values})]
    return sorted(label.values)


def _pearson(xs: "array[float]", ys: "array[float]") -> float:
    x, y = np.frombuffer(xs, dtype=np.float64), np.frombuffer(ys, dtype=np.float64)
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    both = np.isfinite(x) & np.isfinite(y)
    if both.sum() < 3:
        return 0.0
    x, y = x[both] - x[both].mean(), y[both] - y[both].mean()
    scale = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return 0.0 if scale == 0 else float((x * y).sum() / scale)


def decide_feature(column: Column, label: Column) -> Decision:
    """The column's feature entry (or why it is left out)."""
    name, present, distinct = column.name, column.present, column.distinct
    optional = {"optional": True} if column.empty else {}
    if not present:
        return Decision(name, None, "empty in every row")
    if distinct == 1 and not column.many:
        return Decision(name, None, "one value in every row: nothing to learn")
    unique = not column.many and distinct == present and present == column.rows
    if column.kind == "string":
        if column.many or distinct > 0.5 * present:
            return Decision(name, None, f"{_count(column)} distinct strings in {present} rows: an identifier or free "
                                    "text, which does not generalize")
        return Decision(name, {"name": name, "kind": "categorical_string", "top_k": min(distinct, 1000), **optional},
                        f"{distinct} distinct strings")
    correlation = _pearson(column.numbers, label.numbers)
    if abs(correlation) >= LEAK_CORRELATION:
        return Decision(name, None, f"correlation {correlation:+.3f} with the label: probably computed from it "
                                    "(a leak); add it back if it is known when predicting")
    if column.kind == "int" and unique and distinct > CATEGORICAL_INT_MAX and (
            ID_NAMES.search(name) or _consecutive(column)):
        return Decision(name, None, "a different integer in every row, "
                                    + ("named like an id" if ID_NAMES.search(name) else "consecutive") + ": an identifier")
    if column.kind == "int" and not column.many and distinct <= CATEGORICAL_INT_MAX:
        low = min(int(v) for v in column.values)
        high = max(int(v) for v in column.values)
        if low >= 0 and high < 1000:
            return Decision(name, {"name": name, "kind": "categorical_int", "num_buckets": high + 1, **optional},
                            f"{distinct} integer values in [{low}, {high}]: categories")
    skew = skewness(column.numbers)
    if abs(skew) > SKEWED and (column.many or distinct >= 20):
        return Decision(name, {"name": name, "kind": "bucketized", "buckets": 10, **optional},
                        f"numbers with a long tail (skewness {skew:+.1f}): 10 quantile buckets, which a few huge "
                        "values cannot squeeze as they would a z-score")
    return Decision(name, {"name": name, "kind": "numeric", **optional}, f"numbers ({_count(column)} distinct)")


def skewness(values: "array[float]") -> float:
    """Sample skewness of the finite values (0 for fewer than 3 or no spread)."""
    x = np.frombuffer(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 3 or not x.std():
        return 0.0
    return float(np.mean(((x - x.mean()) / x.std()) ** 3))


def _consecutive(column: Column) -> bool:
    values = [int(v) for v in column.values]
    return max(values) - min(values) + 1 == len(values)


def _count(column: Column) -> str:
    return f"over {MAX_PROFILE_VALUES}" if column.many else str(column.distinct)


def choose_splits(rows: int, min_eval: int) -> Tuple[Dict[str, int], Optional[str]]:
    """Hash-bucket shares whose eval split has at least ``min_eval`` rows where possible."""
    for train, evaluation in ((4, 1), (3, 1), (2, 1), (1, 1)):
        if rows * evaluation / (train + evaluation) >= min_eval * 1.15:  # hash buckets vary by a few %
            return {"train": train, "eval": evaluation}, None
    return {"train": 1, "eval": 1}, (f"{rows} rows: even half of them leaves the eval split under {min_eval} "
                                     "rows; metrics will rest on few rows")


def choose_model(train_rows: int) -> Dict[str, Any]:
    """Model size, batch and steps for ``train_rows`` rows: about 30 epochs, 200 to 3000 steps, and a batch
    of at most a sixteenth of the rows (a quarter for small data), so it never exceeds the train split."""
    hidden = [32, 16] if train_rows < 2000 else [64, 32] if train_rows < 50000 else [128, 64]
    cap = max(1, min(256, train_rows // 16 if train_rows >= 256 else train_rows // 4))
    batch = 1
    while batch * 2 <= cap:
        batch *= 2
    steps = int(min(3000, max(200, math.ceil(30 * train_rows / batch))))
    return {"architecture": "mlp", "hidden_units": hidden, "learning_rate": 0.003, "batch_size": batch,
            "train_steps": steps, "eval_steps": max(1, min(50, math.ceil(0.25 * train_rows / batch))),
            "loss": "mse"}


def chance_linf(rows: int, splits: Dict[str, int]) -> float:
    """An L-infinity threshold for category shares between the splits that chance alone stays under: three
    standard errors of the difference of two shares (at p = 0.5), at least the default 0.1."""
    total = sum(splits.values())
    train, evaluation = rows * splits["train"] / total, rows * splits["eval"] / total
    if train < 1 or evaluation < 1:
        return 0.1
    return max(0.1, math.ceil(100 * 3 * math.sqrt(0.25 * (1 / train + 1 / evaluation))) / 100)


def mean_predictor_mae(values: "array[float]") -> float:
    present = np.frombuffer(values, dtype=np.float64)
    present = present[np.isfinite(present)]
    return float(np.abs(present - present.mean()).mean())


def plan(columns: Sequence[Column], name: str, label: Optional[str] = None, task: Optional[str] = None,
         min_eval: int = 200) -> Plan:
    """Every decision of ``sluice init`` for a profiled CSV."""
    by_name = {c.name: c for c in columns}
    if label is not None and label not in by_name:
        raise ValueError(f"--label {label!r} is not a column (columns: {', '.join(by_name)})")
    target = by_name[label] if label is not None else guess_label(columns)
    task = choose_task(target, task)
    decisions = [decide_feature(c, target) for c in columns if c is not target]
    if not any(d.feature for d in decisions):
        reasons = "; ".join(f"{d.column}: {d.why}" for d in decisions) or "the label is the only column"
        raise ValueError(f"no column is usable as a feature ({reasons})")
    rows = target.rows
    splits, split_note = choose_splits(rows, min_eval)
    model = choose_model(int(rows * splits["train"] / sum(splits.values())))
    notes = [split_note] if split_note else []
    if task == REGRESSION:
        baseline_mae = mean_predictor_mae(target.numbers)
        bound = float(f"{0.8 * baseline_mae:.3g}")
        metrics = ["mean_absolute_error", "root_mean_squared_error", "r_squared", "mean_label", "mean_prediction",
                   "example_count"]
        thresholds = [{"metric": "mean_absolute_error", "upper_bound": bound}]
        baseline = (f"always predicting the mean scores MAE {baseline_mae:.4g} on this data; the model must reach "
                    f"{bound:g} (80 % of it)")
    elif task == MULTICLASS:
        model["loss"] = "sparse_categorical_crossentropy"
        classes = class_names(target)
        majority, share = max(target.values.items(), key=lambda kv: kv[1])
        share /= max(1, target.present)
        bound = float(f"{share + 0.25 * (1 - share):.3g}")
        metrics = ["accuracy", "log_loss", "macro_auc", "macro_precision", "macro_recall", "example_count"]
        thresholds = [{"metric": "accuracy", "lower_bound": bound}]
        baseline = (f"always predicting the most common class ({majority}) is right for {share:.1%} of the rows; "
                    f"the gate asks for accuracy {bound:g} (a quarter of the way from there to 1)")
    else:
        model["loss"] = "binary_crossentropy"
        positives = target.values.get("1", 0) / max(1, target.present)
        metrics = ["auc", "binary_accuracy", "precision", "recall", "example_count"]
        thresholds = [{"metric": "auc", "lower_bound": 0.6}]
        baseline = (f"{positives:.1%} of the rows are positive; a model that knows nothing has AUC 0.5, the "
                    "gate asks for 0.6")
    slices = [[d.column] for d in decisions if d.feature and d.feature["kind"] != "numeric"
              and 2 <= by_name[d.column].distinct <= SLICE_MAX_VALUES][:3]
    if slices:
        thresholds.append({**thresholds[0], "slices": True})
        if task == REGRESSION:
            thresholds[-1]["upper_bound"] = float(f"{1.5 * thresholds[0]['upper_bound']:.3g}")
        elif task == MULTICLASS:
            thresholds[-1]["lower_bound"] = float(f"{share:.3g}")
        else:
            thresholds[-1]["lower_bound"] = 0.55
    return Plan(name=name, label=target.name, label_guessed=label is None, task=task, decisions=decisions,
                splits=splits, model=model, metrics=metrics, thresholds=thresholds, slices=slices,
                baseline=baseline, notes=notes, classes=classes if task == MULTICLASS else None, rows=rows,
                linf=chance_linf(rows, splits))


def _flow(value: Any) -> str:
    """``value`` as one line of YAML (a plain scalar dumps as a document: drop its end marker)."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, sort_keys=False, width=10**6).strip()
    return text[:-len("\n...")].strip() if text.endswith("\n...") else text


def config_text(p: Plan, data: str, schema: str) -> str:
    """The config file: every section the plan decided, with the reasons as comments."""
    lines = [
        f"# Written by `sluice init` from {data}. Every choice below has its reason beside it; change any of",
        "# them and run again (`sluice run --config <this file>`).",
        f"name: {p.name}",
        "",
        "data:",
        f"  path: {_flow(data)}",
        f"  splits: {_flow(p.splits)}",
        "",
        f"schema: {_flow(schema)}            # drafted by `sluice schema infer` from the same CSV: curate it",
        "",
        "task:",
        f"  type: {p.task}",
        f"  label: {_flow(p.label)}" + ("  # guessed: pass --label to choose" if p.label_guessed else ""),
    ] + ([f"  classes: {_flow(p.classes)}  # the label's values; the model's outputs come in this order"]
         if p.classes else []) + [
        "",
        "features:",
    ]
    for d in p.decisions:
        if d.feature is None:
            lines.append(f"  # left out {_flow(d.column)}: {d.why}")
        else:
            lines.append(f"  - {_flow(d.feature)}  # {d.why}")
    lines += ["", "model:"] + [f"  {k}: {_flow(v)}" for k, v in p.model.items()]
    if p.linf > 0.1:
        lines += ["", "validation:",
                  f"  # {p.rows} rows: split shares of a category differ by chance up to ~{p.linf} (3 standard errors)",
                  f"  skew:  {{categorical_linf: {p.linf}, numeric_jsd: 0.1}}",
                  f"  drift: {{categorical_linf: {p.linf}, numeric_jsd: 0.1}}"]
    lines += ["", "training:", "  rounds: 5", "  early_stopping_patience: 3", "",
              "evaluation:", f"  metrics: {_flow(p.metrics)}", f"  # {p.baseline}",
              f"  slices: {_flow(p.slices)}", "  min_slice_size: 30", "  thresholds:"]
    lines += [f"    - {_flow(t)}" for t in p.thresholds]
    lines += ["", "export:", "  targets: [saved_model, tflite]",
              "  tflite_variants: [float32, dynamic_range]   # int8 and float16 also exist; the parity gate judges each"]
    return "\n".join(lines) + "\n"


def summary(p: Plan) -> List[str]:
    """What init decided and why, in a few lines."""
    kept = [d for d in p.decisions if d.feature]
    lines = [f"label: {p.label} ({'guessed: pass --label to choose' if p.label_guessed else 'given'}); task: {p.task}",
             f"features: {len(kept)} of {len(p.decisions)} columns"]
    for d in p.decisions:
        if d.feature is None:
            lines.append(f"  left out {d.column}: {d.why}")
    lines.append(f"splits: train {p.splits['train']} : eval {p.splits['eval']}; model {p.model['hidden_units']}, "
                 f"batch {p.model['batch_size']}, {p.model['train_steps']} steps")
    lines.append(f"gate: {p.baseline}")
    lines += [f"note: {n}" for n in p.notes]
    return lines


def project_name(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem).strip("_-")
    return name if name[:1].isalpha() else f"data_{name}" if name else "data"
