"""Recursive Bayes filter over the latent states S0 / S1 / S2 (see :mod:`trim_rl.agents.pomdp.fit`)
and the problem's difficulty class d (see :mod:`trim_rl.agents.pomdp.transition`).

Before a candidate step the belief is ``pre[d, z]`` = P(class d, accepted prefix correct (z=0) or not
(z=1)).  The weak candidate at step t turns it into the prior (ok_d (1 - e_w[t, d]), bad_d,
ok_d e_w[t, d]) over (S0, S1, S2); its PRM score x (given the min m of the earlier scores) and its
token bin update that to the decision belief b[d, s].  After the decision:

- keep: the prefix stays correct iff the kept step was S0, and the episode went on, so the step was
  not final: ok'_d = b0_d (1 - h_w(S0)), bad'_d = b1_d (1 - h_w(S1)) + b2_d (1 - h_w(S2));
- regenerate: the strong step is right with 1 - e_s (which depends on whether the weak step was
  wrong), wrong with e_s, or follows an earlier error (S1); it was not final either, and its PRM score
  y (recovered from the ratio of the observation's product column) is evidence too.

Every update is in closed form and vectorised over a batch of episodes; the policy reads the
class-summed belief over (S0, S1, S2).  :meth:`BeliefFilter.step_one` repeats the same arithmetic on
Python floats for one episode (live decoding), where numpy's per-call overhead would dominate.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, replace

import numpy as np

from trim_rl.agents.pomdp.model import POMDPModel
from trim_rl.agents.pomdp.observation import bilinear
from trim_rl.data.schema import MAX_STEPS
from trim_rl.envs.observations import TOKEN_SCALE


@dataclass
class BeliefState:
    """Filter memory per episode, carried in ``predict``'s ``state``: the last decision belief
    (n, D, 3) and the observation it was made on (depth, regenerations used, product and min of
    earlier scores)."""

    belief: np.ndarray  # (n, D, 3)
    depth: np.ndarray  # (n,) int, -1 before the first observation
    k: np.ndarray
    prod: np.ndarray
    min_prior: np.ndarray

    @classmethod
    def fresh(cls, n: int, n_classes: int = 1) -> BeliefState:
        b = np.zeros((n, n_classes, 3))
        b[:, :, 0] = 1.0 / n_classes
        return cls(b, np.full(n, -1, np.int64), np.zeros(n, np.int64), np.ones(n), np.ones(n))

    def __len__(self) -> int:
        return int(self.depth.shape[0])

    @property
    def states(self) -> np.ndarray:
        """(n, 3) belief over S0 / S1 / S2 (classes summed out)."""
        return self.belief.sum(axis=1)

    def copy(self) -> BeliefState:
        return replace(self, **{k: v.copy() for k, v in self.__dict__.items()})


class BeliefFilter:
    """The Bayes updates of a fitted :class:`POMDPModel`; beliefs are (n, D, 3) arrays."""

    def __init__(self, model: POMDPModel):
        self.model = model
        tr = model.transition
        self.T, self.D = tr.horizon, tr.n_classes
        # the model as nested lists, for step_one
        self._prior, self._hw, self._hs = tr.class_prior.tolist(), tr.end_weak.tolist(), tr.end_strong.tolist()
        self._ew, self._es = tr.class_err_weak.tolist(), tr.class_err_strong.tolist()
        self._weak, self._strong = model.weak_obs.cond.tolist(), model.strong_obs.cond.tolist()
        tok = model.tokens
        self._edges, self._bands, self._p_bin = tok.edges.tolist(), tok.bands.tolist(), tok.p_bin.tolist()

    def _t(self, t) -> np.ndarray:
        return np.clip(np.asarray(t, dtype=np.int64), 0, self.T - 1)

    def start(self, n: int) -> np.ndarray:
        """(n, D, 2) belief before the first step: prefix correct, classes at their prior."""
        pre = np.zeros((n, self.D, 2))
        pre[:, :, 0] = self.model.transition.class_prior
        return pre

    def prior(self, pre: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(n, D, 3) distribution of (class, state of the weak candidate at step ``t``)."""
        e = self.model.transition.class_err_weak[self._t(t)]  # (n, D)
        ok, bad = pre[..., 0], pre[..., 1]
        return np.stack([ok * (1 - e), bad, ok * e], axis=-1)

    def observe(self, prior: np.ndarray, min_prior: np.ndarray, score: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Decision belief after the weak candidate's PRM score and token count."""
        lik = self.model.weak_obs.likelihood(min_prior, score) * self.model.tokens.likelihood(score, tokens)
        return _normalise(prior * lik[:, None, :], prior)

    def after_keep(self, b: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(n, D, 2) belief after keeping the candidate (and the episode going on)."""
        go = b * (1.0 - self.model.transition.end_weak[self._t(t)])[:, None, :]
        pre = np.stack([go[..., 0], go[..., 1] + go[..., 2]], axis=-1)
        return _normalise(pre, np.stack([b[..., 0], b[..., 1] + b[..., 2]], axis=-1))

    def regen_outcome(self, b: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(n, D, 3) distribution of (class, latent state of the strong step replacing the candidate)."""
        es = self.model.transition.class_err_strong[self._t(t)]  # (n, 2, D)
        ok = b[..., 0] * (1 - es[:, 0]) + b[..., 2] * (1 - es[:, 1])
        wrong = b[..., 0] * es[:, 0] + b[..., 2] * es[:, 1]
        return np.stack([ok, b[..., 1], wrong], axis=-1)

    def after_regen(self, b: np.ndarray, t: np.ndarray, min_prior: np.ndarray, score: np.ndarray) -> np.ndarray:
        """(n, D, 2) belief after regenerating (episode going on), given the strong step's PRM score
        (``nan`` where it is unknown)."""
        q = self.regen_outcome(b, t) * (1.0 - self.model.transition.end_strong[self._t(t)])[:, None, :]
        y = np.asarray(score, dtype=np.float64)
        known = np.isfinite(y)
        lik = np.ones((q.shape[0], 3))
        if known.any():
            lik[known] = self.model.strong_obs.likelihood(np.asarray(min_prior)[known], np.clip(y[known], 0, 1))
        w = q * lik[:, None, :]
        pre = np.stack([w[..., 0], w[..., 1] + w[..., 2]], axis=-1)
        return _normalise(pre, np.stack([q[..., 0], q[..., 1] + q[..., 2]], axis=-1))

    def step(self, state: BeliefState | None, obs: np.ndarray, episode_start: np.ndarray | None = None
             ) -> tuple[BeliefState, np.ndarray]:
        """Update the per-episode beliefs with a batch of ``agg`` observations (n, >= 6); returns the
        new state and the (n, 3) belief over S0 / S1 / S2.

        Whether the previous decision regenerated is read from the change of column 5 (regenerations
        used), so the filter stays right when actions are changed after ``predict``.  An episode
        restarts where ``episode_start`` is set, at depth 0, or where the depth does not follow the
        previous observation's.
        """
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float64))
        n = obs.shape[0]
        ok_state = state is not None and len(state) == n and state.belief.shape[1] == self.D
        st = state.copy() if ok_state else BeliefState.fresh(n, self.D)
        x, m, prod = np.clip(obs[:, 0], 0, 1), np.clip(obs[:, 1], 0, 1), obs[:, 2]
        tokens = obs[:, 3] * TOKEN_SCALE
        depth = np.rint(obs[:, 4] * MAX_STEPS).astype(np.int64)
        k = np.rint(obs[:, 5]).astype(np.int64)
        fresh = (depth == 0) | (st.depth < 0) | (depth != st.depth + 1)
        if episode_start is not None:
            fresh |= np.asarray(episode_start, dtype=bool).reshape(n)
        pre = self.start(n)
        cont = ~fresh
        if cont.any():
            regen = cont & (k > st.k)
            keep = cont & ~regen
            if keep.any():
                pre[keep] = self.after_keep(st.belief[keep], st.depth[keep])
            if regen.any():
                pp = st.prod[regen]
                with np.errstate(divide="ignore", invalid="ignore"):
                    y = np.where(pp > 0, prod[regen] / pp, np.where(m[regen] < st.min_prior[regen], m[regen], np.nan))
                pre[regen] = self.after_regen(st.belief[regen], st.depth[regen], st.min_prior[regen], y)
        st.belief = self.observe(self.prior(pre, depth), m, x, tokens)
        st.depth, st.k, st.prod, st.min_prior = depth, k, prod, m
        return st, st.states

    # -- one episode on Python floats ------------------------------------------------------------
    # The same operations in the same order as the array code above, so the results are bit for bit
    # equal: numpy adds fewer than 8 numbers left to right, which holds for every sum here while
    # D <= 2 (the sums over (D, 3) in _normalise); ``scalar_ok`` says whether step_one may be used.

    @property
    def scalar_ok(self) -> bool:
        return self.D <= 2

    def step_one(self, state: BeliefState | None, obs, restart: bool) -> tuple[BeliefState, list[float]]:
        """:meth:`step` for one episode: ``obs`` is one finite ``agg`` observation (a sequence of
        floats), ``restart`` its ``episode_start``; returns the new (n = 1) state and the belief over
        S0 / S1 / S2 as floats."""
        x, m, prod = min(max(obs[0], 0.0), 1.0), min(max(obs[1], 0.0), 1.0), obs[2]
        tokens = obs[3] * TOKEN_SCALE
        depth, k = round(obs[4] * MAX_STEPS), round(obs[5])
        pre = None
        if state is not None and len(state) == 1 and state.belief.shape[1] == self.D and not restart:
            prev = int(state.depth[0])
            if depth != 0 and prev >= 0 and depth == prev + 1:
                b, t = state.belief[0].tolist(), min(max(prev, 0), self.T - 1)
                if k > int(state.k[0]):
                    pp, mp = float(state.prod[0]), float(state.min_prior[0])
                    y = prod / pp if pp > 0 else (m if m < mp else math.nan)
                    pre = self._after_regen_one(b, t, mp, y)
                else:
                    hw = self._hw[t]
                    go = [[r[0] * (1.0 - hw[0]), r[1] * (1.0 - hw[1]), r[2] * (1.0 - hw[2])] for r in b]
                    pre = _normalise_one([[g[0], g[1] + g[2]] for g in go], [[r[0], r[1] + r[2]] for r in b])
        if pre is None:
            pre = [[p, 0.0] for p in self._prior]
        e = self._ew[min(max(depth, 0), self.T - 1)]
        prior = [[ok * (1 - ed), bad, ok * ed] for (ok, bad), ed in zip(pre, e)]
        tok = [p[bisect_right(self._bands, x)][bisect_right(self._edges, tokens)] for p in self._p_bin]
        lik = [a * c for a, c in zip(bilinear(self._weak, m, x), tok)]
        belief = _normalise_one([[r[0] * lik[0], r[1] * lik[1], r[2] * lik[2]] for r in prior], prior)
        st = BeliefState(np.array([belief]), np.array([depth], dtype=np.int64), np.array([k], dtype=np.int64),
                         np.array([prod]), np.array([m]))
        states = belief[0] if len(belief) == 1 else [a + c for a, c in zip(*belief)]
        return st, states

    def _after_regen_one(self, b: list, t: int, min_prior: float, y: float) -> list:
        es0, es1 = self._es[t]
        hs = self._hs[t]
        q = [[(r[0] * (1 - e0) + r[2] * (1 - e1)) * (1.0 - hs[0]), r[1] * (1.0 - hs[1]),
              (r[0] * e0 + r[2] * e1) * (1.0 - hs[2])] for r, e0, e1 in zip(b, es0, es1)]
        lik = bilinear(self._strong, min_prior, min(max(y, 0.0), 1.0)) if math.isfinite(y) else [1.0, 1.0, 1.0]
        return _normalise_one([[r[0] * lik[0], r[1] * lik[1] + r[2] * lik[2]] for r in q],
                              [[r[0], r[1] + r[2]] for r in q])


def _normalise(w: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Normalise each (D, s) belief to sum 1 (``fallback``, normalised, where the mass is 0)."""
    z = w.sum(axis=(-2, -1), keepdims=True)
    bad = ~(z > 0)
    out = w / np.where(bad, 1.0, z)
    if bad.any():
        fb = fallback / np.maximum(fallback.sum(axis=(-2, -1), keepdims=True), 1e-300)
        out = np.where(bad, fb, out)
    return out


def _normalise_one(w: list, fallback: list) -> list:
    """:func:`_normalise` of one (D, s) belief given as nested lists."""
    z = _sum(w)
    if z > 0:
        return [[v / z for v in r] for r in w]
    z = max(_sum(fallback), 1e-300)
    return [[v / z for v in r] for r in fallback]


def _sum(rows: list) -> float:
    """Sum of all entries, left to right (as numpy adds fewer than 8 numbers)."""
    flat = [v for r in rows for v in r]
    total = flat[0]
    for v in flat[1:]:
        total += v
    return total
