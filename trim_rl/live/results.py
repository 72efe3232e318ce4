"""Append-only JSON Lines results that survive a crash: one complete line per finished problem.

Each line is written with one ``write`` and flushed to disk (``fsync``) before the next problem is
reported done, so a run that dies loses at most the problem in flight.  On resume a torn last line
(a crash mid-write) is cut off and the finished problems are skipped.

A results file is of one kind (``decode`` rows, or ``trim_rl.tree/v1`` trees from ``collect``) and
records the settings that wrote it: a run refuses to append to a file of another kind, or one written
with other settings, naming what differs, so a file never mixes two runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from trim_rl.data.schema import SCHEMA
from trim_rl.data.trees import atomic_output, dumps_line

#: ``kind`` of a decode results row.
DECODE_KIND = "trim_rl.live.decode/v1"


def _other_kind(row: dict, field: str, expected: str, noun: str) -> str | None:
    """Why ``row`` is not a ``noun`` line by its ``field`` (``kind`` or ``schema``; None when it is
    ``expected``): the line's other field names what it is, where it has one."""
    if row.get(field) == expected:
        return None
    other = "schema" if field == "kind" else "kind"
    what = f"{other} {row[other]!r}" if other in row else f"{field} {row.get(field)!r}"
    return f"not a {noun} line ({what}; expected {field} {expected!r})"


def decode_row_check(row: dict) -> str | None:
    """Why ``row`` is not a decode results row (None when it is)."""
    why = _other_kind(row, "kind", DECODE_KIND, "decode results")
    if why is None and not isinstance(row.get("settings"), dict):
        return "field 'settings' missing"
    return why


def tree_row_check(row: dict) -> str | None:
    """Why ``row`` is not a collected tree (None when it is)."""
    return _other_kind(row, "schema", SCHEMA, "tree")


class ResultsFile:
    """The ``--out`` file of ``decode`` / ``collect``; ``check(row)`` says why a line is not of the
    file's kind (None: it is)."""

    def __init__(self, path: str | os.PathLike, key: str = "problem_id",
                 check: Callable[[dict], str | None] | None = None):
        self.path = Path(path)
        if self.path.suffix == ".gz":
            raise ValueError(f"{self.path}: results are appended line by line; use a .jsonl name, not .gz")
        if self.path.is_dir():
            raise ValueError(f"--out {self.path}: is a folder; give a .jsonl file name")
        self.key = key
        self.check = check
        self.done: dict[str, dict] = {}
        self.first_line: dict[str, int] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise ValueError(f"--out {self.path}: cannot read ({exc.strerror})") from None
        end = raw.rfind(b"\n") + 1
        rows = []
        for i, line in enumerate(raw[:end].splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                msg = getattr(exc, "msg", None) or "not UTF-8"
                raise ValueError(f"{self.path}:{i}: not a JSON line ({msg}); move the file away to start over") from None
            if not isinstance(row, dict) or self.key not in row:
                raise ValueError(f"{self.path}:{i}: field {self.key!r} missing; is this a trim_rl results file?")
            why = self.check(row) if self.check else None
            if why:
                raise ValueError(f"{self.path}:{i}: {why}; refusing to append to it (give another --out)")
            rows.append((i, row))
        if end < len(raw):  # torn last line: drop it (only once the rest is known to be ours)
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
        for i, row in rows:
            self.done[str(row[self.key])] = row
            self.first_line.setdefault(str(row[self.key]), i)

    def check_settings(self, current: dict, recorded: Callable[[dict], dict]) -> None:
        """Refuse (ValueError naming the setting) when a finished row was written with other settings."""
        for pid, row in self.done.items():
            old = recorded(row)
            for k, v in current.items():
                if k in old and old[k] != v:
                    raise ValueError(f"{self.path}:{self.first_line.get(pid, '?')}: written with {k} = {old[k]!r}, "
                                     f"this run has {k} = {v!r}; use the same settings to resume, or another --out")

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
    with atomic_output(path, "w") as fh:
        json.dump(obj, fh, indent=1)
        fh.write("\n")
