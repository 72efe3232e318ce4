"""Trees generated on first use show one progress bar for the whole spec: "draw i of N" (a draw:
one seed's tree file), with tqdm's estimate, not one unnamed bar per file."""

from __future__ import annotations

from pathlib import Path

import pytest

from trim_rl.sim import bundled


@pytest.fixture
def bars(monkeypatch, tmp_path) -> list:
    """Generation into an empty cache, faked: each file written empty, its trees counted on the bar it
    was given; returns the bars, one entry per file."""
    monkeypatch.setenv("TRIM_RL_CACHE", str(tmp_path / "cache"))
    given = []

    def fake_generate(profile, split, seed, out, params=None, progress=False, **kw):
        given.append(progress)
        progress.update(bundled._trees_per_seed(profile, split))
        Path(out).write_bytes(b"")

    monkeypatch.setattr(bundled, "generate_file", fake_generate)
    return given


def test_one_bar_names_each_draw(bars, capsys):
    paths = bundled.resolve_tree_spec(["sim:math500:val:7-8", "sim:math500:val"], progress=True)
    assert [p.name for p in paths[:2]] == ["math500_val_seed7.jsonl.gz", "math500_val_seed8.jsonl.gz"]
    assert len(bars) == 2 and bars[0] is bars[1] and hasattr(bars[0], "update")  # one bar for both files
    err = capsys.readouterr().err
    assert "draw 1 of 2, sim:math500:val:7" in err and "draw 2 of 2, sim:math500:val:8" in err
    assert f"{2 * bundled._trees_per_seed('math500', 'val')}/{2 * bundled._trees_per_seed('math500', 'val')}" in err
    # cached now: nothing generated, no bar
    bundled.resolve_tree_spec("sim:math500:val:7-8", progress=True)
    assert len(bars) == 2 and "draw" not in capsys.readouterr().err


def test_the_splits_of_a_training_run_share_one_bar(bars, capsys):
    """train.py loads train, val and calibration trees: what is missing of all three is one bar."""
    bundled.generate_trees(["sim:math500:train:7"], "sim:math500:val:7-8", None, progress=True)
    assert len(bars) == 3 and bars[0] is bars[1] is bars[2]
    assert "draw 3 of 3, sim:math500:val:8" in capsys.readouterr().err
