"""``python -m trim_rl.data merge``: shard tree files validated and joined, duplicates and mixed
collections refused by name, nothing written on refusal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trim_rl.data.merge import merge_shards
from trim_rl.data.trees import read_trees
from tests.conftest import REPO



def shard(tmp_path, name, trees, write_jsonl):
    return write_jsonl(tmp_path / name, trees)


def _tree(make_tree, pid, **meta):
    return make_tree(problem_id=pid, meta={"collected_by": "trim_rl.live.collect", "max_depth": 30, "seed": 0, **meta})


def test_shards_are_joined_in_order(tmp_path, make_tree, write_jsonl):
    a = shard(tmp_path, "a.jsonl", [_tree(make_tree, "p/0"), _tree(make_tree, "p/3")], write_jsonl)
    b = shard(tmp_path, "b.jsonl.gz", [_tree(make_tree, "p/1")], write_jsonl)
    out = tmp_path / "all.jsonl.gz"
    got = merge_shards(out, [a, b])
    assert got["trees"] == 3 and got["shards"] == {str(a): 2, str(b): 1}
    assert [t["problem_id"] for t in read_trees(out)] == ["p/0", "p/3", "p/1"]


def test_duplicate_problem_id_is_refused_by_name(tmp_path, make_tree, write_jsonl):
    a = shard(tmp_path, "a.jsonl", [_tree(make_tree, "p/0"), _tree(make_tree, "p/1")], write_jsonl)
    b = shard(tmp_path, "b.jsonl", [_tree(make_tree, "p/2"), _tree(make_tree, "p/1")], write_jsonl)
    with pytest.raises(ValueError, match=rf"problem 'p/1' is in {a}:2 and again in {b}:2"):
        merge_shards(tmp_path / "out.jsonl", [a, b])
    assert not (tmp_path / "out.jsonl").exists()
    c = shard(tmp_path, "c.jsonl", [_tree(make_tree, "p/5"), _tree(make_tree, "p/5")], write_jsonl)
    with pytest.raises(ValueError, match=rf"'p/5' is in {c}:1 and again in {c}:2"):
        merge_shards(tmp_path / "out.jsonl", [c])


@pytest.mark.parametrize("change, field", [
    ({"models": {"weak": "other", "strong": "strong-model", "prm": "prm-model"}}, "models"),
    ({"max_interventions": 0}, "max_interventions"),
    ({"meta": {"collected_by": "trim_rl.live.collect", "max_depth": 12, "seed": 0}}, "meta.max_depth"),
])
def test_shards_of_another_collection_are_refused(tmp_path, make_tree, make_chain, write_jsonl, change, field):
    a = shard(tmp_path, "a.jsonl", [_tree(make_tree, "p/0")], write_jsonl)
    other = _tree(make_tree, "p/1")
    if field == "max_interventions":  # a K = 0 tree (the tiny tree needs K = 1)
        other = {**make_chain(3), "problem_id": "p/1", "models": other["models"], "meta": other["meta"]}
    else:
        other.update(change)
    b = shard(tmp_path, "b.jsonl", [other], write_jsonl)
    with pytest.raises(ValueError, match=rf"{b}:1 was collected with {field} = .*, {a}:1 with"):
        merge_shards(tmp_path / "out.jsonl", [a, b])
    assert not (tmp_path / "out.jsonl").exists()


def test_invalid_tree_is_named_with_file_line_and_field(tmp_path, make_tree, write_jsonl, assert_tree_error):
    from trim_rl.data.errors import TreeFormatError

    bad = _tree(make_tree, "p/1")
    bad["nodes"][0]["weak"]["prm"] = 1.5
    a = shard(tmp_path, "a.jsonl", [_tree(make_tree, "p/0"), bad], write_jsonl)
    with pytest.raises(TreeFormatError) as ei:
        merge_shards(tmp_path / "out.jsonl", [a])
    assert_tree_error(ei.value, a, 2, "nodes[0].weak.prm")


def test_output_is_checked_before_anything_is_read(tmp_path, make_tree, write_jsonl):
    a = shard(tmp_path, "a.jsonl", [_tree(make_tree, "p/0")], write_jsonl)
    with pytest.raises(ValueError, match="is also a shard"):
        merge_shards(a, [a])
    existing = tmp_path / "exists.jsonl"
    existing.write_text("keep me\n")
    with pytest.raises(ValueError, match="exists; pass --force"):
        merge_shards(existing, [a])
    assert existing.read_text() == "keep me\n"
    assert merge_shards(existing, [a], force=True)["trees"] == 1
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match=f"no trees in {empty}"):
        merge_shards(tmp_path / "o2.jsonl", [a, empty])


def test_cli_prints_counts_and_refuses_in_one_line(tmp_path, make_tree, write_jsonl):
    a = shard(tmp_path, "a.jsonl", [_tree(make_tree, "p/0")], write_jsonl)
    b = shard(tmp_path, "b.jsonl", [_tree(make_tree, "p/0")], write_jsonl)
    def run(*args):
        return subprocess.run([sys.executable, "-m", "trim_rl.data", "merge", *map(str, args)], cwd=REPO,
                                           capture_output=True, text=True, timeout=120)
    ok = run(tmp_path / "m.jsonl", a)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["trees"] == 1
    bad = run(tmp_path / "m2.jsonl", a, b)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "'p/0'" in bad.stderr
    missing = run(tmp_path / "m3.jsonl", tmp_path / "nope.jsonl")
    assert missing.returncode == 2 and "nope.jsonl: no such file" in missing.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl", "m.jsonl"]


def test_a_shard_named_twice_or_an_output_under_a_file_is_refused_up_front(tmp_path, make_tree, write_jsonl):
    a = shard(tmp_path, "a.jsonl", [_tree(make_tree, "p/0")], write_jsonl)
    with pytest.raises(ValueError, match=r"the shard .*a\.jsonl is named twice"):
        merge_shards(tmp_path / "m.jsonl", [a, tmp_path / "." / "a.jsonl"])
    with pytest.raises(ValueError, match=r"lies under .*a\.jsonl, which is a file"):
        merge_shards(a / "m.jsonl", [a])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl"]


def test_an_output_that_is_a_device_is_refused_even_with_force(tmp_path, make_tree, write_jsonl):
    a = shard(tmp_path, "a.jsonl", [_tree(make_tree, "p/0")], write_jsonl)
    with pytest.raises(ValueError, match="/dev/null is not a regular file"):
        merge_shards("/dev/null", [a], force=True)
    assert Path("/dev/null").is_char_device()
