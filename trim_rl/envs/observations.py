"""Observation builders: the one place where a step history becomes a policy's observation.

The offline environments (:mod:`trim_rl.envs.routing_env`, :mod:`trim_rl.envs.vec_env`) and live
decoding call the same functions, so a policy never sees different features at serving time.

``agg`` (:class:`AggObservation`), a vector of
    0 current PRM score (the weak candidate step the router decides on)
    1 min of the accepted steps' PRM scores (1 at the first step)
    2 product of the accepted steps' PRM scores (1 at the first step)
    3 current step tokens / 100
    4 step index / 30
    5 regenerations used so far
    6 log10(lambda) (only when ``budget_conditioned``)

``seq`` (:class:`SeqObservation`), a (30, 5) matrix, one row per step: accepted steps first, then the
current candidate, zero rows after (padding).  Columns: PRM score, tokens / 100, regenerated (1 when
that accepted step came from the strong model), is-current, valid (0 on padding rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from gymnasium import spaces

from trim_rl.data.schema import MAX_STEPS

TOKEN_SCALE = 100.0
# observation bounds: a step of more than 10,000 tokens is shown as 10,000 (every space is finite,
# so gymnasium's checker passes with warnings as errors)
MAX_STEP_TOKENS = 10_000
SEQ_COLUMNS = ("prm", "tokens", "regenerated", "current", "valid")
SEQ_HIGH = (1.0, MAX_STEP_TOKENS / TOKEN_SCALE, 1.0, 1.0, 1.0)


@dataclass
class StepHistory:
    """Accepted steps of one solution so far (live decoding keeps one per problem)."""

    prm: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    regenerated: list[bool] = field(default_factory=list)

    def append(self, prm: float, tokens: int, regenerated: bool) -> None:
        self.prm.append(float(prm))
        self.tokens.append(int(tokens))
        self.regenerated.append(bool(regenerated))

    @property
    def depth(self) -> int:
        return len(self.prm)

    @property
    def interventions(self) -> int:
        return int(sum(self.regenerated))

    def prev_min(self) -> float:
        return float(min(self.prm)) if self.prm else 1.0

    def prev_prod(self) -> float:
        p = 1.0
        for s in self.prm:  # same order as the tree flattener: parent product times score
            p = p * s
        return p


class AggObservation:
    """Aggregate features of the history (TRIM-Agg, TRIM-Thr, TRIM-POMDP)."""

    name = "agg"

    def __init__(self, budget_conditioned: bool = False):
        self.budget_conditioned = bool(budget_conditioned)
        self.dim = 7 if self.budget_conditioned else 6

    @property
    def space(self) -> spaces.Box:
        low = np.array([0, 0, 0, 0, 0, 0, -10][: self.dim], dtype=np.float32)
        high = np.array([1, 1, 1, MAX_STEP_TOKENS / TOKEN_SCALE, 1, MAX_STEPS, 10][: self.dim], dtype=np.float32)
        return spaces.Box(low=low, high=high, dtype=np.float32)

    def config(self) -> dict:
        return {"name": self.name, "budget_conditioned": self.budget_conditioned}

    def batch(self, cur_prm, cur_tokens, prev_min, prev_prod, depth, interventions, lam=None) -> np.ndarray:
        """Features of a batch of decision points (all arguments arrays of the same length)."""
        cols = [cur_prm, prev_min, prev_prod, np.minimum(np.asarray(cur_tokens), MAX_STEP_TOKENS) / TOKEN_SCALE,
                np.asarray(depth) / MAX_STEPS, interventions]
        if self.budget_conditioned:
            if lam is None:
                raise ValueError("a budget-conditioned observation needs lambda")
            cols.append(np.log10(np.broadcast_to(np.asarray(lam, dtype=np.float64), np.shape(cur_prm))))
        return np.stack([np.asarray(c, dtype=np.float32) for c in cols], axis=-1)

    def at_nodes(self, trees, nodes: np.ndarray | None = None, lam=None) -> np.ndarray:
        """The observation at tree nodes (all of them by default): what the env shows when an
        episode stands at that node (training stages that work on whole trees use it)."""
        f = trees
        n = np.arange(f.n_nodes) if nodes is None else np.asarray(nodes)
        if self.budget_conditioned and lam is not None and np.ndim(lam):
            lam = np.asarray(lam)
        return self.batch(f.weak_prm[n], f.weak_tokens[n], f.prev_min[n], f.prev_prod[n], f.depth[n],
                          f.interventions[n], lam)

    def from_history(self, history: StepHistory, cur_prm: float, cur_tokens: int, lam: float | None = None) -> np.ndarray:
        """Features of one decision point in live decoding: what :meth:`batch` computes for one row,
        without its per-column arrays."""
        cols = [cur_prm, history.prev_min(), history.prev_prod(), min(cur_tokens, MAX_STEP_TOKENS) / TOKEN_SCALE,
                history.depth / MAX_STEPS,
                history.interventions]
        if self.budget_conditioned:
            if lam is None:
                raise ValueError("a budget-conditioned observation needs lambda")
            cols.append(np.log10(np.float64(lam)))
        return np.array(cols, dtype=np.float32)


class SeqObservation:
    """The padded step sequence (TRIM-Seq)."""

    name = "seq"
    budget_conditioned = False

    def __init__(self, max_steps: int = MAX_STEPS):
        self.max_steps = int(max_steps)

    @property
    def space(self) -> spaces.Box:
        high = np.broadcast_to(np.array(SEQ_HIGH, dtype=np.float32), (self.max_steps, len(SEQ_COLUMNS)))
        return spaces.Box(low=np.zeros_like(high), high=high.copy(), dtype=np.float32)

    def config(self) -> dict:
        return {"name": self.name, "budget_conditioned": False, "max_steps": self.max_steps, "columns": list(SEQ_COLUMNS)}

    @staticmethod
    def history_row(prm, tokens, regenerated) -> np.ndarray:
        """Row(s) of accepted steps."""
        prm = np.asarray(prm, dtype=np.float32)
        return np.stack([prm, np.minimum(np.asarray(tokens, dtype=np.float32), MAX_STEP_TOKENS) / np.float32(TOKEN_SCALE),
                         np.asarray(regenerated, dtype=np.float32), np.zeros_like(prm), np.ones_like(prm)], axis=-1)

    @staticmethod
    def current_row(prm, tokens) -> np.ndarray:
        """Row(s) of the candidate step the router decides on."""
        prm = np.asarray(prm, dtype=np.float32)
        return np.stack([prm, np.minimum(np.asarray(tokens, dtype=np.float32), MAX_STEP_TOKENS) / np.float32(TOKEN_SCALE),
                         np.zeros_like(prm), np.ones_like(prm), np.ones_like(prm)], axis=-1)

    def at_nodes(self, trees, nodes: np.ndarray) -> np.ndarray:
        """The observation at tree nodes, (len(nodes), max_steps, 5): the accepted steps on the path
        from the root (each node's incoming step), then the node's weak candidate; the same bytes
        the env builds step by step."""
        f = trees
        nodes = np.asarray(nodes, dtype=np.int64)
        out = np.zeros((nodes.size, self.max_steps, len(SEQ_COLUMNS)), dtype=np.float32)
        rows = np.arange(nodes.size)
        depth = f.depth[nodes]
        if (depth >= self.max_steps).any():
            raise ValueError(f"a node is deeper than the sequence holds ({self.max_steps} steps)")
        out[rows, depth] = self.current_row(f.weak_prm[nodes], f.weak_tokens[nodes])
        cur, d = nodes.copy(), depth.copy()
        live = d > 0
        while live.any():  # walk up: each ancestor's incoming step is the accepted step at its depth - 1
            i = rows[live]
            c = cur[i]
            out[i, d[i] - 1] = self.history_row(f.in_prm[c], f.in_tokens[c], f.parent_action[c] == 1)
            cur[i] = f.parent[c]
            d[i] -= 1
            live = d > 0
        return out

    def from_history(self, history: StepHistory, cur_prm: float, cur_tokens: int, lam: float | None = None) -> np.ndarray:
        out = np.zeros((self.max_steps, len(SEQ_COLUMNS)), dtype=np.float32)
        d = history.depth
        if d >= self.max_steps:
            raise ValueError(f"history has {d} steps; the sequence holds at most {self.max_steps - 1} plus the current one")
        if d:
            out[:d] = self.history_row(history.prm, history.tokens, history.regenerated)
        out[d] = self.current_row(cur_prm, cur_tokens)
        return out


def make_builder(name: str, budget_conditioned: bool = False):
    """Builder by name: ``agg`` or ``seq``."""
    if name == "agg":
        return AggObservation(budget_conditioned)
    if name == "seq":
        if budget_conditioned:
            raise ValueError("the seq observation is not budget-conditioned; use obs 'agg' with budget_conditioned")
        return SeqObservation()
    raise ValueError(f"unknown observation {name!r}; choose 'agg' or 'seq'")


def builder_from_config(cfg: dict):
    """Inverse of ``builder.config()`` (used by exported checkpoints)."""
    if cfg.get("name") == "seq":
        return SeqObservation(int(cfg.get("max_steps", MAX_STEPS)))
    return make_builder(cfg.get("name", "agg"), bool(cfg.get("budget_conditioned", False)))
