"""``RoutingVecEnv``: N routing episodes stepped at once with numpy (an SB3 ``VecEnv``).

It agrees exactly with ``DummyVecEnv`` over N :class:`~trim_rl.envs.routing_env.RoutingEnv`
copies seeded ``seed + i`` (observations, rewards, dones, infos and the tree sequence): env ``i`` owns
the same random generator a ``RoutingEnv`` seeded ``seed + i`` would, read from a pre-drawn block.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from trim_rl.data.flat import ABSENT, FlatTrees
from trim_rl.envs.observations import AggObservation, SeqObservation, make_builder
from trim_rl.envs.routing_env import check_prices, draw_lambda, resolve_trees

_BLOCK = 256


class MaskedVecEnv(VecEnv):
    """The SB3 plumbing both routing ``VecEnv`` s share (this module's and the live one): the actions
    :meth:`step_async` stores, ``action_masks`` as the one per-env method, public attributes read by
    :meth:`get_attr`, the price ``lam`` set by :meth:`set_attr` (checked against ``lam_range``), and
    ``reset_infos`` like ``DummyVecEnv``'s.  A subclass says how a price applies (:meth:`_set_lam`) and
    what names the episode an env just began (:meth:`_begun`)."""

    render_mode = None

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def _begun(self) -> tuple[str, list]:
        """The ``reset_infos`` key naming each env's current episode, and its value per env."""
        raise NotImplementedError

    def _set_reset_infos(self, envs: Iterable[int] | None = None) -> None:
        """The reset infos of the episodes that just began in ``envs`` (None: a reset, every env's): the
        action mask and the episode's name."""
        masks = self.action_masks()
        key, names = self._begun()
        if envs is None:
            self.reset_infos = [{} for _ in range(self.num_envs)]
            envs = range(self.num_envs)
        for i in envs:
            self.reset_infos[i] = {"action_mask": masks[i], key: names[i]}

    def _set_lam(self, lam: float) -> None:
        """Price every strong token at ``lam`` from now on (a checked price)."""
        raise NotImplementedError

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if not hasattr(self, attr_name) or attr_name.startswith("_"):
            raise AttributeError(attr_name)
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if attr_name == "lam":
            check_prices(float(value), self.lam_range)
            self._set_lam(float(value))
            return
        raise AttributeError(f"{type(self).__name__} does not support setting {attr_name!r}")

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in self._get_indices(indices)]
        raise AttributeError(f"{type(self).__name__} has no per-env method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


class RoutingVecEnv(MaskedVecEnv):
    """Batched :class:`RoutingEnv` (same arguments plus ``num_envs`` and ``schedule``).

    ``schedule="random"`` draws trees like ``RoutingEnv``; ``schedule="sequential"`` makes env ``i``
    play trees ``i, i + N, i + 2N, ...`` (wrapping around); :meth:`every_tree_once` builds the
    ``N = n_trees`` sweep that evaluation uses to play every tree once.

    Like ``RoutingEnv.reset(options=...)``, per-env options set with SB3's ``set_options`` apply to the
    next :meth:`reset`: ``{"tree": t}`` starts that env on tree ``t``, ``{"lam": x}`` prices its first
    episode at ``x``.  :attr:`current_nodes`, :attr:`current_trees` and :attr:`current_lams` read
    where each env is.
    """

    def __init__(self, trees: FlatTrees | str | os.PathLike | list, num_envs: int = 8, lam: float = 1e-3, obs: str = "agg",
                 budget_conditioned: bool = False, lam_range: tuple[float, float] = (1e-4, 1e-2),
                 schedule: str = "random", prefill_weight: float = 0.0) -> None:
        check_prices(lam, lam_range)
        self.trees: FlatTrees = resolve_trees(trees).with_prefill_weight(prefill_weight)
        self.prefill_weight = float(prefill_weight)
        if self.trees.n_trees == 0:
            raise ValueError("RoutingVecEnv needs at least one tree")
        if schedule not in ("random", "sequential"):
            raise ValueError(f"schedule must be 'random' or 'sequential', got {schedule!r}")
        self.builder = make_builder(obs, budget_conditioned)
        super().__init__(int(num_envs), self.builder.space, spaces.Discrete(2))
        self.lam = float(lam)
        self.lam_range = (float(lam_range[0]), float(lam_range[1]))
        self.budget_conditioned = bool(budget_conditioned)
        self.schedule = schedule
        n = self.num_envs
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._buf = np.zeros((n, _BLOCK))
        self._ptr = np.full(n, _BLOCK, dtype=np.int64)
        self._episode = np.zeros(n, dtype=np.int64)
        self._node = np.zeros(n, dtype=np.int64)
        self._tree = np.zeros(n, dtype=np.int64)
        self._lam = np.full(n, self.lam)
        self._strong = np.zeros(n, dtype=np.int64)
        self._kept = np.zeros(n, dtype=np.int64)
        self._disc = np.zeros(n, dtype=np.int64)
        self._calls = np.zeros(n, dtype=np.int64)
        self._steps = np.zeros(n, dtype=np.int64)
        self._is_seq = isinstance(self.builder, SeqObservation)
        if self._is_seq:
            self._seq = np.zeros((n,) + self.builder.space.shape, dtype=np.float32)
        self._actions = np.zeros(n, dtype=np.int64)
        self._arange = np.arange(n)

    @classmethod
    def every_tree_once(cls, trees: FlatTrees | str | os.PathLike | list, lam: float = 1e-3, obs: str = "agg",
                        budget_conditioned: bool = False, seed: int = 0) -> RoutingVecEnv:
        """One env per tree, seeded ``seed``: after :meth:`reset` env ``i`` plays tree ``i``, so the first
        episode every env finishes covers each tree exactly once (evaluation, calibration).

        ``budget_conditioned`` shows the price in the observations; every episode is priced at ``lam``
        (drawn from the one-point range ``(lam, lam)``).
        """
        f = resolve_trees(trees)
        price = {"lam_range": (lam, lam)} if budget_conditioned else {}
        venv = cls(f, num_envs=f.n_trees, lam=lam, obs=obs, budget_conditioned=budget_conditioned,
                   schedule="sequential", **price)
        venv.seed(seed)
        return venv

    # -- where each env is ---------------------------------------------------------------------
    @property
    def current_nodes(self) -> np.ndarray:
        """(num_envs,) node id (into :attr:`trees`) each env decides on now; at the last node of an
        episode until :meth:`step` starts the next one.  A copy."""
        return self._node.copy()

    @property
    def current_trees(self) -> np.ndarray:
        """(num_envs,) tree each env's current episode plays.  A copy."""
        return self._tree.copy()

    @property
    def current_lams(self) -> np.ndarray:
        """(num_envs,) price of one strong token in each env's current episode.  A copy."""
        return self._lam.copy()

    # -- randomness ------------------------------------------------------------------------------
    def _uniform(self, envs: np.ndarray) -> np.ndarray:
        low = envs[self._ptr[envs] >= _BLOCK]
        for i in low:
            if self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(None)
            self._buf[i] = self._rngs[i].random(_BLOCK)
            self._ptr[i] = 0
        u = self._buf[envs, self._ptr[envs]]
        self._ptr[envs] += 1
        return u

    def _start(self, envs: np.ndarray, options: list[dict[str, Any]] | None = None) -> None:
        """Begin a new episode in ``envs`` (``options``, one per env of ``envs``: a reset's)."""
        if envs.size == 0:
            return
        f = self.trees
        u = self._uniform(envs)
        if self.schedule == "random":
            tree = np.minimum((u * f.n_trees).astype(np.int64), f.n_trees - 1)
        else:
            tree = (envs + self._episode[envs] * self.num_envs) % f.n_trees
        self._episode[envs] += 1
        if self.budget_conditioned:
            self._lam[envs] = draw_lambda(self._uniform(envs), self.lam_range)
        else:  # the price of a "lam" option lasts one episode
            self._lam[envs] = self.lam
        if options is not None and any(options):
            # the tree and lambda above were drawn anyway, like RoutingEnv.reset, so that options do
            # not shift the random stream
            tree = tree.copy()
            for k, opt in enumerate(options):
                if "tree" in opt:
                    t = int(opt["tree"])
                    if not 0 <= t < f.n_trees:
                        raise ValueError(f"tree {t} out of range [0, {f.n_trees})")
                    tree[k] = t
                if "lam" in opt:
                    check_prices(opt["lam"], self.lam_range)
                    self._lam[envs[k]] = float(opt["lam"])
        self._tree[envs] = tree
        self._node[envs] = f.tree_root[tree]
        for a in (self._strong, self._kept, self._disc, self._calls, self._steps):
            a[envs] = 0
        if self._is_seq:
            self._seq[envs] = 0.0
            root = f.tree_root[tree]
            self._seq[envs, 0] = SeqObservation.current_row(f.weak_prm[root], f.weak_tokens[root])

    def _observe(self) -> np.ndarray:
        if self._is_seq:
            return self._seq.copy()
        f, n = self.trees, self._node
        assert isinstance(self.builder, AggObservation)
        return self.builder.batch(f.weak_prm[n], f.weak_tokens[n], f.prev_min[n], f.prev_prod[n], f.depth[n],
                                  f.interventions[n], self._lam if self.budget_conditioned else None)

    # -- VecEnv API ------------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        options = self._options
        for i in range(self.num_envs):
            if self._seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(self._seeds[i])
                self._ptr[i] = _BLOCK
        self._episode[:] = 0
        self._reset_seeds()
        self._reset_options()
        self._start(self._arange, options)
        self._set_reset_infos()
        return self._observe()

    def action_masks(self) -> np.ndarray:
        """(num_envs, 2) legal actions: keep always, regenerate unless the budget is used."""
        out = np.ones((self.num_envs, 2), dtype=bool)
        out[:, 1] = self.trees.regen_child[self._node] != ABSENT
        return out

    def _begun(self) -> tuple[str, list]:
        return "tree", self._tree.tolist()

    def step_wait(self) -> VecEnvStepReturn:
        f, n = self.trees, self._node
        regen = (self._actions == 1) & (f.regen_child[n] != ABSENT)
        s_tok = f.strong_tokens[n]
        w_tok = f.weak_tokens[n]
        rew = np.where(regen, -(self._lam * s_tok), 0.0)
        self._strong += np.where(regen, s_tok, 0)
        self._disc += np.where(regen, w_tok, 0)
        self._kept += np.where(regen, 0, w_tok)
        self._calls += regen
        self._steps += 1
        child = np.where(regen, f.regen_child[n], f.keep_child[n])
        final = np.where(regen, f.strong_final[n], f.weak_final[n])
        correct = np.where(regen, f.strong_correct[n], f.weak_correct[n]) == 1
        done = child < 0
        ok = done & final & correct
        rew = rew + ok
        if self._is_seq:
            d = f.depth[n]
            self._seq[self._arange, d] = SeqObservation.history_row(
                np.where(regen, f.strong_prm[n], f.weak_prm[n]), np.where(regen, s_tok, w_tok), regen)
            live = np.flatnonzero(~done)
            c = child[live]
            self._seq[live, d[live] + 1] = SeqObservation.current_row(f.weak_prm[c], f.weak_tokens[c])
        self._node = np.where(done, n, child)
        infos: list[dict[str, Any]] = [{"TimeLimit.truncated": False} for _ in range(self.num_envs)]
        ended = np.flatnonzero(done)
        if ended.size:
            term = np.zeros(self.observation_space.shape, dtype=np.float32)
            cols = zip(ended.tolist(), ok[ended].tolist(), self._strong[ended].tolist(), self._kept[ended].tolist(),
                       self._disc[ended].tolist(), self._calls[ended].tolist(), self._steps[ended].tolist(),
                       self._tree[ended].tolist(), self._lam[ended].tolist())
            for i, c, st, kp, dc, ca, sp, tr, lm in cols:
                infos[i] = {
                    "correct": c, "strong_tokens": st, "weak_tokens": kp + dc, "kept_weak_tokens": kp,
                    "discarded_weak_tokens": dc, "interventions": ca, "steps": sp, "tree": tr, "lam": lm,
                    "terminal_observation": term.copy(), "TimeLimit.truncated": False,
                }
            self._start(ended)
            self._set_reset_infos(ended.tolist())
        return self._observe(), rew.astype(np.float32), done, infos

    def close(self) -> None:
        pass

    def _set_lam(self, lam: float) -> None:
        self.lam = lam
        if not self.budget_conditioned:
            self._lam[:] = self.lam

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if attr_name == "lam_range":  # budget-conditioned: applies from the next episode on
            lo, hi = (float(v) for v in value)
            if not 0 < lo <= hi:
                raise ValueError(f"lam_range must satisfy 0 < low <= high, got {value}")
            self.lam_range = (lo, hi)
            return
        super().set_attr(attr_name, value, indices)

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        return super().seed(seed)
