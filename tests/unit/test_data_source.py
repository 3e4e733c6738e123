"""Data source resolution and the header pre-flight check (no TensorFlow)."""

from __future__ import annotations

import pytest

from sluice.pipeline.data_source import check_columns, resolve_data_source
from sluice.pipeline.errors import DataError


def _csv(path, header="a,b,c", rows=("1,2,3",)):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_file_dir_and_glob(tmp_path):
    f = _csv(tmp_path / "one.csv")
    _csv(tmp_path / "two.csv")
    (tmp_path / "notes.txt").write_text("x")
    src = resolve_data_source(f)
    assert (src.input_base, src.pattern, len(src.files)) == (str(tmp_path), "one.csv", 1)
    src = resolve_data_source(tmp_path)
    assert src.pattern == "*.csv" and len(src.files) == 2
    src = resolve_data_source(tmp_path / "t*.csv")
    assert src.input_base == str(tmp_path) and src.pattern == "t*.csv" and len(src.files) == 1


def test_missing_path_names_the_key(tmp_path):
    with pytest.raises(DataError, match="data.path.*does not exist"):
        resolve_data_source(tmp_path / "nope.csv")


def test_empty_glob(tmp_path):
    with pytest.raises(DataError, match="no CSV files match"):
        resolve_data_source(tmp_path / "*.csv")


def test_missing_column_suggests_the_close_one(tmp_path):
    src = resolve_data_source(_csv(tmp_path / "d.csv", header="fare,trip_miles"))
    with pytest.raises(DataError) as exc:
        check_columns(src, ["fare", "trip_mile"])
    assert "column 'trip_mile'" in exc.value.render() and "did you mean 'trip_miles'" in exc.value.render()


def test_headers_must_agree_across_files(tmp_path):
    _csv(tmp_path / "a.csv", header="x,y")
    _csv(tmp_path / "b.csv", header="x,z")
    with pytest.raises(DataError, match="header differs"):
        check_columns(resolve_data_source(tmp_path), ["x"])


def test_empty_and_non_utf8_files(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        check_columns(resolve_data_source(tmp_path / "e.csv"), ["x"])
    (tmp_path / "b.csv").write_bytes(b"\xff\xfe,\x00x\n")
    with pytest.raises(DataError, match="UTF-8"):
        check_columns(resolve_data_source(tmp_path / "b.csv"), ["x"])


@pytest.mark.parametrize(
    "body,where,problem",
    [
        ("x,y\n1,2\n3,4,5\n", ":3", "has 3 fields, the header has 2"),
        ("x,y\n1,2\nx,y\n3,4\n", ":3", "repeats the header row"),
        ("x,y\n", "", "no data rows"),
        ('x,y\n1,"a,b"\n', None, None),  # a quoted comma is one field: fine
    ],
)
def test_row_level_checks(tmp_path, body, where, problem):
    f = tmp_path / "d.csv"
    f.write_text(body)
    src = resolve_data_source(f)
    if problem is None:
        assert check_columns(src, ["x"]) == ["x", "y"]
        return
    with pytest.raises(DataError) as exc:
        check_columns(src, ["x"])
    assert f"{f}{where}" in exc.value.render() and problem in exc.value.render()


def test_non_utf8_data_row_names_the_line(tmp_path):
    f = tmp_path / "d.csv"
    f.write_bytes(b"x,y\n1,2\n3,\xff\xfe\n")
    with pytest.raises(DataError) as exc:
        check_columns(resolve_data_source(f), ["x"])
    assert f"{f}:3" in exc.value.render() and "not UTF-8" in exc.value.render()


@pytest.mark.parametrize(
    "header,problem",
    [
        ('"Trip Miles","od280/od315, of wine",fare', "uses CSV quoting"),  # R's write.csv quotes every name
        ('"a",b', "uses CSV quoting"),
        ("a, b ,fare", "has spaces around it"),
        ("a,,fare", "is empty"),
        ("a,b,a", "names 'a' more than once"),
        ("\ufeffa,b", "byte-order mark"),
    ],
)
def test_headers_csv_example_gen_would_read_differently_are_refused(tmp_path, header, problem):
    """CsvExampleGen splits the header line on commas (no quoting, no trimming): any header that a CSV
    parser reads differently would give the pipeline other column names than the config's."""
    f = tmp_path / "h.csv"
    f.write_text(header + "\n" + ",".join(["1"] * 3) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        check_columns(resolve_data_source(f), [])
    assert f"{f}:1" in exc.value.render() and problem in exc.value.render()


def test_awkward_but_plain_headers_pass(tmp_path):
    header = "od280/od315 of wine,Prix (€),1st value,class,x.y"
    f = tmp_path / "h.csv"
    f.write_text(header + "\n1,2,3,4,5\n", encoding="utf-8")
    assert check_columns(resolve_data_source(f), ["Prix (€)"]) == header.split(",")
