"""``RoutingEnv``: step-level routing on precomputed trajectory trees (``trim_rl/Routing-v0``)."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from trim_rl.data.flat import FlatTrees
from trim_rl.envs.observations import AggObservation, SeqObservation, StepHistory, make_builder
from trim_rl.sim.bundled import load_trees

KEEP, REGENERATE = 0, 1


DEFAULT_TREES = "sim:math500:train"


def resolve_trees(trees: FlatTrees | str | os.PathLike | list) -> FlatTrees:
    """Accept loaded trees, a tree spec (a file, ``sim:PROFILE:SPLIT[:SEEDS]``) or a list of specs."""
    if isinstance(trees, FlatTrees):
        return trees
    if isinstance(trees, (list, tuple)):
        return load_trees([str(t) for t in trees])
    return load_trees(str(trees))


def check_prices(lam: float, lam_range: tuple[float, float]) -> None:
    """A price must be a finite number >= 0, a range 0 < low <= high (a negative price would pay the
    router for strong tokens)."""
    if not (isinstance(lam, (int, float, np.floating)) and np.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    lo, hi = (float(v) for v in lam_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
        raise ValueError(f"lam_range must satisfy 0 < low <= high, got {lam_range!r}")


def draw_lambda(u: float | np.ndarray, lam_range: tuple[float, float]):
    """Log-uniform lambda from a uniform number (budget-conditioned training)."""
    lo, hi = np.log(lam_range[0]), np.log(lam_range[1])
    return np.exp(lo + (hi - lo) * np.asarray(u))


class RoutingEnv(gym.Env):
    """Route each reasoning step of a solution to the weak or the strong model.

    ## Description
    One episode plays one trajectory tree.  At each step the weak model's candidate step and its
    PRM score are shown; the router keeps it or regenerates that step with the strong model, and the
    weak model continues from the accepted prefix.  Trees are precomputed (real collections or the
    simulator), so stepping is index arithmetic.

    ## Action Space
    ``Discrete(2)``: ``0`` keep the weak step, ``1`` regenerate it with the strong model.
    :meth:`action_masks` reports which actions are legal; regenerating is illegal once the path used
    the tree's ``max_interventions`` (an illegal regenerate is played as keep).

    ## Observation Space
    From the observation builder (:mod:`trim_rl.envs.observations`): ``agg`` a 6-vector (7 with
    lambda when budget-conditioned), ``seq`` a (30, 5) padded step matrix.  The observation
    returned at episode end is all zeros.

    ## Rewards
    ``-lambda * strong_tokens`` on every regenerate; ``+1`` at the end when the solution is correct.
    With ``prefill_weight`` w > 0 a regenerate costs ``strong_tokens + w * unseen``, where ``unseen``
    counts the weak tokens accepted since the strong model last wrote a step (what it must prefill
    without a prefix cache); ``strong_tokens`` in ``info`` then counts that cost.

    ## Episode End
    Terminated when the accepted step is final (it holds the answer) or when the solution reaches
    30 steps without an answer (counted as incorrect).  Never truncated.

    ## Information
    At episode end ``info`` holds ``correct``, ``strong_tokens``, ``weak_tokens`` (all weak drafts,
    discarded ones included), ``kept_weak_tokens``, ``discarded_weak_tokens``, ``interventions``,
    ``steps``, ``tree`` and ``lam``; ``reset`` returns ``action_mask`` and ``tree``.

    ## Arguments
    - ``trees``: a :class:`~trim_rl.data.flat.FlatTrees`, a tree file, or a list of files.
    - ``lam``: price of one strong token (in units of one correct answer).
    - ``obs``: ``"agg"`` or ``"seq"``.
    - ``budget_conditioned``: draw lambda per episode log-uniformly from ``lam_range`` and show it.
    - ``lam_range``: (low, high) for budget-conditioned episodes.
    - ``prefill_weight``: the price of one unseen prefix token relative to a written strong token
      (0, the default: a backend with a prefix cache that bills output tokens only).

    Each ``reset`` draws a tree uniformly (from ``np_random``); ``reset(options={"tree": i})``
    plays tree ``i``, ``options={"lam": x}`` prices the episode at ``x``.  :attr:`current_node`,
    :attr:`current_tree` and :attr:`current_lam` read where the episode is.
    """

    metadata = {"render_modes": []}

    def __init__(self, trees: FlatTrees | str | os.PathLike | list = DEFAULT_TREES, lam: float = 1e-3, obs: str = "agg",
                 budget_conditioned: bool = False, lam_range: tuple[float, float] = (1e-4, 1e-2),
                 prefill_weight: float = 0.0):
        super().__init__()
        check_prices(lam, lam_range)
        self.trees = resolve_trees(trees).with_prefill_weight(prefill_weight)
        self.prefill_weight = float(prefill_weight)
        if self.trees.n_trees == 0:
            raise ValueError("RoutingEnv needs at least one tree")
        self.lam = float(lam)
        self.lam_range = (float(lam_range[0]), float(lam_range[1]))
        self.budget_conditioned = bool(budget_conditioned)
        self.builder = make_builder(obs, budget_conditioned)
        self.observation_space = self.builder.space
        self.action_space = spaces.Discrete(2)
        self._node = -1
        self._tree = -1
        self._lam = self.lam
        self._hist = StepHistory()

    # -- where the episode is ----------------------------------------------------------------
    @property
    def current_node(self) -> int:
        """Node id (into :attr:`trees`) the router decides on now; -1 before the first reset and
        after the episode ended."""
        return int(self._node)

    @property
    def current_tree(self) -> int:
        """Tree the current (or last) episode plays; -1 before the first reset."""
        return int(self._tree)

    @property
    def current_lam(self) -> float:
        """Price of one strong token in the current (or last) episode: ``lam``, the budget-conditioned
        draw, or a ``reset`` option."""
        return float(self._lam)

    # -- helpers ---------------------------------------------------------------------------------
    def _obs(self) -> np.ndarray:
        f, n = self.trees, self._node
        if isinstance(self.builder, AggObservation):
            lam = self._lam if self.budget_conditioned else None
            return self.builder.batch(f.weak_prm[n : n + 1], f.weak_tokens[n : n + 1], f.prev_min[n : n + 1],
                                      f.prev_prod[n : n + 1], f.depth[n : n + 1], f.interventions[n : n + 1],
                                      None if lam is None else np.array([lam]))[0]
        assert isinstance(self.builder, SeqObservation)
        return self.builder.from_history(self._hist, f.weak_prm[n], f.weak_tokens[n])

    def action_masks(self) -> np.ndarray:
        if self._node < 0:
            return np.array([True, False])
        return np.array([True, bool(self.trees.regen_child[self._node] != -2)])

    # -- gymnasium API ---------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        u = self.np_random.random()
        if options and "tree" in options:
            tree = int(options["tree"])
            if not 0 <= tree < self.trees.n_trees:
                raise ValueError(f"tree {tree} out of range [0, {self.trees.n_trees})")
        else:
            tree = min(int(u * self.trees.n_trees), self.trees.n_trees - 1)
        self._lam = float(draw_lambda(self.np_random.random(), self.lam_range)) if self.budget_conditioned else self.lam
        if options and "lam" in options:
            self._lam = float(options["lam"])
        self._tree = tree
        self._node = int(self.trees.tree_root[tree])
        self._hist = StepHistory()
        self._strong = self._kept = self._discarded = self._calls = self._steps = 0
        return self._obs(), {"action_mask": self.action_masks(), "tree": tree}

    def step(self, action):
        if self._node < 0:
            raise RuntimeError("step() called after the episode ended; call reset()")
        f, n = self.trees, self._node
        regen = int(action) == REGENERATE and f.regen_child[n] != -2
        reward = 0.0
        self._steps += 1
        if regen:
            tok = int(f.strong_tokens[n])
            reward -= self._lam * tok
            self._strong += tok
            self._discarded += int(f.weak_tokens[n])
            self._calls += 1
            child, final, correct = int(f.regen_child[n]), bool(f.strong_final[n]), f.strong_correct[n] == 1
            self._hist.append(f.strong_prm[n], tok, True)
        else:
            self._kept += int(f.weak_tokens[n])
            child, final, correct = int(f.keep_child[n]), bool(f.weak_final[n]), f.weak_correct[n] == 1
            self._hist.append(f.weak_prm[n], f.weak_tokens[n], False)
        if child >= 0:
            self._node = child
            return self._obs(), reward, False, False, {}
        ok = bool(final and correct)
        reward += 1.0 if ok else 0.0
        self._node = -1
        info = {
            "correct": ok, "strong_tokens": self._strong, "weak_tokens": self._kept + self._discarded,
            "kept_weak_tokens": self._kept, "discarded_weak_tokens": self._discarded,
            "interventions": self._calls, "steps": self._steps, "tree": self._tree, "lam": self._lam,
        }
        return np.zeros(self.observation_space.shape, dtype=np.float32), reward, True, False, info
