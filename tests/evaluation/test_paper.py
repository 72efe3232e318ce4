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


# --- --test-seeds: every test set a pool of seeds ------------------------------------------------------------

POOL_SEEDS = (3, 4)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """A tree cache holding tiny test trees of every profile for POOL_SEEDS (what sim:P:test:3-4 reads)."""
    from trim_rl.sim.bundled import _cache_file
    from trim_rl.sim.generate import generate_file
    from trim_rl.sim.params import load_params

    root = tmp_path_factory.mktemp("paper_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIM_RL_CACHE", str(root))
        for profile in ("math500", "aime", "olympiadbench", "minerva"):
            for seed in POOL_SEEDS:
                path = _cache_file(profile, "test", seed, load_params().version)
                path.parent.mkdir(parents=True, exist_ok=True)
                generate_file(profile, "test", seed, path, limit=4, draws=2)
    return root


@pytest.fixture
def tiny_report(monkeypatch, tiny_cache, sim_flat):
    """The paper report on tiny trees: the pooled test seeds from ``tiny_cache``, tiny train/val (and bundled
    test) trees, no checkpoints, no learned query router (fitting them takes minutes on two cores and pools
    nothing of its own); nothing generated into the user's cache."""
    from trim_rl.evaluation import paper
    from trim_rl.sim import bundled

    learned = {"sw", "mf", "clf"}
    monkeypatch.setattr(paper, "QUERY_POLICIES", [n for n in paper.QUERY_POLICIES if n not in learned])
    monkeypatch.setattr(paper, "CROSS_POLICIES", [n for n in paper.CROSS_POLICIES if n not in learned])

    monkeypatch.setenv("TRIM_RL_CACHE", str(tiny_cache))
    sizes = {"train": (12, 2), "val": (6, 2), "test": (4, 2)}
    monkeypatch.setattr(paper, "_trees", lambda profile, split, progress: sim_flat(split, 0, *sizes[split], profile=profile))
    monkeypatch.setattr(paper, "_checkpoints_for", lambda paths, profile: [])
    monkeypatch.setattr(bundled, "generate_file", _forbidden)  # every pooled seed is in tiny_cache already
    return paper


def _forbidden(*a, **k):
    raise AssertionError("work started that this test must not reach")


def test_a_pooled_paper_report_prints_each_seeds_spread_beside_the_pooled_figure(tmp_path, capsys, monkeypatch,
                                                                                   tiny_report):
    import json

    import trim_rl.cli.evaluate as evaluate_cli
    from trim_rl.evaluation.report import format_spread

    summaries = []
    monkeypatch.setattr(evaluate_cli, "paper_report", lambda *a, **k: summaries.append(tiny_report.paper_report(*a, **k)))
    out = tmp_path / "paper"
    rc = evaluate_cli.main(["--report", "paper", "--test-seeds", "3-4", "--out", str(out), "--bootstrap", "5", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    md = (out / "report.md").read_text()
    data = json.loads((out / "paper.json").read_text())
    (summary,) = summaries
    assert data["test_trees"]["minerva"] == "sim:minerva:test:3-4"
    assert "the pool of test seeds 3-4" in md
    for table, profile, level in (("table1", "math500", "80"), ("table1", "aime", "80"),
                                  ("table2", "olympiadbench", "50"), ("table2", "minerva", "50")):
        res = data[table][profile]
        assert res["trees"] == f"sim:{profile}:test:3-4"
        assert res["pool"]["seeds"] == [f"{profile}:test:{s}" for s in POOL_SEEDS] and res["n_problems"] == 16
        assert len(res["policies"]["thr"]["per_seed"][f"cpt{level}"]) == 2
        thr = summary[table][profile]["policies"]["thr"]  # inf as itself, not JSON's null
        # TRIM-Thr's row in this table: the pooled CPT(level%), then each seed's spread of it
        after = md.split(f"{profile} ({res['n_problems']} test trees of 4 problems, 2 seeds)", 1)[1]
        row = next(ln for ln in after.splitlines() if ln.startswith("| TRIM-Thr |"))
        at = 2 if level == "50" else 3
        cells = row.split(" | ")
        assert cells[at] == format_spread(thr["spread"][f"cpt{level}"], 1, True), row
        assert cells[at - 1].startswith(tiny_report._fmt(thr["cpt"][level], True)), row
        header = next(ln for ln in after.splitlines() if ln.startswith("| policy |"))
        assert header.split(" | ")[at] == f"CPT({level}%) per seed", header
    assert "ratios" in data["table2"]["minerva"]  # pooled with TRIM-Thr: CPT ratios to it, as evaluate.py's
    assert (out / "aime_to_minerva" / "report.md").read_text().count("Per-seed spread") == 1


def test_the_paper_report_with_test_seeds_none_is_the_bundled_seeds(tmp_path, monkeypatch, tiny_report):
    import json

    monkeypatch.setattr(tiny_report, "load_pool", _forbidden)
    tiny_report.paper_report(tmp_path / "paper", n_boot=5, progress=False, test_seeds=None)
    md = (tmp_path / "paper" / "report.md").read_text()
    data = json.loads((tmp_path / "paper" / "paper.json").read_text())
    assert "per seed" not in md and "pool" not in md and "test_trees" not in data
    header = "| policy | CPT(50%) | CPT(80%) | CPT(95%) | dIBC | APGR | ROC-AUC weak fails (test) |\n" + "|---" * 7 + "|"
    assert md.count(header) == 4
    assert data["table2"]["minerva"]["trees"] == "sim:minerva:test" and "pool" not in data["table2"]["minerva"]


@pytest.mark.parametrize("args, words", [
    (["--report", "paper", "--test-seeds", "9-2"], ["--test-seeds", "seed part"]),
    (["--report", "paper", "--test-seeds", "3,3"], ["--test-seeds", "twice"]),
    (["--report", "paper", "--test-seeds", "0-500"], ["--test-seeds", "501 seeds"]),
    (["--report", "paper", "--test-seeds", "1:2"], ["--test-seeds", "'1:2'"]),
    (["--report", "paper", "--test-seeds", ""], ["--test-seeds"]),
    (["--test-seeds", "100-109"], ["--test-seeds", "only with --report paper"]),
])
def test_a_bad_test_seeds_is_refused_before_any_work(tmp_path, capsys, monkeypatch, args, words):
    import trim_rl.cli.evaluate as evaluate_cli
    from trim_rl.sim import bundled
    from tests.conftest import refused_in_one_line, run_command

    monkeypatch.setenv("TRIM_RL_CACHE", str(tmp_path / "cache"))
    for module, name in ((evaluate_cli, "paper_report"), (bundled, "generate_file")):
        monkeypatch.setattr(module, name, _forbidden)
    monkeypatch.setattr("trim_rl.api.evaluate_policies", _forbidden)
    out = tmp_path / "paper"
    refused_in_one_line(*run_command(capsys, evaluate_cli.main, *args, "--out", out, "--quiet"), *words)
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_the_api_checks_test_seeds_before_creating_the_folder(tmp_path):
    from trim_rl.evaluation.paper import paper_report

    with pytest.raises(ValueError, match="--test-seeds: .*seed 4294967296 is not in"):
        paper_report(tmp_path / "r", test_seeds="4294967296")
    assert not (tmp_path / "r").exists()


def test_the_paper_report_defaults_to_the_readme_pool(tmp_path, monkeypatch):
    """Every figure in the docs is pooled, so a report made without flags is too: from the command line
    and from Python alike."""
    import inspect

    import trim_rl.cli.evaluate as evaluate_cli
    from trim_rl.evaluation.evaluation import POOL_SEEDS
    from trim_rl.evaluation.paper import paper_report

    assert POOL_SEEDS == "100-109"
    assert inspect.signature(paper_report).parameters["test_seeds"].default == POOL_SEEDS
    seen = []
    monkeypatch.setattr(evaluate_cli, "paper_report", lambda *a, **k: seen.append(k["test_seeds"]))
    assert evaluate_cli.main(["--report", "paper", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert evaluate_cli.main(["--report", "paper", "--test-seeds", "0", "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert seen == [POOL_SEEDS, "0"]
