"""Fit the step model to real measurements (``python -m trim_rl.sim calibrate``).

Objective (minimised with Nelder-Mead on transformed parameters, common random numbers):

    sum over the real TRIM-Thr sweep rows k in {0.1, 0.3, 0.5, 0.7, 0.9}
        ((acc_sim - acc_real) / 0.012)^2
      + (log(strong_tokens_sim / real) / 0.06)^2 + (log(calls_sim / real) / 0.06)^2
      + (log(kept_weak_sim / real) / 0.04)^2 + (log(discarded_sim / real) / 0.06)^2
    + end points: weak-only accuracy (sd 0.005) and tokens (0.04), strong-only accuracy (0.005),
      tokens (0.04) and steps (sd 0.4 steps)
    + soft step statistics from ``step_stats_math_train.json`` (another sampling set-up, so loose):
      mean steps of correct weak / strong solutions (sd 0.7), mean index of the first step scored
      below 0.35 in wrong solutions (sd 0.7), fraction of steps scored >= 0.35 (sd 0.03).

Everything is simulated on all problems of the math500 profile (the real figures are averages
over all of MATH-500).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np

from trim_rl.resources import resource_path
from trim_rl.sim.params import ModelParams, SimParams
from trim_rl.sim.pathsim import PathStats, simulate
from trim_rl.sim.prm_scores import joint_histogram, load_prm_table, total_variation
from trim_rl.sim.profiles import profile_problems

#: parameters the fitter moves, with the transform that keeps them in range
FREE: dict[str, str] = {
    "sig_z": "log", "sig_h": "log", "a_w": "id", "first_w": "id", "a_s": "id", "g_s": "log",
    "L0": "log", "sig_L": "log", "L_s": "log", "L_err": "log",
    "T_w": "log", "T_s": "log", "k_h": "id", "k_wrong": "id", "k_wrong_s": "id", "k_low": "id",
    "m0_w": "logit", "m1_w": "logit", "m2_w": "logit", "q2_w": "logit", "beta_low": "log",
    "m0_s": "logit", "q2_s": "logit",
}
THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)


def load_targets() -> dict:
    with open(resource_path("calibration", "sweep_math500.json"), encoding="utf-8") as fh:
        sweep = json.load(fh)
    with open(resource_path("calibration", "step_stats_math_train.json"), encoding="utf-8") as fh:
        stats = json.load(fh)["models"]
    rows = {r[0]: dict(zip(sweep["columns"][1:], r[1:])) for r in sweep["rows"]}
    return {"rows": rows, "strong": sweep["strong_only"], "weak_stats": stats["qwen2.5-1.5b-instruct"],
            "strong_stats": stats["qwen2.5-7b-instruct"]}


def _to_vec(m: ModelParams, names) -> np.ndarray:
    out = []
    for n in names:
        v = getattr(m, n)
        t = FREE[n]
        out.append(np.log(v) if t == "log" else np.log(v / (1 - v)) if t == "logit" else v)
    return np.array(out, dtype=float)


def _from_vec(x: np.ndarray, base: ModelParams, names) -> ModelParams:
    kw = {}
    for n, v in zip(names, x):
        t = FREE[n]
        kw[n] = float(np.exp(v) if t == "log" else 1 / (1 + np.exp(-v)) if t == "logit" else v)
    return replace(base, **kw)


def step_statistics(st: PathStats) -> dict[str, float]:
    """The statistics of ``step_stats_math_train.json`` measured on simulated paths."""
    low = st.step_prm < 0.35
    n = st.correct.size
    first_low = np.full(n, np.inf)
    np.minimum.at(first_low, st.step_episode[low], st.step_depth[low] + 1.0)
    wrong = ~st.correct & np.isfinite(first_low)
    return {
        "correct_steps": float(st.steps[st.correct].mean()) if st.correct.any() else float("nan"),
        "first_low_step": float(first_low[wrong].mean()) if wrong.any() else float("nan"),
        "frac_ge_0.35": float(1.0 - low.mean()),
    }


def evaluate(m: ModelParams, params: SimParams, draws: int = 4, seed: int = 0, pp=None) -> dict:
    """Simulated sweep rows, end points and step statistics for model ``m``."""
    prof = params.profiles["math500"]
    if pp is None:
        pp = profile_problems(prof, "all")
    res = simulate(m, prof, pp, ["weak", *THRESHOLDS, "strong"], draws=draws, seed=seed)
    out = {k: v.summary() for k, v in res.items()}
    out["weak_stats"] = step_statistics(res["weak"])
    out["strong_stats"] = step_statistics(res["strong"])
    out["_paths"] = res
    return out


def loss_terms(sim: dict, tg: dict) -> dict[str, float]:
    terms = {}
    for k in THRESHOLDS:
        s, r = sim[k], tg["rows"][k]
        terms[f"acc@{k}"] = ((s["accuracy"] - r["accuracy"]) / 0.012) ** 2
        for key, sd in (("strong_tokens", 0.06), ("strong_calls", 0.06), ("kept_weak_tokens", 0.04), ("discarded_weak_tokens", 0.06)):
            terms[f"{key}@{k}"] = (np.log(max(s[key], 1e-3) / r[key]) / sd) ** 2
    w, r0 = sim["weak"], tg["rows"][0.0]
    terms["acc@weak"] = ((w["accuracy"] - r0["accuracy"]) / 0.005) ** 2
    terms["tokens@weak"] = (np.log(w["kept_weak_tokens"] / r0["kept_weak_tokens"]) / 0.04) ** 2
    s, rs = sim["strong"], tg["strong"]
    terms["acc@strong"] = ((s["accuracy"] - rs["accuracy"]) / 0.005) ** 2
    terms["tokens@strong"] = (np.log(s["strong_tokens"] / rs["strong_tokens"]) / 0.04) ** 2
    terms["steps@strong"] = ((s["steps"] - rs["steps"]) / 0.4) ** 2
    for who in ("weak", "strong"):
        st, real = sim[f"{who}_stats"], tg[f"{who}_stats"]
        terms[f"correct_steps@{who}"] = ((st["correct_steps"] - np.mean(real["correct_steps"])) / 0.7) ** 2
        terms[f"first_low@{who}"] = ((st["first_low_step"] - np.mean(real["incorrect_steps"])) / 0.7) ** 2
        terms[f"frac_ok@{who}"] = ((st["frac_ge_0.35"] - real["next_step_accuracy"]) / 0.03) ** 2
    return {k: float(v) if np.isfinite(v) else 1e6 for k, v in terms.items()}


def prm_tv(sim: dict, table_name: str = "math_train") -> dict[str, float]:
    """Total-variation distance between simulated weak-only step scores and the measured
    per-state distributions: joint (min prior, current) and the current-score marginal."""
    table = load_prm_table(table_name)
    st = sim["_paths"]["weak"]
    h = joint_histogram(st.step_state, st.step_min_prior, st.step_prm, table.n_bins)
    names = {0: "correct", 2: "first-wrong", 1: "after-error"}
    out = {}
    for s, name in names.items():
        out[f"{name} joint"] = total_variation(h[s], table.mass[s])
        out[f"{name} current"] = total_variation(h[s].sum(0), table.mass[s].sum(0))
    return out


def fit(params: SimParams, max_evals: int = 3000, draws: int = 4, seed: int = 0, names=None,
        progress=None) -> tuple[ModelParams, dict]:
    """Nelder-Mead over the FREE parameters; returns the fitted model and fit metadata."""
    from scipy.optimize import minimize

    names = list(names or FREE)
    tg = load_targets()
    pp = profile_problems(params.profiles["math500"], "all")
    base = params.model
    best = {"loss": np.inf, "x": _to_vec(base, names)}
    t0 = time.time()

    def f(x):
        m = _from_vec(x, base, names)
        val = sum(loss_terms(evaluate(m, params, draws, seed, pp), tg).values())
        if val < best["loss"]:
            best.update(loss=val, x=x.copy())
        if progress is not None:
            progress(best["loss"])
        return val

    x0 = _to_vec(base, names)
    step = np.where([FREE[n] == "id" for n in names], 0.3, 0.25)
    simplex = np.vstack([x0] + [x0 + np.eye(len(x0))[i] * step[i] for i in range(len(x0))])
    minimize(f, x0, method="Nelder-Mead",
             options={"maxfev": max_evals, "initial_simplex": simplex, "adaptive": True, "xatol": 1e-4, "fatol": 1e-3})
    m = _from_vec(best["x"], base, names)
    meta = {"loss": float(best["loss"]), "evaluations": max_evals, "draws": draws, "seed": seed,
            "seconds": round(time.time() - t0, 1), "free": names}
    return m, meta


def describe(params: SimParams, m: ModelParams | None = None, draws: int = 8, seed: int = 1) -> str:
    """A text table of the fit: real vs simulated rows, step statistics, PRM TV distances."""
    m = m or params.model
    tg = load_targets()
    sim = evaluate(m, params, draws=draws, seed=seed)
    lines = ["setting   acc real/sim    strong tok      calls        kept weak       discarded      capped"]
    for k in (0.0, *THRESHOLDS):
        s = sim["weak" if k == 0.0 else k]
        r = tg["rows"][k]
        lines.append(
            f"k={k:<5}  {r['accuracy']:.3f}/{s['accuracy']:.3f}  {r['strong_tokens']:6.1f}/{s['strong_tokens']:6.1f}"
            f"  {r['strong_calls']:4.2f}/{s['strong_calls']:4.2f}  {r['kept_weak_tokens']:6.1f}/{s['kept_weak_tokens']:6.1f}"
            f"  {r['discarded_weak_tokens']:6.1f}/{s['discarded_weak_tokens']:6.1f}  {s['capped']:.3f}"
        )
    s, rs = sim["strong"], tg["strong"]
    lines.append(f"strong   {rs['accuracy']:.3f}/{s['accuracy']:.3f}  {rs['strong_tokens']:6.1f}/{s['strong_tokens']:6.1f}"
                 f"  steps {rs['steps']:.2f}/{s['steps']:.2f}   weak-only steps {sim['weak']['steps']:.2f}")
    for who in ("weak", "strong"):
        st, real = sim[f"{who}_stats"], tg[f"{who}_stats"]
        lines.append(
            f"{who:6s} step stats real/sim: correct-solution steps {np.mean(real['correct_steps']):.2f}/{st['correct_steps']:.2f}"
            f", first step < 0.35 in wrong solutions {np.mean(real['incorrect_steps']):.2f}/{st['first_low_step']:.2f}"
            f", steps >= 0.35 {real['next_step_accuracy']:.3f}/{st['frac_ge_0.35']:.3f}"
        )
    tv = prm_tv(sim, params.profiles["math500"].prm_table)
    lines.append("PRM score TV distance, simulated weak-only steps vs measured (ProcessBench) per state:")
    lines.append("  " + ", ".join(f"{k} {v:.3f}" for k, v in tv.items()))
    terms = loss_terms(sim, tg)
    lines.append(f"objective {sum(terms.values()):.2f}; largest terms: " +
                 ", ".join(f"{k} {v:.1f}" for k, v in sorted(terms.items(), key=lambda kv: -kv[1])[:5]))
    return "\n".join(lines)

