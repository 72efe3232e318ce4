"""Finite-horizon value iteration for one price lambda (objective: correct - lambda x strong tokens).

The information state before a candidate step is (step t, regenerations used k, p = P(prefix
correct)): the reachable beliefs over S0/S1/S2 at a decision are p's prior times the likelihood of
the observation, so the value function lives on the 1-D belief simplex of the prefix, discretised on
``p_grid`` (linear interpolation), with exact Bayes updates over discretised observations (PRM
score bins x token-cost bins).  Backward from the depth limit:

    V[t, k, p] = sum_{x, c} P(x, c | p) max(Q_keep(b), Q_regen(b, c)),   b = posterior(p, x, c)
    Q_keep(b)  = b0 h_w(S0) + P(go on) V[t+1, k, p'_keep]
    Q_regen(b) = -lambda cost(c) + P(strong step right and final)
                 + sum_y P(y, go on) V[t+1, k+1, p'_regen(y)]        (only while k < K)

The policy table ``action[t, k, c, i0, i2]`` is the greedy action at the decision belief
(b0, b1, b2) = (i0 / (G-1), 1 - b0 - b2, i2 / (G-1)) of the discretised 3-state simplex (-1 off it).
Everything is vectorised over (k, p, x, c) with numpy; no randomness.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from trim_rl.agents.pomdp.config import SolverConfig
from trim_rl.agents.pomdp.model import POMDPModel


@dataclass
class Solution:
    lam: float
    value: np.ndarray  # (T + 1, K + 1, P) float32: V[T] = 0
    action: np.ndarray  # (T, K + 1, C, G, G) int8
    seconds: float
    config: SolverConfig


def coarsen(marginal: np.ndarray, n: int) -> np.ndarray:
    """Sum adjacent bins of (3, N) bin masses down to (3, n) (n must divide N, else unchanged)."""
    N = marginal.shape[1]
    if n >= N or N % n:
        return marginal
    return marginal.reshape(marginal.shape[0], n, N // n).sum(axis=2)


def interp(table: np.ndarray, t: np.ndarray, k: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``table[t, k, :]`` (uniform grid on [0, 1]) at ``p`` (broadcast)."""
    P = table.shape[-1]
    pos = np.clip(p, 0.0, 1.0) * (P - 1)
    i = np.minimum(pos.astype(np.int64), P - 2)
    f = pos - i
    return table[t, k, i] * (1.0 - f) + table[t, k, i + 1] * f


def _interp_one(row: list, p: float) -> float:
    """:func:`interp` of one row (a list) at one ``p``."""
    pos = min(max(p, 0.0), 1.0) * (len(row) - 1)
    i = min(int(pos), len(row) - 2)
    f = pos - i
    return row[i] * (1.0 - f) + row[i + 1] * f


class QFunction:
    """Q-values of keep / regenerate at decision beliefs, given a value table."""

    def __init__(self, model: POMDPModel, lam: float, obs_bins: int = 20):
        self.model, self.lam = model, float(lam)
        self.strong_marg = coarsen(model.strong_obs.marginal, obs_bins)  # (3, Y)
        self.weak_marg = coarsen(model.weak_obs.marginal, obs_bins)  # (3, X)
        self.T, self.K = model.horizon, model.max_interventions
        tr = model.transition  # nested lists for one()
        self._hw, self._hs, self._es = tr.end_weak.tolist(), tr.end_strong.tolist(), tr.err_strong.tolist()
        self._marg, self._cost = self.strong_marg.T.tolist(), model.tokens.strong_cost.tolist()

    def __call__(self, value: np.ndarray, t, k, c, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Q_keep, Q_regen) for integer arrays t, k, c broadcast against b[..., 0]; Q_regen = -inf
        where k >= K."""
        tr = self.model.transition
        t = np.clip(np.asarray(t), 0, self.T - 1)
        k = np.asarray(k)
        kc = np.clip(k, 0, self.K)
        b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
        hw = tr.end_weak[t]
        go = b * (1.0 - hw)
        s = go.sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            pk = np.where(s > 0, go[..., 0] / s, 0.0)
        qk = b0 * hw[..., 0] + s * interp(value, t + 1, kc, pk)
        es, hs = tr.err_strong[t], tr.end_strong[t]
        sig0 = b0 * (1 - es[..., 0]) + b2 * (1 - es[..., 1])
        sig2 = b0 * es[..., 0] + b2 * es[..., 1]
        cont = np.stack([sig0 * (1 - hs[..., 0]), b1 * (1 - hs[..., 1]), sig2 * (1 - hs[..., 2])], axis=-1)
        wy = cont[..., :, None] * self.strong_marg  # (..., 3, Y)
        den = wy.sum(axis=-2)
        with np.errstate(divide="ignore", invalid="ignore"):
            pn = np.where(den > 0, wy[..., 0, :] / den, 0.0)
        kn = np.minimum(kc + 1, self.K)[..., None]
        future = (den * interp(value, (t + 1)[..., None] if np.ndim(t) else t + 1, kn, pn)).sum(axis=-1)
        cost = self.model.tokens.strong_cost[np.asarray(c)]
        qr = -self.lam * cost + sig0 * hs[..., 0] + future
        qr = np.where(k >= self.K, -np.inf, qr)
        return qk, qr

    def one(self, value: list, t: int, k: int, c: int, b) -> tuple[float, float]:
        """``__call__`` for one belief ``b`` (three floats) with ``value`` as ``value.tolist()``: the
        same arithmetic in the same order on Python floats, so bit for bit the same Q-values (the sum
        over strong PRM score bins is left to numpy, which adds 8 or more numbers pairwise)."""
        t, kc = min(max(t, 0), self.T - 1), min(max(k, 0), self.K)
        b0, b1, b2 = b
        hw = self._hw[t]
        g0, g1, g2 = b0 * (1.0 - hw[0]), b1 * (1.0 - hw[1]), b2 * (1.0 - hw[2])
        s = g0 + g1 + g2
        qk = b0 * hw[0] + s * _interp_one(value[t + 1][kc], g0 / s if s > 0 else 0.0)
        if k >= self.K:
            return qk, -math.inf
        (e0, e1), hs = self._es[t], self._hs[t]
        sig0, sig2 = b0 * (1 - e0) + b2 * (1 - e1), b0 * e0 + b2 * e1
        c0, c1, c2 = sig0 * (1 - hs[0]), b1 * (1 - hs[1]), sig2 * (1 - hs[2])
        row = value[t + 1][min(kc + 1, self.K)]
        last = len(row) - 1
        terms = []
        for m0, m1, m2 in self._marg:  # _interp_one inlined (this loop is most of the time)
            w0 = c0 * m0
            den = w0 + c1 * m1 + c2 * m2
            p = w0 / den if den > 0 else 0.0
            pos = (p if 0.0 <= p <= 1.0 else min(max(p, 0.0), 1.0)) * last
            i = int(pos) if pos < last else last - 1
            f = pos - i
            terms.append(den * (row[i] * (1.0 - f) + row[i + 1] * f))
        return qk, -self.lam * self._cost[c] + sig0 * hs[0] + float(np.add.reduce(terms))


def solve(model: POMDPModel, lam: float, config: SolverConfig | None = None) -> Solution:
    """Value table and policy table of one price ``lam``."""
    cfg = config or SolverConfig()
    t0 = time.perf_counter()
    q = QFunction(model, lam, cfg.obs_bins)
    T, K = model.horizon, model.max_interventions
    P = cfg.p_grid
    p = np.linspace(0.0, 1.0, P)
    tr = model.transition
    lw = q.weak_marg  # (3, X)
    obs_lik = lw[:, :, None] * model.tokens.band_likelihood(lw.shape[1])  # (3, X, C)
    C = obs_lik.shape[2]
    value = np.zeros((T + 1, K + 1, P))
    ks = np.arange(K + 1)[:, None, None, None]
    cs = np.arange(C)[None, None, None, :]
    for t in range(T - 1, -1, -1):
        e = tr.err_weak[t]
        prior = np.stack([p * (1 - e), 1 - p, p * e], axis=-1)  # (P, 3)
        w = prior[:, None, None, :] * np.moveaxis(obs_lik, 0, -1)[None]  # (P, X, C, 3)
        z = w.sum(axis=-1)
        b = w / np.where(z > 0, z, 1.0)[..., None]
        qk, qr = q(value, np.int64(t), ks, cs, b[None])
        value[t] = (z[None] * np.maximum(qk, qr)).sum(axis=(2, 3))
    value = value.astype(np.float32)  # what the artifact stores; the policy acts on exactly this
    action = policy_table(q, value, cfg.simplex_grid, C)
    return Solution(float(lam), value, action, time.perf_counter() - t0, cfg)


def simplex_grid(G: int) -> tuple[np.ndarray, np.ndarray]:
    """Beliefs (G, G, 3) at b0 = i / (G-1), b2 = j / (G-1), b1 = 1 - b0 - b2, and the mask b1 >= 0."""
    g = np.linspace(0.0, 1.0, G)
    b0, b2 = np.meshgrid(g, g, indexing="ij")
    b1 = 1.0 - b0 - b2
    valid = b1 >= -1e-9
    return np.stack([b0, np.clip(b1, 0, 1), b2], axis=-1), valid


def policy_table(q: QFunction, value: np.ndarray, G: int, C: int) -> np.ndarray:
    """Greedy action on the simplex grid for every (t, k, token bin): int8 (T, K+1, C, G, G)."""
    T, K = q.T, q.K
    b, valid = simplex_grid(G)
    out = np.empty((T, K + 1, C, G, G), dtype=np.int8)
    ks = np.arange(K + 1)[:, None, None, None]
    cs = np.arange(C)[None, :, None, None]
    for t in range(T):
        qk, qr = q(value, np.int64(t), ks, cs, b[None, None])
        out[t] = np.where(valid, (qr > qk).astype(np.int8), np.int8(-1))
    return out
