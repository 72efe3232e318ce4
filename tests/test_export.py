"""python -m trim_rl.export installs a run's policy and never deletes a folder that is not a checkpoint."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from trim_rl.api import export as export_run
from tests.conftest import REPO

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished run folder: a shipped checkpoint as the run's policy, with the config train.py writes."""
    d = tmp_path_factory.mktemp("run") / "trim_agg" / "x__b15__0__t"
    d.mkdir(parents=True)
    src = next(p for p in sorted((REPO / "checkpoints").rglob("policy.json"))
               if json.loads(p.read_text()).get("kind", "network") == "network").parent
    shutil.copytree(src, d / "policy")
    (d / "config.yml").write_text("agent: {algo: maskable_ppo, name: trim_agg}\nenv: {name: x}\nseed: 0\n")
    return d


def export(*args):
    return subprocess.run([sys.executable, "-m", "trim_rl.export", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_export_installs_and_replaces_only_a_checkpoint(run_dir, tmp_path):
    out = tmp_path / "ck"
    r = export(run_dir, "--out", out)
    assert r.returncode == 0 and r.stdout.strip() == f"checkpoint: {out}", r.stderr
    meta = json.loads((out / "policy.json").read_text())
    assert meta["name"] == "ck" and (out / "model.safetensors").read_bytes() == (run_dir / "policy" / "model.safetensors").read_bytes()
    r = export(run_dir, "--out", out)  # an older checkpoint is replaced, and said so
    assert r.returncode == 0 and f"replaced the checkpoint in {out}" in r.stderr


@pytest.mark.parametrize("what", ["files", "checkpoints-root"])
def test_a_folder_of_other_things_is_refused_and_left_alone(run_dir, tmp_path, what):
    out = tmp_path / "precious"
    out.mkdir()
    if what == "files":
        (out / "notes.txt").write_text("mine")
    else:  # --out checkpoints: a folder of checkpoints is not itself a checkpoint
        shutil.copytree(run_dir / "policy", out / "some_checkpoint")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    r = export(run_dir, "--out", out)
    assert r.returncode == 2 and "refusing to replace it" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".precious.")]


def test_a_run_without_a_finished_policy_is_named(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / "config.yml").write_text("agent: {algo: maskable_ppo}\nseed: 0\n")
    with pytest.raises(FileNotFoundError, match=r"r/policy: the run has no finished policy"):
        export_run(d, tmp_path / "out")
    r = export(tmp_path / "nowhere", "--out", tmp_path / "out")
    assert r.returncode == 2 and "not a run folder (config.yml missing)" in r.stderr


@pytest.mark.parametrize("extra", [["notes.txt"], ["eval/report.md", "eval/metrics.json"], ["report.md", ".hidden"]])
def test_a_checkpoint_holding_the_users_own_files_is_refused_by_name(run_dir, tmp_path, extra):
    out = tmp_path / "ck"
    assert export(run_dir, "--out", out).returncode == 0
    for name in extra:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("the user's")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    r = export(run_dir, "--out", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for top in {n.split("/")[0] + ("/" if "/" in n else "") for n in extra}:
        assert top in r.stderr, r.stderr
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ck.")]
    with pytest.raises(FileExistsError, match="no part of a checkpoint"):  # the API refuses alike
        export_run(run_dir, out)


@pytest.mark.parametrize("text, message", [("agent: [unclosed\n", r"config\.yml:\d+: not valid YAML"),
                                           ("- a\n- b\n", r"config\.yml: expected a mapping"),
                                           ("agent: 3\n", r"config\.yml: agent: expected a mapping")])
def test_a_damaged_run_config_is_named(tmp_path, text, message):
    d = tmp_path / "r"
    d.mkdir()
    (d / "config.yml").write_text(text)
    for which in ("best", "last"):
        r = export(d, "--out", tmp_path / "out", "--which", which)
        assert r.returncode == 2 and "Traceback" not in r.stderr and re.search(message, r.stderr), r.stderr
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["policy", "stages/x", "."])
def test_a_checkpoint_is_never_installed_inside_its_run_folder(run_dir, where):
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    r = export(run_dir, "--out", run_dir / where, "--which", "best")
    assert r.returncode == 2 and "inside the run folder" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_which_last_of_a_pomdp_run_is_refused(tmp_path):
    d = tmp_path / "trim_pomdp" / "r"
    d.mkdir(parents=True)
    (d / "config.yml").write_text("agent: {algo: pomdp, name: trim_pomdp}\nseed: 0\n")
    r = export(d, "--out", tmp_path / "out", "--which", "last")
    assert r.returncode == 2 and "--which last: " in r.stderr and "has no PPO actor" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
