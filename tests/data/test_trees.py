"""Tests for trim_rl.data.trees: reading (JSON Lines, gzip) and atomic, deterministic writing."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from trim_rl.data import TreeFormatError, iter_trees, read_trees, write_trees
from trim_rl.data.schema import CheckedTree
from trim_rl.data.trees import dumps_line, iter_json_lines, write_json_lines


def two_trees(make_tree):
    second = make_tree(problem_id="toy/test/1", problem="Ünïcode ∑ problem", level=None)
    second["nodes"][0]["weak"]["text"] = "step with \"quotes\" and\nnewline"
    return [make_tree(), second]


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["trees.jsonl", "trees.jsonl.gz"])
def test_round_trip(tmp_path, make_tree, name):
    trees = two_trees(make_tree)
    path = tmp_path / name
    assert write_trees(path, trees) == 2
    assert read_trees(path) == trees
    raw = path.read_bytes()
    if name.endswith(".gz"):
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    else:
        assert raw[:2] != b"\x1f\x8b"
    lines = raw.decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == 3  # one line per tree, newline-terminated
    assert [json.loads(x) for x in lines[:2]] == trees
    assert "Ünïcode ∑" in lines[1]  # not \u-escaped
    assert ": " not in lines[0] and ", " not in lines[0]  # compact separators


def test_iter_trees_yields_raw_and_checked(tmp_path, make_tree):
    trees = two_trees(make_tree)
    path = tmp_path / "t.jsonl.gz"
    write_trees(path, trees)
    got = list(iter_trees(path))
    assert [raw for raw, _ in got] == trees
    assert all(isinstance(c, CheckedTree) for _, c in got)
    assert got[1][1].header["problem_id"] == "toy/test/1"


def test_write_accepts_generator_and_str_path(tmp_path, make_tree):
    path = str(tmp_path / "g.jsonl")
    assert write_trees(path, (make_tree(problem_id=f"p{i}") for i in range(3))) == 3
    assert [t["problem_id"] for t in read_trees(path)] == ["p0", "p1", "p2"]


def test_an_empty_file_is_written_but_refused_when_read(tmp_path):
    path = tmp_path / "empty.jsonl.gz"
    assert write_trees(path, []) == 0
    with pytest.raises(TreeFormatError, match=r"empty\.jsonl\.gz: <file>: no trees in this file"):
        read_trees(path)


def test_write_creates_parent_directories(tmp_path, make_tree):
    path = tmp_path / "a" / "b" / "t.jsonl"
    write_trees(path, [make_tree()])
    assert read_trees(path) == [make_tree()]


def test_write_overwrites_existing_file(tmp_path, make_tree):
    path = tmp_path / "t.jsonl"
    path.write_text("old content\n")
    write_trees(path, [make_tree()])
    assert read_trees(path) == [make_tree()]
    assert os.listdir(tmp_path) == ["t.jsonl"]


def test_gzip_output_is_byte_identical(tmp_path, make_tree, monkeypatch):
    trees = two_trees(make_tree)
    # Different clocks and different file names must not change the bytes (no mtime, no name).
    monkeypatch.setattr(gzip.time, "time", lambda: 1_000_000_000.0)
    write_trees(tmp_path / "a.jsonl.gz", trees)
    monkeypatch.setattr(gzip.time, "time", lambda: 1_700_000_000.0)
    write_trees(tmp_path / "other_name.jsonl.gz", trees)
    monkeypatch.undo()
    write_trees(tmp_path / "sub" / "c.jsonl.gz", trees)
    a = (tmp_path / "a.jsonl.gz").read_bytes()
    assert a == (tmp_path / "other_name.jsonl.gz").read_bytes()
    assert a == (tmp_path / "sub" / "c.jsonl.gz").read_bytes()
    assert a[4:8] == b"\0\0\0\0"  # gzip header MTIME field


def test_plain_output_is_byte_identical(tmp_path, make_tree):
    trees = two_trees(make_tree)
    write_trees(tmp_path / "a.jsonl", trees)
    write_trees(tmp_path / "b.jsonl", trees)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


# --- atomic writes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["trees.jsonl", "trees.jsonl.gz"])
def test_invalid_tree_leaves_destination_unchanged(tmp_path, make_tree, name):
    path = tmp_path / name
    write_trees(path, [make_tree(problem_id="original")])
    before = path.read_bytes()
    bad = make_tree()
    del bad["nodes"][1]["weak"]["correct"]
    with pytest.raises(TreeFormatError) as info:
        write_trees(path, [make_tree(), bad, make_tree()])  # the bad tree comes after a good one
    err = info.value
    assert str(path) in str(err)
    assert err.line == 2
    assert err.field == "nodes[1].weak.correct"
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [name]  # no temporary file left behind


def test_invalid_tree_does_not_create_destination(tmp_path, make_tree):
    bad = make_tree()
    bad["strong_only"]["correct"] = "yes"
    with pytest.raises(TreeFormatError):
        write_trees(tmp_path / "new.jsonl.gz", [bad])
    assert os.listdir(tmp_path) == []


def test_unserialisable_tree_without_validation_is_atomic(tmp_path, make_tree):
    path = tmp_path / "t.jsonl"
    path.write_text("keep me\n")
    bad = make_tree()
    bad["nodes"][0]["weak"]["prm"] = float("nan")
    with pytest.raises(ValueError):  # NaN is never written (allow_nan=False)
        write_trees(path, [make_tree(), bad], validate=False)
    assert path.read_text() == "keep me\n"
    assert os.listdir(tmp_path) == ["t.jsonl"]


def test_write_without_validation_writes_invalid_tree(tmp_path, make_tree):
    bad = make_tree()
    del bad["answer"]
    path = tmp_path / "t.jsonl"
    assert write_trees(path, [bad], validate=False) == 1
    with pytest.raises(TreeFormatError):
        read_trees(path)


def test_exception_from_iterable_is_atomic(tmp_path, make_tree):
    path = tmp_path / "t.jsonl.gz"
    write_trees(path, [make_tree()])
    before = path.read_bytes()

    def rows():
        yield make_tree()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_trees(path, rows())
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["t.jsonl.gz"]


def test_write_json_lines_and_dumps_line(tmp_path):
    assert dumps_line({"b": 1, "a": [1, 2], "c": "é"}) == '{"b":1,"a":[1,2],"c":"é"}'
    with pytest.raises(ValueError):
        dumps_line({"x": float("inf")})
    path = tmp_path / "rows.jsonl"
    assert write_json_lines(path, [{"a": 1}, [2], "s"]) == 3
    assert path.read_text(encoding="utf-8") == '{"a":1}\n[2]\n"s"\n'


# --- reading bad files -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["t.jsonl", "t.jsonl.gz"])
def test_invalid_json(tmp_path, make_tree, write_jsonl, assert_tree_error, name):
    path = write_jsonl(tmp_path / name, [make_tree(), '{"schema": "trim_rl.tree/v1", nodes: []}', make_tree()])
    with pytest.raises(TreeFormatError) as info:
        read_trees(path)
    assert_tree_error(info.value, path, 2, "<line>")
    assert "invalid JSON" in info.value.message


def test_truncated_json_line(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path = write_jsonl(tmp_path / "t.jsonl", [make_tree(), json.dumps(make_tree())[:-40]])
    with pytest.raises(TreeFormatError) as info:
        read_trees(path)
    assert_tree_error(info.value, path, 2, "<line>")


def test_truncated_gzip_trailer(tmp_path, make_tree, assert_tree_error):
    path = tmp_path / "t.jsonl.gz"
    write_trees(path, [make_tree(), make_tree()])
    data = path.read_bytes()
    path.write_bytes(data[:-8])  # drop CRC32 + ISIZE: both lines decode, the stream does not end
    with pytest.raises(TreeFormatError) as info:
        read_trees(path)
    assert_tree_error(info.value, path, 3, "<gzip stream>")
    assert "truncated" in info.value.message and "after line 2" in info.value.message


@pytest.mark.parametrize("keep", [0.5, 0.8, 20])
def test_truncated_gzip_cut_short(tmp_path, make_tree, keep):
    path = tmp_path / "t.jsonl.gz"
    trees = [make_tree(problem_id=f"p{i}", problem=f"problem {i} " * 30) for i in range(5)]
    write_trees(path, trees)
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    path.write_bytes(data[:cut])
    seen = []
    with pytest.raises(TreeFormatError) as info:
        for line, _ in iter_json_lines(path):
            seen.append(line)
    err = info.value
    assert err.field == "<gzip stream>"
    assert err.line == len(seen) + 1 and len(seen) < 5
    assert str(err).startswith(f"{path}:{err.line}: <gzip stream>: ")
    with pytest.raises(TreeFormatError):
        read_trees(path)


def test_not_gzip_data(tmp_path, make_tree, write_jsonl, assert_tree_error):
    path = write_jsonl(tmp_path / "plain.jsonl", [make_tree()])
    fake = tmp_path / "fake.jsonl.gz"
    fake.write_bytes(path.read_bytes())
    with pytest.raises(TreeFormatError) as info:
        read_trees(fake)
    assert_tree_error(info.value, fake, 1, "<gzip stream>")


def test_invalid_utf8(tmp_path, make_tree, assert_tree_error):
    path = tmp_path / "t.jsonl"
    path.write_bytes(json.dumps(make_tree()).encode() + b"\n" + b'{"schema": "\xff\xfe"}\n')
    with pytest.raises(TreeFormatError) as info:
        read_trees(path)
    assert_tree_error(info.value, path, 2, "<line>")
    assert "UTF-8" in info.value.message


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_trees(tmp_path / "nope.jsonl")


def test_iter_json_lines_numbers_and_skips_blank_lines(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "x.jsonl.gz", [{"a": 1}, "", "  \t", "[1, 2]", "3"])
    assert list(iter_json_lines(path)) == [(1, {"a": 1}), (4, [1, 2]), (5, 3)]


def test_crlf_lines(tmp_path, make_tree):
    path = tmp_path / "t.jsonl"
    path.write_bytes((json.dumps(make_tree()) + "\r\n").encode() * 2)
    assert read_trees(path) == [make_tree(), make_tree()]



@pytest.mark.parametrize("name", ["t.jsonl", "t.jsonl.gz"])
@pytest.mark.parametrize("where, field", [
    ('"tokens": 10', "nodes[0].weak.tokens"),
    ('"max_interventions": 1', "max_interventions"),
    ('"keep": 1', "nodes[0].keep"),
])
def test_an_integer_too_long_to_read_names_file_line_and_field(tmp_path, make_tree, write_jsonl, assert_tree_error,
                                                               name, where, field):
    """Python refuses to read integers of more than 4300 digits; the error still says where it is."""
    key = where.split(":")[0]
    line = json.dumps(make_tree()).replace(where, f"{key}: -" + "7" * 5000, 1)
    assert "7" * 5000 in line
    path = write_jsonl(tmp_path / name, [make_tree(), line])
    for read in (read_trees, lambda p: list(iter_json_lines(p))):
        with pytest.raises(TreeFormatError) as info:
            read(path)
        assert_tree_error(info.value, path, 2, field)
        assert "5000 digits" in info.value.message and "7777" not in str(info.value)


def test_a_long_integer_is_named_by_the_loaders_too(tmp_path, make_tree, write_jsonl):
    from trim_rl.data.flat import load_flat

    path = write_jsonl(tmp_path / "t.jsonl", [json.dumps(make_tree()).replace('"tokens": 27', '"tokens": ' + "1" * 4400)])
    with pytest.raises(TreeFormatError, match=r"t\.jsonl:1: strong_only\.tokens: an integer of 4400 digits"):
        load_flat(path)


def test_a_long_float_is_still_read_as_a_number(tmp_path, make_tree, write_jsonl):
    """Only integers have the length limit: a long decimal is a float and the schema judges it."""
    line = json.dumps(make_tree()).replace('"prm": 0.9', '"prm": 0.' + "9" * 5000, 1)
    path = write_jsonl(tmp_path / "t.jsonl", [line])
    assert read_trees(path)[0]["nodes"][0]["weak"]["prm"] == pytest.approx(1.0)
