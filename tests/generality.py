"""Varied CSVs sluice has never seen, for `sluice init` + `sluice run` (tests/e2e/test_generality.py and
benchmarks/generality.py).

Each is generated from a seed with a known signal plus noise, so "blessed" means the pipeline found a signal
that is there, and "not blessed" on pure noise would be the right answer. Nothing here is tuned to pass: the
same generator rules (a few informative columns, the rest noise or missing) hold for every kind.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

Row = List[object]


def _write(path: Path, header: List[str], rows: List[Row]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def numeric_only(path: Path, rng: np.random.Generator, rows: int = 2000) -> Path:
    x = rng.normal(size=(rows, 6))
    y = 4 + 3 * x[:, 0] - 2 * x[:, 1] + np.sin(2 * x[:, 2]) + 0.5 * x[:, 3] * x[:, 4] + rng.normal(0, 0.4, rows)
    return _write(path, [f"x{i}" for i in range(6)] + ["y"],
                  [[*np.round(x[i], 4), round(float(y[i]), 4)] for i in range(rows)])


def categorical_only(path: Path, rng: np.random.Generator, rows: int = 2000) -> Path:
    colors, sizes, shops = ["red", "green", "blue", "black"], ["S", "M", "L"], [f"shop{i}" for i in range(12)]
    effect = {"red": 1.0, "green": -0.5, "blue": 0.0, "black": -1.2, "S": -0.8, "M": 0.0, "L": 0.9}
    out = []
    for _ in range(rows):
        c, s, shop, day = rng.choice(colors), rng.choice(sizes), rng.choice(shops), int(rng.integers(0, 7))
        logit = effect[c] + effect[s] + (0.8 if day >= 5 else -0.3) + rng.normal(0, 0.3)
        out.append([c, s, shop, day, int(rng.random() < 1 / (1 + np.exp(-2 * logit)))])
    return _write(path, ["color", "size", "shop", "weekday", "label"], out)


def mixed(path: Path, rng: np.random.Generator, rows: int = 2000) -> Path:
    regions = ["north", "south", "east", "west", "center"]
    bonus = dict(zip(regions, [5.0, -3.0, 0.0, 2.0, 8.0]))
    out = []
    for _ in range(rows):
        region, rooms, area = rng.choice(regions), int(rng.integers(1, 7)), float(rng.gamma(4, 20))
        age = float(rng.uniform(0, 80))
        lot = float(rng.lognormal(6, 1.2))  # long-tailed: `sluice init` bucketizes it
        price = 20 + 1.2 * area + 6 * rooms + bonus[region] - 0.3 * age + 2 * np.log(lot) + rng.normal(0, 6)
        out.append([region, rooms, round(area, 1), round(age, 1), round(lot, 1), round(price, 2)])
    return _write(path, ["region", "rooms", "area", "age", "lot", "price"], out)


def heavy_missing(path: Path, rng: np.random.Generator, rows: int = 2000) -> Path:
    """40 % of every feature's cells empty (never the label)."""
    x = rng.normal(size=(rows, 4))
    kind = rng.choice(["a", "b", "c"], size=rows)
    y = 10 + 2 * x[:, 0] + x[:, 1] - x[:, 2] + np.where(kind == "a", 2.0, 0.0) + rng.normal(0, 0.5, rows)
    out = []
    for i in range(rows):
        cells: Row = [*np.round(x[i], 3), kind[i]]
        cells = ["" if rng.random() < 0.4 else c for c in cells]
        out.append([*cells, round(float(y[i]), 3)])
    return _write(path, ["f0", "f1", "f2", "f3", "kind", "target"], out)


def awkward_headers(path: Path, rng: np.random.Generator, rows: int = 2000) -> Path:
    x = rng.normal(size=(rows, 4))
    city = rng.choice(["Zürich", "Genève", "Bâle"], size=rows)
    y = 50 + 8 * x[:, 0] - 5 * x[:, 1] + 3 * x[:, 2] + np.where(city == "Zürich", 6.0, 0.0) + rng.normal(0, 1.5, rows)
    header = ["od280/od315 of wine", "Prix (€)", "1st value", "class", "ville", "Total Amount ($)"]
    return _write(path, header, [[*np.round(x[i], 3), city[i], round(float(y[i]), 2)] for i in range(rows)])


def tiny(path: Path, rng: np.random.Generator, rows: int = 100) -> Path:
    x = rng.normal(size=(rows, 3))
    y = 5 + 4 * x[:, 0] + 2 * x[:, 1] + rng.normal(0, 0.5, rows)
    return _write(path, ["a", "b", "c", "y"], [[*np.round(x[i], 3), round(float(y[i]), 3)] for i in range(rows)])


def wide(path: Path, rng: np.random.Generator, rows: int = 1500, columns: int = 120) -> Path:
    """``columns`` numeric features, five of them informative."""
    x = rng.normal(size=(rows, columns))
    y = 2 * x[:, 0] - 1.5 * x[:, 7] + x[:, 19] + 0.8 * x[:, 42] - x[:, 99] + rng.normal(0, 0.5, rows)
    return _write(path, [f"v{i:03d}" for i in range(columns)] + ["y"],
                  [[*np.round(x[i], 3), round(float(y[i]), 3)] for i in range(rows)])


def multiclass(path: Path, rng: np.random.Generator, rows: int = 1500) -> Path:
    """Three named classes (string labels: `sluice init` picks multi-class and lists them)."""
    x = rng.normal(size=(rows, 3))
    score = np.stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]], axis=1) + rng.normal(0, 0.3, (rows, 3))
    names = np.array(["setosa", "versicolor", "virginica"])[score.argmax(axis=1)]
    return _write(path, ["p", "q", "r", "species"], [[*np.round(x[i], 3), names[i]] for i in range(rows)])


KINDS: Dict[str, Tuple[Callable[..., Path], Optional[str]]] = {
    "numeric_only": (numeric_only, "y"),
    "categorical_only": (categorical_only, "label"),
    "mixed": (mixed, "price"),
    "heavy_missing": (heavy_missing, "target"),
    "awkward_headers": (awkward_headers, "Total Amount ($)"),
    "tiny": (tiny, "y"),
    "wide": (wide, "y"),
    "multiclass": (multiclass, "species"),
}
"""Kind -> (generator, label). The label is what a user would pass to `sluice init --label`."""


def generate(kind: str, directory: Path, seed: int = 0) -> Tuple[Path, Optional[str]]:
    make, label = KINDS[kind]
    directory.mkdir(parents=True, exist_ok=True)
    return make(directory / f"{kind}.csv", np.random.default_rng(seed)), label
