"""The latent-correctness step model shared by tree generation and the calibration fitter.

Latent state of a prefix: 0 = every step correct so far, 1 = an earlier step was wrong
(irrecoverable).  A candidate step written from a state-0 prefix is wrong with a probability set by
the problem's difficulty and the step's hardness (shared by both models at the same depth, so their
errors correlate); its own state is 0 (correct), 2 (the first wrong step: recoverable by
regenerating it) or 1 (written after an error).  Each candidate gets a PRM score, a final-answer flag
and a token count.  A finished solution is correct when no accepted step was wrong.

:func:`draw_steps` is the only place where candidate steps are drawn; :mod:`trim_rl.sim.generate`
calls it for every node of a tree and :mod:`trim_rl.sim.pathsim` for the nodes a policy visits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trim_rl.data.schema import MAX_STEPS
from trim_rl.sim.params import ModelParams, ProfileParams
from trim_rl.sim.prm_scores import quantile_table, sample_low, sample_measured
from trim_rl.sim.profiles import ProfileProblems

WEAK, STRONG = 0, 1


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Episodes:
    """Per-episode (one tree, or one simulated path) latent quantities."""

    problem: np.ndarray  # index into the profile's problem list
    level: np.ndarray
    difficulty: np.ndarray  # weak error logit offset without step hardness
    plan_len: np.ndarray
    tok_scale: np.ndarray
    hard: np.ndarray  # (n, MAX_STEPS) hardness of the step at each depth

    def __len__(self) -> int:
        return int(self.problem.shape[0])


def make_episodes(m: ModelParams, prof: ProfileParams, pp: ProfileProblems, draws: int,
                  rng: np.random.Generator) -> Episodes:
    """``draws`` independent episodes per problem (problem-major order)."""
    n = len(pp.problems)
    problem = np.repeat(np.arange(n), draws)
    lv = pp.level[problem]
    difficulty = m.c_level * (lv - 3.0) + m.sig_z * pp.z[problem]
    plan = prof.length * m.L0 * np.exp(m.L_level * (lv - 3.0) + m.sig_L * pp.z_len[problem])
    tok = prof.tokens * np.exp(m.tok_level * (lv - 3.0))
    hard = rng.standard_normal((problem.size, MAX_STEPS)) * m.sig_h
    return Episodes(problem, lv, difficulty, plan, tok, hard)


@dataclass
class Steps:
    """A batch of drawn candidate steps."""

    state: np.ndarray  # 0 correct, 2 first wrong, 1 after an earlier error
    prm: np.ndarray
    final: np.ndarray
    tokens: np.ndarray
    flagged: np.ndarray  # score came from the low-score component


def draw_steps(m: ModelParams, prof: ProfileParams, ep: Episodes, idx: np.ndarray, depth: np.ndarray,
               prefix_state: np.ndarray, min_prior: np.ndarray, model: int,
               rng: np.random.Generator | None = None,
               noise: tuple[np.ndarray, np.ndarray] | None = None) -> Steps:
    """Draw one candidate step of ``model`` (WEAK/STRONG) for each (episode, prefix) in the batch.

    ``depth`` is the number of steps already accepted (0 for the first step).  The randomness comes
    from ``rng``, or from ``noise`` = (uniforms of shape (6, n), standard normals of shape (n,)) when
    the caller fixes it (common random numbers for the fitter).
    """
    n = idx.size
    if noise is None:
        u = rng.random((6, n))
        eps = rng.standard_normal(n)
    else:
        u, eps = noise
    h = ep.hard[idx, np.minimum(depth, MAX_STEPS - 1)]
    first = depth == 0
    if model == WEAK:
        logit = m.a_w + ep.difficulty[idx] + h + m.first_w * first
        m_low = np.array([m.m0_w, m.m1_w, m.m2_w])
        q2, k_wrong, T, L_mult = m.q2_w, m.k_wrong, m.T_w, 1.0
    else:
        logit = m.a_s + m.g_s * (ep.difficulty[idx] + h) + m.first_s * first
        m_low = np.array([m.m0_s, 0.0, 0.0])
        q2, k_wrong, T, L_mult = m.q2_s, m.k_wrong_s, m.T_s, m.L_s
    ok_prefix = prefix_state == 0
    wrong = ok_prefix & (u[0] < sigmoid(logit))
    state = np.where(ok_prefix, np.where(wrong, 2, 0), 1).astype(np.int64)
    q = quantile_table(prof.prm_table)
    silent = (state == 2) & (u[1] < q2)
    scored_as = np.where(silent, 0, state)
    prm = sample_measured(q, scored_as, min_prior, u[2])
    flagged = ~silent & (u[3] < m_low[state])
    prm = np.where(flagged, sample_low(u[4], m.beta_low), prm)
    plan = ep.plan_len[idx] * L_mult * np.where(state > 0, m.L_err, 1.0)
    final = u[5] < sigmoid((depth + 1 - plan) / m.tau)
    tokens = T * ep.tok_scale[idx] * np.exp(m.k_h * h + k_wrong * (state > 0) + m.k_low * flagged + m.sig_tok * eps)
    tokens = np.maximum(1, np.rint(tokens)).astype(np.int64)
    return Steps(state=state, prm=np.round(prm, 4), final=final, tokens=tokens, flagged=flagged)


class Paths:
    """One solution per episode, written step by step: whether it is still going, the latent state
    of its prefix (0 every step correct so far, 1 a step wrong), the min PRM score of its accepted
    steps, its steps and, once it has ended, whether it is correct."""

    def __init__(self, n: int):
        self.alive = np.ones(n, dtype=bool)
        self.state = np.zeros(n, dtype=np.int64)
        self.min_prior = np.ones(n)
        self.steps = np.zeros(n, dtype=np.int64)
        self.correct = np.zeros(n, dtype=bool)

    def accept(self, a: np.ndarray, d: int, state: np.ndarray, prm: np.ndarray, final: np.ndarray) -> None:
        """Solutions ``a`` take their step at depth ``d`` (latent ``state``, PRM score ``prm``); those
        where it is ``final``, or the last step allowed, end."""
        self.steps[a] += 1
        self.state[a] = np.where(state == 2, 1, self.state[a])
        self.min_prior[a] = np.minimum(self.min_prior[a], prm)
        done = final | (d == MAX_STEPS - 1)
        self.correct[a[done]] = final[done] & (self.state[a[done]] == 0)
        self.alive[a[done]] = False


def strong_only(m: ModelParams, prof: ProfileParams, ep: Episodes, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The strong model solving each episode's problem alone: tokens, steps, correct."""
    n = len(ep)
    idx = np.arange(n)
    paths = Paths(n)
    tokens = np.zeros(n, dtype=np.int64)
    for d in range(MAX_STEPS):
        a = np.flatnonzero(paths.alive)
        if a.size == 0:
            break
        s = draw_steps(m, prof, ep, idx[a], np.full(a.size, d), paths.state[a], paths.min_prior[a], STRONG, rng)
        tokens[a] += s.tokens
        paths.accept(a, d, s.state, s.prm, s.final)
    return {"tokens": tokens, "steps": paths.steps, "correct": paths.correct}
