"""Bulk scoring on Beam (``sluice predict --output``, serving/batch.py), on a small SavedModel with the
pushed model's signatures: rows become the examples CsvExampleGen makes, every row is either scored or in the
dead-letter file with its reason, and a batch the model refuses costs only its bad rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from sluice.components.features import request_key
from sluice.serving import batch
from sluice.serving.errors import SettingError
from tests.helpers import run_cli

INPUTS = {"a": "float", "b": "string", "c": "int64"}


def _tiny_model(base: Path, version: int = 1) -> Path:
    """``a`` required (float), ``b`` optional string, ``c`` optional int: outputs = 2a + c (+1 when b == "x").
    Optional features are parsed as sluice's Transform parses them, VarLen (CsvExampleGen writes an empty cell
    as the feature with no value, which a FixedLen feature with a default refuses)."""
    import tensorflow as tf

    spec = {"a": tf.io.FixedLenFeature([], tf.float32), "b": tf.io.VarLenFeature(tf.string),
            "c": tf.io.VarLenFeature(tf.int64)}

    def score(a, b, c):
        return {"outputs": tf.reshape(2 * a + tf.cast(c, tf.float32) + tf.cast(tf.equal(b, "x"), tf.float32), [-1, 1])}

    def dense(sparse, default):
        return tf.reshape(tf.sparse.to_dense(tf.sparse.reset_shape(sparse, [tf.shape(sparse)[0], 1]), default), [-1])

    class Tiny(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def default(self, examples):
            parsed = tf.io.parse_example(examples, spec)
            return score(parsed["a"], dense(parsed["b"], ""), dense(parsed["c"], tf.constant(0, tf.int64)))

        @tf.function(input_signature=[{"a": tf.TensorSpec([None], tf.float32, name="a"),
                                       "b": tf.TensorSpec([None], tf.string, name="b"),
                                       "c": tf.TensorSpec([None], tf.int64, name="c")}])
        def raw(self, columns):
            return score(columns["a"], columns["b"], columns["c"])

    module = Tiny()
    path = base / str(version)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.default,
                                                       "serving_raw": module.raw.get_concrete_function()})
    return path


def _write(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_rows_become_the_examples_csv_example_gen_makes():
    import tensorflow as tf

    from tfx.components.example_gen.csv_example_gen.executor import _ParsedCsvToTfExample
    from tfx_bsl.coders import csv_decoder

    header, dtypes = ("id", "a", "b", "c"), (None, "float", "string", "int64")
    cells = [b"7", b"1.5", b"", b" 3"]
    parsed = tf.train.Example.FromString(batch.example(header, dtypes, cells))
    # TFX's own CsvExampleGen conversion of the same cells (types as its inference would give them)
    kinds = {"float": csv_decoder.ColumnType.FLOAT, "string": csv_decoder.ColumnType.STRING,
             "int64": csv_decoder.ColumnType.INT, None: csv_decoder.ColumnType.STRING}
    infos = [csv_decoder.ColumnInfo(name, kinds[d]) for name, d in zip(header, dtypes)]
    (tfx,) = list(_ParsedCsvToTfExample().process(cells, infos))
    assert parsed == tfx
    features = parsed.features.feature
    assert "b" in features and not features["b"].bytes_list.value, "an empty cell: the feature, with no value"
    with pytest.raises(batch.RowError, match=r"'c': '3.5' is not an integer"):
        batch.example(header, dtypes, [b"7", b"1.5", b"", b"3.5"])
    with pytest.raises(batch.RowError, match=r"'c': '1e3' is not an integer"):  # int(cell), as CsvExampleGen
        batch.example(header, dtypes, [b"7", b"1.5", b"", b"1e3"])
    with pytest.raises(batch.RowError, match=r"outside the int64 range"):
        batch.example(header, dtypes, [b"7", b"1.5", b"", b"9223372036854775808"])
    with pytest.raises(batch.RowError, match=r"'a': 'abc' is not a number"):
        batch.example(header, dtypes, [b"7", b"abc", b"", b"1"])
    with pytest.raises(batch.RowError, match="3 cells, the header 4"):
        batch.example(header, dtypes, [b"7", b"1", b""])
    assert batch._kind("column 'c': '3.5' is not an integer") == batch._kind("column 'c': '7.25' is not an integer")
    assert batch._kind("column 'a': \"O'Brien\" is not a number") == batch._kind("column 'a': 'x' is not a number")
    assert batch._kind("a quote: lines 4-7 were") == batch._kind("a quote: lines 10-12 were")


def test_a_refused_batch_costs_only_its_bad_rows():
    calls = []

    def call(rows):
        calls.append(len(rows))
        if b"bad" in rows:
            raise ValueError("Feature: a is required but could not be found.")
        return {"outputs": [len(r) for r in rows]}

    rows = [b"r%d" % i for i in range(64)]
    rows[5] = rows[40] = b"bad"
    answers = batch.answer_rows(call, rows, lambda e: str(e) if isinstance(e, ValueError) else None)
    refused = [i for i, a in enumerate(answers) if isinstance(a, batch.Refused)]
    assert refused == [5, 40]
    assert all(answers[i] == {"outputs": len(rows[i])} for i in range(64) if i not in refused)
    assert len(calls) < 30, f"halving, not one call per row: {len(calls)} calls"
    with pytest.raises(KeyError):  # an error that is not the rows' fault stops the run
        batch.answer_rows(lambda r: {}[0], rows, lambda e: None)


def test_plan_checks_every_file_before_reading_rows(tmp_path):
    good = _write(tmp_path / "good.csv", ["id", "a", "b", "c", "label"], [])
    other = _write(tmp_path / "other.csv", ["a", "b", "c", "id"], [])
    plan = batch.plan([str(good), str(other)], INPUTS, request_key, None, "m", 1, "p", False)
    assert plan.keys == ("id",), "default keys: the columns every file has that the model does not take"
    assert plan.output_columns() == ["id", "prediction"]
    with pytest.raises(SettingError, match="prediction would repeat an output column"):
        batch.plan([str(good)], INPUTS, request_key, ["id", "prediction"], "m", 1, "p", False)
    rescored = _write(tmp_path / "rescored.csv", ["id", "a", "b", "c", "prediction"], [])
    assert batch.plan([str(rescored)], INPUTS, request_key, None, "m", 1, "p", False).keys == ("id",)
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfid,a,b,c\n")
    assert batch.plan([str(bom)], INPUTS, request_key, ["id"], "m", 1, "p", False).keys == ("id",)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"id,a,b,c,caf\xe9\n")
    with pytest.raises(SettingError, match="not UTF-8"):
        batch.read_header(str(latin))
    only_inputs = _write(tmp_path / "inputs.csv", ["a", "b", "c"], [])
    assert batch.plan([str(only_inputs)], INPUTS, request_key, None, "m", 1, "p", True).output_columns() == \
        ["row", "class", "prediction"]
    lacking = _write(tmp_path / "lacking.csv", ["id", "a", "b"], [])
    with pytest.raises(SettingError, match=r"model input\(s\) c"):
        batch.plan([str(good), str(lacking)], INPUTS, request_key, None, "m", 1, "p", False)
    with pytest.raises(SettingError, match="has no column trip_id"):
        batch.plan([str(good)], INPUTS, request_key, ["trip_id"], "m", 1, "p", False)
    twice = tmp_path / "twice.csv"
    twice.write_text("a,b,c,a\n1,x,2,3\n")
    with pytest.raises(SettingError, match="'a' twice"):
        batch.plan([str(twice)], INPUTS, request_key, None, "m", 1, "p", False)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(SettingError, match="no header"):
        batch.read_header(str(empty))
    with pytest.raises(SettingError, match="no CSV file"):
        batch.input_files(str(tmp_path / "nothing-*.csv"))


def _predictions(out: Path):
    return {row["id"]: row for row in batch.read_predictions(str(out))}


def _dead(out: Path):
    letters = []
    for path in sorted(out.glob("dead_letter-*.jsonl")):
        letters += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return letters


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A directory of two files (one with bad rows of every kind) scored through the CLI."""
    work = tmp_path_factory.mktemp("bulk")
    _tiny_model(work / "serving" / "tiny", 1)
    _tiny_model(work / "serving" / "tiny", 2)
    data = work / "data"
    data.mkdir()
    good = [[f"g{i}", i / 4, "x" if i % 3 == 0 else "", i % 5 if i % 2 else ""] for i in range(400)]
    _write(data / "part-1.csv", ["id", "a", "b", "c"], good)
    mixed = [["m0", 1, "x", 2],
             ["m1", "not-a-number", "", 1],        # parse: not a number
             ["m2", "", "y", 1],                    # the model: a is required
             ["m3", 2.5, "", 4.5],                  # parse: int column with a fraction
             ["m4", 3],                             # parse: too few cells
             ["m5", 4, "", 1]]
    _write(data / "part-2.csv", ["id", "a", "b", "c"], mixed)
    # A byte-order mark, a cell that is not UTF-8 (CsvExampleGen cannot read it), an int beyond int64, then a
    # stray quote that joins the last four lines into one row: four rows lost, and counted.
    (data / "part-3.csv").write_bytes(b"\xef\xbb\xbfid,a,b,c\nq0,1,caf\xe9,1\nq1,1,,9223372036854775808\n"
                                      b'q2,"1,,1\nq3,1,,1\nq4,1,,1\nq5,1,,1\n')
    out = work / "out"
    proc = run_cli("predict", "--input", str(data), "--output", str(out), "--model-dir", str(work / "serving"),
                   "--model", "tiny", "--batch-size", "64", timeout=600)
    return {"work": work, "data": data, "out": out, "proc": proc, "good": good}


def test_every_row_is_scored_or_in_the_dead_letter_file(scored):
    proc, out = scored["proc"], scored["out"]
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    predictions = _predictions(out)
    assert len(predictions) == 400 + 2
    for i, (_, a, b, c) in enumerate(scored["good"]):
        expected = 2 * a + (c or 0) + (1 if b == "x" else 0)
        assert float(predictions[f"g{i}"]["prediction"]) == pytest.approx(expected)
    assert float(predictions["m0"]["prediction"]) == pytest.approx(5.0)
    assert float(predictions["m5"]["prediction"]) == pytest.approx(9.0)
    letters = {(Path(d["file"]).name, d["line"]): d for d in _dead(out)}
    assert set(letters) == {("part-2.csv", 3), ("part-2.csv", 4), ("part-2.csv", 5), ("part-2.csv", 6),
                            ("part-3.csv", 2), ("part-3.csv", 3), ("part-3.csv", 4)}
    assert "not UTF-8" in letters[("part-3.csv", 2)]["reason"] and letters[("part-3.csv", 2)]["row"][2] == "caf\ufffd"
    assert "outside the int64 range" in letters[("part-3.csv", 3)]["reason"]
    stray = letters[("part-3.csv", 4)]
    assert stray["lines"] == 4 and "no later line closes: lines 4-7" in stray["reason"], stray
    assert "not a number" in letters[("part-2.csv", 3)]["reason"]
    assert "model refused" in letters[("part-2.csv", 4)]["reason"] and "a" in letters[("part-2.csv", 4)]["reason"]
    assert letters[("part-2.csv", 4)]["key"] == ["m2"]
    assert "not an integer" in letters[("part-2.csv", 5)]["reason"]
    assert "2 cells, the header 4" in letters[("part-2.csv", 6)]["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["scored"], summary["dead_letter"], summary["version"]) == (402, 10, 2)
    assert "10 row(s) not scored" in proc.stderr and "402 row(s) scored" in proc.stdout


def test_prediction_logs_are_what_monitor_reads(scored):
    import tensorflow as tf

    from sluice.serving.request_log import read_logs

    logs = read_logs(str(scored["out"]))
    assert len(logs) == 402
    ids, outputs = set(), {}
    for log in logs:
        request = log.predict_log.request
        assert (request.model_spec.name, request.model_spec.version.value) == ("tiny", 2)
        assert request.model_spec.signature_name == "serving_default"
        (raw,) = tf.make_ndarray(request.inputs["examples"])
        example = tf.train.Example.FromString(raw)
        key = example.features.feature["id"].bytes_list.value[0].decode()
        ids.add(key)
        outputs[key] = float(tf.make_ndarray(log.predict_log.response.outputs["outputs"]).reshape(-1)[0])
    assert ids == set(_predictions(scored["out"]))
    assert outputs["m0"] == pytest.approx(5.0)

    from sluice.pipeline.monitor import read_served

    served, others = read_served(str(scored["out"]), "tiny", ["a", "b", "c"])
    assert not others and set(served) == {2}
    assert served[2].rows == 402 and len(served[2].predictions) == 402
    rows = [tf.train.Example.FromString(e).features.feature for e in served[2].examples]
    assert sum(len(r["b"].bytes_list.value) for r in rows) == sum(1 for g in scored["good"] if g[2]) + 1
    assert sorted(served[2].predictions) == pytest.approx(sorted(outputs.values()))


def test_refusals_are_one_screen_and_lose_nothing(scored, capsys):
    from sluice.pipeline.cli import main

    work, data, out = scored["work"], scored["data"], scored["out"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    cases = ((str(out), ["--model", "tiny"], "exists already"),
             (str(work / "new"), ["--model", "nope"], "no pushed version"),
             (str(work / "new"), ["--model", "tiny", "--version", "7"], "[1, 2]"),
             (str(work / "new"), ["--model", "tiny", "--endpoint", "http://x"], "without an endpoint"),
             (str(work / "new"), ["--model", "tiny", "--signature", "serving_raw"], "--signature with --output"),
             (str(work / "new"), ["--model", "tiny", "--keys", "trip_id"], "has no column trip_id"),
             (str(work / "new"), ["--model", "tiny", "--batch-size", "0"], "--batch-size"))
    for output, args, problem in cases:  # in process: the same main() the console script runs
        code = main(["predict", "--input", str(data), "--output", output, "--model-dir", str(work / "serving"), *args])
        err = capsys.readouterr().err
        assert code == 1 and problem in err and "Traceback" not in err, (args, err)
        assert not (work / "new").exists()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    code = main(["predict", "--input", str(data), "--model", "tiny", "--keys", "id"])  # no --output: endpoint mode
    err = capsys.readouterr().err
    assert code == 1 and "--keys: applies to bulk scoring only" in err, err


def test_multi_processing_workers_give_the_same_predictions(scored):
    work = scored["work"]
    out = work / "mp"
    proc = run_cli("predict", "--input", str(scored["data"] / "part-1.csv"), "--output", str(out),
                   "--model-dir", str(work / "serving"), "--model", "tiny", "--version", "1",
                   "--direct-running-mode", "multi_processing", "--direct-num-workers", "2", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mine, reference = _predictions(out), _predictions(scored["out"])
    assert set(mine) == {f"g{i}" for i in range(400)}
    assert all(mine[k]["prediction"] == reference[k]["prediction"] for k in mine)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["version"], summary["scored"], summary["dead_letter"]) == (1, 400, 0), "counted across workers"
