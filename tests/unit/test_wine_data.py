"""The bundled multi-class data is what scikit-learn ships (scripts/wine_data.py), byte for byte."""

from __future__ import annotations

import importlib.util

from tests.helpers import ROOT


def test_the_bundled_wine_csv_is_scikit_learns_wine_data():
    spec = importlib.util.spec_from_file_location("wine_data", ROOT / "scripts" / "wine_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.wine_csv()
    assert (ROOT / "data" / "wine" / "wine.csv").read_text() == text
    lines = text.splitlines()
    assert len(lines) == 179 and lines[0].endswith("od280/od315_of_diluted_wines,proline,cultivar")
    assert {line.rsplit(",", 1)[1] for line in lines[1:]} == {"class_0", "class_1", "class_2"}
