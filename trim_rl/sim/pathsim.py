"""Roll threshold routers (and the weak-only / strong-only references) through the step model
on the fly, without building trees.  The calibration fitter and the sweep report use it; the
trees that :mod:`trim_rl.sim.generate` writes draw their steps from the same model.

Randomness is tied to (episode, depth, model) — common random numbers — so that the fitter's
objective changes only where a parameter changes an outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trim_rl.data.schema import MAX_STEPS
from trim_rl.sim.model import STRONG, WEAK, Episodes, Paths, draw_steps, make_episodes
from trim_rl.sim.params import ModelParams, ProfileParams
from trim_rl.sim.profiles import ProfileProblems

#: settings understood by :func:`simulate`: a float threshold k (regenerate when the weak step's PRM
#: score < k), "weak" (always keep) or "strong" (the strong model alone).
Setting = float | str


@dataclass
class PathStats:
    """Per-episode outcomes of one setting plus step records for diagnostics."""

    correct: np.ndarray
    strong_tokens: np.ndarray
    calls: np.ndarray
    kept_weak_tokens: np.ndarray
    discarded_weak_tokens: np.ndarray
    steps: np.ndarray
    capped: np.ndarray  # the router wanted to regenerate but max_interventions was used up
    step_state: np.ndarray  # accepted steps: latent state, min prior, PRM score, episode, depth
    step_min_prior: np.ndarray
    step_prm: np.ndarray
    step_episode: np.ndarray
    step_depth: np.ndarray

    def summary(self) -> dict[str, float]:
        return {
            "accuracy": float(self.correct.mean()),
            "strong_tokens": float(self.strong_tokens.mean()),
            "strong_calls": float(self.calls.mean()),
            "kept_weak_tokens": float(self.kept_weak_tokens.mean()),
            "discarded_weak_tokens": float(self.discarded_weak_tokens.mean()),
            "steps": float(self.steps.mean()),
            "capped": float(self.capped.mean()),
        }


class _Noise:
    """Uniforms and normals indexed by (episode, depth, model), independent of who is alive."""

    def __init__(self, seed: int, n: int):
        self.seed, self.n, self.cache = seed, n, {}

    def get(self, depth: int, model: int, idx: np.ndarray):
        key = (depth, model)
        if key not in self.cache:
            g = np.random.default_rng([self.seed, depth, model, 7919])
            self.cache[key] = (g.random((6, self.n)), g.standard_normal(self.n))
        u, e = self.cache[key]
        return u[:, idx], e[idx]


def simulate(m: ModelParams, prof: ProfileParams, pp: ProfileProblems, settings: list[Setting],
             draws: int = 4, seed: int = 0, max_interventions: int | None = None) -> dict[Setting, PathStats]:
    """Simulate every setting on ``draws`` episodes per problem (the same episodes for all)."""
    k_max = prof.max_interventions if max_interventions is None else max_interventions
    ep = make_episodes(m, prof, pp, draws, np.random.default_rng([seed, 1]))
    noise = _Noise(seed, len(ep))
    return {s: _run(m, prof, ep, noise, s, k_max) for s in settings}


def _run(m: ModelParams, prof: ProfileParams, ep: Episodes, noise: _Noise, setting: Setting, k_max: int) -> PathStats:
    n = len(ep)
    idx_all = np.arange(n)
    paths = Paths(n)
    state, min_prior = paths.state, paths.min_prior
    calls = np.zeros(n, dtype=np.int64)
    S = np.zeros(n, dtype=np.int64)
    W = np.zeros(n, dtype=np.int64)
    D = np.zeros(n, dtype=np.int64)
    capped = np.zeros(n, dtype=bool)
    rec: list[tuple[np.ndarray, ...]] = []
    for d in range(MAX_STEPS):
        a = idx_all[paths.alive]
        if a.size == 0:
            break
        depth = np.full(a.size, d)
        if setting == "strong":
            s = draw_steps(m, prof, ep, a, depth, state[a], min_prior[a], STRONG, noise=noise.get(d, STRONG, a))
            regen = np.ones(a.size, dtype=bool)
            acc_state, acc_prm, acc_final, acc_tok = s.state, s.prm, s.final, s.tokens
            S[a] += s.tokens
        else:
            w = draw_steps(m, prof, ep, a, depth, state[a], min_prior[a], WEAK, noise=noise.get(d, WEAK, a))
            if setting == "weak":
                want = np.zeros(a.size, dtype=bool)
            else:
                want = w.prm < float(setting)
            regen = want & (calls[a] < k_max)
            capped[a] |= want & ~regen
            acc_state, acc_prm, acc_final, acc_tok = w.state.copy(), w.prm.copy(), w.final.copy(), w.tokens.copy()
            if regen.any():
                r = a[regen]
                s = draw_steps(m, prof, ep, r, depth[regen], state[r], min_prior[r], STRONG, noise=noise.get(d, STRONG, r))
                acc_state[regen], acc_prm[regen], acc_final[regen], acc_tok[regen] = s.state, s.prm, s.final, s.tokens
                S[r] += s.tokens
                D[r] += w.tokens[regen]
                calls[r] += 1
            W[a[~regen]] += w.tokens[~regen]
        rec.append((acc_state, min_prior[a].copy(), acc_prm, a, depth))
        paths.accept(a, d, acc_state, acc_prm, acc_final)
    cat = [np.concatenate(x) for x in zip(*rec)]
    return PathStats(paths.correct, S, calls, W, D, paths.steps, capped, *cat)
