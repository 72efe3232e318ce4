"""Fit the POMDP from data: latent-state labels of tree nodes, ProcessBench-style records, and
:func:`fit_model` (trees with ``step_correct`` labels, or the shipped measurements without them).

Latent state of a candidate step: 0 when it and every accepted step before it are correct, 2 when
only it is wrong (the first error), 1 when an accepted step before it was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterable

import numpy as np

from trim_rl.agents.pomdp.model import POMDPModel
from trim_rl.agents.pomdp.observation import ObservationModel
from trim_rl.agents.pomdp.tokens import TokenModel
from trim_rl.agents.pomdp.transition import TransitionModel, pooled_rate
from trim_rl.data.flat import FlatTrees
from trim_rl.data.schema import MAX_STEPS
from trim_rl.data.tree_dp import reach_probability


@dataclass
class TreeLabels:
    """Per node: prefix correct (1 / 0 / -1 unknown), latent state of the weak and the strong
    candidate (-1 unknown or absent) and a weight: the probability that a router regenerating each
    step with probability ``regen_prob`` reaches the node (see :func:`trim_rl.data.tree_dp.reach_probability`), so that the
    fit sees decision points as often as a router would, not as often as the tree branches."""

    prefix_ok: np.ndarray
    weak_state: np.ndarray
    strong_state: np.ndarray
    weight: np.ndarray

    @property
    def labelled_fraction(self) -> float:
        return float((self.weak_state >= 0).mean()) if self.weak_state.size else 0.0


def _candidate_state(prefix_ok: np.ndarray, step_correct: np.ndarray) -> np.ndarray:
    return np.where(prefix_ok == 0, 1,
                    np.where(prefix_ok == 1, np.where(step_correct == 1, 0, np.where(step_correct == 0, 2, -1)), -1)
                    ).astype(np.int8)


def tree_labels(f: FlatTrees, regen_prob: float = 0.2) -> TreeLabels:
    """Latent states of every node's candidates from the trees' ``step_correct`` labels."""
    n = f.n_nodes
    prefix = np.ones(n, dtype=np.int8)
    for nodes in f.levels()[1:]:
        par = f.parent[nodes]
        sc = np.where(f.parent_action[nodes] == 1, f.strong_step_correct[par], f.weak_step_correct[par])
        pk = prefix[par]
        prefix[nodes] = np.where((pk == 0) | (sc == 0), 0, np.where((pk == 1) & (sc == 1), 1, -1))
    weak = _candidate_state(prefix, f.weak_step_correct)
    strong = np.where(f.strong_present, _candidate_state(prefix, f.strong_step_correct), -1).astype(np.int8)
    return TreeLabels(prefix, weak, strong, reach_probability(f, regen_prob))


def records_to_samples(records: Iterable[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(state, min of earlier scores, score) of every step of ProcessBench-style records.

    A record holds ``steps`` (list), ``label`` (0-based index of the first wrong step, -1 when all are
    correct) and per-step PRM scores under ``prm_scores`` (or ``scores``).
    """
    st, mn, sc = [], [], []
    for i, r in enumerate(records):
        scores = r.get("prm_scores", r.get("scores"))
        if scores is None:
            raise ValueError(f"record {i}: no 'prm_scores' (or 'scores')")
        scores = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
        if "steps" in r and len(r["steps"]) != scores.size:
            raise ValueError(f"record {i}: {len(r['steps'])} steps but {scores.size} scores")
        label = int(r["label"])
        j = np.arange(scores.size)
        st.append(np.where((label < 0) | (j < label), 0, np.where(j == label, 2, 1)))
        prior_min = np.minimum.accumulate(np.concatenate([[1.0], scores]))[:-1]
        mn.append(prior_min)
        sc.append(scores)
    if not st:
        raise ValueError("no records")
    return np.concatenate(st), np.concatenate(mn), np.concatenate(sc)


def fit_observation_from_records(records: Iterable[dict], n_bins: int = 20, bandwidth: float = 0.03,
                                 source: str = "processbench") -> ObservationModel:
    """Observation model from ProcessBench-style records (see :func:`records_to_samples`)."""
    s, m, x = records_to_samples(records)
    return ObservationModel.fit(s, m, x, n_bins=n_bins, bandwidth=bandwidth, source=source)


def fit_transition(f: FlatTrees, lab: TreeLabels, n_classes: int = 2, iters: int = 200
                   ) -> tuple[TransitionModel, np.ndarray]:
    """Error and ending rates per step index from labelled trees (node weights of ``lab``), and a
    mixture of ``n_classes`` problem difficulty classes; also returns each tree's class
    responsibilities (n_trees, n_classes).

    Class membership is fitted by EM on every node of a tree (nodes at one depth share that step's
    hardness, so each (tree, depth) counts once); the class error rates are then re-estimated with
    the path weights of ``lab``, like the population rates.
    """
    T = MAX_STEPS
    d = np.minimum(f.depth, T - 1)

    def rate(mask: np.ndarray, hit: np.ndarray, w: np.ndarray = lab.weight) -> np.ndarray:
        tot = np.bincount(d[mask], weights=w[mask], minlength=T)
        hits = np.bincount(d[mask & hit], weights=w[mask & hit], minlength=T)
        return pooled_rate(hits, tot)

    ok = lab.prefix_ok == 1
    ws, ss = lab.weak_state, lab.strong_state
    weak_mask = ok & (ws >= 0) & (ws != 1)
    strong_masks = [ok & (ws == j) & (ss >= 0) for j in (0, 2)]
    err_weak = rate(weak_mask, ws == 2)
    err_strong = np.stack([rate(m, ss == 2) for m in strong_masks], axis=1)
    end_weak = np.stack([rate(ws == s, f.weak_final) for s in range(3)], axis=1)
    end_strong = np.stack([rate(ss == s, f.strong_final) for s in range(3)], axis=1)
    _, inv, cnt = np.unique(f.tree_index * (T + 1) + f.depth, return_inverse=True, return_counts=True)
    groups = [(weak_mask, ws == 2)] + [(m, ss == 2) for m in strong_masks]
    prior, resp = _difficulty_classes(f, 1.0 / cnt[inv], d, groups, n_classes, iters)
    node_w = lab.weight[:, None] * resp[f.tree_index]
    class_err_weak = np.stack([rate(weak_mask, ws == 2, node_w[:, c]) for c in range(n_classes)], axis=1)
    class_err_strong = np.stack([np.stack([rate(m, ss == 2, node_w[:, c]) for c in range(n_classes)], axis=1)
                                 for m in strong_masks], axis=1)
    return TransitionModel(err_weak=err_weak, err_strong=err_strong, end_weak=end_weak, end_strong=end_strong,
                           class_prior=prior, class_err_weak=class_err_weak, class_err_strong=class_err_strong,
                           max_interventions=int(f.max_interventions.max()), source="trees"), resp


def _difficulty_classes(f: FlatTrees, w: np.ndarray, d: np.ndarray, groups: list, D: int, iters: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """EM for a mixture of D problem classes, each with its own per-step error rates in every
    (mask, hit) group (weighted Bernoulli counts per tree and step index).  Deterministic: starts
    from quantiles of the trees' weak error rates; classes ordered from easy to hard.  Returns the
    class prior (D,) and the responsibilities (n_trees, D)."""
    T, n = MAX_STEPS, f.n_trees
    key = f.tree_index * T + d

    def counts(mask, hit):
        tot = np.bincount(key[mask], weights=w[mask], minlength=n * T).reshape(n, T)
        hits = np.bincount(key[mask & hit], weights=w[mask & hit], minlength=n * T).reshape(n, T)
        return hits, tot

    stats = [counts(m, h) for m, h in groups]
    hw, nw = stats[0]
    frac = hw.sum(1) / np.maximum(nw.sum(1), 1e-12)
    cuts = np.quantile(frac, np.linspace(0, 1, D + 1)[1:-1]) if D > 1 else np.zeros(0)
    resp = np.eye(D)[np.searchsorted(cuts, frac, side="right")]
    prior, rates, prev = resp.mean(0), [], -np.inf
    for _ in range(iters):
        rates = [np.clip(np.stack([pooled_rate((resp[:, c:c + 1] * h).sum(0), (resp[:, c:c + 1] * t).sum(0))
                                   for c in range(D)], axis=1), 1e-6, 1 - 1e-6) for h, t in stats]
        prior = np.maximum(resp.mean(0), 1e-6)
        ll = np.log(prior)[None] + sum(h @ np.log(r) + (t - h) @ np.log(1 - r) for (h, t), r in zip(stats, rates))
        top = ll.max(axis=1, keepdims=True)
        total = float((top[:, 0] + np.log(np.exp(ll - top).sum(1))).sum())
        resp = np.exp(ll - top)
        resp /= resp.sum(axis=1, keepdims=True)
        if total - prev < 1e-9 * abs(total):
            break
        prev = total
    order = np.argsort(rates[0].mean(0))
    return resp[:, order].mean(0), resp[:, order]


def fit_model(f: FlatTrees, n_bins: int = 20, bandwidth: float = 0.02, token_bins: int = 4,
              min_labelled: float = 0.5, table: str | None = None, use_token_evidence: bool = True,
              regen_prob: float = 0.2, n_classes: int = 2, source: str = "") -> POMDPModel:
    """Fit every part from training trees.

    With ``step_correct`` labels on at least ``min_labelled`` of the nodes (the simulated trees carry
    them) the observation models, transitions and token likelihoods come from the trees.  Otherwise
    the PRM observation model is the measured table (``table``, default the shipped
    ``prm_obs_math_train_bin0.05.json``, for weak and strong steps alike), the transitions the shipped
    step statistics, and only the token-cost bins come from the trees.
    """
    lab = tree_labels(f, regen_prob)
    labelled = lab.labelled_fraction >= min_labelled
    info = {"source": source, "trees": f.n_trees, "nodes": f.n_nodes, "labelled_fraction": lab.labelled_fraction,
            "fitted_from": "trees" if labelled else "shipped measurements", "use_token_evidence": use_token_evidence,
            "regen_prob": regen_prob, "n_classes": n_classes}
    if labelled:
        ws, ss = lab.weak_state, lab.strong_state
        kw = ws >= 0
        weak_obs = ObservationModel.fit(ws[kw], f.prev_min[kw], f.weak_prm[kw], lab.weight[kw], n_bins, bandwidth,
                                        source="trees:weak")
        ks = ss >= 0
        strong_obs = ObservationModel.fit(ss[ks], f.prev_min[ks], f.strong_prm[ks], lab.weight[ks], n_bins, bandwidth,
                                          source="trees:strong")
        transition, _ = fit_transition(f, lab, n_classes)
        state = ws if use_token_evidence else None
    else:
        weak_obs = ObservationModel.from_table(table)
        strong_obs = weak_obs
        transition = TransitionModel.from_step_stats(max_interventions=int(f.max_interventions.max()))
        state = None
    tokens = TokenModel.fit(f.weak_tokens, f.weak_prm, f.strong_tokens, f.strong_present, state, lab.weight, token_bins)
    return POMDPModel(weak_obs, strong_obs, tokens, transition, info)
