"""setuptools entry: metadata lives in setup.cfg; this only copies the project's config folders into
the package at build time (like rl-baselines3-zoo's hyperparams/), so an installed wheel has them."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PROJECT_FOLDERS = ("agents", "envs", "checkpoints")  # see trim_rl.resources.project_folder


class BuildWithProjectFolders(build_py):
    def run(self):
        super().run()
        root = Path(__file__).resolve().parent
        for name in PROJECT_FOLDERS:
            src, dst = root / name, Path(self.build_lib) / "trim_rl" / "resources" / name
            if src.is_dir():
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", ".*"))


setup(cmdclass={"build_py": BuildWithProjectFolders})
