"""What a run's stages share with the code that starts them: its target, its loaded inputs, the
interrupt it may raise, its signal handling and its logger (kept apart from :mod:`trim_rl.training.run`,
which starts the stages, so the stages can use them without importing it back)."""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trim_rl.data.flat import FlatTrees


class Interrupted(Exception):
    """Training stopped by SIGINT / SIGTERM; the run's state was saved (see ``run_dir``), or, when
    ``removed``, it had saved nothing yet and its folder was removed."""

    def __init__(self, run_dir: Path, resumable: bool, removed: bool = False):
        super().__init__(str(run_dir))
        self.run_dir, self.resumable, self.removed = Path(run_dir), resumable, removed


@dataclass
class Target:
    """What a run trains for: a budget (% of always-strong's strong tokens), a price, or, for a
    budget-conditioned agent, every budget at once."""

    budget: float | None = None
    lam: float | None = None

    @property
    def label(self) -> str:
        if self.budget is not None:
            return f"b{self.budget:g}"
        return f"{self.lam:g}" if self.lam is not None else "bc"

    def to_dict(self) -> dict:
        return {"budget": self.budget, "lam": self.lam}


@dataclass
class Inputs:
    """What a run reads, loaded and checked before its folder exists."""

    train: FlatTrees
    val: FlatTrees
    calib: FlatTrees
    calib_is_val: bool
    init_net: object | None = None
    init_lam: float | None = None  # the price of the --init-from checkpoint


@contextmanager
def stop_on_signals(stop: threading.Event | None = None):
    """An event (``stop``, or a new one) set by SIGINT / SIGTERM while the block runs (the main thread
    only).  A signal only sets it: an exception raised wherever the signal lands could be swallowed
    (Python ignores one raised in a finalizer, which imports such as torch's run)."""
    stop = stop if stop is not None else threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def make_logger(tb_dir: Path, verbose: int = 0):
    """SB3 logger writing TensorBoard events and ``progress.csv`` (appended to on resume)."""
    from stable_baselines3.common.logger import HumanOutputFormat, Logger, TensorBoardOutputFormat

    # trim_rl.training.callbacks imports stable_baselines3
    from trim_rl.training.callbacks import ResumableCSV

    tb_dir.mkdir(parents=True, exist_ok=True)
    formats = [TensorBoardOutputFormat(str(tb_dir)), ResumableCSV(str(tb_dir / "progress.csv"))]
    if verbose:
        formats.append(HumanOutputFormat(sys.stdout))
    return Logger(str(tb_dir), formats)
