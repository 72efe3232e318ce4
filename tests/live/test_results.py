"""ResultsFile (crash-safe JSON Lines) and write_json (atomic)."""

from __future__ import annotations

import json

import pytest

from trim_rl.live.results import ResultsFile, write_json


def _row(pid: str, **extra) -> dict:
    return {"problem_id": pid, "correct": True, "steps": [{"text": "x = 1", "by": "weak"}], **extra}


def test_append_then_reopen_knows_done_ids(tmp_path):
    path = tmp_path / "runs" / "out.jsonl"  # parent folder created on first append
    out = ResultsFile(path)
    assert out.done == {} and not path.exists()
    out.append(_row("math/1"))
    out.append(_row("math/2", note="ünïcode"))
    assert set(out.done) == {"math/1", "math/2"}

    again = ResultsFile(path)
    assert set(again.done) == {"math/1", "math/2"}
    assert again.done["math/2"]["note"] == "ünïcode"
    assert again.rows() == [_row("math/1"), _row("math/2", note="ünïcode")]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and all(json.loads(line)["problem_id"] for line in lines)

    again.append(_row("math/3"))
    assert set(ResultsFile(path).done) == {"math/1", "math/2", "math/3"}


def test_numeric_ids_and_custom_key(tmp_path):
    path = tmp_path / "c.jsonl"
    out = ResultsFile(path, key="tree")
    out.append({"tree": 7, "x": 1})
    assert set(ResultsFile(path, key="tree").done) == {"7"}  # ids are strings
    with pytest.raises(ValueError, match=r"c\.jsonl:1: field 'problem_id' missing"):
        ResultsFile(path)


def test_torn_last_line_is_cut_on_reopen(tmp_path):
    path = tmp_path / "out.jsonl"
    out = ResultsFile(path)
    out.append(_row("a"))
    out.append(_row("b"))
    good = path.read_bytes()
    with open(path, "ab") as fh:  # a crash in the middle of writing the third line
        fh.write(b'{"problem_id": "c", "correct": tr')

    again = ResultsFile(path)
    assert set(again.done) == {"a", "b"}
    assert path.read_bytes() == good
    assert path.read_bytes().endswith(b"\n")

    again.append(_row("c"))  # the next line starts on a line of its own
    assert set(ResultsFile(path).done) == {"a", "b", "c"}


def test_file_holding_only_a_torn_line_is_emptied(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"problem_id": "a"')
    assert ResultsFile(path).done == {}
    assert path.read_bytes() == b""


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"problem_id": "a"}\n\n{"problem_id": "b"}\n', encoding="utf-8")
    assert set(ResultsFile(path).done) == {"a", "b"}


def test_corrupt_middle_line_raises_naming_file_and_line(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"problem_id": "a"}\n{"problem_id": "b", oops}\n{"problem_id": "c"}\n', encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(ValueError) as ei:
        ResultsFile(path)
    assert f"{path}:2:" in str(ei.value)
    assert path.read_bytes() == before  # nothing cut from a file that ends with a newline


def test_gz_name_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"\.gz"):
        ResultsFile(tmp_path / "out.jsonl.gz")
    assert list(tmp_path.iterdir()) == []


def test_write_json_is_atomic(tmp_path):
    path = tmp_path / "sub" / "summary.json"
    write_json(path, {"accuracy": 0.5, "remaining": ["a"]})
    assert json.loads(path.read_text(encoding="utf-8")) == {"accuracy": 0.5, "remaining": ["a"]}
    assert path.read_text(encoding="utf-8").endswith("}\n")
    write_json(path, {"accuracy": 0.75})
    assert json.loads(path.read_text(encoding="utf-8")) == {"accuracy": 0.75}
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temporary file left

    # a failure half-way through leaves the previous file whole and no temporary file behind
    with pytest.raises(TypeError):
        write_json(path, {"accuracy": 1.0, "bad": object()})
    assert json.loads(path.read_text(encoding="utf-8")) == {"accuracy": 0.75}
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]
