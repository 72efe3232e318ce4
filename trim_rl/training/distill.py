"""Copy a per-node policy into a network over another observation (TRIM-Seq's transformer).

Policy iteration runs on the ``agg`` features; the ``seq`` observation holds everything ``agg``
does (every accepted step's score and length, the regenerations, the current candidate), so the
transformer can represent the same policy.  It is trained by cross-entropy on the teacher's
decisions at tree nodes drawn in proportion to how often the teacher (each decision flipped with
probability ``explore``) reaches them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from trim_rl.data.flat import FlatTrees
from trim_rl.data.tree_dp import reach_probability


def distill(trees: FlatTrees, teacher_regen: np.ndarray, net, builder, cfg, seed: int = 0,
            on_epoch: Callable[[dict], None] | None = None):
    """Train ``net`` (a :class:`~trim_rl.agents.networks.PolicyNet` over ``builder``'s observation) to
    take the teacher's action; returns the reach-weighted agreement on the drawn nodes."""
    import torch

    rng = np.random.default_rng([int(seed), 11])
    torch.manual_seed(int(seed))
    allowed = trees.regen_allowed
    w = np.where(allowed, reach_probability(trees, np.where(teacher_regen, 1.0 - cfg.explore, cfg.explore)), 0.0)
    nodes = rng.choice(trees.n_nodes, size=int(cfg.samples), p=w / w.sum())
    obs = torch.as_tensor(builder.at_nodes(trees, nodes))
    target = torch.as_tensor(teacher_regen[nodes].astype(np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    agreement = 0.0
    for epoch in range(int(cfg.epochs)):
        order = torch.randperm(len(obs), generator=gen)
        total, right = 0.0, 0
        for b in range(0, len(obs), int(cfg.batch_size)):
            i = order[b:b + int(cfg.batch_size)]
            logits = net(obs[i])
            loss = torch.nn.functional.cross_entropy(logits, target[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(i)
            right += int((logits.argmax(1) == target[i]).sum())
        agreement = right / len(obs)
        if on_epoch is not None:
            on_epoch({"epoch": epoch, "loss": total / len(obs), "agreement": agreement})
    net.eval()
    return agreement
