"""TensorBoard metrics of rollouts and validation passes; best-checkpoint selection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from trim_rl.data.flat import FlatTrees
from trim_rl.data.trees import atomic_output


class RolloutMetricsCallback(BaseCallback):
    """Per rollout: accuracy, strong-token cost (% of always-strong), interventions per episode,
    episode reward and lambda of the episodes that ended during it."""

    def __init__(self, strong_only_mean: float):
        super().__init__()
        self.ref = float(strong_only_mean)
        self._reset()

    def _reset(self):
        self.correct, self.strong, self.calls, self.lams, self.rewards = [], [], [], [], []

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"]):
            if done and "correct" in info:
                self.correct.append(info["correct"])
                self.strong.append(info["strong_tokens"])
                self.calls.append(info["interventions"])
                self.lams.append(info["lam"])
                self.rewards.append(float(info["correct"]) - info["lam"] * info["strong_tokens"])
        return True

    def _on_rollout_end(self) -> None:
        if self.correct:
            self.logger.record("rollout/accuracy", float(np.mean(self.correct)))
            self.logger.record("rollout/cost_pct", 100.0 * float(np.mean(self.strong)) / self.ref)
            self.logger.record("rollout/interventions", float(np.mean(self.calls)))
            self.logger.record("rollout/episode_reward", float(np.mean(self.rewards)))
            self.logger.record("rollout/lambda", float(np.mean(self.lams)))
            self.logger.record("rollout/episodes", len(self.correct))
        self._reset()


class ValidationCallback(BaseCallback):
    """Every ``eval_freq`` env steps: roll the deterministic policy over the val trees at each
    lambda in ``lams`` and keep the model maximising mean(accuracy - lambda * strong tokens)
    (the paper's selection rule) as ``best_model.zip``."""

    def __init__(self, val: FlatTrees, lams: list[float], run_dir: Path, eval_freq: int, obs: str,
                 budget_conditioned: bool):
        super().__init__()
        self.val, self.lams, self.run_dir = val, list(lams), Path(run_dir)
        self.eval_freq, self.obs, self.bc = int(eval_freq), obs, budget_conditioned
        self.best = -np.inf
        self.last_eval = 0
        self.last: dict | None = None  # figures of the latest validation pass
        self.ref = float(val.strong_only_tokens.mean())
        best_file = self.run_dir / "best.json"
        if best_file.exists():  # resuming: keep the earlier best
            self.best = json.loads(best_file.read_text())["score"]

    def evaluate(self) -> dict:
        from trim_rl.agents.ppo import SB3Policy
        from trim_rl.eval.rollout import rollout

        pol = SB3Policy(self.model, self.obs, self.bc)
        accs, costs, calls, scores = [], [], [], []
        for lam in self.lams:
            r = rollout(pol, self.val, lam=lam)
            accs.append(r.correct.mean())
            costs.append(100.0 * r.strong_tokens.mean() / self.ref)
            calls.append(r.interventions.mean())
            scores.append(r.correct.mean() - lam * r.strong_tokens.mean())
        return {"accuracy": float(np.mean(accs)), "cost_pct": float(np.mean(costs)),
                "interventions": float(np.mean(calls)), "score": float(np.mean(scores)),
                "lambda": float(np.mean(self.lams)), "timesteps": int(self.num_timesteps)}

    def _on_step(self) -> bool:
        if self.num_timesteps - self.last_eval >= self.eval_freq:
            self.run_eval()
        return True

    def _on_training_end(self) -> None:
        if self.num_timesteps > self.last_eval:
            self.run_eval()

    def run_eval(self) -> None:
        self.last_eval = self.num_timesteps
        m = self.evaluate()
        self.last = m
        for k in ("accuracy", "cost_pct", "interventions", "score", "lambda"):
            self.logger.record(f"val/{k}", m[k])
        self.logger.dump(self.num_timesteps)
        if m["score"] > self.best:
            self.best = m["score"]
            self.model.save(self.run_dir / "best_model.zip")
            with atomic_output(self.run_dir / "best.json", "w") as fh:
                json.dump(m, fh, indent=1)


class LambdaWarmupCallback(BaseCallback):
    """Raise the env's lambda from ``start * lam`` to ``lam`` linearly over the first ``fraction`` of
    training.  At high prices a policy that starts by regenerating at random learns "never
    regenerate" before it learns which steps are worth it; starting cheap lets it learn the
    selective policy first and then prune it (see README, "PPO training notes")."""

    def __init__(self, lam: float, total: int, start: float = 0.25, fraction: float = 0.5,
                 lam_range: tuple[float, float] | None = None):
        super().__init__()
        self.lam, self.total, self.start, self.fraction = float(lam), int(total), float(start), float(fraction)
        self.lam_range = lam_range  # budget-conditioned: the whole range is scaled

    def factor(self) -> float:
        t = min(1.0, self.num_timesteps / max(1.0, self.fraction * self.total))
        return self.start + (1.0 - self.start) * t

    def current(self) -> float:
        return self.lam * self.factor()

    def _on_rollout_start(self) -> None:
        if self.lam_range is not None:
            f = self.factor()
            self.training_env.set_attr("lam_range", (self.lam_range[0] * f, self.lam_range[1] * f))
        else:
            self.training_env.set_attr("lam", self.current())

    def _on_step(self) -> bool:
        return True


class ProgressCallback(BaseCallback):
    """A tqdm bar over env steps (stderr), showing the last validation score, accuracy and cost."""

    def __init__(self, total: int, desc: str = "training", validation: ValidationCallback | None = None):
        """``total``: the run's total_timesteps (resumed runs count the steps already done)."""
        super().__init__()
        self.total, self.desc, self.validation = int(total), desc, validation
        self.bar = None
        self._seen = 0

    def _on_training_start(self) -> None:
        from tqdm import tqdm

        self._seen = int(self.num_timesteps)
        # PPO collects whole rollouts, so it stops at the first rollout boundary at or past total
        rollout = int(self.model.n_steps) * int(self.model.n_envs)
        end = self._seen + max(0, -(-(self.total - self._seen) // rollout)) * rollout
        self.bar = tqdm(total=end, initial=self._seen, desc=self.desc, unit="step", unit_scale=True,
                        dynamic_ncols=True, mininterval=1.0)

    def _on_step(self) -> bool:
        self.bar.update(int(self.num_timesteps) - self._seen)
        self._seen = int(self.num_timesteps)
        return True

    def _on_rollout_end(self) -> None:
        v = self.validation.last if self.validation is not None else None
        if v:
            self.bar.set_postfix(val_score=f"{v['score']:.3f}", val_acc=f"{v['accuracy']:.3f}",
                                 val_cost=f"{v['cost_pct']:.1f}%", refresh=False)

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self._on_rollout_end()  # the final validation pass
            self.bar.close()
            self.bar = None
