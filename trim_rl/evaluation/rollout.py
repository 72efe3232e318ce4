"""Play a policy over every tree of a file once and record per-problem outcomes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trim_rl.data.flat import FlatTrees


@dataclass
class Records:
    """Per-problem (per-tree) outcomes of one operating point."""

    correct: np.ndarray
    strong_tokens: np.ndarray
    weak_tokens: np.ndarray  # all weak drafts, discarded ones included
    discarded_weak_tokens: np.ndarray
    interventions: np.ndarray
    steps: np.ndarray

    def summary(self) -> dict[str, float]:
        return {k: float(np.mean(getattr(self, k))) for k in
                ("correct", "strong_tokens", "weak_tokens", "discarded_weak_tokens", "interventions", "steps")}


def rollout(policy, trees: FlatTrees, lam: float = 1e-3, deterministic: bool = True,
            routing_errors: float = 0.0, seed: int = 0) -> Records:
    """Every tree once, all trees batched in one ``RoutingVecEnv`` (:meth:`RoutingVecEnv.every_tree_once`).

    ``lam`` is shown to budget-conditioned policies; ``routing_errors`` flips that fraction of the
    policy's decisions (where the flipped action is legal), seeded by ``seed``.
    """
    # trim_rl.envs.vec_env imports stable_baselines3
    from trim_rl.envs.vec_env import RoutingVecEnv

    n = trees.n_trees
    venv = RoutingVecEnv.every_tree_once(trees, lam=lam, obs=getattr(policy, "obs", "agg"),
                                         budget_conditioned=bool(getattr(policy, "budget_conditioned", False)), seed=seed)
    if hasattr(policy, "bind"):
        policy.bind(venv)
    obs = venv.reset()
    rng = np.random.default_rng([seed, 99])
    out = {k: np.zeros(n, dtype=np.int64) for k in
           ("strong_tokens", "weak_tokens", "discarded_weak_tokens", "interventions", "steps")}
    correct = np.zeros(n, dtype=bool)
    finished = np.zeros(n, dtype=bool)
    episode_start = np.ones(n, dtype=bool)
    state = None
    while not finished.all():
        masks = venv.action_masks()
        actions, state = policy.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic,
                                        action_masks=masks)
        actions = np.asarray(actions, dtype=np.int64).reshape(n)
        if routing_errors > 0:
            flip = rng.random(n) < routing_errors
            actions = np.where(flip & masks[np.arange(n), 1 - actions], 1 - actions, actions)
        obs, _, dones, infos = venv.step(actions)
        episode_start = dones
        for i in np.flatnonzero(dones & ~finished):
            info = infos[i]
            t = info["tree"]
            correct[t] = info["correct"]
            for k in out:
                out[k][t] = info[k]
        finished |= dones
    return Records(correct=correct, **out)


def weak_only_records(trees: FlatTrees) -> Records:
    w = trees.weak_only()
    z = np.zeros(trees.n_trees, dtype=np.int64)
    return Records(w["correct"], z, w["weak_tokens"], z.copy(), z.copy(), w["steps"])


def query_records(trees: FlatTrees, to_strong: np.ndarray) -> Records:
    """A query-level routing: the weak-only solution, or the strong model alone where ``to_strong``."""
    w = weak_only_records(trees)
    s = np.asarray(to_strong, dtype=bool)
    return Records(
        correct=np.where(s, trees.strong_only_correct, w.correct),
        strong_tokens=np.where(s, trees.strong_only_tokens, 0),
        weak_tokens=np.where(s, 0, w.weak_tokens),
        discarded_weak_tokens=np.zeros(trees.n_trees, dtype=np.int64),
        interventions=np.zeros(trees.n_trees, dtype=np.int64),
        steps=np.where(s, trees.strong_only_steps, w.steps),
    )
