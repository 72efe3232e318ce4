"""Draw trajectory trees (schema ``trim_rl.tree/v1``) from the calibrated step model.

Every tree is expanded breadth-first: each reachable prefix gets a weak candidate step and, while
the path has used fewer than ``max_interventions`` regenerations, a strong candidate.  A tree whose
full expansion would exceed the profile's ``max_nodes`` is redrawn with one intervention fewer
(reported in the generation summary as ``reduced_trees``), so files stay small while most trees keep
the profile's budget.  All randomness comes from one generator seeded with (seed, profile, split):
the same arguments give the same bytes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trim_rl import __version__
from trim_rl.data.schema import MAX_STEPS, SCHEMA
from trim_rl.data.trees import write_trees
from trim_rl.sim.model import STRONG, WEAK, Episodes, draw_steps, make_episodes, strong_only
from trim_rl.sim.params import SimParams, load_params
from trim_rl.sim.profiles import ProfileProblems, profile_problems

MODELS = {
    "weak": "sim:Qwen2.5-1.5B-Instruct",
    "strong": "sim:Qwen2.5-7B-Instruct",
    "prm": "sim:Qwen2.5-Math-PRM-7B",
}


@dataclass
class _Level:
    """Open prefixes of one BFS level (parallel arrays)."""

    ep: np.ndarray
    local: np.ndarray  # node index inside its tree
    state: np.ndarray
    min_prior: np.ndarray
    interventions: np.ndarray


def _split_seed(seed: int, profile: str, split: str) -> list[int]:
    h = hashlib.sha256(f"{profile}|{split}".encode()).digest()
    return [int(seed), int.from_bytes(h[:4], "big")]


def _expand(m, prof, ep: Episodes, idx: np.ndarray, k_max: np.ndarray, rng: np.random.Generator,
            max_nodes: int | None = None):
    """Expand the trees of episodes ``idx`` (with per-episode budgets ``k_max``).

    Returns per-episode lists of node records and the number of nodes of each tree; a tree that
    passes ``max_nodes`` stops growing at once (its count then exceeds ``max_nodes``).
    """
    n = idx.size
    count = np.ones(n, dtype=np.int64)  # node 0 exists
    nodes: list[list] = [[] for _ in range(n)]
    lvl = _Level(np.arange(n), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64), np.ones(n),
                 np.zeros(n, dtype=np.int64))
    for d in range(MAX_STEPS):
        if lvl.ep.size == 0:
            break
        gi = idx[lvl.ep]
        depth = np.full(lvl.ep.size, d)
        w = draw_steps(m, prof, ep, gi, depth, lvl.state, lvl.min_prior, WEAK, rng)
        has_s = lvl.interventions < k_max[lvl.ep]
        s_state = np.zeros(lvl.ep.size, dtype=np.int64)
        s_prm = np.zeros(lvl.ep.size)
        s_final = np.zeros(lvl.ep.size, dtype=bool)
        s_tok = np.zeros(lvl.ep.size, dtype=np.int64)
        if has_s.any():
            s = draw_steps(m, prof, ep, gi[has_s], depth[has_s], lvl.state[has_s], lvl.min_prior[has_s], STRONG, rng)
            s_state[has_s], s_prm[has_s], s_final[has_s], s_tok[has_s] = s.state, s.prm, s.final, s.tokens
        last = d == MAX_STEPS - 1
        keep_open = ~w.final & (not last)
        regen_open = has_s & ~s_final & (not last)
        # children in BFS order: for each parent (in level order) keep child then regenerate child
        kind = np.stack([keep_open, regen_open], axis=1).reshape(-1)
        parent_pos = np.repeat(np.arange(lvl.ep.size), 2)[kind]
        action = np.tile([0, 1], lvl.ep.size)[kind]
        child_ep = lvl.ep[parent_pos]
        # per-episode running numbering (child_ep is sorted because levels stay episode-major)
        order = np.argsort(child_ep, kind="stable")
        child_ep_sorted = child_ep[order]
        starts = np.searchsorted(child_ep_sorted, child_ep_sorted, side="left")
        rank = np.arange(child_ep_sorted.size) - starts
        child_local = np.empty_like(child_ep)
        child_local[order] = count[child_ep_sorted] + rank
        np.add.at(count, child_ep, 1)
        keep_id = np.full(lvl.ep.size, -1, dtype=np.int64)
        regen_id = np.where(has_s, -1, -2).astype(np.int64)
        keep_id[parent_pos[action == 0]] = child_local[action == 0]
        regen_id[parent_pos[action == 1]] = child_local[action == 1]
        for j in range(lvl.ep.size):
            nodes[lvl.ep[j]].append((
                int(lvl.local[j]), int(w.tokens[j]), float(w.prm[j]), bool(w.final[j]), int(w.state[j]),
                bool(has_s[j]), int(s_tok[j]), float(s_prm[j]), bool(s_final[j]), int(s_state[j]),
                int(keep_id[j]), int(regen_id[j]), int(lvl.state[j]),
            ))
        new_state = np.where(action == 0, w.state[parent_pos], s_state[parent_pos])
        new_prm = np.where(action == 0, w.prm[parent_pos], s_prm[parent_pos])
        lvl = _Level(
            child_ep, child_local,
            np.where(new_state == 2, 1, new_state) | lvl.state[parent_pos],
            np.minimum(lvl.min_prior[parent_pos], new_prm),
            lvl.interventions[parent_pos] + action,
        )
        if max_nodes is not None:  # stop growing trees that are already too big (they will be redrawn)
            grow = count[lvl.ep] <= max_nodes
            if not grow.all():
                lvl = _Level(lvl.ep[grow], lvl.local[grow], lvl.state[grow], lvl.min_prior[grow],
                             lvl.interventions[grow])
        # a prefix with an earlier error stays in state 1
        lvl.state = np.where(lvl.state > 0, 1, 0)
    return nodes, count


def _step_json(tokens, prm, final, state, prefix_state) -> dict:
    out = {"tokens": tokens, "prm": prm, "final": final}
    wrong = state != 0 or prefix_state != 0
    if final:
        out["correct"] = not wrong
    out["step_correct"] = state == 0
    return out


def _tree_json(records: list, k: int, header: dict) -> dict:
    records = sorted(records, key=lambda r: r[0])
    nodes = []
    for (_, wt, wp, wf, ws, has_s, st, sp, sf, ss, keep, regen, ps) in records:
        node = {"weak": _step_json(wt, wp, wf, ws, ps)}
        if has_s:
            node["strong"] = _step_json(st, sp, sf, ss, ps)
        node["keep"] = None if keep < 0 else keep
        if regen != -2:
            node["regenerate"] = None if regen < 0 else regen
        nodes.append(node)
    return {**header, "max_interventions": k, "nodes": nodes}


# Every tree of a file is held (as node records, then dicts) until the file is written: about 0.75 KB
# a node, and trees of the harder profiles average half their node cap (AIME: ~1,500 of 3,000 nodes,
# ~1.1 MB).  A generation estimated above MAX_GENERATE_GB is refused before anything is drawn.
BYTES_PER_NODE = 750
MAX_GENERATE_GB = 12
MAX_SEED = 2**32 - 1


def plan(profile: str, split: str, seed: int, params: SimParams, limit: int | None = None,
         draws: int | None = None, names: dict | None = None) -> tuple[ProfileProblems, int]:
    """The problems and draws of one generation, checked before anything is drawn or written.

    ``names`` maps ``profile``/``split``/``seed``/``limit``/``draws`` to how the caller's user
    calls them (``--draws``), so that the error names what to change."""
    names = {"profile": "profile", "split": "split", "seed": "seed", "limit": "limit", "draws": "draws",
             **(names or {})}
    if profile not in params.profiles:
        raise ValueError(f"{names['profile']}: unknown profile {profile!r}; choose one of "
                         f"{', '.join(sorted(params.profiles))}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{names['seed']}: expected an integer in [0, {MAX_SEED}], got {seed!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"{names['limit']}: expected a number of problems >= 1, got {limit!r}")
    if draws is not None and (isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1):
        raise ValueError(f"{names['draws']}: expected a number of trees per problem >= 1, got {draws!r}")
    prof = params.profiles[profile]
    if split not in prof.draws:
        raise ValueError(f"{names['split']}: unknown split {split!r}; choose one of {', '.join(prof.draws)}")
    pp: ProfileProblems = profile_problems(prof, split)
    if limit is not None:
        pp = ProfileProblems(pp.problems[:limit], pp.level[:limit], pp.z[:limit], pp.z_len[:limit])
    n_draws = int(draws if draws is not None else prof.draws[split])
    n = len(pp.problems) * n_draws
    if not pp.problems:
        raise ValueError(f"{names['split']}: the {split} split of profile {profile!r} has no problems")
    gb = n * prof.max_nodes / 2 * BYTES_PER_NODE / 1e9
    if gb > MAX_GENERATE_GB:
        raise ValueError(f"{names['draws']}: {len(pp.problems)} problems x {n_draws} draws = {n} trees of up to "
                         f"{prof.max_nodes} nodes, about {gb:.1f} GB of memory while generating (at most "
                         f"{MAX_GENERATE_GB} GB for one file); generate several seeds instead")
    return pp, n_draws


def generate_trees(profile: str, split: str, seed: int, params: SimParams | None = None,
                   limit: int | None = None, draws: int | None = None, progress: bool = False,
                   names: dict | None = None) -> tuple[list[dict], dict]:
    """Trees of ``split`` of ``profile``; returns (trees, summary).  ``names``: see :func:`plan`."""
    params = params or load_params()
    pp, n_draws = plan(profile, split, seed, params, limit, draws, names)
    prof = params.profiles[profile]
    m = params.model
    rng = np.random.default_rng(_split_seed(seed, profile, split))
    ep = make_episodes(m, prof, pp, n_draws, rng)
    ref = strong_only(m, prof, ep, rng)
    n = len(ep)
    k_of = np.full(n, prof.max_interventions, dtype=np.int64)
    todo = np.arange(n)
    result: dict[int, list] = {}
    chunk = 64
    bar = None
    if hasattr(progress, "update"):  # one bar shared by the files of a tree spec (see sim.bundled)
        bar = progress
    elif progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"generate {profile}/{split}", unit="tree")
    while todo.size:
        retry = []
        for c0 in range(0, todo.size, chunk):
            part = todo[c0 : c0 + chunk]
            nodes, count = _expand(m, prof, ep, part, k_of[part], rng, prof.max_nodes)
            for j, e in enumerate(part):
                if count[j] > prof.max_nodes and k_of[e] > 0:
                    retry.append(e)
                else:
                    result[int(e)] = nodes[j]
                    if bar is not None:
                        bar.update(1)
        todo = np.array(retry, dtype=np.int64)
        k_of[todo] -= 1
    if bar is not None and bar is not progress:
        bar.close()
    trees = []
    for e in range(n):
        p = pp.problems[int(ep.problem[e])]
        draw = e % n_draws
        header = {
            "schema": SCHEMA,
            "problem_id": f"{p.problem_id}#{draw}",
            "dataset": p.dataset,
            "split": split,
            "problem": p.problem,
            "answer": p.answer,
            "level": p.level,
            "models": MODELS,
            "strong_only": {"tokens": int(ref["tokens"][e]), "steps": int(ref["steps"][e]),
                            "correct": bool(ref["correct"][e])},
            "meta": {"generator": "trim_rl.sim", "package_version": __version__, "sim_version": params.version,
                     "profile": profile, "seed": int(seed), "draw": int(draw), "source_problem_id": p.problem_id,
                     "model_level": float(pp.level[int(ep.problem[e])])},
        }
        trees.append(_tree_json(result[e], int(k_of[e]), header))
    sizes = np.array([len(t["nodes"]) for t in trees])
    summary = {
        "profile": profile, "split": split, "seed": int(seed), "problems": len(pp.problems), "draws": n_draws,
        "trees": n, "nodes_mean": float(sizes.mean()), "nodes_max": int(sizes.max()),
        "max_interventions": prof.max_interventions,
        "reduced_trees": int((k_of < prof.max_interventions).sum()),
    }
    return trees, summary


def generate_file(profile: str, split: str, seed: int, out: str | os.PathLike, params: SimParams | None = None,
                  limit: int | None = None, draws: int | None = None, progress: bool = False,
                  names: dict | None = None) -> dict:
    """Generate and atomically write a tree file; returns the generation summary."""
    if Path(out).is_dir():
        raise IsADirectoryError(f"{out}: is a folder; give the tree file to write (.jsonl or .jsonl.gz)")
    trees, summary = generate_trees(profile, split, seed, params, limit, draws, progress, names)
    write_trees(out, trees)
    summary["out"] = str(out)
    return summary
