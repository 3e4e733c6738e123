"""Write ``data/wine/wine.csv``: the UCI Wine data (178 wines, 13 chemical measurements, 3 cultivars) as it
ships inside scikit-learn (``sklearn/datasets/data/wine_data.csv``; scikit-learn is installed with TFX), with
the column names scikit-learn gives it and the cultivar as its class name (``class_0`` … ``class_2``).

The bundled multi-class example (``configs/wine.yaml``) trains on this file; tests/unit/test_wine_data.py
checks the committed CSV is exactly what this script writes from the installed package.

    .venv/bin/python scripts/wine_data.py [OUT]
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "data" / "wine" / "wine.csv"


def wine_csv() -> str:
    from sklearn.datasets import load_wine

    wine = load_wine()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(wine.feature_names) + ["cultivar"])
    for row, target in zip(wine.data, wine.target):
        writer.writerow([f"{v:g}" for v in row] + [wine.target_names[target]])
    return out.getvalue()


def main(argv: list) -> None:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(wine_csv())
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
