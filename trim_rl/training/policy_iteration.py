"""Policy iteration with exact tree values, in the agent's own network (the recipe's first stage).

A tree holds the outcome of both actions at every node, so the advantage of regenerating under the
current policy is exact at every node (:func:`trim_rl.data.tree_dp.policy_outcomes`): in accuracy
(P(correct) after regenerating minus after keeping) and in strong tokens.  Each round

1. evaluates the current policy exactly on the training trees,
2. regresses both advantages on the ``agg`` observation with the TRIM-Agg MLP (squared error, nodes
   drawn in proportion to how often the current policy, each decision flipped with probability
   ``explore``, reaches them),
3. acts greedily: regenerate where ``adv_acc - lam * adv_tokens > 0``.

With a **budget**, ``lam`` is not fixed: every round it is set by bisection so that the greedy
policy spends exactly the budget on the training trees (``play`` walks each tree along the policy,
so one try costs milliseconds).  A price alone cannot reach most budgets below ~20% on these trees:
the accuracy-vs-cost frontier is nearly straight there, so one price makes every such budget
equally good and the price-optimal policy jumps between "never regenerate" and ~20% (see
``docs/research/ppo_regimes.md``).  Fixing the spend instead of the price lands on any budget.

The result is a :class:`~trim_rl.agents.networks.PolicyNet` whose greedy action is exactly the last
round's policy: the regression head ``(adv_acc, adv_tokens / token_scale)`` is folded into the
action layer as the logit ``scale * (adv_acc - lam * adv_tokens)``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import numpy as np

from trim_rl.configs import Sparse, check
from trim_rl.data.flat import FlatTrees
from trim_rl.data.tree_dp import cost_pct, levels_bottom_up, play, policy_outcomes, reach_probability
from trim_rl.envs.observations import AggObservation
from trim_rl.evaluation.sweep import THRESHOLDS


_pos_int = check(lambda v: v >= 1, "an integer >= 1")
_pos = check(lambda v: v > 0, "a number > 0")


@dataclass
class PolicyIterationConfig(Sparse):
    """Settings of the policy-iteration stage (the ``policy_iteration`` block of an agent YAML);
    checked where the YAML is read (:func:`trim_rl.configs.from_mapping`)."""

    rounds: int = field(default=8, metadata=_pos_int)  # evaluate / fit / improve rounds
    # fit weights: reach probability when each decision is flipped this often
    explore: float = field(default=0.1, metadata=check(lambda v: 0.0 <= v < 0.5, "a number in [0, 0.5)"))
    samples: int = field(default=400_000, metadata=_pos_int)  # nodes drawn per round (with replacement, by reach)
    epochs: int = field(default=3, metadata=_pos_int)  # passes over the drawn nodes per round (warm-started)
    batch_size: int = field(default=4096, metadata=_pos_int)
    learning_rate: float = field(default=1.0e-3, metadata=_pos)
    token_scale: float = field(default=500.0, metadata=_pos)  # tokens are regressed in these units (~one solution)
    # None: the TRIM-Thr threshold whose spend is nearest the budget
    start_threshold: float | None = field(default=None, metadata=check(lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"))
    logit_scale: float = field(default=3.0, metadata=_pos)  # greedy margin of the median decision once folded into logits

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}


@dataclass
class PolicyIterationResult:
    """The stage's policy as a network, the price it ended at and one record per round."""

    net: object  # PolicyNet on agg
    lam: float | None  # None for a budget-conditioned network
    accuracy: float  # on the training trees
    cost_pct: float
    regen: np.ndarray  # the policy's decision at every node of the training trees
    rounds: list[dict] = field(default_factory=list)


def node_margins(net, x: np.ndarray, batch: int = 1 << 17) -> np.ndarray:
    """The network's two outputs at every row of ``x`` (no action mask)."""
    import torch

    out = np.empty((len(x), 2), dtype=np.float64)
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out[i:i + batch] = net(torch.as_tensor(x[i:i + batch])).numpy()
    return out


@contextmanager
def standardized(net, x: np.ndarray):
    """Train ``net`` on standardised inputs: the features' scales differ a lot (the step index / 30
    moves by 0.033 per step, tokens / 100 by whole units), which slows an MLP's first layer down.
    Inside the block the first layer expects ``(x - mean) / sd`` (yielded as an array); on exit the
    scaling is folded back into it, so the network takes raw observations as before."""
    import torch

    first = net.pi[0]
    mu = x.mean(axis=0).astype(np.float64)
    sd = x.std(axis=0).astype(np.float64) + 1e-3
    mu_t, sd_t = torch.as_tensor(mu, dtype=torch.float32), torch.as_tensor(sd, dtype=torch.float32)
    with torch.no_grad():
        first.bias.add_(first.weight @ mu_t)
        first.weight.mul_(sd_t)
    try:
        yield ((x - mu) / sd).astype(np.float32)
    finally:
        with torch.no_grad():
            first.weight.div_(sd_t)
            first.bias.sub_(first.weight @ mu_t)


def _fit(net, x: np.ndarray, y: np.ndarray, weights: np.ndarray, cfg: PolicyIterationConfig,
         rng: np.random.Generator) -> float:
    """Squared-error regression of ``y`` on ``x`` over nodes drawn in proportion to ``weights``
    (inputs standardised over the drawn nodes)."""
    idx = rng.choice(len(x), size=int(cfg.samples), p=weights / weights.sum())
    with standardized(net, x[idx]) as xs:
        return _regress(net, xs, y[idx], cfg, rng)


def _regress(net, x: np.ndarray, y: np.ndarray, cfg: PolicyIterationConfig, rng: np.random.Generator,
             margin: bool = False) -> float:
    """Adam on the squared error of ``net(x)`` (``margin``: of ``logit(regen) - logit(keep)``) against ``y``."""
    import torch

    xs, ys = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.float32)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    loss = torch.zeros(())
    for _ in range(int(cfg.epochs)):
        order = torch.randperm(len(xs), generator=gen)
        for b in range(0, len(xs), int(cfg.batch_size)):
            i = order[b:b + int(cfg.batch_size)]
            out = net(xs[i])
            loss = ((((out[:, 1] - out[:, 0]) if margin else out) - ys[i]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return float(loss.detach())


def spend_of(trees: FlatTrees, regen: np.ndarray) -> tuple[float, float]:
    """(accuracy, cost %) of a deterministic per-node policy, by walking every tree along it."""
    correct, tokens = play(trees, regen)
    return float(correct.mean()), cost_pct(trees, tokens)


def bisect_monotone(cost_at: Callable[[float], float], target: float, lo: float, hi: float,
                    steps: int = 40, log: bool = True) -> tuple[float, float]:
    """The setting in [lo, hi] whose cost is nearest ``target``, for a cost that falls as the
    setting rises (bisection on a log scale when ``log``); returns (setting, cost)."""
    best = (lo, cost_at(lo))
    for _ in range(int(steps)):
        mid = float(np.sqrt(lo * hi)) if log else 0.5 * (lo + hi)
        c = cost_at(mid)
        if abs(c - target) < abs(best[1] - target):
            best = (mid, c)
        if c > target:
            lo = mid
        else:
            hi = mid
        if c == target:
            break
    return best


def threshold_for_budget(trees: FlatTrees, budget: float) -> float:
    """The TRIM-Thr threshold (0..1 by 0.05) whose spend on ``trees`` is nearest ``budget``."""
    allowed = trees.regen_allowed
    costs = [spend_of(trees, allowed & (trees.weak_prm < k))[1] for k in THRESHOLDS]
    return float(THRESHOLDS[int(np.argmin(np.abs(np.array(costs) - budget)))])


def start_threshold(trees: FlatTrees, cfg: PolicyIterationConfig, budget: float | None) -> float:
    """The TRIM-Thr threshold the first round plays: ``cfg.start_threshold``, else the one whose spend
    is nearest the budget (0.3 for a price)."""
    if cfg.start_threshold is not None:
        return cfg.start_threshold
    return threshold_for_budget(trees, budget) if budget is not None else 0.3


def advantage_targets(trees: FlatTrees, regen: np.ndarray, levels, cfg: PolicyIterationConfig
                      ) -> tuple[np.ndarray, np.ndarray]:
    """One round's regression data under the policy ``regen``: the exact advantages of regenerating at
    every node (accuracy, strong tokens / ``token_scale``; 0 where undefined) and the fit weights (how
    often the policy, each decision flipped with probability ``explore``, reaches the node; 0 where
    regenerating is not allowed)."""
    out = policy_outcomes(trees, regen, levels)
    y = np.stack([out.regen_acc - out.keep_acc, (out.regen_tokens - out.keep_tokens) / cfg.token_scale], axis=1)
    reach = reach_probability(trees, np.where(regen, 1.0 - cfg.explore, cfg.explore))
    return np.nan_to_num(y, nan=0.0).astype(np.float32), np.where(trees.regen_allowed, reach, 0.0)


def policy_iteration(trees: FlatTrees, *, budget: float | None = None, lam: float | None = None,
                     net_arch: list[int] = (64, 64), activation: str = "tanh",
                     cfg: PolicyIterationConfig | None = None, seed: int = 0,
                     on_round: Callable[[dict], None] | None = None) -> PolicyIterationResult:
    """Policy iteration on ``trees`` for a ``budget`` (% of always-strong's strong tokens: the price
    is re-solved every round) or a fixed price ``lam``; see the module docstring."""
    import torch

    # trim_rl.agents.networks imports torch
    from trim_rl.agents.networks import PolicyNet

    if (budget is None) == (lam is None):
        raise ValueError("policy_iteration needs exactly one of budget and lam")
    cfg = cfg or PolicyIterationConfig()
    rng = np.random.default_rng([int(seed), 7])
    torch.manual_seed(int(seed))
    x = AggObservation().at_nodes(trees)
    levels = levels_bottom_up(trees)
    allowed = trees.regen_allowed
    k0 = start_threshold(trees, cfg, budget)
    regen = allowed & (trees.weak_prm < k0)
    net = PolicyNet("agg", x.shape[1], list(net_arch), activation)
    price = None if lam is None else float(lam) * cfg.token_scale  # lam in token_scale units
    rounds = []
    for r in range(int(cfg.rounds)):
        y, w = advantage_targets(trees, regen, levels, cfg)
        loss = _fit(net, x, y, w, cfg, rng)
        h = node_margins(net, x)
        if budget is not None:
            def spend_at(p: float, h: np.ndarray = h) -> float:
                return spend_of(trees, allowed & (h[:, 0] - p * h[:, 1] > 0))[1]

            price, _ = bisect_monotone(spend_at, float(budget), 1e-4, 1e3)
        regen = allowed & (h[:, 0] - price * h[:, 1] > 0)
        acc, cost = spend_of(trees, regen)
        rec = {"round": r, "lambda": price / cfg.token_scale, "accuracy": acc, "cost_pct": cost,
               "score": acc - price / cfg.token_scale * cost / 100.0 * float(trees.strong_only_tokens.mean()),
               "regression_loss": loss, "start_threshold": k0}
        rounds.append(rec)
        if on_round is not None:
            on_round(rec)
    fold_advantage_head(net, price, h, allowed & (w > 0), cfg.logit_scale)
    return PolicyIterationResult(net, price / cfg.token_scale, acc, cost, regen, rounds)


def fold_advantage_head(net, price: float, h: np.ndarray, rows: np.ndarray, logit_scale: float) -> None:
    """Turn the regression head (adv_acc, adv_tokens / scale) into action logits (keep, regenerate)
    with ``logit(regen) - logit(keep) = c * (adv_acc - price * adv_tokens)``: the greedy action is
    unchanged and ``c`` puts the median decision's margin at ``logit_scale``."""
    import torch

    margin = np.abs(h[rows, 0] - price * h[rows, 1])
    c = float(logit_scale / max(np.median(margin), 1e-6)) if margin.size else 1.0
    with torch.no_grad():
        w, b = net.action.weight.clone(), net.action.bias.clone()
        net.action.weight[0].zero_()
        net.action.bias[0] = 0.0
        net.action.weight[1] = c * (w[0] - price * w[1])
        net.action.bias[1] = c * (b[0] - price * b[1])


def conditioned_policy_iteration(trees: FlatTrees, lam_range: tuple[float, float], n_lams: int = 12,
                                 net_arch: list[int] = (64, 64), activation: str = "tanh",
                                 cfg: PolicyIterationConfig | None = None, seed: int = 0,
                                 on_round: Callable[[dict], None] | None = None) -> PolicyIterationResult:
    """Policy iteration for every price of ``lam_range`` at once, in one network that sees
    log10(lambda) (the budget-conditioned ``agg`` observation).

    Each round evaluates the network's policy exactly at ``n_lams`` log-spaced prices, each on its
    own third of the training trees (drawn once), and regresses the margin
    ``logit(regen) - logit(keep)`` on the advantage ``adv_acc - lambda * adv_tokens`` (in units of
    its spread) over nodes drawn in proportion to each price's reach.  The returned ``regen`` is
    the decision at the middle price."""
    import torch

    # trim_rl.agents.networks imports torch
    from trim_rl.agents.networks import PolicyNet

    cfg = cfg or PolicyIterationConfig()
    rng = np.random.default_rng([int(seed), 13])
    torch.manual_seed(int(seed))
    lams = np.geomspace(float(lam_range[0]), float(lam_range[1]), int(n_lams))
    builder = AggObservation(budget_conditioned=True)
    parts = []
    for j in range(len(lams)):
        pick = np.sort(rng.choice(trees.n_trees, size=max(1, trees.n_trees // 3), replace=False))
        sub = trees.subset(pick)
        parts.append((sub, levels_bottom_up(sub), sub.regen_allowed, builder.at_nodes(sub, lam=lams[j])))
    net = PolicyNet("agg", builder.dim, list(net_arch), activation)
    regens = [al & (sub.weak_prm < (cfg.start_threshold if cfg.start_threshold is not None else 0.3))
              for sub, _, al, _ in parts]
    per = max(1, int(cfg.samples) // len(lams))
    rounds = []
    for r in range(int(cfg.rounds)):
        xs, ys = [], []
        for j, (sub, levels, al, x) in enumerate(parts):
            out = policy_outcomes(sub, regens[j], levels)
            adv = out.advantage(float(lams[j]))
            w = np.where(al, reach_probability(sub, np.where(regens[j], 1.0 - cfg.explore, cfg.explore)), 0.0)
            idx = rng.choice(sub.n_nodes, size=per, p=w / w.sum())
            xs.append(x[idx])
            ys.append(adv[idx])
        x_all, y_all = np.concatenate(xs), np.concatenate(ys)
        sd = float(y_all.std()) or 1.0
        loss = _fit_margin(net, x_all, (y_all / sd).astype(np.float32), cfg, rng)
        rec = {"round": r, "regression_loss": loss}
        accs, costs = [], []
        for j, (sub, _, al, x) in enumerate(parts):
            h = node_margins(net, x)
            regens[j] = al & (h[:, 1] - h[:, 0] > 0)
            acc, cost = spend_of(sub, regens[j])
            accs.append(acc)
            costs.append(cost)
        rec.update(accuracy=float(np.mean(accs)), cost_pct=float(np.mean(costs)),
                   cost_at_low_lambda=costs[0], cost_at_high_lambda=costs[-1])
        rounds.append(rec)
        if on_round is not None:
            on_round(rec)
    _rescale_margin(net, [node_margins(net, x) for _, _, _, x in parts], cfg.logit_scale)
    mid = len(lams) // 2
    full_x = builder.at_nodes(trees, lam=lams[mid])
    h = node_margins(net, full_x)
    regen = trees.regen_allowed & (h[:, 1] - h[:, 0] > 0)
    acc, cost = spend_of(trees, regen)
    return PolicyIterationResult(net, None, acc, cost, regen, rounds)


def _fit_margin(net, x: np.ndarray, y: np.ndarray, cfg: PolicyIterationConfig, rng: np.random.Generator) -> float:
    """Squared-error regression of ``logit(regen) - logit(keep)`` on ``y`` (rows already drawn,
    inputs standardised)."""
    with standardized(net, x) as xs:
        return _regress(net, xs, y, cfg, rng, margin=True)


def _rescale_margin(net, outputs: list[np.ndarray], logit_scale: float) -> None:
    """Scale the action layer so that the median |margin| is ``logit_scale`` (greedy actions unchanged)."""
    import torch

    m = np.concatenate([np.abs(o[:, 1] - o[:, 0]) for o in outputs])
    c = float(logit_scale / max(np.median(m), 1e-6))
    with torch.no_grad():
        net.action.weight.mul_(c)
        net.action.bias.mul_(c)
