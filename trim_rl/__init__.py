"""trim_rl: step-level routing between a weak and a strong language model (TRIM).

A weak model writes each reasoning step, a process reward model (PRM) scores it, and a router
decides per step to keep it or regenerate it with a strong model.  The package turns precomputed
step trajectory trees into a Gymnasium environment (``trim_rl/Routing-v0``, registered on import),
trains routing policies for a cost budget, evaluates them against baselines and serves them live.

The Python API (each name is imported on first use, so ``import trim_rl`` stays light)::

    import trim_rl
    trees = trim_rl.load_trees("sim:math500:test")
    run = trim_rl.train("trim_agg", "math500", budget=15)      # a Run; run.export("checkpoints/mine")
    trim_rl.resume("runs/trim_agg/RUN")                      # an interrupted run continued
    policy = trim_rl.load_policy("checkpoints/trim_agg/trim_agg_b15")
    result = trim_rl.evaluate(["thr", policy], trees)        # the metrics evaluate.py writes
"""

__version__ = "0.2.0"

from typing import TYPE_CHECKING

from trim_rl._registration import register_envs

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name is imported on first use
    from trim_rl.api import Evaluation, Run, evaluate, export, load_policy, load_trees, make_env, resume, train

register_envs()

_API = ("load_trees", "make_env", "load_policy", "train", "resume", "evaluate", "export", "Run", "Evaluation")


def __getattr__(name):
    if name in _API:
        # trim_rl.api imports torch: loaded on first use
        from trim_rl import api

        return getattr(api, name)
    raise AttributeError(f"module 'trim_rl' has no attribute {name!r}")


__all__ = ["__version__", "load_trees", "make_env", "load_policy", "train", "resume", "evaluate", "export", "Run",
           "Evaluation"]
