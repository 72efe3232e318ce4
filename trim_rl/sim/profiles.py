"""Benchmark profiles: which real problems a profile models, their split and difficulty level."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from trim_rl.data.problems import Problem, load_problems
from trim_rl.sim.params import ProfileParams

SPLITS = ("train", "val", "test")
_ND = NormalDist()


def stable_uniform(key: str, salt: str = "") -> float:
    """A number in (0, 1) fixed by ``key`` (sha256), the same on every machine and seed."""
    h = hashlib.sha256(f"{salt}|{key}".encode()).digest()
    return (int.from_bytes(h[:8], "big") + 0.5) / 2.0**64


@dataclass(frozen=True)
class ProfileProblems:
    """The problems of one split of a profile with their model covariates."""

    problems: list[Problem]
    level: np.ndarray  # model difficulty level (float)
    z: np.ndarray  # latent difficulty, fixed per problem
    z_len: np.ndarray  # latent length factor, fixed per problem


def model_level(p: Problem, prof: ProfileParams) -> float:
    if prof.level == "math":
        if p.level is None:
            raise ValueError(f"{p.problem_id}: profile uses MATH levels but the problem has none")
        return float(p.level)
    if prof.level == "aime_number":
        return prof.level_base + prof.level_slope * (int(p.extra["number"]) - 1)
    if prof.level == "constant":
        return prof.level_base
    raise ValueError(f"unknown level rule {prof.level!r}")


def split_problems(problems: list[Problem], prof: ProfileParams) -> dict[str, list[Problem]]:
    """Disjoint train/val/test split, fixed by problem id (never by the seed).

    Within each difficulty stratum problems are ordered by a hash of their id; the first
    ``test_fraction`` go to test, the next ``val_fraction`` to val, the rest to train.  A benchmark
    that ships its own train/test files (AIME) keeps them and takes val out of train.
    """
    out: dict[str, list[Problem]] = {s: [] for s in SPLITS}
    own_split = {p.source_split for p in problems} >= {"train", "test"}
    strata: dict[object, list[Problem]] = {}
    for p in problems:
        key = (p.source_split if own_split else "all", p.level)
        strata.setdefault(key, []).append(p)
    for (src, _), group in sorted(strata.items(), key=lambda kv: str(kv[0])):
        group = sorted(group, key=lambda p: stable_uniform(p.problem_id, "split"))
        n = len(group)
        if own_split:
            if src == "test":
                out["test"].extend(group)
                continue
            n_test, n_val = 0, int(round(n * prof.val_fraction / (1.0 - prof.test_fraction)))
        else:
            n_test, n_val = int(round(n * prof.test_fraction)), int(round(n * prof.val_fraction))
        out["test"].extend(group[:n_test])
        out["val"].extend(group[n_test : n_test + n_val])
        out["train"].extend(group[n_test + n_val :])
    for s in SPLITS:
        out[s].sort(key=lambda p: p.problem_id)
    return out


def _rank_normals(problems: list[Problem], levels: np.ndarray, salt: str) -> np.ndarray:
    """Latent normals fixed per problem: within each level, the normal quantiles of the problems'
    hash order.  Every split thus gets the same difficulty spread at each level (less sampling
    noise between splits than independent draws would give), and the seed never changes them."""
    out = np.zeros(len(problems))
    for lv in np.unique(levels):
        idx = np.flatnonzero(levels == lv)
        order = sorted(idx, key=lambda i: stable_uniform(problems[i].problem_id, salt))
        n = len(order)
        for rank, i in enumerate(order):
            out[i] = _ND.inv_cdf((rank + 0.5) / n)
    return out


def profile_problems(prof: ProfileParams, split: str) -> ProfileProblems:
    """Problems of ``split`` (``train``/``val``/``test``, or ``all`` for their union) with their
    covariates."""
    if split != "all" and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS} or 'all'")
    parts = split_problems(load_problems(prof.benchmark), prof)
    chosen = SPLITS if split == "all" else (split,)
    problems: list[Problem] = []
    level, z, z_len = [], [], []
    for s in chosen:
        ps = parts[s]
        lv = np.array([model_level(p, prof) for p in ps], dtype=float)
        problems.extend(ps)
        level.append(lv)
        z.append(_rank_normals(ps, lv, "difficulty"))
        z_len.append(_rank_normals(ps, lv, "length"))
    return ProfileProblems(problems, np.concatenate(level), np.concatenate(z), np.concatenate(z_len))
