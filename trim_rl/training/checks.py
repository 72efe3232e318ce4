"""Checks of what a training call asks for, shared by ``train.py`` and :func:`trim_rl.train`: each
raises :class:`~trim_rl.configs.ConfigError` naming the flag or key, before anything is written.

:func:`check_memory` estimates what an agent's sizes need at least (networks with their gradients
and Adam's moments, PPO's rollout buffer and minibatch, the samples drawn by policy iteration and
distillation) and refuses a config that cannot fit in this machine's memory, which the kernel would
otherwise end, without a message, once the process is past it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from trim_rl.configs import ConfigError

MAX_SEED = 2**32 - 1  # numpy's legacy seeding (SB3's set_random_seed) takes no more


def check_seed(seed, flag: str = "--seed") -> int:
    """A training seed: an integer in [0, 2**32 - 1]."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{flag}: expected an integer in [0, {MAX_SEED}], got {seed!r}")
    return seed


def check_workers(workers, flag: str = "--workers") -> int | None:
    """Processes of a grid: None (one per budget, at most the cores) or an integer >= 1."""
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"{flag}: expected an integer >= 1, got {workers!r}")
    return workers


def check_distinct(values: Sequence[float], flag: str) -> None:
    """A grid trains each value once: a repeated one would train the same policy twice."""
    seen: set[float] = set()
    for v in values:
        if float(v) in seen:
            raise ConfigError(f"{flag}: {float(v):g} is given twice; each value trains one policy")
        seen.add(float(v))


def check_path_given(value, flag: str):
    """A file or folder argument given empty would mean "." (or, for an optional one, be ignored)."""
    if value is not None and not str(value).strip():
        raise ConfigError(f"{flag}: expected a path or name, got {str(value)!r}")
    return value


def check_runs_root(runs, flag: str = "--runs") -> Path:
    """The root of run folders: a folder, or a path where one can be made (no part of it a file),
    checked before the trees load rather than when the run folder is made."""
    check_path_given(runs, flag)
    root = Path(runs)
    for p in (root, *root.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"{flag}: {p} is a file, not a folder" + ("" if p == root else f" (in {root})"))
            break
    return root


# ---- memory ---------------------------------------------------------------------------------------

F32 = 4
EVAL_ROWS = 1 << 17  # rows per batch where policy iteration scores every node of the trees
PI_BYTES_PER_SAMPLE = 100  # drawn index, uniforms, features and their standardised copy, targets
SEQ_PI_BYTES_PER_SAMPLE = 64  # drawn node, its row position, targets, sort keys (observations are built per batch)
SB3_BATCH = 64  # MaskablePPO's default minibatch
SB3_N_STEPS = 2048  # MaskablePPO's default rollout length per env


def machine_memory() -> int | None:
    """Bytes this process may use: the machine's memory, or its cgroup's limit where that is lower."""
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            v = int(Path(f).read_text().strip())
        except (OSError, ValueError):  # "max": no limit
            continue
        if 0 < v and (total is None or v < total):
            total = v
    return total


def _mlp_params(n_in: int, arch: Sequence[int], n_out: int) -> int:
    p = 0
    for w in [*arch, n_out]:
        p += n_in * w + w
        n_in = w
    return p


def memory_needs(agent) -> list[tuple[str, str, int]]:
    """(stage, key, bytes) of an agent's largest allocations, each a lower bound; allocations of
    the same stage are alive together."""
    if agent.algo == "pomdp":
        return _pomdp_needs(agent)
    from trim_rl.envs.observations import make_builder

    obs_shape = make_builder(agent.obs, agent.budget_conditioned).space.shape
    obs_dim = math.prod(obs_shape)
    spec = agent.policy_kwargs
    arch = [int(n) for n in spec.net_arch]
    needs: list[tuple[str, str, int]] = []
    if "ppo" in agent.recipe:
        hp = agent.hyperparams
        if agent.obs == "seq":
            e = spec.encoder
            steps = int(obs_shape[0])
            enc = _mlp_params(int(obs_shape[1]), [], e.d_model) + e.n_layers * (
                4 * (e.d_model * e.d_model + e.d_model) + 2 * e.d_model * e.dim_ff + e.dim_ff + 5 * e.d_model)
            feat = e.d_model
            # attention scores and the layers' outputs of one minibatch, kept for the backward pass
            enc_act = steps * (e.n_layers * (e.n_heads * steps + 4 * e.d_model + e.dim_ff))
        else:
            enc, feat, enc_act = 0, obs_dim, 0
        params = enc + _mlp_params(feat, arch, 2) + _mlp_params(feat, arch, 1)  # actor and critic
        needs.append(("ppo", "policy_kwargs.encoder" if enc > params - enc else "policy_kwargs.net_arch",
                      4 * F32 * params))  # weights, gradients and Adam's two moments
        rollout = int(hp.get("n_steps", SB3_N_STEPS)) * agent.n_envs
        needs.append(("ppo", "n_envs x hyperparams.n_steps", rollout * (obs_dim + 9) * F32))
        batch = int(hp.get("batch_size", SB3_BATCH))
        needs.append(("ppo", "hyperparams.batch_size", batch * (2 * 2 * sum(arch) + enc_act) * F32))
    if "policy_iteration" in agent.recipe:
        pi_arch = arch if agent.obs == "agg" else [64, 64]
        pi = agent.pi
        needs.append(("policy_iteration", "policy_iteration.samples", int(pi.samples) * PI_BYTES_PER_SAMPLE))
        needs.append(("policy_iteration", "policy_kwargs.net_arch",
                      4 * F32 * _mlp_params(7, pi_arch, 2) + 2 * EVAL_ROWS * max(pi_arch) * F32))
    if "seq_policy_iteration" in agent.recipe:
        needs.append(("seq_policy_iteration", "seq_policy_iteration.samples",
                      int(agent.seq_policy_iteration.samples) * SEQ_PI_BYTES_PER_SAMPLE))
    if "distill" in agent.recipe:
        needs.append(("distill", "distill.samples", int(agent.distill.samples) * (16 + 2 * obs_dim * F32)))
    return needs


def _pomdp_needs(agent) -> list[tuple[str, str, int]]:
    """TRIM-POMDP's grids: the fitted score grids, the solver's beliefs over (prefix belief, score
    bin, token bin) and the policy table over the simplex grid (float64 unless said)."""
    fit, sol = agent.fit, agent.solver
    return [("fit", "fit.n_bins", 3 * fit.n_classes * fit.n_bins ** 2 * 8),
            ("solve", "solver.p_grid x solver.obs_bins x fit.token_bins",
             2 * sol.p_grid * sol.obs_bins * fit.token_bins * 3 * 8),
            ("policy table", "solver.simplex_grid", sol.simplex_grid ** 2 * (3 * 8 + fit.token_bins * 9))]


def _gb(n: int) -> str:
    for unit, size in (("PB", 1e15), ("TB", 1e12)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 1e9:.3g} GB"


def check_memory(agent, where: str, available: int | None = None) -> None:
    """Refuse an agent whose sizes need more memory than the machine has (one line naming the key)."""
    available = machine_memory() if available is None else available
    if not available:
        return
    stages: dict[str, list[tuple[str, int]]] = {}
    for stage, key, n in memory_needs(agent):
        stages.setdefault(stage, []).append((key, n))
    for stage, items in sorted(stages.items(), key=lambda kv: -sum(n for _, n in kv[1])):  # the largest first
        total = sum(n for _, n in items)
        if total > available:
            key, n = max(items, key=lambda kn: kn[1])
            raise ConfigError(f"{where}: {key}: the {stage.replace('_', ' ')} stage would need at least "
                              f"{_gb(total)} of memory ({_gb(n)} for {key}), more than this machine's "
                              f"{_gb(available)}; choose smaller sizes")
