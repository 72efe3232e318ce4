"""Data files shipped with trim_rl (benchmarks, calibration measurements, fitted simulator
parameters, bundled trees).  Use :func:`resource_path` to locate them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def resource_path(*parts: str) -> Path:
    """Path of a file shipped inside ``trim_rl/resources``."""
    return Path(str(resources.files("trim_rl.resources").joinpath(*parts)))
