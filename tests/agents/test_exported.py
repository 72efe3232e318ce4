"""Exported checkpoints: same actions as the SB3 model, loadable without stable-baselines3."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests.conftest import REPO

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow

TINY = ["total_timesteps:1024", "eval_freq:1024", "n_envs:8", "n_steps:32", "batch_size:128", "n_epochs:2",
        "policy_iteration.rounds:2", "policy_iteration.samples:3000", "seq_policy_iteration.rounds:1",
        "seq_policy_iteration.samples:3000", "seq_policy_iteration.epochs:1"]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    from trim_rl.sim.generate import generate_file

    d = tmp_path_factory.mktemp("export_trees")
    out = {}
    for split, limit in (("train", 10), ("val", 5)):
        out[split] = str(d / f"{split}.jsonl.gz")
        generate_file("math500", split, 1, out[split], limit=limit, draws=2)
    return out


def _train(trees, tmp_path, agent_yaml, extra=(), budget=None):
    from trim_rl.training.config import EnvConfig, load_agent
    from trim_rl.training.run import Target, train_one

    agent = load_agent(REPO / "agents" / agent_yaml, [*TINY, *extra])
    env = EnvConfig(name="tiny", train=trees["train"], val=trees["val"])
    target = Target(budget=budget) if budget is not None else Target(lam=1e-3)
    return train_one(agent, env, target, 0, tmp_path / "runs")


def _recorded(model, obs_name, bc, trees, n=1000):
    """n observations (with masks) visited by the SB3 policy itself, plus its actions."""
    from trim_rl.data.flat import load_flat
    from trim_rl.envs.vec_env import RoutingVecEnv

    venv = RoutingVecEnv(load_flat(trees["train"]), 16, lam=1e-3, obs=obs_name, budget_conditioned=bc)
    venv.seed(5)
    o = venv.reset()
    obs, masks, acts = [], [], []
    while sum(len(x) for x in obs) < n:
        m = venv.action_masks()
        a, _ = model.predict(o, deterministic=True, action_masks=m)
        obs.append(o.copy()), masks.append(m), acts.append(a)
        o, *_ = venv.step(np.where(np.random.default_rng(len(obs)).random(16) < 0.3, 1 - a, a))
    return np.concatenate(obs)[:n], np.concatenate(masks)[:n], np.concatenate(acts)[:n]


@pytest.mark.parametrize("agent_yaml,obs_name,bc", [("trim_agg.yaml", "agg", False), ("trim_seq.yaml", "seq", False),
                                                    ("trim_agg_budget.yaml", "agg", True)])
def test_exported_policy_matches_sb3_on_1000_observations(trees, tmp_path, agent_yaml, obs_name, bc):
    from sb3_contrib import MaskablePPO

    from trim_rl.agents.registry import load_checkpoint
    from trim_rl.training.exporting import export_run

    run = _train(trees, tmp_path, agent_yaml)
    ck = export_run(run, tmp_path / "ck")
    meta = json.loads((ck / "policy.json").read_text())
    assert meta["observation"]["name"] == obs_name and meta["observation"]["budget_conditioned"] == bc
    assert len(meta["sha256"]) == 64 and meta["versions"]["trim_rl"]
    model = MaskablePPO.load(run / "best_model.zip", device="cpu")
    obs, masks, acts = _recorded(model, obs_name, bc, trees)
    pol = load_checkpoint(ck)
    mine, _ = pol.predict(obs, action_masks=masks)
    assert obs.shape[0] == 1000
    np.testing.assert_array_equal(mine, acts)
    # the logits agree too, not only the argmax
    import torch

    with torch.no_grad():
        t = torch.as_tensor(obs)
        dist = model.policy.get_distribution(t, action_masks=masks)
        ref = dist.distribution.logits.numpy()
    lg = pol.logits(obs, masks)
    both = masks.all(axis=1)
    assert both.sum() > 100
    np.testing.assert_allclose(lg[both, 1] - lg[both, 0], ref[both, 1] - ref[both, 0], atol=2e-4)


def test_checkpoint_loads_without_stable_baselines3(trees, tmp_path):
    from trim_rl.training.exporting import export_run

    ck = export_run(_train(trees, tmp_path, "trim_agg.yaml"), tmp_path / "ck")
    code = (
        "import sys\n"
        "for m in ('stable_baselines3', 'sb3_contrib'): sys.modules[m] = None\n"
        "import numpy as np\n"
        "from trim_rl.agents.registry import load_checkpoint\n"
        "from trim_rl.envs.observations import StepHistory\n"
        f"p = load_checkpoint({str(ck)!r})\n"
        "h = StepHistory(); h.append(0.9, 40, False)\n"
        "o = p.builder().from_history(h, 0.02, 55)\n"
        "a, _ = p.predict(o[None], action_masks=np.array([[True, True]]))\n"
        "print(int(a[0]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ("0", "1")


def test_tampered_weights_are_rejected(trees, tmp_path):
    from trim_rl.agents.registry import load_checkpoint
    from trim_rl.training.exporting import export_run

    ck = export_run(_train(trees, tmp_path, "trim_agg.yaml"), tmp_path / "ck")
    w = ck / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_checkpoint(ck)


def test_export_cli_and_evaluate_checkpoints(trees, tmp_path):
    run = _train(trees, tmp_path, "trim_agg.yaml")
    r = subprocess.run([sys.executable, "-m", "trim_rl.export", str(run), "--out", str(tmp_path / "cks" / "agg")],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "evaluate.py", "--trees", trees["val"], "--policies", "thr",
                        "--checkpoints", str(tmp_path / "cks"), "--out", str(tmp_path / "ev"), "--bootstrap", "20",
                        "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert "TRIM-Agg" in m["policies"]
    assert [p["setting"] for p in m["policies"]["TRIM-Agg"]["points"]] == [1e-3]
    assert "requested_budget" not in m["policies"]["TRIM-Agg"]["points"][0]
    source = json.loads((tmp_path / "cks" / "agg" / "policy.json").read_text())["source"]
    assert source["env"] == "tiny" and source["train"] == trees["train"]
    assert yaml.safe_load((run / "config.yml").read_text())["git"] == source["git"]


def test_a_budget_checkpoint_is_the_best_actor_shifted_to_its_budget(trees, tmp_path):
    import torch
    from sb3_contrib import MaskablePPO

    from trim_rl.agents.registry import load_checkpoint
    from trim_rl.training.exporting import export_run

    run = _train(trees, tmp_path, "trim_agg.yaml", budget=15.0)
    pol = load_checkpoint(export_run(run, tmp_path / "ck"))
    res = json.loads((run / "result.json").read_text())
    assert pol.requested_budget == 15.0 and pol.meta["budget"]["calib_cost_pct"] == res["calib_cost_pct"]
    model = MaskablePPO.load(run / "best_model.zip", device="cpu")
    x = np.random.default_rng(2).random((200, 6)).astype(np.float32)
    with torch.no_grad():
        ref = model.policy.get_distribution(torch.as_tensor(x)).distribution.logits.numpy()
    lg = pol.logits(x)
    np.testing.assert_allclose(lg[:, 1] - lg[:, 0], ref[:, 1] - ref[:, 0] - res["offset"], atol=2e-4)


def _copy_shipped(tmp_path):
    import shutil

    src = REPO / "checkpoints" / "trim_agg" / "trim_agg_b20"
    return Path(shutil.copytree(src, tmp_path / "ck"))


@pytest.mark.parametrize("damage, message", [
    ("json", r"policy\.json:2:2: not valid JSON"),
    ("field", r"policy\.json: field 'network\.net_arch' is missing"),
    ("weights", r"model\.safetensors: weights file named by .*policy\.json is missing"),
    ("shape", r"model\.safetensors: does not fit the network described in .*policy\.json \(field 'network'\)"),
])
def test_broken_checkpoint_is_named(tmp_path, damage, message):
    from trim_rl.agents.registry import load_checkpoint

    ck = _copy_shipped(tmp_path)
    meta_path = ck / "policy.json"
    meta = json.loads(meta_path.read_text())
    assert load_checkpoint(ck).meta == meta  # intact before the damage
    if damage == "json":
        meta_path.write_text(json.dumps(meta, indent=1).replace('"format"', "format", 1))
    elif damage == "field":
        del meta["network"]["net_arch"]
        meta_path.write_text(json.dumps(meta))
    elif damage == "weights":
        (ck / "model.safetensors").unlink()
    else:
        meta["network"]["net_arch"] = [32, 32]
        meta_path.write_text(json.dumps(meta))
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_checkpoint(ck)


def test_evaluate_names_a_broken_checkpoint(tmp_path):
    ck = _copy_shipped(tmp_path)
    (ck / "model.safetensors").unlink()
    r = subprocess.run([sys.executable, "evaluate.py", "--trees", "sim:math500:test", "--policies", "thr",
                        "--checkpoints", str(ck), "--out", str(tmp_path / "rep")],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "model.safetensors: weights file named by" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "rep").exists()


def test_a_broken_pomdp_policy_json_is_named(tmp_path):
    import shutil

    from trim_rl.agents.registry import load_checkpoint
    from trim_rl.agents.pomdp.policy import load_pomdp

    ck = Path(shutil.copytree(REPO / "checkpoints" / "trim_pomdp" / "trim_pomdp_b8", tmp_path / "pomdp"))
    assert load_pomdp(ck).meta["kind"] == "pomdp"
    meta_path = ck / "policy.json"
    meta_path.write_text(meta_path.read_text()[:-3])  # truncated
    for load in (load_pomdp, load_checkpoint):
        with pytest.raises(ValueError, match=r"pomdp/policy\.json:\d+:\d+: not valid JSON"):
            load(ck)


@pytest.mark.parametrize("where", ["parent", "absolute", "link", "empty", "number"])
def test_weights_outside_the_checkpoint_folder_are_refused(tmp_path, where):
    """``weights`` names a file of the folder; a checkpoint from elsewhere must not make the loader read,
    hash or load any other file (here a valid copy of the weights, so only the path can be refused)."""
    import shutil

    from trim_rl.agents.registry import load_checkpoint

    ck = _copy_shipped(tmp_path)
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(ck / "model.safetensors", outside)
    meta_path = ck / "policy.json"
    meta = json.loads(meta_path.read_text())
    meta["weights"] = {"parent": "../elsewhere.safetensors", "absolute": str(outside), "link": "linked.safetensors",
                       "empty": "", "number": 7}[where]
    if where == "link":
        (ck / "linked.safetensors").symlink_to(outside)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"policy\.json: field 'weights' must name a file in the checkpoint folder"):
        load_checkpoint(ck)


def test_weights_in_a_subfolder_of_the_checkpoint_still_load(tmp_path):
    from trim_rl.agents.registry import load_checkpoint

    ck = _copy_shipped(tmp_path)
    (ck / "w").mkdir()
    (ck / "model.safetensors").rename(ck / "w" / "model.safetensors")
    meta = json.loads((ck / "policy.json").read_text())
    meta["weights"] = "w/model.safetensors"
    (ck / "policy.json").write_text(json.dumps(meta))
    assert load_checkpoint(ck).lam == meta["lam"]


@pytest.mark.parametrize("lam", [float("nan"), float("inf"), -0.001, "0.002", True, [0.001]])
def test_a_price_that_is_not_a_price_is_refused(tmp_path, lam):
    from trim_rl.agents.registry import load_checkpoint

    ck = _copy_shipped(tmp_path)
    meta = json.loads((ck / "policy.json").read_text())
    meta["lam"] = lam
    (ck / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"policy\.json: field 'lam' must be a finite number >= 0"):
        load_checkpoint(ck)


def test_evaluate_names_a_checkpoint_whose_price_is_nan(tmp_path):
    ck = _copy_shipped(tmp_path)
    meta = json.loads((ck / "policy.json").read_text())
    meta["lam"] = float("nan")
    (ck / "policy.json").write_text(json.dumps(meta))
    from trim_rl.cli.evaluate import main

    assert main(["--trees", "sim:math500:test", "--policies", "thr", "--checkpoints", str(ck),
                 "--out", str(tmp_path / "rep"), "--quiet", "--bootstrap", "5"]) == 2
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("key, value, message", [
    ("family", ["TRIM-Agg"], r"field 'family' must be a non-empty string"),
    ("budget", {"requested": float("nan")}, r"field 'budget\.requested' must be a finite number > 0"),
    ("budget", {"requested": "twenty"}, r"field 'budget\.requested' must be a finite number > 0"),
    ("observation", {"name": "agg", "budget_conditioned": "yes"}, r"field 'observation\.budget_conditioned'"),
    ("observation", {"name": "agg", "budget_conditioned": True}, r"field 'lam_range' must be two finite prices"),
    ("network", {"obs_dim": 6, "net_arch": [10**9, 64]}, r"needs at least 70000000128 weights, the file holds"),
    ("network", {"obs_dim": 6, "net_arch": [64, -1]}, r"field 'network\.net_arch' must be a list of layer sizes"),
    ("network", {"obs_dim": "6", "net_arch": [64, 64]}, r"field 'network\.obs_dim' must be an integer"),
])
def test_a_malformed_field_is_named_before_the_network_is_built(tmp_path, monkeypatch, key, value, message):
    """A layer of a billion units is refused from the description, never allocated (the kernel killed
    the process before)."""
    from trim_rl.agents import exported
    from trim_rl.agents.registry import load_checkpoint

    def never(*a, **k):
        raise AssertionError("the network was built")

    monkeypatch.setattr(exported, "PolicyNet", never)
    ck = _copy_shipped(tmp_path)
    meta = json.loads((ck / "policy.json").read_text())
    meta[key] = value
    (ck / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=message) as info:
        load_checkpoint(ck)
    assert "policy.json" in str(info.value)
