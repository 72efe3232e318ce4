"""Append-only JSON Lines results that survive a crash: one complete line per finished problem.

Each line is written with one ``write`` and flushed to disk (``fsync``) before the next problem is
reported done, so a run that dies loses at most the problem in flight.  On resume a torn last line
(a crash mid-write) is cut off and the finished problems are skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from trim_rl.data.trees import dumps_line


class ResultsFile:
    """The ``--out`` file of ``decode`` / ``collect``."""

    def __init__(self, path: str | os.PathLike, key: str = "problem_id"):
        self.path = Path(path)
        if self.path.suffix == ".gz":
            raise ValueError(f"{self.path}: results are appended line by line; use a .jsonl name, not .gz")
        self.key = key
        self.done: dict[str, dict] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        end = raw.rfind(b"\n") + 1
        if end < len(raw):  # torn last line: drop it
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
        for i, line in enumerate(raw[:end].splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.path}:{i}: not a JSON line ({exc.msg}); move the file away to start over") from None
            if not isinstance(row, dict) or self.key not in row:
                raise ValueError(f"{self.path}:{i}: field {self.key!r} missing; is this a trim_rl results file?")
            self.done[str(row[self.key])] = row

    def append(self, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = (dumps_line(row) + "\n").encode("utf-8")
        with open(self.path, "ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        self.done[str(row[self.key])] = row

    def rows(self) -> list[dict]:
        return list(self.done.values())


def write_json(path: str | os.PathLike, obj) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    from trim_rl.data.trees import atomic_output

    with atomic_output(path, "w") as fh:
        json.dump(obj, fh, indent=1)
        fh.write("\n")
