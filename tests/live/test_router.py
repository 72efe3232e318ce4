"""load_policy and Router: the live router decides exactly what the policy decides in the offline env."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from trim_rl.agents.baselines import ThresholdPolicy
from trim_rl.agents.exported import ExportedPolicy
from trim_rl.agents.pomdp.belief import BeliefState
from trim_rl.agents.pomdp.policy import POMDPPolicy
from trim_rl.data.flat import ABSENT, load_flat
from trim_rl.envs.observations import AggObservation, SeqObservation, StepHistory
from trim_rl.envs.routing_env import REGENERATE, RoutingEnv
from trim_rl.live.router import Router, load_policy
from trim_rl.sim.generate import generate_file
from tests.conftest import REPO

CKPT = REPO / "checkpoints"
AGG = CKPT / "trim_agg" / "trim_agg_b20"
SEQ = CKPT / "trim_seq" / "trim_seq_b20"
BUDGET = CKPT / "trim_agg_budget"
POMDP = CKPT / "trim_pomdp" / "trim_pomdp_b20"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One torch thread: the TRIM-Seq transformer (one observation at a time) is 10-100x slower
    with a thread pool on a busy machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    p = tmp_path_factory.mktemp("router") / "trees.jsonl.gz"
    generate_file("math500", "val", 3, p, limit=8, draws=2)
    return load_flat(p)


def _history(*steps) -> StepHistory:
    h = StepHistory()
    for prm, tokens, regen in steps:
        h.append(prm, tokens, regen)
    return h


# ---------------------------------------------------------------------------------------------
# load_policy
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, mode, action", [("weak-only", "weak-only", 0), ("always-weak", "weak-only", 0),
                                                 ("strong-only", "strong-only", 1), ("always-strong", "strong-only", 1)])
def test_fixed_modes_decode_without_a_router_and_load_as_constant_policies(spec, mode, action):
    from trim_rl.agents.baselines import ConstantPolicy
    from trim_rl.agents.catalog import decode_mode

    assert decode_mode(spec) == mode
    policy = load_policy(spec)  # offline (and through the registry) both spellings are the constant policy
    assert isinstance(policy, ConstantPolicy) and policy.action == action


@pytest.mark.parametrize("spec", ["thr:0.5", str(AGG), str(POMDP)])
def test_routed_specs_decode_hybrid(spec):
    from trim_rl.agents.catalog import decode_mode

    assert decode_mode(spec) == "hybrid"


def test_threshold_spec():
    p = load_policy("thr:0.4")
    assert isinstance(p, ThresholdPolicy) and p.k == 0.4


@pytest.mark.parametrize("spec", ["thr:x", "thr:", "thr:1.5"])
def test_bad_threshold_specs(spec):
    with pytest.raises(ValueError, match="thr|threshold"):
        load_policy(spec)


def test_missing_or_empty_folder(tmp_path):
    # both are errors the live command line reports in one line (exit 2)
    with pytest.raises(ValueError, match="checkpoint folder"):
        load_policy(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"):
        load_policy(str(tmp_path))  # exists, but no policy.json


def test_checkpoint_specs_load_the_right_kind():
    assert isinstance(load_policy(str(AGG)), ExportedPolicy)
    assert isinstance(load_policy(str(POMDP)), POMDPPolicy)


# ---------------------------------------------------------------------------------------------
# Router == policy on the builder's observation == policy inside RoutingEnv
# ---------------------------------------------------------------------------------------------
def test_router_matches_exported_policy_on_from_history():
    policy = load_policy(str(AGG))
    router = Router(policy)
    assert isinstance(router.builder, AggObservation) and router.builder.dim == 6
    hist = _history((0.9, 40, False), (0.8, 60, False))  # no low score kept yet: both decisions stay possible
    actions = set()
    for prm in np.linspace(0.0, 1.0, 21):
        for tokens in (10, 60, 200):
            a, state = router.decide(hist, float(prm), tokens, can_regenerate=True)
            obs = AggObservation().from_history(hist, float(prm), tokens)
            expected = int(policy.predict(obs[None], action_masks=np.array([[True, True]]))[0][0])
            assert a == expected == int(np.argmax(policy.logits(obs)))
            assert state is None
            actions.add(a)
    assert actions == {0, 1}  # the grid reaches both decisions, so the comparison means something
    assert len(router.seconds) == 21 * 3


def _play_env(flat, policy, router, obs_name, lam=None, carry_state=True):
    """Walk every tree with ``policy`` acting in RoutingEnv; at each step, Router.decide on a
    StepHistory kept from the tree's numbers must give the same action.  Returns the actions taken."""
    env = RoutingEnv(flat, obs=obs_name, lam=lam or 1e-3, budget_conditioned=lam is not None)
    taken = []
    for t in range(flat.n_trees):
        obs, _ = env.reset(options={"tree": t, **({"lam": lam} if lam is not None else {})})
        hist, node, done = StepHistory(), int(flat.tree_root[t]), False
        env_state = live_state = None
        while not done:
            mask = env.action_masks()
            a_env, env_state = policy.predict(obs[None], state=env_state, episode_start=np.array([hist.depth == 0]),
                                              deterministic=True, action_masks=mask[None])
            a_env = int(a_env[0])
            a_live, live_state = router.decide(hist, float(flat.weak_prm[node]), int(flat.weak_tokens[node]),
                                               bool(mask[1]), live_state if carry_state else None)
            assert a_live == a_env, f"tree {t} depth {hist.depth}"
            taken.append(a_env)
            obs, _, done, _, _ = env.step(a_env)
            if a_env == REGENERATE and flat.regen_child[node] != ABSENT:
                hist.append(flat.strong_prm[node], flat.strong_tokens[node], True)
                node = int(flat.regen_child[node])
            else:
                hist.append(flat.weak_prm[node], flat.weak_tokens[node], False)
                node = int(flat.keep_child[node])
    return taken


def test_router_matches_agg_policy_in_routing_env(flat):
    policy = load_policy(str(AGG))
    taken = _play_env(flat, policy, Router(policy), "agg")
    assert 0 in taken and 1 in taken and len(taken) > 20


def test_router_matches_seq_policy_in_routing_env(flat):
    policy = load_policy(str(SEQ))
    router = Router(policy)
    assert isinstance(router.builder, SeqObservation)
    taken = _play_env(flat, policy, router, "seq")
    assert 0 in taken and 1 in taken


def test_budget_conditioned_router_matches_env(flat):
    policy = load_policy(str(BUDGET))
    router = Router(policy, lam=0.0024)
    assert router.builder.budget_conditioned and router.lam == 0.0024
    taken = _play_env(flat, policy, router, "agg", lam=0.0024)
    assert 0 in taken and 1 in taken


# ---------------------------------------------------------------------------------------------
# budget-conditioned checkpoints need lambda
# ---------------------------------------------------------------------------------------------
def test_budget_conditioned_without_lam_raises():
    policy = load_policy(str(BUDGET))
    assert policy.lam is None  # the shipped checkpoint holds a lambda range, not one lambda
    with pytest.raises(ValueError, match="--lam"):
        Router(policy)


def test_budget_conditioned_takes_lam_from_policy_json(tmp_path):
    folder = tmp_path / "budget_with_lam"
    shutil.copytree(BUDGET, folder)
    meta = json.loads((folder / "policy.json").read_text(encoding="utf-8"))
    meta["lam"] = 0.0032
    (folder / "policy.json").write_text(json.dumps(meta), encoding="utf-8")

    from_json = Router(load_policy(str(folder)))
    assert from_json.lam == 0.0032
    explicit = Router(load_policy(str(BUDGET)), lam=0.0032)
    override = Router(load_policy(str(folder)), lam=0.0008)
    assert override.lam == 0.0008  # --lam wins over policy.json
    hist = _history((0.8, 50, False), (0.6, 30, False))
    obs = from_json.builder.from_history(hist, 0.3, 70, from_json.lam)
    assert obs.shape == (7,) and obs[6] == pytest.approx(np.log10(0.0032))
    for prm in np.linspace(0.0, 1.0, 11):
        assert from_json.decide(hist, float(prm), 70, True)[0] == explicit.decide(hist, float(prm), 70, True)[0]


def test_lam_changes_budget_conditioned_decisions():
    policy = load_policy(str(BUDGET))
    cheap, dear = Router(policy, lam=0.0004), Router(policy, lam=0.0048)
    hist = _history((0.9, 50, False))
    grid = [(float(p), t) for p in np.linspace(0.0, 1.0, 41) for t in (20, 80, 200)]
    n_cheap = sum(cheap.decide(hist, p, t, True)[0] for p, t in grid)
    n_dear = sum(dear.decide(hist, p, t, True)[0] for p, t in grid)
    assert n_cheap > n_dear  # a cheaper strong model is asked more often


# ---------------------------------------------------------------------------------------------
# TRIM-POMDP: the belief travels in ``state``
# ---------------------------------------------------------------------------------------------
def test_pomdp_router_carries_state(flat):
    policy = load_policy(str(POMDP))
    router = Router(policy)
    hist = StepHistory()
    _, state = router.decide(hist, 0.95, 40, True, None)  # first call: no state
    assert isinstance(state, BeliefState) and int(state.depth[0]) == 0
    hist.append(0.95, 40, False)
    _, state2 = router.decide(hist, 0.9, 35, True, state)
    assert isinstance(state2, BeliefState) and int(state2.depth[0]) == 1
    assert int(state.depth[0]) == 0  # the state passed in is not changed in place

    # a restart at depth 1 assumes the prefix is correct; the carried belief keeps some doubt
    _, restarted = router.decide(hist, 0.9, 35, True, None)
    assert restarted.states[0, 1] == 0.0
    assert state2.states[0, 1] > 0.0

    taken = _play_env(flat, policy, router, "agg")
    assert 0 in taken and 1 in taken


def test_pomdp_decision_depends_on_the_carried_state():
    """After a kept step with a very low PRM score the prefix is probably wrong already, so the
    filter sees no point in paying for a strong step; a router that forgot the state would."""
    router = Router(load_policy(str(POMDP)))
    hist = StepHistory()
    a0, state = router.decide(hist, 0.05, 20, False, None)  # regenerating not allowed: kept
    assert a0 == 0
    hist.append(0.05, 20, False)
    carried = [router.decide(hist, float(p), 60, True, state)[0] for p in np.linspace(0.05, 0.95, 19)]
    forgot = [router.decide(hist, float(p), 60, True, None)[0] for p in np.linspace(0.05, 0.95, 19)]
    # the state never makes it pay for more, and somewhere it makes the difference
    assert all(c <= f for c, f in zip(carried, forgot)) and carried != forgot, (carried, forgot)


# ---------------------------------------------------------------------------------------------
# the action mask
# ---------------------------------------------------------------------------------------------
def test_mask_forbids_regenerate_for_threshold():
    router = Router(load_policy("thr:1.0"))
    hist = _history((0.9, 10, False), (0.8, 20, True))
    for prm in (0.0, 0.3, 0.99):
        assert router.decide(hist, prm, 50, can_regenerate=True)[0] == 1
        assert router.decide(hist, prm, 50, can_regenerate=False)[0] == 0


@pytest.mark.parametrize("folder", [AGG, SEQ, POMDP])
def test_mask_forbids_regenerate_for_checkpoints(folder):
    router = Router(load_policy(str(folder)))
    hist = _history((0.9, 40, False), (0.8, 40, False))
    wants = [p for p in np.linspace(0.0, 1.0, 21) if router.decide(hist, float(p), 60, True)[0] == 1]
    assert wants, "the policy never regenerates on this grid"
    for p in wants:
        assert router.decide(hist, float(p), 60, False)[0] == 0


def _conditioned_checkpoint(tmp_path):
    import torch

    from trim_rl.agents.checkpoint import write_network_checkpoint
    from trim_rl.agents.networks import PolicyNet

    torch.manual_seed(0)
    meta = {"family": "TRIM-Agg (budget-conditioned)", "observation": {"name": "agg", "budget_conditioned": True},
            "lam": None, "lam_range": [1e-3, 4e-3],
            "network": {"obs_dim": 7, "net_arch": [8], "activation": "tanh", "encoder": None},
            "budget_table": {"trees": "toy", "rows": [{"lam": 1e-3, "cost_pct": 30.0, "accuracy": 0.7},
                                                      {"lam": 2e-3, "cost_pct": 20.0, "accuracy": 0.6},
                                                      {"lam": 4e-3, "cost_pct": 0.0, "accuracy": 0.37}]}}
    return write_network_checkpoint(PolicyNet("agg", 7, [8], "tanh"), meta, tmp_path / "bc")


def test_a_budget_picks_the_conditioned_policys_price_from_its_table(tmp_path):
    from trim_rl.live.router import Router, load_policy

    pol = load_policy(str(_conditioned_checkpoint(tmp_path)))
    r = Router(pol, budget=20.0)
    assert r.lam == pytest.approx(2e-3) and r.budget == 20.0
    assert Router(pol, budget=25.0).lam == pytest.approx(np.sqrt(1e-3 * 2e-3))
    h = StepHistory()
    obs = r.builder.from_history(h, 0.5, 40, r.lam)
    assert obs[6] == pytest.approx(np.log10(2e-3))  # the price the network sees
    with pytest.raises(ValueError, match=r"--budget: 45\.0 is outside this checkpoint's calibrated range 0\.0-30\.0"):
        Router(pol, budget=45.0)
    with pytest.raises(ValueError, match="give --budget PCT"):
        Router(pol)
    with pytest.raises(ValueError, match="--budget and --lam: choose one"):
        Router(pol, lam=1e-3, budget=20.0)


def test_a_budget_for_a_per_budget_checkpoint_is_refused():
    from trim_rl.live.router import Router, load_policy

    with pytest.raises(ValueError, match="--budget: this policy is not budget-conditioned"):
        Router(load_policy("thr:0.3"), budget=10.0)
