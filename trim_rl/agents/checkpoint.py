"""The deployment checkpoint format: a folder with ``policy.json`` and the weights it names.

``policy.json`` (format ``trim_rl.policy/v1``) says what the folder holds: ``kind`` ``network`` (a
:class:`~trim_rl.agents.networks.PolicyNet`, weights in ``model.safetensors``) or ``pomdp`` (a
TRIM-POMDP table, arrays in ``policy.npz``), the family, the observation builder, the budget or
price it was trained for, versions, and the sha256 of the weights.  Nothing is pickled.  Folders are
written into a temporary folder beside the target and moved onto it at the end
(:func:`write_folder`); an existing folder is replaced only when it is a checkpoint and nothing
else: a checkpoint folder that also holds other files (notes, an evaluation report) is refused, naming
them, since replacing the folder would delete them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any
from collections.abc import Callable

from trim_rl.fsutil import folder_beside, install_folder, read_json_object, sha256_file

FORMAT = "trim_rl.policy/v1"
WEIGHTS = "model.safetensors"
META = "policy.json"

# every file a checkpoint folder consists of (network or TRIM-POMDP); anything else is the user's
CHECKPOINT_FILES = (META, WEIGHTS, "policy.npz")

__all__ = ["FORMAT", "WEIGHTS", "META", "CHECKPOINT_FILES", "sha256_file", "read_policy_json", "checkpoint_kind",
           "is_checkpoint",
           "foreign_entries", "write_folder", "write_network_checkpoint", "file_in_folder", "price_field"]


def read_policy_json(path: Path) -> dict[str, Any]:
    """``policy.json`` as a dict; ``ValueError`` naming the file, line and column when it is not a JSON object."""
    return read_json_object(path)


def checkpoint_kind(folder: str | Path, missing: str) -> str:
    """The ``kind`` a checkpoint folder's ``policy.json`` declares (``network`` when absent); a
    ``FileNotFoundError`` with the message ``missing`` when the folder has no ``policy.json``."""
    meta_path = Path(folder) / META
    if not meta_path.is_file():
        raise FileNotFoundError(missing)
    return read_policy_json(meta_path).get("kind", "network")


def file_in_folder(folder: Path, name, meta_path: Path, key: str = "weights") -> Path:
    """The file ``policy.json``'s ``key`` names: a file inside the checkpoint folder, never a path that
    leads out of it (a checkpoint from elsewhere must not make us read, hash or load any other file)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"{meta_path}: field '{key}' must name a file in the checkpoint folder, got {name!r}")
    rel = Path(name)
    inside = not rel.is_absolute() and ".." not in rel.parts
    if inside:
        try:
            (folder / rel).resolve().relative_to(folder.resolve())
        except ValueError:  # a symbolic link that leads out of the folder
            inside = False
    if not inside:
        raise ValueError(f"{meta_path}: field '{key}' must name a file in the checkpoint folder, got {name!r}")
    return folder / rel


def price_field(lam, meta_path: Path) -> float | None:
    """``lam`` of ``policy.json``: null (budget-conditioned) or a finite price >= 0."""
    if lam is None:
        return None
    ok = isinstance(lam, (int, float)) and not isinstance(lam, bool)
    try:
        ok = ok and math.isfinite(float(lam)) and lam >= 0
    except OverflowError:
        ok = False
    if not ok:
        shown = repr(lam) if len(repr(lam)) <= 40 else repr(lam)[:40] + "..."
        raise ValueError(f"{meta_path}: field 'lam' must be a finite number >= 0 (or null), got {shown}")
    return lam


def requested_budget(meta: dict[str, Any]) -> float | None:
    """The budget (% of always-strong's strong tokens) a checkpoint was trained for (policy.json
    ``budget.requested``), or None (trained for a price, or budget-conditioned)."""
    b = meta.get("budget")
    return float(b["requested"]) if isinstance(b, dict) and b.get("requested") is not None else None


def is_checkpoint(folder: Path) -> bool:
    """Does ``folder`` hold a trim_rl checkpoint (a ``policy.json`` of this format)?"""
    meta = Path(folder) / META
    if not meta.is_file():
        return False
    try:
        return read_policy_json(meta).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def foreign_entries(folder: Path) -> list[str]:
    """Names in ``folder`` that are no part of a checkpoint (sorted; folders end in ``/``)."""
    return sorted(p.name + ("/" if p.is_dir() and not p.is_symlink() else "") for p in Path(folder).iterdir()
                  if p.name not in CHECKPOINT_FILES or not p.is_file() or p.is_symlink())


def _replaceable(folder: Path) -> bool:
    return is_checkpoint(folder) and not foreign_entries(folder)


def write_folder(out: str | Path, fill: Callable[[Path], list[str]]) -> tuple[Path, bool]:
    """Build a checkpoint folder with ``fill(tmp)`` (which writes its files, ``policy.json`` among
    them, and returns their names) and move it onto ``out``.  An existing non-empty ``out`` is
    replaced only when it is a checkpoint holding nothing else; anything else is refused
    (``FileExistsError`` naming what is there), so a careless ``--out`` never deletes other files.
    Checked before anything is written and again just before the move.  Returns (out, replaced)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not is_checkpoint(out):
        raise FileExistsError(f"{out}: folder is not empty and holds no trim_rl checkpoint (policy.json); "
                              f"refusing to replace it")
    if out.is_dir():
        _refuse_foreign(out)
    with folder_beside(out) as tmp:
        fill(tmp)
        if out.is_dir():
            _refuse_foreign(out)  # files added while the new checkpoint was being written
        replaced = install_folder(tmp, out, may_replace=_replaceable)
    return out, replaced


def _refuse_foreign(out: Path) -> None:
    other = foreign_entries(out)
    if other:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        raise FileExistsError(f"{out}: holds a checkpoint and files that are no part of a checkpoint ({shown}); "
                              f"refusing to replace it, which would delete them: move them out or choose another "
                              f"folder")


def write_network_checkpoint(net, meta: dict, out: str | Path) -> Path:
    """``model.safetensors`` (the PolicyNet weights) and ``policy.json`` (``meta`` plus format, kind,
    name, weights file and sha256) as the folder ``out`` (see :func:`write_folder`)."""
    from safetensors.torch import save_file

    out = Path(out)

    def fill(tmp: Path) -> list[str]:
        weights = tmp / WEIGHTS
        save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(weights))
        full = {"format": FORMAT, "kind": "network", **meta, "name": out.name,
                "normalization": None,  # the observation builders scale features; no running statistics
                "weights": WEIGHTS, "sha256": sha256_file(weights)}
        (tmp / META).write_text(json.dumps(full, indent=1) + "\n", encoding="utf-8")
        return [WEIGHTS, META]

    return write_folder(out, fill)[0]
