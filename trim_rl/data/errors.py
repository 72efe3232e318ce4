"""Errors raised for malformed input files."""

from __future__ import annotations

import os


class TreeFormatError(ValueError):
    """A trajectory-tree (or other input) file violates its schema.

    The message always names the file, the 1-based line and the field path, e.g.
    ``trees.jsonl:12: nodes[3].weak.prm: must be a finite number in [0, 1], got nan``.
    """

    def __init__(self, path: str | os.PathLike | None, line: int | None, field: str, message: str):
        self.path = str(path) if path is not None else "<memory>"
        self.line = line
        self.field = field
        self.message = message
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {field}: {message}")
