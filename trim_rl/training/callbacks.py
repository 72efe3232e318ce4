"""TensorBoard metrics of rollouts and validation passes; best-checkpoint selection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import CSVOutputFormat

from trim_rl.data.trees import atomic_output
from trim_rl.training.ppo_stage import actor_net, save_model


class RolloutMetricsCallback(BaseCallback):
    """Per rollout: accuracy, strong-token cost (% of always-strong), interventions per episode,
    episode reward and lambda of the episodes that ended during it."""

    def __init__(self, strong_only_mean: float, on_rollout=None):
        """``on_rollout(cost_pct)`` is called after each rollout with its spend (the budget control)."""
        super().__init__()
        self.ref = float(strong_only_mean)
        self.on_rollout = on_rollout
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
            if self.on_rollout is not None:
                self.on_rollout(100.0 * float(np.mean(self.strong)) / self.ref)
        self._reset()


class ValidationCallback(BaseCallback):
    """Every ``eval_freq`` env steps (and once before the first update): score PPO's actor on
    held-out trees with ``evaluator`` (:mod:`trim_rl.training.validation`), keep the best one as
    ``best_model.zip`` + ``best.json`` and save ``model.zip`` + ``state.json`` for ``--resume``.
    For a budget, :meth:`control` (called after every rollout) holds the rollout spend where it
    started: log lambda moves by ``budget_control`` x the relative gap.  Training stops early (the
    state saved) when ``stop`` is set, e.g. by SIGTERM."""

    def __init__(self, evaluator, agent, run_dir: Path, eval_freq: int, lam: float, budget: float | None = None,
                 budget_control: float = 0.0, stop=None):
        super().__init__()
        self.evaluator, self.agent, self.run_dir = evaluator, agent, Path(run_dir)
        self.eval_freq, self.lam, self.budget = int(eval_freq), float(lam), budget
        self.budget_control, self.stop = float(budget_control), stop
        self.best = -np.inf
        self.hold: float | None = None  # rollout spend the budget control holds
        self.last_eval = 0
        self.last: dict | None = None  # figures of the latest validation pass
        best_file = self.run_dir / "best.json"
        if best_file.exists():  # resuming: keep the earlier best
            self.best = json.loads(best_file.read_text())["score"]

    def _on_training_start(self) -> None:
        self.last_eval = int(self.num_timesteps)
        if self.num_timesteps == 0:
            self.run_eval()  # the starting policy competes too

    def _on_step(self) -> bool:
        if self.num_timesteps - self.last_eval >= self.eval_freq:
            self.run_eval()
        return not (self.stop is not None and self.stop.is_set())

    def _on_training_end(self) -> None:
        if self.num_timesteps > self.last_eval and not (self.stop is not None and self.stop.is_set()):
            self.run_eval()

    def run_eval(self) -> None:
        self.last_eval = int(self.num_timesteps)
        m = self.evaluator(actor_net(self.model, self.agent), self.lam)
        m["timesteps"] = int(self.num_timesteps)
        self.last = m
        for k in ("accuracy", "cost_pct", "score", "lambda", "offset", "raw_cost_pct"):
            if k in m:
                self.logger.record(f"val/{k}", m[k])
        self.logger.dump(self.num_timesteps)
        if m["score"] > self.best:
            self.best = m["score"]
            save_model(self.model, self.run_dir / "best_model.zip")
            write_json(self.run_dir / "best.json", m)
        self.save_state()

    def control(self, rollout_cost: float) -> None:
        """Budget control after a rollout: the first rollout's spend is the level to hold."""
        if self.budget is None or self.budget_control <= 0:
            return
        if self.hold is None:
            self.hold = max(float(rollout_cost), 0.5)
            return
        gap = (rollout_cost - self.hold) / self.hold
        self.lam = float(self.lam * np.exp(self.budget_control * np.clip(gap, -1.0, 1.0)))
        self.training_env.set_attr("lam", self.lam)
        self.logger.record("rollout/lambda_control", self.lam)

    def save_state(self) -> None:
        save_model(self.model, self.run_dir / "model.zip")
        write_json(self.run_dir / "state.json", {"stage": "ppo", "timesteps": int(self.num_timesteps),
                                                 "lam": self.lam, "best_score": self.best})


def write_json(path: Path, data) -> None:
    with atomic_output(path, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


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


class ResumableCSV(CSVOutputFormat):
    """SB3's CSV writer, appending to an existing ``progress.csv`` (a resumed run keeps its rows)."""

    def __init__(self, filename: str):
        path = Path(filename)
        if path.exists() and path.stat().st_size:
            self.file = open(path, "r+", encoding="utf-8")
            header = self.file.readline().rstrip("\n")
            self.file.seek(0, 2)
            self.keys = header.split(",") if header else []
            self.separator, self.quotechar = ",", '"'
        else:
            super().__init__(filename)
