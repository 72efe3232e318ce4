"""``collect --estimate``: what a collection will cost, from a pilot on a few problems.

A tree holds one node per reachable prefix.  A prefix of j accepted steps of which i were
regenerated can be reached in C(j, i) ways, and a path may regenerate at most K steps, so a tree whose
every path runs D steps has

    nodes(D, K) = sum_{j<D} sum_{i<=min(j,K)} C(j, i)      (about D^(K+1) / (K+1)! for D >> K)

nodes: the number at depth j grows like j^K / K!.  Each node costs one weak generation and, below K,
one strong one (each scored by the PRM), plus the strong-only solution of the problem.  Real trees are
smaller (solutions end at different depths); the pilot measures them.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from trim_rl.live.results import ResultsFile


def full_tree_nodes(depth: int, k: int) -> int:
    """Nodes of a tree whose every path runs ``depth`` steps with at most ``k`` regenerations."""
    return sum(math.comb(j, i) for j in range(depth) for i in range(min(j, k) + 1))


def pilot_problems(problems: Sequence, n: int) -> list:
    """``n`` problems spread evenly over the selection (deterministic)."""
    step = max(1, len(problems) // max(1, n))
    return list(problems[::step][:n])


def estimate(collector, problems: Sequence, n_pilot: int, progress: bool = True) -> int:
    """Collect a pilot into a temporary file and print the expected cost of ``problems``; returns the
    exit code (3 when a server failed during the pilot)."""
    pilot = pilot_problems(problems, n_pilot)
    with tempfile.TemporaryDirectory() as tmp:
        out = ResultsFile(Path(tmp) / "pilot.jsonl")
        t0 = time.perf_counter()
        summary = collector.run(pilot, out, progress=progress)
        wall = time.perf_counter() - t0
        trees = out.rows()
    if not summary["complete"]:
        print(f"error: the pilot stopped: {summary['error']}", file=sys.stderr)
        return 3
    s, n, total = collector.s, len(trees), len(problems)
    depth = [_longest(t) for t in trees]
    per = {"nodes": sum(len(t["nodes"]) for t in trees) / n, "generations": summary["generations"] / n,
           "tokens": summary["tokens"] / n, "prm_inputs": summary["prm_inputs"] / n, "wall_s": wall / n}
    print(f"pilot: {n} problems ({', '.join(t['problem_id'] for t in trees)}), -K {s.max_interventions}, "
          f"--max-depth {s.max_depth}: {wall:.1f} s")
    print("per tree (pilot mean): " + ", ".join(f"{k} {v:,.1f}" for k, v in per.items()))
    print(f"expected for the {total} selected problems: nodes {per['nodes'] * total:,.0f}, generations "
          f"{per['generations'] * total:,.0f}, tokens {per['tokens'] * total:,.0f}, PRM inputs "
          f"{per['prm_inputs'] * total:,.0f}, wall about {per['wall_s'] * total / 3600:,.2f} h at the pilot's pace "
          f"({n} trees at once; larger --chunk on a GPU server overlaps more)")
    d = max(depth)
    bounds = ", ".join(f"K={k}: {full_tree_nodes(d, k):,}" for k in range(0, 5))
    print(f"nodes of a full tree at the pilot's longest path ({d} steps): {bounds}; at --max-depth {s.max_depth}: "
          f"K={s.max_interventions}: {full_tree_nodes(s.max_depth, s.max_interventions):,}")
    return 0


def _longest(tree: dict) -> int:
    """Steps on the tree's longest path."""
    nodes = tree["nodes"]
    depth = {0: 1}
    best = 1
    for i, node in enumerate(nodes):
        for child in (node.get("keep"), node.get("regenerate")):
            if isinstance(child, int):
                depth[child] = depth[i] + 1
                best = max(best, depth[child])
    return best
