"""Modules that share their name with a function of the Python API.

``trim_rl.train`` (the training package), ``trim_rl.evaluate`` and ``trim_rl.export`` (the two
command-line modules) have the names of the API's ``train``, ``evaluate`` and ``export``. Importing
such a module binds the package attribute to the module, after which ``trim_rl.train(...)`` would
call a module. Each of them therefore calls as its API function, so ``trim_rl.train(...)`` works
whichever of the two the attribute holds, and ``import trim_rl.train.cli`` works as ever.
"""

from __future__ import annotations

import importlib
import sys
import types


class _ApiModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        api = importlib.import_module("trim_rl.api")  # torch: loaded on the first call only
        return getattr(api, self.__name__.rsplit(".", 1)[-1])(*args, **kwargs)


def callable_as_api(name: str) -> None:
    """Make the module ``name`` (``__name__`` of the caller) call as the API function of its name."""
    module = sys.modules.get(name)
    if module is not None and name != "__main__" and type(module) is types.ModuleType:
        module.__class__ = _ApiModule
