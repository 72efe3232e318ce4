"""Off-policy evaluation: another router's accuracy and strong-token cost from logged decisions.

The decision log (``rollouts.jsonl`` of an online run, ``serve --log-decisions FILE``) has one JSON
line per finished episode (one problem): ``kind`` (:data:`LOG_KIND`), ``behaviour`` (what acted),
``problem_id``, ``correct``, ``strong_tokens``, ``steps``, ... and ``decisions``, one per routed step:
``obs`` (the observation the behaviour policy saw, from the env's builders), ``mask`` (legal actions),
``action`` (0 keep, 1 regenerate), ``prob`` (the behaviour policy's probability of that action) and
``strong_tokens`` (what the step spent on the strong model).  Episodes marked ``dropped`` (a backend
failure) are left out, and unfinished episodes are never written.

For a target policy pi (a checkpoint, ``thr:K``, ...), with mu the logged behaviour:

* **IS** (per-episode importance weighting): ``w = prod_t pi(a_t|x_t) / mu(a_t|x_t)``; the estimate is
  the mean of ``w x G`` over episodes (``G``: correct, or the episode's strong tokens), unbiased when mu
  gives every action pi takes a positive probability;
* **WIS**: the self-normalised ``sum w G / sum w`` (biased, often lower variance);
* **DR** (per-decision doubly robust, Jiang & Li 2016): a ridge regression of the return-to-go on the
  observation, per action, fitted on the other half of the episodes (cross-fitting), used as a control
  variate; unbiased like IS, and much tighter when the regression is good.

Each estimate has a standard error over episodes and a normal 95% interval; the effective sample
size ``(sum w)^2 / sum w^2`` says how many episodes the weights leave.  Limits: a target that takes
actions the behaviour never takes (a deterministic server without ``--explore-rate``) gets weight 0 on
those episodes, so its ESS collapses and no estimate can be trusted; the observation must be the one
the target was trained on (checked); the problems are those logged (yesterday's traffic, not a
benchmark), and a state-dependent target (TRIM-POMDP) is replayed along the logged path.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOG_KIND = "trim_rl.decisions/1"
METRICS = ("correct", "strong_tokens")
Z95 = 1.959963984540054


# -- writing ---------------------------------------------------------------------------------------
def decision_row(obs, mask, action: int, prob: float, strong_tokens: int | None = None) -> dict:
    """One logged decision (see the module notes)."""
    row = {"obs": np.round(np.asarray(obs, dtype=np.float64), 6).tolist(), "mask": [int(m) for m in mask],
           "action": int(action), "prob": float(prob)}
    if strong_tokens is not None:
        row["strong_tokens"] = int(strong_tokens)
    return row


class EpisodeLog:
    """Appends finished episodes to a decision log, one flushed line each (a crash loses at most the
    episodes still running).  Thread-safe: the server writes from its worker threads."""

    def __init__(self, path: str | Path, behaviour: dict):
        import threading

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.behaviour = behaviour
        self._lock = threading.Lock()
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        line = json.dumps({"kind": LOG_KIND, "behaviour": self.behaviour, **row}, separators=(",", ":")) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def behaviour_probs(greedy: np.ndarray, masks: np.ndarray, explore: float) -> np.ndarray:
    """(n, 2) probabilities of an epsilon-greedy behaviour: the greedy action with 1 - explore, plus
    explore spread over the legal actions."""
    masks = np.asarray(masks, dtype=bool).reshape(-1, 2)
    n_legal = masks.sum(axis=1, keepdims=True)
    p = explore * masks / np.maximum(n_legal, 1)
    p[np.arange(len(greedy)), np.asarray(greedy, dtype=np.int64)] += 1.0 - explore
    return p


def collect(venv, policy, episodes: int, path: str | Path, explore: float = 0.1, seed: int = 0,
            behaviour: dict | None = None) -> Path:
    """Play ``policy`` (epsilon-greedy with ``explore``) on a routing VecEnv (offline or live) until
    ``episodes`` episodes end, logging each as the online trainer does; returns ``path``."""
    rng = np.random.default_rng(seed)
    log = EpisodeLog(path, behaviour or {"policy": str(getattr(policy, "name", type(policy).__name__)),
                                         "explore": explore})
    obs = venv.reset()
    n = venv.num_envs
    states, starts = None, np.ones(n, dtype=bool)
    open_: list[list[dict]] = [[] for _ in range(n)]
    lam = np.asarray(venv.get_attr("lam")[0], dtype=np.float64)
    done_eps = 0
    try:
        while done_eps < episodes:
            masks = venv.action_masks()
            greedy, states = policy.predict(obs, state=states, episode_start=starts, deterministic=True,
                                            action_masks=masks)
            p = behaviour_probs(np.asarray(greedy).reshape(n), masks, explore)
            actions = (rng.random(n) < p[:, 1]).astype(np.int64)
            new_obs, rew, dones, infos = venv.step(actions)
            for i in range(n):
                info = infos[i]
                spent = info.get("step_strong_tokens")
                if spent is None:  # the offline env: the step's reward is -lam x strong tokens (+1 when correct)
                    ok = float(info.get("correct", False)) if dones[i] else 0.0
                    spent = int(round((ok - float(rew[i])) / float(lam))) if lam > 0 else 0
                open_[i].append(decision_row(obs[i], masks[i], actions[i], p[i, actions[i]], spent))
                if dones[i]:
                    keep = {k: (bool(v) if k == "correct" else v) for k, v in info.items()
                            if k in ("problem_id", "tree", "lam", "correct", "strong_tokens", "weak_tokens",
                                     "interventions", "steps", "dropped")}
                    keep = {k: (int(v) if isinstance(v, np.integer) else float(v) if isinstance(v, np.floating) else v)
                            for k, v in keep.items()}
                    if done_eps < episodes:
                        log.write({"episode": done_eps, **keep, "decisions": open_[i]})
                        done_eps += 1
                    open_[i] = []
            starts = np.asarray(dones, dtype=bool)
            obs = new_obs
    finally:
        log.close()
    return Path(path)


# -- reading ---------------------------------------------------------------------------------------
class LogError(ValueError):
    pass


@dataclass
class Episode:
    obs: np.ndarray  # (T, ...) as logged
    masks: np.ndarray  # (T, 2) bool
    actions: np.ndarray  # (T,)
    mu: np.ndarray  # (T,) behaviour probabilities of the actions
    step_strong: np.ndarray  # (T,) strong tokens each decision spent
    correct: float
    strong_tokens: float


def read_log(path: str | Path, flag: str = "--logged") -> tuple[list[Episode], dict]:
    """The episodes of a decision log (dropped ones left out) and counts; a bad line is one error naming
    the file, the line and the field."""
    path = Path(path)
    if not path.is_file():
        raise LogError(f"{flag}: {path}: no such file")
    eps, counts = [], {"lines": 0, "dropped": 0, "behaviours": set()}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            counts["lines"] += 1
            where = f"{flag}: {path}:{n}"
            try:
                row = json.loads(line)
            except ValueError:
                if not line.endswith("\n"):
                    continue  # a line cut by a crash while it was written: the episodes before it stand
                raise LogError(f"{where}: not JSON") from None
            if not isinstance(row, dict) or row.get("kind") != LOG_KIND:
                raise LogError(f"{where}: not a decision log line (kind {row.get('kind') if isinstance(row, dict) else None!r}"
                               f", expected {LOG_KIND!r})")
            if row.get("dropped"):
                counts["dropped"] += 1
                continue
            counts["behaviours"].add(json.dumps(row.get("behaviour"), sort_keys=True))
            ds = row.get("decisions")
            if not isinstance(ds, list) or not ds:
                raise LogError(f"{where}: decisions: missing or empty")
            try:
                mu = np.array([float(d["prob"]) for d in ds])
                ep = Episode(np.array([d["obs"] for d in ds], dtype=np.float32),
                             np.array([d["mask"] for d in ds], dtype=bool).reshape(-1, 2),
                             np.array([int(d["action"]) for d in ds]), mu,
                             np.array([float(d.get("strong_tokens", 0)) for d in ds]),
                             # a served request has no reference answer: correct null (not graded)
                             math.nan if row["correct"] is None else float(bool(row["correct"])),
                             float(row["strong_tokens"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise LogError(f"{where}: decisions: a decision lacks a readable {exc}") from None
            if not np.all((mu > 0) & (mu <= 1 + 1e-9)):
                raise LogError(f"{where}: decisions: prob must lie in (0, 1] (the behaviour took the action)")
            if np.any((ep.actions < 0) | (ep.actions > 1)):
                raise LogError(f"{where}: decisions: action must be 0 or 1")
            eps.append(ep)
    if not eps:
        raise LogError(f"{flag}: {path}: no finished episode in it")
    counts["behaviours"] = len(counts["behaviours"])
    return eps, counts


# -- estimating ------------------------------------------------------------------------------------
@dataclass
class Estimate:
    value: float
    se: float

    @property
    def interval(self) -> tuple[float, float]:
        return self.value - Z95 * self.se, self.value + Z95 * self.se

    def to_dict(self) -> dict:
        lo, hi = self.interval
        return {"value": self.value, "se": self.se, "low": lo, "high": hi}


def _mean_se(x: np.ndarray) -> Estimate:
    n = len(x)
    return Estimate(float(x.mean()), float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else float("inf"))


def target_probs(policy, episodes: list[Episode]) -> list[np.ndarray]:
    """pi(a | x) of each logged decision's action, the target replayed along each logged path (its own
    state carried, for a stateful policy).  A policy with ``action_probs`` gives its probabilities; the
    others act deterministically (probability 1 for their action)."""
    out = []
    if not policy.stateful:  # one call for every decision
        obs = np.concatenate([e.obs for e in episodes])
        masks = np.concatenate([e.masks for e in episodes])
        acts = np.concatenate([e.actions for e in episodes])
        p = _probs(policy, obs, masks, None, np.ones(len(obs), dtype=bool))[0]
        pa = p[np.arange(len(acts)), acts]
        cuts = np.cumsum([len(e.actions) for e in episodes])[:-1]
        return np.split(pa, cuts)
    for e in episodes:
        state, pa = None, []
        for t in range(len(e.actions)):
            p, state = _probs(policy, e.obs[t : t + 1], e.masks[t : t + 1], state, np.array([t == 0]))
            pa.append(p[0, e.actions[t]])
        out.append(np.array(pa))
    return out


def _probs(policy, obs, masks, state, starts):
    if hasattr(policy, "action_probs") and state is None:
        return np.asarray(policy.action_probs(obs, masks)), None
    a, state = policy.predict(obs, state=state, episode_start=starts, deterministic=True, action_masks=masks)
    a = np.asarray(a).reshape(-1).astype(np.int64)
    p = np.zeros((len(a), 2))
    p[np.arange(len(a)), a] = 1.0
    return p, state


def _ridge(X: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    Xb = np.hstack([X, np.ones((len(X), 1))])
    reg = alpha * np.eye(Xb.shape[1])
    reg[-1, -1] = 0.0  # the intercept is not shrunk
    return np.linalg.solve(Xb.T @ Xb + reg, Xb.T @ y)


def _predict(coef: np.ndarray, X: np.ndarray) -> np.ndarray:
    return X @ coef[:-1] + coef[-1]


def _returns(e: Episode, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-decision rewards and returns-to-go of one episode for a metric."""
    if metric == "correct":
        r = np.zeros(len(e.actions))
        r[-1] = e.correct
    else:
        r = e.step_strong.copy()
    return r, np.cumsum(r[::-1])[::-1]


def _fit_q(eps: list[Episode], metric: str) -> dict[int, np.ndarray | None]:
    """Ridge Q-hat per action on the flattened observation (None: no logged decision of that action)."""
    X = np.concatenate([e.obs.reshape(len(e.actions), -1) for e in eps]).astype(np.float64)
    A = np.concatenate([e.actions for e in eps])
    G = np.concatenate([_returns(e, metric)[1] for e in eps])
    out = {}
    for a in (0, 1):
        sel = A == a
        out[a] = _ridge(X[sel], G[sel]) if sel.sum() > X.shape[1] else None
    return out


def _dr_terms(eps: list[Episode], pis: list[np.ndarray], q: dict, metric: str, fallback: float) -> np.ndarray:
    out = np.zeros(len(eps))
    for k, (e, pi) in enumerate(zip(eps, pis)):
        X = e.obs.reshape(len(e.actions), -1).astype(np.float64)
        qa = np.stack([_predict(q[a], X) if q[a] is not None else np.full(len(X), fallback) for a in (0, 1)], axis=1)
        # the target's probability of each action at the logged states: pi(a_t) for the logged action,
        # 1 - pi(a_t) for the other (two actions)
        p_logged = pi
        p_other = 1.0 - pi
        v = np.where(e.actions == 1, p_logged * qa[:, 1] + p_other * qa[:, 0], p_logged * qa[:, 0] + p_other * qa[:, 1])
        q_logged = qa[np.arange(len(X)), e.actions]
        r, _ = _returns(e, metric)
        rho = np.cumprod(pi / e.mu)
        rho_prev = np.concatenate([[1.0], rho[:-1]])
        out[k] = float(np.sum(rho * (r - q_logged) + rho_prev * v))
    return out


def estimate(episodes: list[Episode], policy, seed: int = 0) -> dict:
    """IS, WIS and DR estimates of the target's accuracy and strong tokens per problem, with ESS."""
    pis = target_probs(policy, episodes)
    w = np.array([float(np.prod(pi / e.mu)) for e, pi in zip(episodes, pis)])
    n = len(episodes)
    ess = float(w.sum() ** 2 / np.sum(w**2)) if np.any(w > 0) else 0.0
    out = {"episodes": n, "ess": ess, "matched": int(np.sum(w > 0)), "max_weight": float(w.max())}
    for metric in METRICS:
        key = "accuracy" if metric == "correct" else "strong_tokens"
        sel = [k for k, e in enumerate(episodes) if not math.isnan(getattr(e, metric))]
        out[key] = _estimate_metric([episodes[k] for k in sel], [pis[k] for k in sel], w[sel], metric, seed) \
            if len(sel) > 1 else None  # no graded episode (a server's log before grading): no accuracy
    return out


def _estimate_metric(episodes: list[Episode], pis: list[np.ndarray], w: np.ndarray, metric: str, seed: int) -> dict:
    n = len(episodes)
    G = np.array([getattr(e, metric) for e in episodes])
    res = {"episodes": n, "is": _mean_se(w * G).to_dict()}
    if w.sum() > 0:
        wn = w / w.sum()
        v = float(np.sum(wn * G))
        res["wis"] = Estimate(v, float(math.sqrt(np.sum(wn**2 * (G - v) ** 2)))).to_dict()
    idx = np.random.default_rng(seed).permutation(n)
    folds = [idx[: n // 2], idx[n // 2 :]]
    dr = np.zeros(n)
    for f in (0, 1):  # cross-fitting: each half's Q-hat is fitted on the other half
        train, test = folds[1 - f], folds[f]
        q = _fit_q([episodes[i] for i in train], metric)
        dr[test] = _dr_terms([episodes[i] for i in test], [pis[i] for i in test], q, metric, float(np.mean(G[train])))
    res["dr"] = _mean_se(dr).to_dict()
    return res


def evaluate_logged(path: str | Path, policies: dict, seed: int = 0, flag: str = "--logged") -> dict:
    """Every target policy (name -> policy) estimated on the log at ``path``."""
    episodes, counts = read_log(path, flag)
    dim = episodes[0].obs.shape[1:]
    out = {"log": str(path), "episodes": len(episodes), "dropped": counts["dropped"], "behaviours": counts["behaviours"],
           "behaviour_accuracy": _nanmean([e.correct for e in episodes]),
           "behaviour_strong_tokens": float(np.mean([e.strong_tokens for e in episodes])), "policies": {}}
    for name, policy in policies.items():
        want = tuple(policy.builder().space.shape)
        if want != tuple(dim):
            raise LogError(f"--checkpoints {name}: it reads observations of shape {want}, the log holds "
                           f"{tuple(dim)} (another observation or budget conditioning)")
        out["policies"][name] = estimate(episodes, policy, seed)
    return out


def _nanmean(x) -> float | None:
    x = np.asarray(x, dtype=float)
    return float(np.nanmean(x)) if np.any(~np.isnan(x)) else None


def format_table(result: dict) -> str:
    """The estimates as a terminal table (DR first: the one to read)."""
    acc = result["behaviour_accuracy"]
    lines = [f"{result['episodes']} logged episodes ({result['dropped']} dropped); behaviour: accuracy "
             f"{'n/a (not graded)' if acc is None else f'{acc:.3f}'}, {result['behaviour_strong_tokens']:.1f} strong "
             f"tokens a problem",
             f"{'policy':<28} {'ESS':>7} {'accuracy DR [95%]':>26} {'IS':>7} {'strong tok DR [95%]':>28} {'IS':>8}"]
    for name, r in result["policies"].items():
        a, s = r["accuracy"], r["strong_tokens"]
        acc_cols = (f"{a['dr']['value']:>8.3f} [{a['dr']['low']:.3f}, {a['dr']['high']:.3f}]{a['is']['value']:>9.3f}"
                    if a is not None else f"{'n/a':>26}{'':>7}")
        lines.append(f"{name[:28]:<28} {r['ess']:>7.1f} {acc_cols} {s['dr']['value']:>9.1f} [{s['dr']['low']:.1f}, "
                     f"{s['dr']['high']:.1f}]{s['is']['value']:>10.1f}")
    return "\n".join(lines)


def load_targets(items: list[str], flag: str = "--checkpoints") -> dict:
    """Target policies by name: checkpoint folders (or folders holding them) and specs such as ``thr:0.3``."""
    from trim_rl.agents import catalog
    from trim_rl.agents.registry import load_policy
    from trim_rl.evaluation.sweep import find_checkpoints

    out = {}
    for item in items:
        if ":" in item or catalog.find(item) is not None:
            try:
                out[item] = load_policy(item)
            except ValueError as exc:
                raise LogError(f"{flag}: {exc}") from None
            continue
        try:
            found = find_checkpoints([item])
        except (ValueError, FileNotFoundError) as exc:
            raise LogError(f"{flag}: {exc}") from None
        for pol in found:
            folder = Path(pol.folder)
            out[folder.name if folder.name not in out else str(folder)] = pol
    if not out:
        raise LogError(f"{flag}: give the policies to estimate (checkpoint folders, or thr:K)")
    return out


def estimate_from_log(log: str | Path, checkpoints: list[str], seed: int = 0, out: str | Path | None = None) -> dict:
    """``evaluate.py --logged LOG --checkpoints ...`` (its command line): every target policy (checkpoint
    folders, or folders holding them, and specs such as ``thr:0.3``) estimated on the decision log;
    with ``out``, also written to ``out/offpolicy.json`` (atomically).  Everything is checked before any
    estimate: a ``ConfigError`` naming the flag (``--logged``, ``--checkpoints``, ``--out``)."""
    from trim_rl.configs import ConfigError
    from trim_rl.evaluation.report import check_output_folder
    from trim_rl.fsutil import write_json

    if out is not None:
        check_output_folder(out, "--out")
    try:
        result = evaluate_logged(log, load_targets(list(checkpoints)), seed)
    except LogError as exc:
        raise ConfigError(str(exc)) from None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json(Path(out) / "offpolicy.json", result)
    return result


def cli_logged(logged: str, checkpoints: list[str], out: str | None = None, seed: int = 0, quiet: bool = False) -> int:
    """``evaluate.py --logged``: :func:`estimate_from_log`, printed."""
    result = estimate_from_log(logged, checkpoints, seed, out)
    if out:
        print(f"metrics: {Path(out) / 'offpolicy.json'}")
    print(json.dumps(result, indent=1) if quiet else format_table(result))
    return 0
