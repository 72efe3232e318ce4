"""Policy iteration whose regression runs on the ``seq`` observation, in TRIM-Seq's transformer.

The same evaluate / fit / improve loop as :func:`trim_rl.training.policy_iteration.policy_iteration`
(exact advantages on the training trees, a reach-weighted squared-error regression of
``(adv_acc, adv_tokens / token_scale)``, greedy improvement with the price re-solved by bisection
so the policy spends the budget, the head folded into action logits), but the regression is the
transformer over the whole step sequence instead of the MLP over ``agg``.  So the policy can use
what the sequence holds beyond ``agg`` (every accepted step's score and length, which of them were
regenerated), which a transformer distilled from the ``agg`` policy cannot.

Two things keep the transformer affordable on a CPU (it is ~100x slower per node than the MLP):

* **sequences cut at their length**: a node at depth ``d`` has ``d + 1`` valid rows and the encoder
  masks the rest, so the network is run on batches of nodes of (nearly) one depth cut to their
  longest valid row; the outputs are those of the padded observation (padding rows are masked out
  of attention and the read-out is the current row);
* **decisions only where the policy goes**: each round the network is asked only about the nodes
  that the policy, each decision flipped with probability ``explore``, reaches with probability
  above ``reach_floor`` (a top-down pass deciding depth by depth); elsewhere the previous round's
  decision stands.  At ``reach_floor = 1e-2`` these are about 7% of the nodes and hold about 95%
  of the regression's weight; the rest are nodes the policy reaches only after several flips.

The start is a per-node policy ``start_regen`` (e.g. the ``agg`` policy iteration's decisions: a
warm start) or, like the ``agg`` stage, the TRIM-Thr threshold nearest the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from trim_rl.configs import check
from trim_rl.data.flat import ABSENT, FlatTrees
from trim_rl.data.tree_dp import levels_bottom_up
from trim_rl.envs.observations import SeqObservation
from trim_rl.training.policy_iteration import (PolicyIterationConfig, PolicyIterationResult, advantage_targets,
                                               bisect_monotone, fold_advantage_head, spend_of, start_threshold)


_pos_int = check(lambda v: v >= 1, "an integer >= 1")


@dataclass
class SeqPolicyIterationConfig(PolicyIterationConfig):
    """Settings of policy iteration in the transformer (the ``seq_policy_iteration`` block of an agent
    YAML): those of :class:`~trim_rl.training.policy_iteration.PolicyIterationConfig`, sized for a
    network ~100x slower per node than the MLP, plus ``reach_floor``."""

    rounds: int = field(default=6, metadata=_pos_int)
    samples: int = field(default=300_000, metadata=_pos_int)
    epochs: int = field(default=3, metadata=_pos_int)
    batch_size: int = field(default=1024, metadata=_pos_int)
    # the network is asked only where the exploring policy goes with at least this probability
    reach_floor: float = field(default=1e-2, metadata=check(lambda v: 0 < v < 1, "a number in (0, 1)"))


def seq_batches(trees: FlatTrees, nodes: np.ndarray, batch: int) -> list[np.ndarray]:
    """``nodes`` sorted by depth and cut every ``batch`` rows: batches of (nearly) one depth."""
    nodes = np.asarray(nodes, dtype=np.int64)
    order = nodes[np.argsort(trees.depth[nodes], kind="stable")]
    return [order[i:i + batch] for i in range(0, order.size, batch)]


def seq_obs(trees: FlatTrees, nodes: np.ndarray, builder: SeqObservation):
    """The ``seq`` observation at ``nodes`` as a tensor cut after the deepest node's current row."""
    import torch

    x = builder.at_nodes(trees, nodes)
    return torch.as_tensor(x[:, : int(trees.depth[nodes].max()) + 1])


class SeqHeads:
    """The network's two outputs at tree nodes, computed on first use (depth by depth) and cached."""

    def __init__(self, trees: FlatTrees, net, builder: SeqObservation | None = None, batch: int = 4096):
        self.trees, self.net, self.batch = trees, net, int(batch)
        self.builder = builder or SeqObservation()
        self.out = np.zeros((trees.n_nodes, 2))
        self.known = np.zeros(trees.n_nodes, dtype=bool)

    def __call__(self, nodes: np.ndarray) -> np.ndarray:
        import torch

        nodes = np.asarray(nodes, dtype=np.int64)
        todo = np.unique(nodes[~self.known[nodes]])
        if todo.size:
            with torch.no_grad():
                for part in seq_batches(self.trees, todo, self.batch):
                    self.out[part] = self.net(seq_obs(self.trees, part, self.builder)).double().numpy()
            self.known[todo] = True
        return self.out[nodes]


def regress_seq(net, trees: FlatTrees, nodes: np.ndarray, y: np.ndarray, cfg: PolicyIterationConfig,
                rng: np.random.Generator, builder: SeqObservation | None = None) -> float:
    """Adam on the squared error of ``net``'s two outputs against ``y`` (one row per entry of
    ``nodes``, repeats allowed), in batches of nearly one depth; returns the last epoch's mean loss."""
    import torch

    builder = builder or SeqObservation()
    nodes = np.asarray(nodes, dtype=np.int64)
    pos = np.arange(nodes.size)  # batches hold row positions: a node drawn twice keeps both rows
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    yt = torch.as_tensor(y, dtype=torch.float32)
    depth_order = trees.depth[nodes]
    total = 0.0
    for _ in range(int(cfg.epochs)):
        tie = rng.random(nodes.size)
        order = pos[np.lexsort((tie, depth_order))]
        parts = [order[i:i + int(cfg.batch_size)] for i in range(0, order.size, int(cfg.batch_size))]
        total = 0.0
        for j in rng.permutation(len(parts)):
            i = parts[j]
            out = net(seq_obs(trees, nodes[i], builder))
            loss = ((out - yt[i]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * i.size
    return total / max(nodes.size, 1)


def reached(trees: FlatTrees, decide: Callable[[np.ndarray], np.ndarray], explore: float,
            floor: float) -> np.ndarray:
    """Nodes that the policy ``decide`` (asked depth by depth, only about these nodes), each decision
    flipped with probability ``explore``, reaches with probability above ``floor``."""
    w = np.zeros(trees.n_nodes)
    w[trees.tree_root] = 1.0
    keep_c, regen_c = trees.keep_child, trees.regen_child
    for nodes in trees.levels():
        live = nodes[w[nodes] > floor]
        if not live.size:
            continue
        allowed = regen_c[live] != ABSENT
        act = np.asarray(decide(live), dtype=bool) & allowed
        p = np.where(act, 1.0 - explore, explore)
        kc = keep_c[live]
        has = kc >= 0
        w[kc[has]] = (w[live] * np.where(allowed, 1.0 - p, 1.0))[has]
        rc = regen_c[live]
        has = allowed & (rc >= 0)
        w[rc[has]] = (w[live] * p)[has]
    return w > floor


def _ask(trees: FlatTrees, net, builder: SeqObservation, old: np.ndarray, price: float | None, explore: float,
         floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(asked, heads): the network's outputs at the nodes the new policy (at ``price``; the previous
    policy ``old`` while there is no price yet) reaches above ``floor``, zeros elsewhere."""
    heads = SeqHeads(trees, net, builder)
    if price is None:
        heads(np.flatnonzero(reached(trees, lambda n: old[n], explore, floor)))
    else:
        reached(trees, lambda n: _margin(heads(n), price) > 0, explore, floor)
    return heads.known, heads.out


def _margin(h: np.ndarray, price: float) -> np.ndarray:
    return h[:, 0] - price * h[:, 1]


def _greedy(allowed: np.ndarray, asked: np.ndarray, h: np.ndarray, old: np.ndarray, price: float) -> np.ndarray:
    """Regenerate where the advantage at ``price`` is positive (the old decision where not asked)."""
    return allowed & np.where(asked, _margin(h, price) > 0, old)


def seq_policy_iteration(trees: FlatTrees, *, budget: float | None = None, lam: float | None = None,
                         net_arch: list[int] = (64,), activation: str = "tanh", encoder: dict | None = None,
                         cfg: PolicyIterationConfig | None = None, seed: int = 0,
                         start_regen: np.ndarray | None = None, reach_floor: float | None = None,
                         net=None, on_round: Callable[[dict], None] | None = None) -> PolicyIterationResult:
    """Policy iteration on ``trees`` with the regression in TRIM-Seq's transformer (``net``, or a new
    :class:`~trim_rl.agents.networks.PolicyNet` over ``seq`` with ``net_arch`` / ``encoder``), for a
    ``budget`` (the price re-solved every round) or a fixed price ``lam``; see the module docstring.
    ``reach_floor`` (default: ``cfg``'s, else 1e-2) is where the network stops being asked.
    The result's ``regen`` is the last round's policy at every node (the network's decision where it
    was asked, the previous round's elsewhere)."""
    import torch

    # trim_rl.agents.networks imports torch
    from trim_rl.agents.networks import PolicyNet

    if (budget is None) == (lam is None):
        raise ValueError("seq_policy_iteration needs exactly one of budget and lam")
    cfg = cfg or SeqPolicyIterationConfig()
    if reach_floor is None:
        reach_floor = float(getattr(cfg, "reach_floor", SeqPolicyIterationConfig.reach_floor))
    rng = np.random.default_rng([int(seed), 17])
    torch.manual_seed(int(seed))
    builder = SeqObservation()
    if net is None:
        net = PolicyNet("seq", 0, list(net_arch), activation, dict(encoder or {}))
    levels = levels_bottom_up(trees)
    allowed = trees.regen_allowed
    if start_regen is not None:
        regen, k0 = allowed & np.asarray(start_regen, dtype=bool), None
    else:
        k0 = start_threshold(trees, cfg, budget)
        regen = allowed & (trees.weak_prm < k0)
    price = None if lam is None else float(lam) * cfg.token_scale
    rounds: list[dict] = []
    h = np.zeros((trees.n_nodes, 2))
    asked = np.zeros(trees.n_nodes, dtype=bool)
    acc = cost = float("nan")
    for r in range(int(cfg.rounds)):
        y, w = advantage_targets(trees, regen, levels, cfg)
        idx = rng.choice(trees.n_nodes, size=int(cfg.samples), p=w / w.sum())
        loss = regress_seq(net, trees, idx, y[idx], cfg, rng, builder)
        net.eval()
        old = regen
        asked, h = _ask(trees, net, builder, old, price, cfg.explore, reach_floor)
        if budget is not None:
            price, _ = bisect_monotone(lambda p, a=asked, hh=h, o=old: spend_of(trees, _greedy(allowed, a, hh, o, p))[1],
                                       float(budget), 1e-4, 1e3)
        regen = _greedy(allowed, asked, h, old, price)
        acc, cost = spend_of(trees, regen)
        net.train()
        rec = {"round": r, "lambda": price / cfg.token_scale, "accuracy": acc, "cost_pct": cost,
               "score": acc - price / cfg.token_scale * cost / 100.0 * float(trees.strong_only_tokens.mean()),
               "regression_loss": loss, "start_threshold": k0, "asked_nodes": int(asked.sum()),
               "changed_decisions": int((regen != old).sum())}
        rounds.append(rec)
        if on_round is not None:
            on_round(rec)
    net.eval()
    fold_advantage_head(net, price, h, allowed & asked, cfg.logit_scale)
    return PolicyIterationResult(net, price / cfg.token_scale, acc, cost, regen, rounds)
