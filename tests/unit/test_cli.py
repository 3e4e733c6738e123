"""CLI fast paths: help and check never import TensorFlow; user errors are one line."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import CONFIGS, ROOT, run_cli

_PROBE = """
import sys
from sluice.pipeline import cli
try:
    cli.main({argv!r})
except SystemExit:
    pass
heavy = sorted(m for m in ("tensorflow", "tfx", "apache_beam", "keras") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


def _heavy_modules_after(argv):
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(argv=argv)], capture_output=True, text=True, cwd=ROOT)
    line = [l for l in proc.stdout.splitlines() if l.startswith("HEAVY=")][-1]
    return line.removeprefix("HEAVY=")


def test_help_does_not_import_tensorflow():
    assert _heavy_modules_after(["--help"]) == ""
    assert _heavy_modules_after(["run", "--help"]) == ""


def test_check_does_not_import_tensorflow():
    assert _heavy_modules_after(["check", "--config", str(CONFIGS / "taxi_fare.yaml")]) == ""


def test_check_accepts_both_shipped_configs():
    for name in ("taxi_fare", "taxi_tips"):
        proc = run_cli("check", "--config", str(CONFIGS / f"{name}.yaml"))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"ok: {name}")


def test_data_override_with_missing_column_is_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("fare,trip_miles\n1,2\n")
    proc = run_cli("run", "--config", str(CONFIGS / "taxi_fare.yaml"), "--data", str(bad), "--output", str(tmp_path / "o"))
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "column 'trip_seconds'" in proc.stderr and "Traceback" not in proc.stderr


def test_no_command_prints_help():
    proc = run_cli()
    assert proc.returncode == 1 and "usage: sluice" in proc.stdout


def test_check_rejects_a_uri_schema_in_one_line(tmp_path):
    import yaml

    raw = yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text())
    raw["schema"] = "gs://bucket/schemas/taxi/schema.pbtxt"  # fine for `sluice compile`, not for local work
    raw["data"]["path"] = str(CONFIGS.parent / "data" / "taxi" / "data.csv")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    proc = run_cli("check", "--config", str(tmp_path / "c.yaml"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith("sluice: error: schema: gs://bucket/schemas/taxi/schema.pbtxt is a URI")


def test_compile_of_a_config_outside_the_image_fails_fast_in_one_line(tmp_path):
    import shutil

    import yaml

    raw = yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text())
    shutil.copy(ROOT / "schemas" / "taxi" / "schema.pbtxt", tmp_path / "schema.pbtxt")
    raw["schema"] = "schema.pbtxt"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "p.json"
    proc = run_cli("compile", "--config", str(tmp_path / "c.yaml"), "--image", "img:1", "--pipeline-root",
                   "gs://bucket/root", "--data", "gs://bucket/data/", "--output", str(out), timeout=60)
    assert proc.returncode == 1 and not out.exists() and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"sluice: error: schema: {tmp_path / 'schema.pbtxt'} is on this machine and not in the pipeline image "
        "(copy it to gs://BUCKET/… and set schema: to that URI or pass --schema gs://…; or keep it in the project's "
        "schemas/ folder beside configs/, which the image holds at /sluice/schemas/)"]
