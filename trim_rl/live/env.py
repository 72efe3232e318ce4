"""Routing against live models: the env's agent decides each step of problems solved by real servers.

:class:`LiveBatch` runs N problems in lock step through the one routing loop of live decoding and
serving (:class:`trim_rl.live.routing.RoutingLoop`): :meth:`~RoutingLoop.propose` drafts every
problem's next step (one weak call) and scores the drafts (one scorer call); the agent's actions go
to :meth:`~RoutingLoop.resolve`, which keeps or regenerates each draft (one strong call, one scorer
call for the strong steps).  Observations come from the offline env's builders
(:mod:`trim_rl.envs.observations`), masks from the route's limits, the reward is the offline one
(``-lam x strong tokens`` on each regenerate, ``+1`` at the end for a correct answer, graded with
:func:`trim_rl.data.grading.judge`).  A finished problem is replaced by the next one of the problem
set (shuffled per pass by the seed), so the batch stays full.

Faults: every engine call is retried as ``live decode`` retries it (the engines' HTTP settings);
a problem whose call still fails is dropped: its episode ends truncated with ``info["dropped"]``, a
warning is logged and :attr:`LiveBatch.dropped` counts it.  Only a backend that fails every problem
in a row stops the env (:class:`BackendDown`).

:class:`LiveRoutingEnv` (``trim_rl/LiveRouting-v0``) is the single-problem gymnasium env; the SB3
``VecEnv`` is :class:`trim_rl.live.vec_env.LiveRoutingVecEnv`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from trim_rl.data.grading import Verdict, extract_answer, judge
from trim_rl.data.problems import Problem
from trim_rl.data.schema import MAX_STEPS
from trim_rl.envs.observations import make_builder
from trim_rl.envs.routing_env import check_prices, draw_lambda
from trim_rl.live.aio import run_sync
from trim_rl.live.engines import request_seed
from trim_rl.live.prompts import solution_text
from trim_rl.live.routing import Backends, Limits, Proposal, Route, RoutingLoop

log = logging.getLogger(__name__)


class BackendDown(RuntimeError):
    """Every problem failed in a row: the backends are down, not one problem's request."""


class _Episode(Route):
    """One problem being solved for the env; calls seeded by (env seed, problem, pass, step, role)."""

    def __init__(self, item: Problem, index: int, pass_no: int, seed: int, lam: float, limits: Limits,
                 mode: str = "hybrid"):
        super().__init__(item.problem, mode, None, limits, lam)
        self.item, self.index, self.pass_no, self.seed = item, index, pass_no, seed
        self.t0 = time.perf_counter()
        self.decisions = 0

    def seed_for(self, role: str) -> int:
        return request_seed(self.seed, self.item.problem_id, self.pass_no, len(self.texts), role)


def grade(texts: Sequence[str], answer: str) -> bool:
    """Is a solution (its step texts) correct: the package's grader, as ``live decode`` grades."""
    text = solution_text(list(texts))
    return extract_answer(text) is not None and judge(text, answer) is Verdict.CORRECT


class LiveBatch:
    """N live routing episodes stepped together (the engine behind both live envs; see the module notes).

    ``backends``: the weak and strong engines and the scorer (:class:`trim_rl.live.routing.Backends`);
    ``problems``: the problem set; ``max_interventions`` / ``max_steps`` / ``max_strong_tokens``: the
    route's limits (a regenerate they forbid is masked)."""

    def __init__(self, backends: Backends, problems: Sequence[Problem], num_envs: int = 8, lam: float = 1e-3,
                 obs: str = "agg", budget_conditioned: bool = False, lam_range: tuple[float, float] = (1e-4, 1e-2),
                 max_interventions: int | None = None, max_steps: int = MAX_STEPS, max_strong_tokens: int | None = None,
                 shuffle: bool = True, auto_reset: bool = True):
        check_prices(lam, lam_range)
        if backends.weak is None or backends.scorer is None:
            raise ValueError("the live env needs a weak engine and a scorer")
        if not problems:
            raise ValueError("the live env needs at least one problem")
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self.backends, self.problems, self.n = backends, list(problems), int(num_envs)
        self.lam, self.lam_range = float(lam), (float(lam_range[0]), float(lam_range[1]))
        self.budget_conditioned, self.shuffle = bool(budget_conditioned), bool(shuffle)
        self.auto_reset = bool(auto_reset)  # False: an env whose episode ended waits for start_next()
        self.builder = make_builder(obs, budget_conditioned)
        self.limits = Limits(max_steps=max_steps, max_interventions=max_interventions, max_strong_tokens=max_strong_tokens)
        self.loop = RoutingLoop(backends, score_strong="now", isolate=True)
        self.loop.on_backend_error = self._backend_error
        self.seed_value = 0
        self._rng = np.random.default_rng(0)
        self._order: np.ndarray = np.arange(len(self.problems))
        self._next = 0  # episodes started since the last reset (position in the problem stream)
        self.routes: list[_Episode | None] = [None] * self.n
        self.props: list[Proposal | None] = [None] * self.n
        self.dropped = 0  # problems dropped after a backend failure
        self.empty = 0  # problems that ended before their first decision (a prompt past the context)
        self.backend_errors = 0
        self.episodes = 0

    # -- plumbing --------------------------------------------------------------------------------
    def __deepcopy__(self, memo):
        # a copy (gymnasium's checker makes one) shares the backends: their HTTP clients and locks are
        # the process's, not the env's
        new = copy_sharing_backends(self, self.backends, memo)
        new.loop.on_backend_error = new._backend_error
        return new

    def _run(self, coro):
        # the backends are awaited: the round runs on this thread's private loop
        return run_sync(coro)

    def _backend_error(self, role: str, exc) -> None:
        self.backend_errors += 1
        log.warning("%s backend: %s", role, exc)

    def close(self) -> None:
        """Nothing to release: the backends and their connections are shared (see :func:`share_backends`)."""

    def _start(self, i: int) -> None:
        k = self._next
        self._next += 1
        pass_no, pos = divmod(k, len(self.problems))
        if pos == 0 and self.shuffle:  # a new pass over the problem set, in a new order
            self._order = self._rng.permutation(len(self.problems))
        index = int(self._order[pos])
        lam = float(draw_lambda(self._rng.random(), self.lam_range)) if self.budget_conditioned else self.lam
        self.routes[i] = _Episode(self.problems[index], index, pass_no, self.seed_value, lam, self.limits)
        self.props[i] = None

    # -- the episodes ----------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> np.ndarray:
        if seed is not None:
            self.seed_value = int(seed)
            self._rng = np.random.default_rng(self.seed_value)
        self._next = 0
        for i in range(self.n):
            self._start(i)
        self._fill(list(range(self.n)), None)
        return self.observe()

    def observe(self) -> np.ndarray:
        zero = np.zeros(self.builder.space.shape, dtype=np.float32)
        return np.stack([self._obs(i) if self.props[i] is not None else zero for i in range(self.n)])

    def _obs(self, i: int) -> np.ndarray:
        r, p = self.routes[i], self.props[i]
        return self.builder.from_history(r.history, p.value, p.draft.tokens, r.lam)

    def action_masks(self) -> np.ndarray:
        """(N, 2): keep always, regenerate unless the route's limits (or a missing strong backend) forbid it."""
        out = np.ones((self.n, 2), dtype=bool)
        out[:, 1] = [p is not None and p.block is None for p in self.props]
        return out

    def start_next(self, i: int) -> None:
        """Begin the next problem of the stream in env ``i`` (without ``auto_reset``)."""
        self._start(i)
        self._fill([i], None)

    def problem_ids(self) -> list[str]:
        return [r.item.problem_id for r in self.routes]

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        actions = np.asarray(actions).reshape(self.n).astype(np.int64)
        before = [r.strong_tokens for r in self.routes]
        last_obs = [self._obs(i) for i in range(self.n)]
        self._run(self.loop.resolve([(self.props[i], int(actions[i])) for i in range(self.n)]))
        rew = np.zeros(self.n, dtype=np.float64)
        dones = np.zeros(self.n, dtype=bool)
        infos: list[dict[str, Any]] = [{"TimeLimit.truncated": False} for _ in range(self.n)]
        result = (rew, dones, infos, last_obs)
        cont = []
        for i, r in enumerate(self.routes):
            r.decisions += 1
            spent = r.strong_tokens - before[i]
            rew[i] -= r.lam * spent
            infos[i]["step_strong_tokens"] = spent  # the decision's own cost (the decision log records it)
            if r.done:
                self._end(i, result)
                if not self.auto_reset:
                    continue
                self._start(i)
            cont.append(i)
        self._fill(cont, result)
        return self.observe(), rew, dones, infos

    def _fill(self, envs: list[int], result) -> None:
        """Propose the next decision of every env in ``envs`` (one batched call per backend); a route that
        ends or fails before its decision ends its episode (when it had one) and is replaced."""
        pending, failed_in_row = envs, 0
        while pending:
            props = self._run(self.loop.propose([self.routes[i] for i in pending]))
            got = {id(p.route): p for p in props}
            again = []
            for i in pending:
                r = self.routes[i]
                if id(r) in got:
                    self.props[i] = got[id(r)]
                    failed_in_row = 0
                    continue
                if r.failure is not None:
                    failed_in_row += 1
                if r.decisions and result is not None:  # the episode this step acted on ends here
                    self._end(i, result)
                    if not self.auto_reset:
                        continue
                else:
                    self._drop(r, started=True)
                self._start(i)
                again.append(i)
            if failed_in_row > 2 * self.n + min(len(self.problems), 16):  # not one bad problem: the servers
                raise BackendDown(f"{failed_in_row} problems in a row failed at the backends (last: "
                                  f"{self._why(self.routes[again[-1]]) if again else 'unknown'}); are the servers up?")
            pending = again

    @staticmethod
    def _why(r: _Episode) -> str:
        f = r.failure
        if f is None:
            return str(r.why)
        return f"{f.role}: {f.exc}" if f.exc is not None else f"{f.role} call could not be made"

    def _drop(self, r: _Episode, started: bool) -> None:
        if r.failure is not None:
            self.dropped += 1
            log.warning("problem %s dropped from training after a backend failure (%d dropped so far): %s",
                        r.item.problem_id, self.dropped, self._why(r))
        elif started:
            self.empty += 1  # ended before its first decision (its prompt does not fit the context)

    def _end(self, i: int, result: tuple[np.ndarray, np.ndarray, list[dict], list[np.ndarray]]) -> None:
        """Close env ``i``'s episode in the step's ``result`` (rewards, dones, infos, last observations): its
        info (keeping the decision's own ``step_strong_tokens``), the terminal reward (1 when correct), done."""
        rew, dones, infos, last_obs = result
        r = self.routes[i]
        spent = infos[i].get("step_strong_tokens", 0)
        self.episodes += 1
        base = {"tree": r.index, "problem_id": r.item.problem_id, "lam": r.lam, "steps": r.decisions,
                "interventions": r.interventions, "strong_tokens": r.strong_tokens, "weak_tokens": r.weak_tokens,
                "kept_weak_tokens": r.weak_tokens - r.discarded_tokens, "discarded_weak_tokens": r.discarded_tokens,
                "wall_s": round(time.perf_counter() - r.t0, 4)}
        if r.failure is not None:
            self._drop(r, started=False)
            infos[i] = {**base, "correct": False, "dropped": True, "error": self._why(r),
                        "terminal_observation": last_obs[i].copy(), "TimeLimit.truncated": True}
        else:
            ok = grade(r.texts, r.item.answer)
            infos[i] = {**base, "correct": ok, "finish": r.why,
                        "terminal_observation": np.zeros(self.builder.space.shape, dtype=np.float32),
                        "TimeLimit.truncated": False}
            rew[i] += 1.0 if ok else 0.0
        infos[i]["step_strong_tokens"] = spent
        dones[i] = True


def strong_only_tokens(backends: Backends, problems: Sequence[Problem], limits: Limits | None = None, seed: int = 0,
                       batch: int = 64) -> tuple[float, int]:
    """Always-strong's strong tokens per problem, measured on ``problems`` (the strong model solving each
    alone, through the same routing loop), and how many problems it was measured on (failed ones left out)."""
    loop = RoutingLoop(backends, score_strong="now", isolate=True)
    tokens = []
    for start in range(0, len(problems), batch):
        routes = [_Episode(p, start + k, 0, seed, 0.0, limits or Limits(), "strong-only")
                  for k, p in enumerate(problems[start : start + batch])]
        while not all(r.done for r in routes):
            run_sync(loop.round([r for r in routes if not r.done]))
        tokens += [r.strong_tokens for r in routes if r.failure is None]
    return (float(np.mean(tokens)) if tokens else float("nan")), len(tokens)


class LiveRoutingEnv(gym.Env):
    """Route each step of a problem solved by live weak / strong models and a step scorer
    (``trim_rl/LiveRouting-v0``): the gymnasium face of :class:`LiveBatch` with one problem at a time.

    Spaces, reward and ``info`` are :class:`~trim_rl.envs.routing_env.RoutingEnv`'s (``tree`` is the
    problem's index in the set, plus ``problem_id``, ``wall_s``, ``finish``); a problem dropped after a
    backend failure ends truncated with ``info["dropped"]``.  Arguments: ``backends`` (a
    :class:`~trim_rl.live.routing.Backends`), or ``weak_url`` / ``strong_url`` / ``prm_url`` (and
    ``live decode``'s other flags as ``live_options``, e.g. ``{"max_tokens": 1024}``); ``problems`` (a list of
    :class:`~trim_rl.data.problems.Problem`, a benchmark name or a .jsonl file); then as ``RoutingEnv``.
    """

    metadata = {"render_modes": []}

    def __init__(self, backends: Backends | None = None, problems: Sequence[Problem] | str = (), lam: float = 1e-3,
                 obs: str = "agg", budget_conditioned: bool = False, lam_range: tuple[float, float] = (1e-4, 1e-2),
                 max_interventions: int | None = None, max_steps: int = MAX_STEPS, weak_url: str | None = None,
                 strong_url: str | None = None, prm_url: str | None = None, live_options: dict | None = None):
        super().__init__()
        if backends is None:
            backends = backends_from_urls(weak_url, strong_url, prm_url, live_options)
        self.batch = LiveBatch(backends, load_problem_set(problems), 1, lam, obs, budget_conditioned, lam_range,
                               max_interventions, max_steps, auto_reset=False)
        self.observation_space = self.batch.builder.space
        self.action_space = spaces.Discrete(2)
        self._active = False

    def __deepcopy__(self, memo):
        return copy_sharing_backends(self, self.batch.backends, memo)  # also named by the registry's spec kwargs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None or not self._active:
            obs = self.batch.reset(seed if seed is not None else int(self.np_random.integers(2**31)))
        else:  # the next problem of the stream
            self.batch.start_next(0)
            obs = self.batch.observe()
        self._active = True
        return obs[0], {"action_mask": self.action_masks(), "problem_id": self.batch.problem_ids()[0]}

    def action_masks(self) -> np.ndarray:
        return self.batch.action_masks()[0]

    def step(self, action):
        if not self._active:
            raise RuntimeError("step() called after the episode ended; call reset()")
        obs, rew, done, infos = self.batch.step(np.array([int(action)]))
        if done[0]:
            self._active = False
            info = {k: v for k, v in infos[0].items() if k not in ("terminal_observation", "TimeLimit.truncated")}
            trunc = bool(infos[0].get("TimeLimit.truncated"))
            return infos[0]["terminal_observation"], float(rew[0]), not trunc, trunc, info
        return obs[0], float(rew[0]), False, False, {}

    def close(self) -> None:
        self.batch.close()


def share_backends(backends: Backends, memo: dict) -> None:
    """Make a deep copy share ``backends`` (their HTTP clients and locks belong to the process)."""
    for b in (backends, backends.weak, backends.strong, backends.scorer):
        memo[id(b)] = b


def copy_sharing_backends(obj, backends: Backends, memo: dict):
    """A deep copy of ``obj`` (its ``__deepcopy__``) that shares ``backends`` (see :func:`share_backends`)."""
    import copy

    share_backends(backends, memo)
    new = object.__new__(type(obj))
    memo[id(obj)] = new
    for k, v in obj.__dict__.items():
        setattr(new, k, copy.deepcopy(v, memo))
    return new


def load_problem_set(problems) -> list[Problem]:
    """A problem set: a list of problems as it is, or a name / file as ``live decode --problems`` reads it."""
    if isinstance(problems, (str, bytes)) or hasattr(problems, "__fspath__"):
        from trim_rl.data.problems import load_problems

        return list(load_problems(str(problems)))
    return list(problems)


def backends_from_urls(weak_url: str | None, strong_url: str | None, prm_url: str | None,
                       options: dict | None = None) -> Backends:
    """The engines and scorer ``live decode`` builds from these URLs (comma-separated replicas) and its
    other flags, given as ``options`` by their ``live decode`` names (``max_tokens``, ``weak_model``,
    ``prm``, ``retries``, ... see :class:`~trim_rl.live.backends.BackendConfig`): the same engines,
    retries and timeouts."""
    from trim_rl.live.backends import BackendConfig, build_engines, build_scorer

    cfg = BackendConfig.from_options(weak_url, strong_url, prm_url, options)
    weak, strong, http, template, urls, vargs = build_engines(cfg, True, True)
    return Backends(weak, strong, build_scorer(cfg, http, template, urls, vargs))
