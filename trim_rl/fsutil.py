"""Writing files so that nothing is lost or half-written: temporary file beside the target, then rename.

Every writer in the package goes through these: a crash or a signal in the middle leaves the old
file (or folder) as it was, never a truncated one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Replace ``path`` by ``text`` atomically."""
    with atomic_output(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Replace ``path`` by ``data`` as indented JSON, atomically."""
    return write_text(path, json.dumps(data, indent=1) + "\n")


def existing_file(path: str | os.PathLike, missing: str, folder: str,
                  folder_error: type[Exception] = ValueError) -> Path:
    """``path`` as a :class:`~pathlib.Path` when something other than a folder is there: a
    ``FileNotFoundError`` with the message ``missing`` when nothing is, ``folder_error(folder)`` for a
    folder (each caller words what it expected)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(missing)
    if p.is_dir():
        raise folder_error(folder)
    return p


def read_text_file(path: str | os.PathLike, what: str, error: type[Exception] = ValueError) -> str:
    """A user's text file (a config, a template, a key file) as UTF-8 text; one ``error`` naming ``what``
    when it cannot be read or is not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{what}: cannot be read ({exc.__class__.__name__}: {exc})") from None


def read_json_object(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON file holding an object, as a dict; a ``ValueError`` naming the file (and the line and column
    where the JSON breaks) when it is not one."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:  # an integer over Python's int-string limit, deep nesting
        raise ValueError(f"{path}: not readable JSON ({str(exc).split(';')[0]})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    return raw


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def folder_beside(out: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside ``out`` (same file system) that is removed unless the block moves it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install_folder(tmp: Path, out: Path, may_replace=lambda p: False) -> bool:
    """Move the finished folder ``tmp`` onto ``out``.  An existing ``out`` is replaced only when
    ``may_replace(out)`` says it holds what ``tmp`` replaces (and then only after ``tmp`` is in
    place beside it); otherwise it must be absent or empty.  Returns whether something was replaced."""
    for p in tmp.iterdir():
        os.chmod(p, 0o644)
    os.chmod(tmp, 0o755)
    if out.is_symlink() or out.is_file():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not may_replace(out):
            raise FileExistsError(f"{out}: folder is not empty and is not what this would replace; choose another "
                                  f"folder or remove it")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return True
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return False
