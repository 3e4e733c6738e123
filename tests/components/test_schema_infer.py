"""`sluice schema infer`'s draft and the DataGate agree: the draft accepts the CSV it was inferred from, read the
way the pipeline reads it (CsvExampleGen's own CSV -> tf.Example transform, TFDV statistics and validation)."""

from __future__ import annotations

import csv

import pytest

pytestmark = pytest.mark.filterwarnings("ignore")


def _pipeline_statistics(csv_dir, tmp_path):
    """Statistics of the CSV as CsvExampleGen + StatisticsGen produce them (empty cells: present, no value)."""
    import apache_beam as beam
    import tensorflow_data_validation as tfdv
    from tfx.components.example_gen.csv_example_gen.executor import _CsvToExample

    out = tmp_path / "examples"
    with beam.Pipeline() as p:
        _ = (p | _CsvToExample({"input_base": str(csv_dir)}, "*.csv")
             | beam.io.WriteToTFRecord(str(out / "data"), coder=beam.coders.ProtoCoder(_example_class())))
    return tfdv.generate_statistics_from_tfrecord(data_location=str(out / "data*"))


def _example_class():
    import tensorflow as tf

    return tf.train.Example


def _write_csv(path):
    header = ["id", "Trip Miles", "compañía", "od280/od315", "rate (%)", "label"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(200):
            w.writerow([i, "" if i % 7 == 0 else round(i * 0.37, 2), "" if i % 5 == 0 else ["a", "b", "c"][i % 3],
                        (i % 13) * 1.5, "" if i % 11 == 0 else i % 4, i * 2.0])


def test_the_draft_accepts_its_own_csv_as_the_pipeline_reads_it(tmp_path):
    import tensorflow_data_validation as tfdv

    from sluice.components.data_gate import findings_from_anomalies
    from sluice.pipeline.schema import draft_text, infer_schema

    data = tmp_path / "data"
    data.mkdir()
    _write_csv(data / "data.csv")
    schema = infer_schema(str(data / "data.csv"))
    anomalies = tfdv.validate_statistics(_pipeline_statistics(data, tmp_path), schema)
    assert dict(anomalies.anomaly_info) == {}, anomalies
    # The columns with empty cells are the optional ones, and the header says so.
    optional = {f.name for f in schema.feature if f.HasField("value_count")}
    assert optional == {"Trip Miles", "compañía", "rate (%)"}
    text = draft_text(schema, "data.csv")
    assert text.startswith("# Drafted by `sluice schema infer`") and 'name: "compañía"' in text

    # TFDV's draft as it was (value_count min 1) is what the gate used to reject: the test can fail.
    strict = infer_schema(str(data / "data.csv"))
    for feature in strict.feature:
        if feature.HasField("value_count"):
            feature.value_count.min = 1
    rejected = tfdv.validate_statistics(_pipeline_statistics(data, tmp_path / "again"), strict)
    findings = findings_from_anomalies(rejected, "train", strict, text)
    # TFDV quotes "rate (%)" in its keys; the gate names every column as the CSV does, with its schema line.
    assert {f.feature for f in findings} == optional
    assert {f.anomaly for f in findings} == {"FEATURE_TYPE_LOW_NUMBER_VALUES"}
    lines = text.splitlines()
    for finding in findings:
        number = int(finding.schema_change.split(":")[0].removeprefix("line "))
        assert lines[number - 1].strip() == f'name: "{finding.feature}"'
        assert "value_count { min: 0 max: 1 }" in finding.schema_change
