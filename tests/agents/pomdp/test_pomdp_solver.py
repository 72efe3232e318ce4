"""Value iteration: shapes, determinism, the policy table, and the artifact (no pickle)."""

import json

import numpy as np
import pytest

from trim_rl.agents.registry import load_checkpoint
from trim_rl.agents.pomdp.policy import POMDPPolicy, load_pomdp
from trim_rl.agents.pomdp.solver import QFunction, SolverConfig, simplex_grid, solve
from trim_rl.evaluation.rollout import rollout

SMALL = SolverConfig(p_grid=101, obs_bins=20, simplex_grid=21)


def test_solution_shapes_and_determinism(fitted):
    a = solve(fitted, 1.6e-3, SMALL)
    b = solve(fitted, 1.6e-3, SMALL)
    T, K, C = fitted.horizon, fitted.max_interventions, fitted.tokens.n_bins
    assert a.value.shape == (T + 1, K + 1, 101)
    assert a.action.shape == (T, K + 1, C, 21, 21) and a.action.dtype == np.int8
    assert np.array_equal(a.value, b.value) and np.array_equal(a.action, b.action)
    assert np.all(a.value[T] == 0)
    assert np.all(np.isfinite(a.value)) and a.value.min() >= 0 and a.value.max() <= 1
    _, valid = simplex_grid(21)
    assert np.all((a.action == -1) == ~valid[None, None, None])
    assert np.all(a.action[:, K][..., valid] == 0)  # no regenerations left: keep
    # value rises with the belief that the prefix is correct
    assert np.all(np.diff(a.value[:5, 0], axis=-1) >= -1e-9)


def test_policy_table_is_the_greedy_action_of_the_value_table(fitted):
    sol = solve(fitted, 2.4e-3, SMALL)
    q = QFunction(fitted, 2.4e-3, SMALL.obs_bins)
    b, valid = simplex_grid(21)
    for t, k, c in ((0, 0, 0), (3, 1, 2), (7, 2, 3)):
        qk, qr = q(sol.value, np.int64(t), np.int64(k), np.int64(c), b)
        assert np.array_equal(sol.action[t, k, c][valid], (qr > qk)[valid].astype(np.int8))
    # a sure first wrong step is worth regenerating early on; a sure correct one is not
    i_s2, i_s0 = (0, 20), (20, 0)
    assert sol.action[1, 0, 1][i_s2] == 1 and sol.action[1, 0, 1][i_s0] == 0


@pytest.mark.slow
def test_higher_price_fewer_regenerations(bundled_test, fitted):
    trees = bundled_test.subset(np.arange(200))
    spent = [rollout(POMDPPolicy(fitted, solve(fitted, lam, SMALL)), trees, lam=lam).strong_tokens.mean()
             for lam in (5e-4, 2e-3, 8e-3)]
    assert spent[0] > spent[1] > spent[2]


def test_artifact_roundtrip_without_pickle(tmp_path, fitted, bundled_test):
    pol = POMDPPolicy(fitted, solve(fitted, 1.6e-3, SMALL))
    folder = pol.save(tmp_path / "ck")
    meta = json.loads((folder / "policy.json").read_text())
    assert meta["format"] == "trim_rl.policy/v1" and meta["kind"] == "pomdp" and meta["family"] == "TRIM-POMDP"
    assert meta["lam"] == 1.6e-3 and meta["observation"] == {"name": "agg", "budget_conditioned": False}
    assert meta["model"]["transition"]["rates"]["err_weak"] and meta["solver"]["p_grid"] == 101
    with np.load(folder / "policy.npz", allow_pickle=False) as z:
        assert {"value", "action", "weak_obs_cond", "transition_err_weak"} <= set(z.files)
        assert all(z[k].dtype != object for k in z.files)
    loaded = load_checkpoint(folder)  # dispatches on "kind"
    assert type(loaded).__name__ == "POMDPPolicy"
    assert loaded.obs == "agg" and loaded.budget_conditioned is False and loaded.lam == 1.6e-3
    assert loaded.family == "TRIM-POMDP" and loaded.folder == folder and loaded.meta["kind"] == "pomdp"
    trees = bundled_test.subset(np.arange(100))
    a, b = rollout(pol, trees, lam=1.6e-3), rollout(loaded, trees, lam=1.6e-3)
    assert np.array_equal(a.correct, b.correct) and np.array_equal(a.strong_tokens, b.strong_tokens)
    raw = bytearray((folder / "policy.npz").read_bytes())
    raw[-10] ^= 0xFF
    (folder / "policy.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256"):
        load_pomdp(folder)


@pytest.mark.parametrize("change, key", [
    ({"lam": float("nan")}, "'lam'"), ({"lam": -1.0}, "'lam'"), ({"lam": None}, "'lam'"), ({"lam": "0.1"}, "'lam'"),
    ({"arrays": "../outside.npz"}, "'arrays'"), ({"arrays": "/etc/passwd"}, "'arrays'"),
    ({"solver": {"p_grid": "101"}}, "'solver'"), ({"solver": None}, "'solver'"), ({"sha256": None}, "'sha256'"),
    ({"model": []}, "'model'"),
])
def test_a_hostile_policy_json_is_named_with_its_key(tmp_path, fitted, change, key):
    folder = POMDPPolicy(fitted, solve(fitted, 1.6e-3, SMALL)).save(tmp_path / "ck")
    (tmp_path / "outside.npz").write_bytes((folder / "policy.npz").read_bytes())
    meta = json.loads((folder / "policy.json").read_text())
    (folder / "policy.json").write_text(json.dumps({**meta, **change}))
    with pytest.raises(ValueError) as e:
        load_pomdp(folder)
    assert str(folder / "policy.json") in str(e.value) and key in str(e.value)


def test_an_integer_too_long_to_read_names_the_policy_file(tmp_path, fitted):
    folder = POMDPPolicy(fitted, solve(fitted, 1.6e-3, SMALL)).save(tmp_path / "ck")
    text = (folder / "policy.json").read_text()
    (folder / "policy.json").write_text(text.replace('"kind"', '"huge": ' + "9" * 5000 + ', "kind"', 1))
    with pytest.raises(ValueError, match="policy.json"):
        load_checkpoint(folder)
