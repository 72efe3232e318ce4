"""Does the seq observation add anything over agg on the simulator?  (docs/research/seq_observation.md)

Each step writes its results under $SEQEXP_OUT (default ~/.cache/trim_rl/research/seq_observation, a
folder only its owner may write: the results are pickles, read back only from such a folder) and skips
what is there:

    python scripts/research/seq_observation.py train 26     # agg-PI, seq-PI (SEQ_* sizes), distilled seq, agg+hist PI
    python scripts/research/seq_observation.py lat 16 26    # agg + the simulator's latent (an oracle bound)
    python scripts/research/seq_observation.py eval 16 26   # calibrate on sim:math500:val:0-3, play sim:math500:test:100-109
    python scripts/research/seq_observation.py report       # the table, the bootstrap and CPT(80%)
    python scripts/research/seq_observation.py diag 26      # held-out fit of the exact advantages; the latent's recovery

Environment: SEQEXP_SEED (0), SEQEXP_TRAIN (sim:math500:train:0-11), SEQEXP_TEST (100-109), SEQ_TAG
(file name of the seq-PI run, "seq"), SEQ_ROUNDS / SEQ_SAMPLES / SEQ_EPOCHS (3 / 100000 / 2),
SEQ_WARM (1: start from the agg-PI policy), DIAG_SEQ_ONLY (1: only the transformer in diag).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time

import numpy as np
import torch

from trim_rl.agents.networks import PolicyNet
from trim_rl.data.flat import ABSENT
from trim_rl.data.tree_dp import play, policy_outcomes, reach_probability, levels_bottom_up
from trim_rl.envs.observations import AggObservation, SeqObservation
from trim_rl.sim.bundled import load_trees
from trim_rl.training import policy_iteration as PI
from trim_rl.training.budget import NodeMargins, calibrate_offset, shift_regenerate_logit
from trim_rl.training.config import DistillConfig
from trim_rl.training.distill import distill
from trim_rl.training.seq_iteration import SeqHeads, regress_seq, seq_policy_iteration

torch.set_num_threads(1)
OUT = os.environ.get("SEQEXP_OUT", os.path.expanduser("~/.cache/trim_rl/research/seq_observation"))
TRAIN = os.environ.get("SEQEXP_TRAIN", "sim:math500:train:0-11")
CALIB = "sim:math500:val:0-3"
TEST_SEEDS = [int(s) for s in os.environ.get("SEQEXP_TEST", "100-109").split("-")]
TEST_SEEDS = list(range(TEST_SEEDS[0], TEST_SEEDS[-1] + 1))
ENCODER = {"d_model": 32, "n_heads": 4, "n_layers": 2, "dim_ff": 64}  # agents/trim_seq.yaml
AGG_CFG = PI.PolicyIterationConfig(rounds=8, explore=0.1, samples=600_000, epochs=6)  # agents/trim_agg.yaml
SEQ_CFG = PI.PolicyIterationConfig(rounds=int(os.environ.get("SEQ_ROUNDS", 3)), explore=0.1,
                                   samples=int(os.environ.get("SEQ_SAMPLES", 100_000)),
                                   epochs=int(os.environ.get("SEQ_EPOCHS", 2)), batch_size=1024)
DIST_CFG = DistillConfig(samples=150_000, epochs=3, batch_size=1024, learning_rate=1e-3)  # agents/trim_seq.yaml
SEQ_TAG = os.environ.get("SEQ_TAG", "seq")
SEED = int(os.environ.get("SEQEXP_SEED", 0))
os.makedirs(OUT, mode=0o700, exist_ok=True)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def hist_features(trees) -> np.ndarray:
    """agg plus hand-made summaries of the whole history: mean log length of the kept weak steps and
    of the regenerated steps, the last accepted step's score and log length, how many accepted
    steps scored < 0.5, the mean accepted score."""
    n = trees.n_nodes
    agg = AggObservation().at_nodes(trees)
    s_lw, n_w, s_ls, n_s, n_low, s_prm = (np.zeros(n) for _ in range(6))
    last_prm, last_lt = np.ones(n), np.zeros(n)
    for nodes in trees.levels()[1:]:
        p = trees.parent[nodes]
        lt = np.log(np.maximum(trees.in_tokens[nodes], 1) / 45.0)
        weak = trees.parent_action[nodes] == 0
        s_lw[nodes] = s_lw[p] + weak * lt
        n_w[nodes] = n_w[p] + weak
        s_ls[nodes] = s_ls[p] + (~weak) * lt
        n_s[nodes] = n_s[p] + ~weak
        n_low[nodes] = n_low[p] + (trees.in_prm[nodes] < 0.5)
        s_prm[nodes] = s_prm[p] + trees.in_prm[nodes]
        last_prm[nodes] = trees.in_prm[nodes]
        last_lt[nodes] = lt
    d = np.maximum(n_w + n_s, 1)
    extra = np.stack([s_lw / np.maximum(n_w, 1), s_ls / np.maximum(n_s, 1), last_prm, last_lt, n_low,
                      np.where(n_w + n_s > 0, s_prm / d, 1.0)], axis=1)
    return np.concatenate([agg, extra.astype(np.float32)], axis=1)


def prefix_ok(trees) -> np.ndarray:
    """The latent: 1 while every accepted step so far is correct (the simulator's state 0)."""
    ok = np.ones(trees.n_nodes, dtype=np.float32)
    nonroot = trees.parent >= 0
    p = trees.parent[nonroot]
    pa = trees.parent_action[nonroot]
    ok[nonroot] = np.where(pa == 1, trees.strong_step_correct[p], trees.weak_step_correct[p])
    return ok


class FeatureBuilder:
    """An agg-like builder over precomputed feature columns (for the diagnostics)."""

    name = "feat"

    def __init__(self, fn):
        self.fn, self.cache = fn, {}

    def at_nodes(self, trees, nodes=None, lam=None):
        key = id(trees)
        if key not in self.cache:
            self.cache[key] = self.fn(trees)
        x = self.cache[key]
        return x if nodes is None else x[np.asarray(nodes)]


def feature_pi(trees, budget, fn, seed=SEED):
    """TRIM-Agg's policy iteration with its MLP on other features (policy_iteration's own loop)."""
    orig = PI.AggObservation
    PI.AggObservation = lambda: FeatureBuilder(fn)
    try:
        return PI.policy_iteration(trees, budget=budget, cfg=AGG_CFG, seed=seed, on_round=lambda r: log("  round", r))
    finally:
        PI.AggObservation = orig


def save(name, obj):
    with open(f"{OUT}/{name}.pkl", "wb") as fh:
        pickle.dump(obj, fh)


def load(name):
    st = os.stat(OUT)  # a pickle runs code when read: only from a folder no one else can write to
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        sys.exit(f"{OUT}: writable by others (or not yours); point SEQEXP_OUT at a private folder")
    with open(f"{OUT}/{name}.pkl", "rb") as fh:
        return pickle.load(fh)


def train(budget: float):
    tr = load_trees(TRAIN)
    log("train", TRAIN, tr.n_trees, tr.n_nodes)
    t0 = time.time()
    if not os.path.exists(f"{OUT}/agg_b{budget:g}.pkl"):
        res = PI.policy_iteration(tr, budget=budget, cfg=AGG_CFG, seed=SEED, on_round=lambda r: log("  agg", r))
        save(f"agg_b{budget:g}", {"net": res.net, "lam": res.lam, "rounds": res.rounds, "regen": res.regen,
                                  "seconds": time.time() - t0})
        log("agg-PI", budget, round(time.time() - t0), "s", res.accuracy, res.cost_pct)
    agg = load(f"agg_b{budget:g}")
    if not os.path.exists(f"{OUT}/{SEQ_TAG}_b{budget:g}.pkl"):
        t0 = time.time()
        res = seq_policy_iteration(tr, budget=budget, net_arch=[64], encoder=ENCODER, cfg=SEQ_CFG, seed=SEED,
                                   start_regen=agg["regen"] if os.environ.get("SEQ_WARM", "1") == "1" else None,
                                   on_round=lambda r: log("  seq", r))
        save(f"{SEQ_TAG}_b{budget:g}", {"net": res.net, "lam": res.lam, "rounds": res.rounds, "regen": res.regen,
                                  "seconds": time.time() - t0, "cfg": SEQ_CFG.to_dict()})
        log("seq-PI", budget, round(time.time() - t0), "s", res.accuracy, res.cost_pct)
    if not os.path.exists(f"{OUT}/dist_b{budget:g}.pkl"):
        t0 = time.time()
        torch.manual_seed(SEED)
        net = PolicyNet("seq", 0, [64], "tanh", ENCODER)
        agreement = distill(tr, agg["regen"], net, SeqObservation(), DIST_CFG, SEED,
                            on_epoch=lambda r: log("  distill", r))
        save(f"dist_b{budget:g}", {"net": net, "lam": agg["lam"], "agreement": agreement,
                                   "seconds": time.time() - t0})
        log("distill", budget, round(time.time() - t0), "s", agreement)
    if not os.path.exists(f"{OUT}/hist_b{budget:g}.pkl"):
        t0 = time.time()
        res = feature_pi(tr, budget, hist_features)
        save(f"hist_b{budget:g}", {"net": res.net, "lam": res.lam, "rounds": res.rounds,
                                   "seconds": time.time() - t0})
        log("hist-PI", budget, round(time.time() - t0), "s", res.accuracy, res.cost_pct)


def lat_features(trees) -> np.ndarray:
    """agg plus the simulator's latent (is the prefix still correct?): an oracle no router sees."""
    return np.concatenate([AggObservation().at_nodes(trees), prefix_ok(trees)[:, None]], axis=1)


def train_lat(budget: float):
    if os.path.exists(f"{OUT}/lat_b{budget:g}.pkl"):
        return
    tr = load_trees(TRAIN)
    t0 = time.time()
    res = feature_pi(tr, budget, lat_features)
    save(f"lat_b{budget:g}", {"net": res.net, "lam": res.lam, "rounds": res.rounds, "seconds": time.time() - t0})
    log("lat-PI", budget, round(time.time() - t0), "s", res.accuracy, res.cost_pct)


def builder_for(kind):
    if kind.startswith("seq") or kind == "dist":
        return SeqObservation()
    if kind == "hist":
        return FeatureBuilder(hist_features)
    if kind == "lat":
        return FeatureBuilder(lat_features)
    return AggObservation()


def margins_of(trees, net, bld):
    if bld.name != "seq":
        return NodeMargins(trees, net, bld)
    heads = SeqHeads(trees, net)

    def m(nodes):
        h = heads(nodes)
        return h[:, 1] - h[:, 0]
    return m


def evaluate(budgets=(16, 26), kinds=("agg", "seq", "seqL", "seqT", "dist", "hist", "lat")):
    """Calibrate each trained policy on the calibration trees, play it on every test seed; one file
    per (kind, budget), skipped when it exists."""
    calib = load_trees(CALIB)
    tests = {s: load_trees(f"sim:math500:test:{s}") for s in TEST_SEEDS}
    if not os.path.exists(f"{OUT}/refs.pkl"):
        refs = {}
        for s, t in tests.items():
            weak_c, _ = play(t, np.zeros(t.n_nodes, dtype=bool))
            refs[s] = (weak_c, t.strong_only_correct.astype(bool), t.strong_only_tokens, list(t.problem_id))
        save("refs", refs)
    for b in budgets:
        for k in kinds:
            if not os.path.exists(f"{OUT}/{k}_b{b:g}.pkl") or os.path.exists(f"{OUT}/ev_{k}_b{b:g}.pkl"):
                continue
            t0 = time.time()
            d = load(f"{k}_b{b:g}")
            net, bld = d["net"], builder_for(k)
            net.eval()
            cal = calibrate_offset(calib, margins_of(calib, net, bld), float(b))
            shift_regenerate_logit(net, cal.setting)
            per = {}
            for s, t in tests.items():
                m = margins_of(t, net, bld)
                correct, tokens = play(t, lambda n, m=m: m(n) > 0)
                wasted = spent_after_error(t, lambda n, m=m: m(n) > 0)
                per[s] = (correct, tokens, wasted)
            save(f"ev_{k}_b{b:g}", {"calib_cost": cal.cost_pct, "per_seed": per})
            log("eval", k, b, "calib", round(cal.cost_pct, 2), round(time.time() - t0), "s")


def spent_after_error(f, decide):
    """Per tree: strong tokens the policy spends at nodes whose prefix is already wrong (counted on
    tree_dp.play's own walk)."""
    ok = prefix_ok(f)
    out = np.zeros(f.n_trees, dtype=np.int64)

    def counting(n):
        act = np.asarray(decide(n), dtype=bool)
        wasted = act & (f.regen_child[n] != ABSENT) & (ok[n] < 0.5)
        np.add.at(out, f.tree_index[n[wasted]], f.strong_tokens[n[wasted]])
        return act

    play(f, counting)
    return out


def load_eval():
    import glob

    res = {}
    for path in glob.glob(f"{OUT}/ev_*_b*.pkl"):
        k, b = os.path.basename(path)[3:-4].rsplit("_b", 1)
        res[(k, float(b))] = load(os.path.basename(path)[:-4])
    return res, load("refs")


def report(n_boot=1000):
    res, refs = load_eval()
    seeds = sorted(refs)
    pids = np.concatenate([np.array(refs[s][3]) for s in seeds])
    uniq, inv = np.unique(pids, return_inverse=True)
    weak = np.concatenate([refs[s][0] for s in seeds]).astype(float)
    strong = np.concatenate([refs[s][1] for s in seeds]).astype(float)
    so_tok = np.concatenate([refs[s][2] for s in seeds]).astype(float)
    rng = np.random.default_rng(0)
    # bootstrap over test problems: per-problem sums, resampled problems
    P = uniq.size
    draws = rng.integers(0, P, size=(n_boot, P))
    W = np.zeros((n_boot, P))
    for i in range(n_boot):
        W[i] = np.bincount(draws[i], minlength=P)

    def per_problem(v):
        return np.bincount(inv, weights=v, minlength=P)

    n_pp, so_pp = per_problem(np.ones_like(weak)), per_problem(so_tok)
    out = {}
    for (k, b), r in sorted(res.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        c = np.concatenate([r["per_seed"][s][0] for s in seeds]).astype(float)
        t = np.concatenate([r["per_seed"][s][1] for s in seeds]).astype(float)
        acc = c.mean()
        cost = 100 * t.sum() / so_tok.sum()
        acc_b = (W @ per_problem(c)) / (W @ n_pp)
        cost_b = 100 * (W @ per_problem(t)) / (W @ so_pp)
        seed_acc = [r["per_seed"][s][0].mean() for s in seeds]
        seed_cost = [100 * r["per_seed"][s][1].sum() / refs[s][2].sum() for s in seeds]
        wst = np.concatenate([r["per_seed"][s][2] for s in seeds]).astype(float)
        out[(k, b)] = dict(wasted=100 * wst.sum() / max(t.sum(), 1), acc=acc, cost=cost, acc_b=acc_b, cost_b=cost_b,
                           c=c, t=t, seed_acc=seed_acc,
                           seed_cost=seed_cost, calib=r["calib_cost"])
    aw, as_ = weak.mean(), strong.mean()
    print(f"pool: {len(seeds)} seeds {seeds[0]}-{seeds[-1]}, {weak.size} trajectories; weak {aw:.4f}, strong {as_:.4f}")
    print("| router | budget | calib spend | test spend [95%] | test accuracy [95%] | PGR | acc − agg-PI [95%] "
          "| per-seed acc diff mean ± sd | spend after an error |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (k, b), o in out.items():
        base = out.get(("agg", b))
        d = o["acc_b"] - base["acc_b"]
        dpt = o["acc"] - base["acc"]
        sd = np.array(o["seed_acc"]) - np.array(base["seed_acc"])
        lo, hi = np.percentile(o["acc_b"], [2.5, 97.5])
        clo, chi = np.percentile(o["cost_b"], [2.5, 97.5])
        dlo, dhi = np.percentile(d, [2.5, 97.5])
        print(f"| {k} | {b}% | {o['calib']:.1f}% | {o['cost']:.1f}% [{clo:.1f}, {chi:.1f}] | {100*o['acc']:.2f}% "
              f"[{100*lo:.2f}, {100*hi:.2f}] | {(o['acc']-aw)/(as_-aw):.3f} | {100*dpt:+.2f} [{100*dlo:+.2f}, {100*dhi:+.2f}] "
              f"| {100*sd.mean():+.2f} ± {100*sd.std(ddof=1) if sd.size > 1 else 0:.2f} | {o['wasted']:.1f}% |")
    # CPT(80%) from the frontier through (0, weak), the 16% and 26% points (and always-strong)
    print("\nCPT(80%) from the two budgets' points (linear between them; past the last one along the last segment):")
    for k in sorted({k for k, _ in out}):
        pts = sorted((o["cost"], o["acc"]) for (kk, _), o in out.items() if kk == k)
        if len(pts) < 2:
            continue
        cpt = cpt80(pts, aw, as_)
        ratios = []
        for i in range(n_boot):
            bp = sorted((out[(k, b)]["cost_b"][i], out[(k, b)]["acc_b"][i]) for kk, b in out if kk == k)
            aw_i = (W[i] @ per_problem(weak)) / (W[i] @ n_pp)
            as_i = (W[i] @ per_problem(strong)) / (W[i] @ n_pp)
            ba = sorted((out[("agg", b)]["cost_b"][i], out[("agg", b)]["acc_b"][i]) for kk, b in out if kk == k)
            ratios.append(cpt80(bp, aw_i, as_i) / cpt80(ba, aw_i, as_i))
        ratios = np.array(ratios)
        per_seed = []
        for j, sd in enumerate(seeds):
            aws, ass = refs[sd][0].mean(), refs[sd][1].mean()
            pk = sorted((out[(k, b)]["seed_cost"][j], out[(k, b)]["seed_acc"][j]) for kk, b in out if kk == k)
            pa = sorted((out[("agg", b)]["seed_cost"][j], out[("agg", b)]["seed_acc"][j]) for kk, b in out if kk == k)
            per_seed.append(cpt80(pk, aws, ass) / cpt80(pa, aws, ass))
        per_seed = np.array(per_seed)
        ratios = ratios[np.isfinite(ratios)]
        lo, hi = np.percentile(ratios, [2.5, 97.5])
        base = cpt80(sorted((o["cost"], o["acc"]) for (kk, _), o in out.items() if kk == "agg"), aw, as_)
        print(f"  {k}: {cpt:.2f}%  / agg-PI's: {cpt / base:.3f} [{lo:.3f}, {hi:.3f}]; per seed {per_seed.mean():.3f} "
              f"± {per_seed.std(ddof=1):.3f} [{per_seed.min():.3f}, {per_seed.max():.3f}]")


def cpt80(pts, aw, as_):
    """Least cost where the upper frontier through (0, weak) and ``pts`` reaches 80% of the gap; past
    the last point it goes on along the last segment's slope (for a concave frontier, a cost no
    higher than the true one)."""
    target = aw + 0.8 * (as_ - aw)
    front = [(0.0, aw)]
    for x, y in sorted(pts):
        if y > front[-1][1]:
            front.append((x, y))
    for (x0, y0), (x1, y1) in zip(front[:-1], front[1:]):
        if y1 >= target:
            return x0 + (target - y0) / (y1 - y0) * (x1 - x0)
    (x0, y0), (x1, y1) = front[-2], front[-1]
    return x1 + (target - y1) / (y1 - y0) * (x1 - x0)


def diag(budget=26.0, n_hold=60_000):
    """Held-out fit of the exact advantages under one fixed policy (agg-PI's at ``budget``): each
    regression trained on the same nodes of the training trees, scored on nodes of the calibration
    trees drawn as often as the policy (10% exploration) reaches them (so plain R^2 there is the
    reach-weighted R^2)."""
    tr, ho = load_trees(TRAIN), load_trees(CALIB)
    agg = load(f"agg_b{budget:g}")
    price = agg["lam"] * AGG_CFG.token_scale
    hm = PI.node_margins(agg["net"], AggObservation().at_nodes(ho))
    pol = {"train": agg["regen"], "hold": ho.regen_allowed & (hm[:, 1] - hm[:, 0] > 0)}
    data = {}
    for name, t in (("train", tr), ("hold", ho)):
        out = policy_outcomes(t, pol[name], levels_bottom_up(t))
        y = np.stack([out.regen_acc - out.keep_acc, (out.regen_tokens - out.keep_tokens) / AGG_CFG.token_scale], 1)
        y = np.nan_to_num(y, nan=0.0).astype(np.float32)
        w = np.where(t.regen_allowed, reach_probability(t, np.where(pol[name], 0.9, 0.1)), 0.0)
        data[name] = (t, y, w)
    rng = np.random.default_rng([SEED, 99])
    t, y, w = data["train"]
    n_small = SEQ_CFG.samples
    idx_small = rng.choice(t.n_nodes, size=n_small, p=w / w.sum())
    th, yh, wh = data["hold"]
    hold = rng.choice(th.n_nodes, size=n_hold, p=wh / wh.sum())
    feats = {"agg": lambda f: AggObservation().at_nodes(f), "agg+hist": hist_features,
             "agg+latent": lambda f: np.concatenate([AggObservation().at_nodes(f), prefix_ok(f)[:, None]], 1),
             "agg+hist+latent": lambda f: np.concatenate([hist_features(f), prefix_ok(f)[:, None]], 1)}

    def scores(pred):
        yy = yh[hold].astype(float)
        r = {}
        for j, nm in ((0, "R2_acc"), (1, "R2_tok")):
            r[nm] = 1 - ((pred[:, j] - yy[:, j]) ** 2).mean() / yy[:, j].var()
        m, mp = yy[:, 0] - price * yy[:, 1], pred[:, 0] - price * pred[:, 1]
        r["R2_margin"] = 1 - ((mp - m) ** 2).mean() / m.var()
        r["sign_agree"] = float(((mp > 0) == (m > 0)).mean())
        return r

    table = {}
    seq_only = os.environ.get("DIAG_SEQ_ONLY") == "1"
    for nm, fn in ({} if seq_only else feats).items():
        xt, xh = fn(t).astype(np.float32), fn(th).astype(np.float32)
        for tag, (ns, ep) in (("small", (n_small, SEQ_CFG.epochs)), ("full", (AGG_CFG.samples, AGG_CFG.epochs))):
            t0 = time.time()
            torch.manual_seed(SEED)
            net = PolicyNet("agg", xt.shape[1], [64, 64], "tanh")
            cfg = PI.PolicyIterationConfig(samples=ns, epochs=ep)
            if tag == "small":
                with PI.standardized(net, xt[idx_small]) as xs:
                    PI._regress(net, xs, y[idx_small], cfg, np.random.default_rng([SEED, 5]))
            else:
                PI._fit(net, xt, y, w, cfg, np.random.default_rng([SEED, 5]))
            table[f"{nm} MLP ({tag}: {ns} x {ep})"] = scores(PI.node_margins(net, xh[hold]))
            log("diag", nm, tag, round(time.time() - t0), table[f"{nm} MLP ({tag}: {ns} x {ep})"])
    t0 = time.time()
    torch.manual_seed(SEED)
    net = PolicyNet("seq", 0, [64], "tanh", ENCODER)
    regress_seq(net, t, idx_small, y[idx_small], SEQ_CFG, np.random.default_rng([SEED, 5]))
    net.eval()
    table[f"seq transformer ({n_small} x {SEQ_CFG.epochs})"] = scores(SeqHeads(th, net)(hold))
    log("diag seq", round(time.time() - t0), table[f"seq transformer ({n_small} x {SEQ_CFG.epochs})"])
    # how well each feature set recovers the latent (is the prefix still correct?) on held-out nodes
    lat = {}
    for nm in () if seq_only else ("agg", "agg+hist"):
        xt, xh = feats[nm](t).astype(np.float32), feats[nm](th).astype(np.float32)
        torch.manual_seed(SEED)
        net = PolicyNet("agg", xt.shape[1], [64, 64], "tanh")
        z = prefix_ok(t)[:, None].repeat(2, 1)
        PI._fit(net, xt, z, w, PI.PolicyIterationConfig(samples=200_000, epochs=3), np.random.default_rng([SEED, 6]))
        p = PI.node_margins(net, xh[hold])[:, 0]
        zz = prefix_ok(th)[hold]
        order = np.argsort(p)
        ranks = np.empty(p.size)
        ranks[order] = np.arange(p.size)
        pos = zz > 0.5
        auc = (ranks[pos].mean() - (pos.sum() - 1) / 2) / (~pos).sum()
        lat[nm] = {"R2": float(1 - ((p - zz) ** 2).mean() / zz.var()), "AUC": float(auc),
                   "share_wrong_prefix": float(1 - zz.mean())}
        log("latent", nm, lat[nm])
    with open(f"{OUT}/diag_b{budget:g}{'_seq' + str(n_small) if seq_only else ''}.json", "w") as fh:
        json.dump({"regression": table, "latent": lat, "price": price}, fh, indent=1)


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "train":
        train(float(sys.argv[2]))
    elif what == "eval":
        evaluate(tuple(float(b) for b in sys.argv[2:]) or (16, 26))
    elif what == "report":
        report()
    elif what == "lat":
        for b in sys.argv[2:]:
            train_lat(float(b))
    elif what == "diag":
        diag(float(sys.argv[2]) if len(sys.argv) > 2 else 26.0)
