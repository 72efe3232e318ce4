"""Tests for trim_rl.sim.bundled: tree specs, seed lists."""

from __future__ import annotations

import pytest

from trim_rl.sim.bundled import bundled_path, parse_seeds, resolve_tree_spec


def test_parse_seeds():
    assert parse_seeds("3", "s") == [3]
    assert parse_seeds("0-2,5", "s") == [0, 1, 2, 5]
    assert parse_seeds("4-4", "s") == [4]
    for bad in ("a", "3-1", "1-", ""):
        with pytest.raises(ValueError, match="seed part"):
            parse_seeds(bad, "sim:x:train:" + bad)


def test_resolve_specs(tmp_path):
    assert resolve_tree_spec("sim:math500:train") == [bundled_path("math500", "train")]
    assert resolve_tree_spec("sim:math500:val:0") == [bundled_path("math500", "val")]
    f = tmp_path / "t.jsonl"
    f.write_text("")
    assert resolve_tree_spec([str(f), "sim:math500:test"]) == [f, bundled_path("math500", "test")]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_tree_spec(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="seed part"):
        resolve_tree_spec("sim:math500:train:x")
    with pytest.raises(ValueError, match="SEEDS"):
        resolve_tree_spec("sim:math500")
