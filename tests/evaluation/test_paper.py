"""The paper report picks each profile's checkpoints by the trees they were trained on."""

from trim_rl.evaluation.paper import _checkpoints_for, trained_on
import pytest

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow


def test_trained_on_reads_the_training_trees_then_the_env_name():
    assert trained_on({"source": {"env": "math500x12", "train": "sim:math500:train:0-11"}}) == "math500"
    assert trained_on({"source": {"env": "mix", "train": ["sim:aime:train", "sim:aime:train:3"]}}) == "aime"
    assert trained_on({"source": {"env": "mix", "train": ["sim:aime:train", "sim:math500:train"]}}) == "mix"
    assert trained_on({"source": {"env": "math500", "train": "data/my_trees.jsonl.gz"}}) == "math500"
    assert trained_on({"source": {"env": "aime"}}) == "aime"
    assert trained_on({}) is None


def test_shipped_checkpoints_are_split_by_profile():
    math500 = _checkpoints_for([], "math500")
    aime = _checkpoints_for([], "aime")
    assert {"TRIM-Agg", "TRIM-Seq", "TRIM-Agg (budget-conditioned)", "TRIM-POMDP"} <= {c.family for c in math500}
    assert aime and all(trained_on(c.meta) == "aime" for c in aime)
    assert not {c.folder.resolve() for c in aime} & {c.folder.resolve() for c in math500}


def test_paper_report_refuses_bad_settings_before_any_work(tmp_path):
    from trim_rl.evaluation.paper import paper_report

    with pytest.raises(ValueError, match="n_boot: expected"):
        paper_report(tmp_path / "r", n_boot=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="--out"):
        paper_report(tmp_path / "file" / "r")
    assert not (tmp_path / "r").exists()
