"""Shared fixtures of the TRIM-POMDP tests: the bundled math500 trees (loaded once) and the model
fitted on the training split."""

from __future__ import annotations

import pytest

from trim_rl.agents.pomdp.fit import fit_model
from trim_rl.sim.bundled import load_trees


@pytest.fixture(scope="session")
def bundled_train():
    return load_trees("sim:math500:train")


@pytest.fixture(scope="session")
def bundled_test():
    return load_trees("sim:math500:test")


@pytest.fixture(scope="session")
def fitted(bundled_train):
    return fit_model(bundled_train, source="sim:math500:train")
