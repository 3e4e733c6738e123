"""``sluice synth``: seeded synthetic data shaped like a reference CSV, for scale tests and benchmarks.

Data-agnostic: it learns nothing but the reference file (and optionally its curated schema). Each output row
is a bootstrap draw of a whole reference row — so correlations between columns (fare with miles, tips with
payment type) survive — then:

- float columns get additive Gaussian jitter of ``jitter`` x the column's standard deviation, clipped into
  the schema's ``float_domain`` (coordinates stay in their box, fares stay >= 0); integer-like columns
  (ids, hours, timestamps) are kept as drawn;
- ``outlier_rate`` of the rows get one unbounded float column (no schema maximum) multiplied by 5–20;
- ``missing_rate`` of the cells of columns that are sometimes empty in the reference are emptied.

Rows go to ``shards`` files ``data-XXXXX-of-YYYYY.csv`` (each with the header), the layout CsvExampleGen
reads as one directory.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path
from typing import Dict, List, Optional, Tuple


def _float(value: str) -> Optional[float]:
    try:
        return float(value)
    except ValueError:
        return None


def _domains(schema_file: Optional[Path]) -> Dict[str, Tuple[Optional[float], Optional[float]]]:
    if schema_file is None:
        return {}
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = text_format.Parse(Path(schema_file).read_text(), schema_pb2.Schema())
    out = {}
    for f in schema.feature:
        if f.HasField("float_domain"):
            d = f.float_domain
            out[f.name] = (d.min if d.HasField("min") else None, d.max if d.HasField("max") else None)
    return out


def synthesize(reference: Path, out_dir: Path, rows: int, shards: int = 4, seed: int = 0,
               schema_file: Optional[Path] = None, jitter: float = 0.02, outlier_rate: float = 0.001,
               missing_rate: float = 0.01) -> List[Path]:
    rng = random.Random(seed)
    with open(reference, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        table = [row for row in reader if len(row) == len(header)]
    if not table:
        raise ValueError(f"{reference}: no data rows to learn from")
    columns = list(zip(*table))
    floats, stds, optional = set(), {}, set()
    for i, values in enumerate(columns):
        present = [v for v in values if v != ""]
        if len(present) < len(values):
            optional.add(i)
        numbers = [_float(v) for v in present]
        if present and all(n is not None for n in numbers) and any(not float(n).is_integer() for n in numbers):
            floats.add(i)
            mean = sum(numbers) / len(numbers)
            stds[i] = math.sqrt(sum((n - mean) ** 2 for n in numbers) / len(numbers))
    domains = _domains(schema_file)
    bounds = {i: domains.get(header[i], (None, None)) for i in floats}
    unbounded = sorted(i for i in floats if bounds[i][1] is None)
    optional_list = sorted(optional)

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"data-{k:05d}-of-{shards:05d}.csv" for k in range(shards)]
    handles = [open(p, "w", newline="") for p in paths]
    writers = [csv.writer(h) for h in handles]
    try:
        for w in writers:
            w.writerow(header)
        for n in range(rows):
            row = list(table[rng.randrange(len(table))])
            for i in floats:
                if row[i] == "":
                    continue
                value = float(row[i]) + rng.gauss(0.0, jitter * stds[i])
                low, high = bounds[i]
                value = max(value, low) if low is not None else value
                value = min(value, high) if high is not None else value
                row[i] = f"{value:.6g}"
            if unbounded and rng.random() < outlier_rate:
                i = rng.choice(unbounded)
                if row[i] != "":
                    row[i] = f"{float(row[i]) * rng.uniform(5, 20):.6g}"
            if optional_list and rng.random() < missing_rate * len(optional_list):
                row[rng.choice(optional_list)] = ""
            writers[n % shards].writerow(row)
    finally:
        for h in handles:
            h.close()
    return paths
