"""``python -m trim_rl.sim`` and simulated tree specs as a careless or hostile user meets them: every
mistake is one line naming the flag, key or file (exit code 2), refused before anything is drawn,
generated or written."""

from __future__ import annotations

import json

import pytest

from trim_rl.evaluation import sim_report as report
from trim_rl.sim import bundled, calibrate
from trim_rl.sim.__main__ import main
from trim_rl.sim.bundled import MAX_SPEC_SEEDS, load_trees, parse_seeds, resolve_tree_spec
from trim_rl.sim.generate import generate_file
from trim_rl.sim.params import load_params, save_params
from trim_rl.evaluation.sim_report import END, START

from tests.conftest import refused_in_one_line as _refused
from tests.conftest import run_command


def _run(capsys, *argv) -> tuple[int, str]:
    return run_command(capsys, main, *argv)


@pytest.fixture
def no_drawing(monkeypatch):
    """Any generation, fit or evaluation reached fails the test: the refusals must come first."""
    def forbidden(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(bundled, "generate_file", forbidden)
    monkeypatch.setattr(calibrate, "fit", forbidden)
    monkeypatch.setattr(report, "sweep_rows", forbidden)
    monkeypatch.setattr("trim_rl.sim.generate.make_episodes", forbidden)


@pytest.mark.parametrize("args, words", [
    (["--draws", "0"], ["--draws"]),
    (["--draws", "-3"], ["--draws"]),
    (["--draws", "1000000"], ["--draws", "trees"]),  # 200 problems x 1e6: refused, not an out-of-memory kill
    (["--seed", "-1"], ["--seed"]),
    (["--seed", str(10**30)], ["--seed"]),
    (["--seed", "x"], ["--seed"]),
    (["--limit", "0"], ["--limit"]),
    (["--profile", "nosuch"], ["--profile", "nosuch"]),
])
def test_generate_refuses_nonsense_before_drawing(tmp_path, capsys, no_drawing, args, words):
    out = tmp_path / "new" / "t.jsonl.gz"
    rc, err = _run(capsys, "generate", "--out", out, *args)
    _refused(rc, err, *words)
    assert not (tmp_path / "new").exists()


def test_generate_refuses_an_output_that_is_a_folder_or_under_a_file(tmp_path, capsys, no_drawing):
    _refused(*_run(capsys, "generate", "--out", tmp_path), "--out")
    (tmp_path / "f").write_text("x")
    _refused(*_run(capsys, "generate", "--out", tmp_path / "f" / "t.jsonl"), "--out")
    assert (tmp_path / "f").read_text() == "x"


def test_generate_without_out_is_one_line(capsys, no_drawing):
    _refused(*_run(capsys, "generate", "--limit", "1"), "--out")


def _params(tmp_path, change) -> str:
    raw = load_params().to_json()
    change(raw)
    p = tmp_path / "params.json"
    p.write_text(json.dumps(raw))
    return str(p)


def _set(path, value):
    def change(raw):
        *head, last = path
        d = raw
        for k in head:
            d = d[k]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value
    return change


@pytest.mark.parametrize("change, words", [
    (_set(["profiles"], KeyError), ["'profiles'", "missing"]),
    (_set(["model"], [1, 2]), ["'model'"]),
    (_set(["model", "tau"], "fast"), ["model.tau"]),
    (_set(["model", "beta_low"], -1.0), ["model.beta_low"]),
    (_set(["model", "m0_w"], 1.5), ["model.m0_w"]),
    (_set(["profiles", "math500", "draws"], {"train": 4, "val": 0, "test": 8}), ["profiles.math500.draws"]),
    (_set(["profiles", "math500", "speed"], 3), ["profiles.math500", "speed"]),
    (_set(["profiles", "math500", "max_interventions"], -2), ["profiles.math500.max_interventions"]),
    (_set(["profiles", "math500", "level"], "hard"), ["profiles.math500.level"]),
    (_set(["profiles", "math500", "prm_table"], "other"), ["profiles.math500.prm_table"]),
    (_set(["profiles", "math500", "test_fraction"], 2), ["profiles.math500.test_fraction"]),
    (_set(["profiles", "math500"], "x"), ["profiles.math500"]),
    (_set(["profiles", "math500", "benchmark"], "nosuch"), ["profiles.math500.benchmark", "nosuch"]),
])
def test_a_bad_parameter_file_is_named_with_its_key(tmp_path, capsys, no_drawing, change, words):
    params = _params(tmp_path, change)
    out = tmp_path / "new" / "t.jsonl"
    rc, err = _run(capsys, "generate", "--params", params, "--out", out)
    _refused(rc, err, params, *words)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("content, words", [
    (None, ["no such file"]),
    ('{"version": "1", ', ["not valid JSON"]),
    ("[1, 2]", ["expected a JSON object"]),
    ('{"version": ' + "9" * 5000 + "}", ["JSON"]),
])
def test_an_unreadable_parameter_file_is_named(tmp_path, capsys, no_drawing, content, words):
    p = tmp_path / "params.json"
    if content is not None:
        p.write_text(content)
    for cmd in (["generate", "--out", tmp_path / "t.jsonl"], ["calibrate", "--check"]):
        _refused(*_run(capsys, *cmd, "--params", p), str(p), *words)


@pytest.mark.parametrize("args, words", [
    (["--evals", "0"], ["--evals"]),
    (["--rounds", "0"], ["--rounds"]),
    (["--draws", "0"], ["--draws"]),
    (["--draws", "100000"], ["--draws"]),  # 50 million episodes per evaluation: refused, not tried
    (["--evals", "many"], ["--evals"]),
])
def test_calibrate_refuses_nonsense_before_fitting(capsys, no_drawing, args, words):
    _refused(*_run(capsys, "calibrate", *args), *words)


def test_calibrate_checks_its_output_before_fitting(tmp_path, capsys, no_drawing):
    _refused(*_run(capsys, "calibrate", "--evals", "1", "--rounds", "1", "--out", tmp_path), "--out")
    (tmp_path / "f").write_text("x")
    _refused(*_run(capsys, "calibrate", "--out", tmp_path / "f" / "p.json"), "--out")


def test_calibrate_needs_the_math500_profile(tmp_path, capsys, no_drawing):
    params = load_params()
    del params.profiles["math500"]
    p = tmp_path / "p.json"
    save_params(params, p)
    _refused(*_run(capsys, "calibrate", "--params", p, "--out", tmp_path / "o.json"), "math500", str(p))
    assert not (tmp_path / "o.json").exists()


@pytest.fixture(scope="module")
def tiny_trees(tmp_path_factory):
    p = tmp_path_factory.mktemp("simcli") / "t.jsonl"
    generate_file("math500", "test", 0, p, limit=2, draws=1)
    return p


def test_report_checks_every_input_before_evaluating(tmp_path, capsys, no_drawing, tiny_trees):
    plot = tmp_path / "plot.png"
    page = tmp_path / "page.md"
    page.write_text("no markers here\n")
    cases = [
        (["--profile", "aime"], ["--profile", "aime"]),
        (["--trees", tmp_path / "nope.jsonl"], ["--trees", "nope.jsonl"]),
        (["--trees", tmp_path], ["--trees", "not a regular file"]),
        (["--trees", tiny_trees, "--readme", tmp_path / "nope.md", "--plot", plot], ["--readme", "nope.md"]),
        (["--trees", tiny_trees, "--readme", page, "--plot", plot], ["--readme", "markers"]),
        (["--trees", tiny_trees, "--plot", tmp_path], ["--plot"]),
        (["--seed", "-4"], ["--seed"]),
    ]
    for args, words in cases:
        _refused(*_run(capsys, "report", *args), *words)
    assert not plot.exists()
    assert page.read_text() == "no markers here\n"


def test_report_with_a_page_still_writes_table_and_plot(tmp_path, capsys, tiny_trees):
    page = tmp_path / "page.md"
    page.write_text(f"top\n{START}\nstale table\n{END}\nbottom\n")
    rc, _ = _run(capsys, "report", "--trees", tiny_trees, "--readme", page, "--plot", tmp_path / "plot.png")
    assert rc == 0
    body = page.read_text()
    assert "stale table" not in body and "| threshold k |" in body and body.endswith("bottom\n")
    assert (tmp_path / "plot.png").stat().st_size > 0


# --- tree specs: sim:PROFILE:SPLIT[:SEEDS] -----------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("TRIM_RL_CACHE", str(root))
    return root


@pytest.mark.parametrize("spec, message", [
    ("sim:math500:test:0-999999", f"1000000 seeds, at most {MAX_SPEC_SEEDS}"),
    ("sim:math500:test:0-99999999999999999999", f"at most {MAX_SPEC_SEEDS}"),
    ("sim:math500:test:" + ",".join(map(str, range(MAX_SPEC_SEEDS + 1))), f"at most {MAX_SPEC_SEEDS}"),
    ("sim:math500:test:3,3", "seed 3 is named twice"),
    ("sim:math500:test:" + str(2**40), "not in [0, 4294967295]"),
    ("sim:nosuch:test:1", "unknown profile 'nosuch'"),
    ("sim:math500:dev:1", "unknown split 'dev'"),
    ("sim:math500:dev", "unknown split 'dev'"),
])
def test_a_tree_spec_is_refused_before_anything_is_generated(cache, no_drawing, spec, message):
    for call in (resolve_tree_spec, load_trees):
        with pytest.raises(ValueError, match="tree spec") as info:
            call(spec)
        assert message in str(info.value) and spec[:40] in str(info.value)
    assert not cache.exists()


def test_every_spec_of_a_list_is_checked_before_the_first_is_generated(cache, no_drawing):
    with pytest.raises(ValueError, match="unknown profile 'nosuch'"):
        resolve_tree_spec(["sim:math500:test:5", "sim:nosuch:test"])
    assert not cache.exists()


def test_seed_lists_that_stay_valid():
    assert parse_seeds(f"0-{MAX_SPEC_SEEDS - 1}", "s") == list(range(MAX_SPEC_SEEDS))
    assert parse_seeds("4294967295", "s") == [2**32 - 1]


def test_a_cache_folder_that_is_a_file_is_named_with_its_variable(tmp_path, monkeypatch, no_drawing):
    (tmp_path / "f").write_text("mine")
    monkeypatch.setenv("TRIM_RL_CACHE", str(tmp_path / "f"))
    with pytest.raises(ValueError, match=r"cache folder .*f \(\$TRIM_RL_CACHE"):
        resolve_tree_spec("sim:math500:test:3")
    assert (tmp_path / "f").read_text() == "mine"


def test_a_spec_whose_trees_would_not_fit_in_memory_is_refused(cache, no_drawing):
    """Fewer than 100 seeds can still be too many trees: the refusal is a memory estimate."""
    with pytest.raises(ValueError, match=r"'sim:math500:test:0-60': 61 seeds x 1600 trees, about .* GB in memory"):
        resolve_tree_spec("sim:math500:test:0-60")
    assert not cache.exists()


def test_calibrate_checks_that_its_output_is_writable_before_fitting(tmp_path, capsys, monkeypatch, no_drawing):
    import trim_rl.sim.__main__ as sim_main

    monkeypatch.setattr(sim_main.os, "access", lambda path, mode: False)  # tests run as root: no read-only folder
    _refused(*_run(capsys, "calibrate", "--out", tmp_path / "p.json"), "--out", "not writable")
    _refused(*_run(capsys, "calibrate"), "package's parameter file", "give --out")


def test_an_output_that_is_a_device_is_refused(capsys, no_drawing):
    """Written as a temporary file renamed onto it, /dev/null would become a regular file."""
    _refused(*_run(capsys, "generate", "--out", "/dev/null"), "--out", "not a regular file")
