"""Worker processes for the symbolic comparison, each call under a wall-clock deadline.

Not a ``ProcessPoolExecutor``: it cannot kill one stuck worker without breaking the futures of
every other thread, and its spawn start re-runs the caller's ``__main__``. Here each worker is a
``python -c`` subprocess speaking JSON lines; a worker that misses its deadline is killed and the
next call starts a fresh one. The pool starts on first use and is shut down at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

START_TIMEOUT_S = 120.0  # importing sympy on a loaded machine; never part of a grading deadline
_CMD = "from trim_rl.data.grading.worker import main; main()"


class WorkerError(RuntimeError):
    """A grading worker could not be started."""


class _Worker:
    def __init__(self):
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[3])  # the folder holding trim_rl/
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", _CMD], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                         text=True, bufsize=1)
        except OSError as e:
            raise WorkerError(f"cannot start a grading worker ({sys.executable}): {e}") from e
        self.lines: queue.Queue[str | None] = queue.Queue()
        # a reader thread, so that waiting for an answer can time out on any platform
        threading.Thread(target=self._read, daemon=True, name="grading-worker-reader").start()
        if self._get(START_TIMEOUT_S) != "ready":
            try:  # an end of file comes a moment before the exit status
                code = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
            self.kill()
            how = f"exited with code {code}" if code is not None else f"was not ready in {START_TIMEOUT_S:.0f} s"
            raise WorkerError(f"the grading worker ({sys.executable}) {how}; "
                              "is math-verify installed in this environment?")

    def _read(self) -> None:
        try:
            for line in self.proc.stdout:
                self.lines.put(line.strip())
        except (OSError, ValueError):  # the pipe was closed by kill()
            pass
        self.lines.put(None)  # end of file: the worker is gone

    def _get(self, timeout: float) -> str | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def call(self, job: dict, timeout: float) -> bool | None:
        """The worker's answer, or None when it is not back within ``timeout`` seconds (or died)."""
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
        except OSError:
            return None
        line = self._get(timeout)
        return None if line is None else bool(json.loads(line)["equal"])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


class GradingPool:
    """Up to ``size`` workers, started on demand; ``run`` is safe to call from any thread."""

    def __init__(self, size: int):
        self.size = size
        self.pid = os.getpid()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._starting = 0
        self._cv = threading.Condition()

    def _acquire(self) -> _Worker:
        with self._cv:
            while True:
                while self._idle:
                    w = self._idle.pop()
                    if w.alive():
                        return w
                    self._all.discard(w)  # died while idle (killed from outside): not a timeout
                if len(self._all) + self._starting < self.size:
                    break
                self._cv.wait()
            self._starting += 1  # hold the slot while the worker starts, outside the lock
        w = None
        try:
            w = _Worker()
            return w
        finally:
            with self._cv:
                self._starting -= 1
                if w is not None:
                    self._all.add(w)
                self._cv.notify()

    def _release(self, w: _Worker) -> None:
        with self._cv:
            if w.alive():
                self._idle.append(w)
            else:
                self._all.discard(w)
            self._cv.notify()

    def run(self, job: dict, timeout: float) -> bool | None:
        """The comparison's result, or None when it missed ``timeout`` (its worker is then killed)."""
        w = self._acquire()
        try:
            got = w.call(dict(job, cpu_s=timeout + 5.0), timeout)
            if got is None:
                w.kill()
            return got
        finally:
            self._release(w)

    def close(self) -> None:
        if os.getpid() != self.pid:  # an atexit handler inherited by a forked child: not its workers
            return
        with self._cv:
            workers, self._idle, self._all = list(self._all), [], set()
        for w in workers:
            w.kill()


_pool: GradingPool | None = None
_lock = threading.Lock()


def pool() -> GradingPool:
    """The process's pool, created on first use (again in a forked child: pipes are not shared)."""
    global _pool
    with _lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = GradingPool(size=max(1, min(4, os.cpu_count() or 1)))
            atexit.register(_pool.close)
        return _pool
