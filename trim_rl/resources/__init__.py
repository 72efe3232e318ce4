"""Data files shipped with trim_rl (benchmarks, calibration measurements, fitted simulator
parameters, bundled trees).  Use :func:`resource_path` to locate them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def resource_path(*parts: str) -> Path:
    """Path of a file shipped inside ``trim_rl/resources``."""
    return Path(str(resources.files("trim_rl.resources").joinpath(*parts)))


# the project's top-level config folders; a wheel carries copies of them under trim_rl/resources/
# (setup.py copies them at build time, like rl-baselines3-zoo's hyperparams/)
PROJECT_FOLDERS = ("agents", "envs", "checkpoints")


def project_folder(name: str) -> Path:
    """``agents``, ``envs`` or ``checkpoints``: the checkout's top-level folder when running from a
    checkout, else the copy inside the installed package."""
    if name not in PROJECT_FOLDERS:
        raise ValueError(f"unknown project folder {name!r}")
    checkout = Path(__file__).resolve().parents[2] / name
    if checkout.is_dir() and (checkout.parent / "setup.cfg").is_file():
        return checkout
    return resource_path(name)


def config_file(kind: str, spec: str | Path) -> Path:
    """An agent or env YAML by path, or by name (``trim_agg`` -> ``agents/trim_agg.yaml``)."""
    p = Path(spec)
    if p.exists():
        return p
    if len(p.parts) == 1 and p.suffix not in (".yaml", ".yml"):
        return project_folder(kind) / f"{spec}.yaml"
    if len(p.parts) > 1 and p.parts[0] == kind and not p.is_absolute():  # agents/x.yaml outside a checkout
        packaged = project_folder(kind).joinpath(*p.parts[1:])
        if packaged.exists():
            return packaged
    return p
