"""ModelExport's failure paths become a parity verdict that names the cause, never a crashed pipeline."""

from __future__ import annotations

import numpy as np

from sluice.components.export import tflite
from sluice.components.export.component import export_variants
from sluice.components.export.rows import Rows
from sluice.pipeline.config import load_config
from tests.helpers import CONFIGS


def _contract(variants):
    """The fare config's export contract with these variants (the model and data are what fails here)."""
    return load_config(CONFIGS / "taxi_fare.yaml").export_contract().model_copy(update={"variants": variants})


def test_an_export_that_cannot_start_fails_every_variant_with_its_cause(tmp_path):
    settings = _contract(["float32", "int8"])
    rows = Rows([b""], {"x": np.zeros(1, np.float32)})
    (tmp_path / "model" / "Format-Keras").mkdir(parents=True)
    (tmp_path / "model" / "Format-Keras" / "model.keras").write_bytes(b"not a keras file")
    (tmp_path / "transform").mkdir()
    (tmp_path / "work").mkdir()
    verdict = export_variants(settings, str(tmp_path / "model"), str(tmp_path / "transform"), rows, rows,
                              str(tmp_path / "export"), str(tmp_path / "work"))
    assert verdict["passed"] is False and [v["variant"] for v in verdict["variants"]] == ["float32", "int8"]
    assert all("TFLite archive failed" in line for line in verdict["failures"])
    # The full log is kept in the export artifact, and the message names it there.
    assert (tmp_path / "export" / "_logs" / "archive.log").is_file()
    assert str(tmp_path / "export" / "_logs" / "archive.log") in verdict["failures"][0]


def test_an_export_whose_model_is_missing_fails_every_variant_with_its_cause(tmp_path):
    settings = _contract(["float32"])
    rows = Rows([b""], {"x": np.zeros(1, np.float32)})
    (tmp_path / "work").mkdir()
    verdict = export_variants(settings, str(tmp_path / "no-model"), str(tmp_path / "no-transform"), rows, rows,
                              str(tmp_path / "export"), str(tmp_path / "work"))
    assert verdict["passed"] is False and "model.keras" in verdict["failures"][0]


def test_a_converter_that_aborts_the_process_becomes_a_clear_error(tmp_path, monkeypatch):
    """The LLVM abort seen with Keras 3 models kills the converting process (SIGABRT): the caller survives
    and says which step died, how, and where the log is."""
    import os
    import stat

    aborting = tmp_path / "aborting-python"
    aborting.write_text("#!/bin/sh\necho 'LLVM ERROR: Failed to infer result type(s).' >&2\nkill -ABRT $$\n")
    aborting.chmod(aborting.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(tflite.sys, "executable", str(aborting))
    try:
        tflite.run_step({"step": "convert"}, str(tmp_path), "int8")
    except tflite.ExportFailed as e:
        message = str(e)
    else:
        raise AssertionError("a dead step must raise ExportFailed")
    assert "TFLite int8 failed (killed by signal 6)" in message and "LLVM ERROR" in message
    assert os.path.join(str(tmp_path), "int8.log") in message
